//! Kasane's microkernel, cell 0: boots in either mode and reports which.
//!
//! hvm enters `_start` in 64-bit mode with RDI = physical address of the
//! `BootInfo` (hvm_abi). Under VT-x the kernel is a guest and writes its
//! console through hypercalls; in bare mode it owns COM1. This is the boot
//! skeleton: it identifies its mode, runs the self-test the manifest's
//! `args` select, and powers off. IPC, threads and paging grow from here.
//!
//! On the host this builds to a stub, so workspace-wide checks cover it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the microkernel runs under hvm: build it with `cargo build -p microkernel --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod selftest;

#[cfg(target_os = "none")]
mod kernel {
    use hvm_abi::{BootInfo, BootMode, BOOT_INFO_MAGIC};

    use crate::{arch, console, kprintln, selftest};

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        kprintln!("microkernel: PANIC: {}", info);
        console::power_off(false)
    }

    #[no_mangle]
    extern "C" fn kernel_main(boot_info_phys: u64) -> ! {
        // The boot info is reachable through the direct map hvm set up.
        let info = (hvm_abi::DIRECT_MAP_BASE + boot_info_phys) as *const BootInfo;
        // SAFETY: hvm placed a BootInfo at that physical address and mapped
        // it; reading it unaligned copies it out before anything else runs.
        let info = unsafe { core::ptr::read_unaligned(info) };
        let mode = if info.magic == BOOT_INFO_MAGIC {
            info.boot_mode()
        } else {
            None
        };
        let Some(mode) = mode else {
            // No trustworthy boot info: COM1 is the only way to say so.
            console::init(BootMode::Bare, 0x3F8, 0);
            kprintln!("microkernel: bad boot info (magic {:#x})", info.magic);
            console::power_off(false)
        };
        console::init(mode, info.serial_port, info.memory_base);
        let mode_name = match mode {
            BootMode::VmxGuest => "vmx-guest",
            BootMode::Bare => "bare",
        };
        let hypervisor = arch::hypervisor_vendor();
        kprintln!(
            "microkernel: Kasane microkernel {} mode={} cell={} memory={}MiB modules={} hypervisor={}",
            env!("CARGO_PKG_VERSION"),
            mode_name,
            info.cell,
            info.memory_size >> 20,
            info.module_count,
            hypervisor.as_ref().map(|v| v.as_str()).unwrap_or("none")
        );
        let under_hvm = hypervisor
            .as_ref()
            .is_some_and(|v| v.as_str() == "KasaneHVM");
        if (mode == BootMode::VmxGuest) != under_hvm {
            kprintln!("microkernel: warning: boot info and CPUID disagree about the hypervisor");
        }
        selftest::run(&info, mode);
        console::power_off(true)
    }
}
