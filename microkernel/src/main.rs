//! Kasane's microkernel, cell 0: L4-style threads, tasks, IPC and paging.
//!
//! hvm enters `_start` in 64-bit mode with RDI = physical address of the
//! `BootInfo` (hvm_abi). Under VT-x the kernel is a guest and writes its
//! console through hypercalls; in bare mode it owns COM1. With
//! `args = "root=NAME"` it builds the kernel state and starts the root task
//! from boot module NAME (microkernel_abi::boot); with `test=NAME` it runs
//! one of the boot self-tests instead.
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
extern crate alloc;

#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
mod loader;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod selftest;

#[cfg(target_os = "none")]
mod boot {
    use alloc::vec::Vec;
    use hvm_abi::{BootInfo, BootMode, BOOT_INFO_MAGIC};

    use crate::memory::{self, FramePool, PAGE};
    use crate::{apic, arch, console, kernel, kprintln, paging, selftest};

    /// Where the xAPIC registers are mapped (PML4 slot 510, otherwise
    /// unused) when the CPU has no x2APIC.
    const XAPIC_VIRTUAL: u64 = 0xFFFF_FF00_0000_0000;
    const XAPIC_PHYSICAL: u64 = 0xFEE0_0000;

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        kprintln!("microkernel: PANIC: {}", info);
        console::power_off(false)
    }

    fn argument<'a>(args: &'a str, key: &str) -> Option<&'a str> {
        args.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
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
        let args = info.args();
        if argument(args, "test").is_some() {
            selftest::run(&info, mode);
            console::power_off(true);
        }
        let Some(root) = argument(args, "root") else {
            kprintln!("microkernel: nothing to run yet (no root=NAME in the manifest's args)");
            console::power_off(true)
        };
        if let Err(why) = start(&info, root, args) {
            kprintln!("microkernel: cannot start: {}", why);
            console::power_off(false);
        }
        kernel::run_next();
        // SAFETY: run_next made a thread current; the boot stack is not
        // needed any more.
        unsafe { arch::resume() }
    }

    fn start(info: &BootInfo, root: &str, args: &str) -> Result<(), &'static str> {
        let free = (info.free_base + PAGE - 1) & !(PAGE - 1);
        let end = info.memory_base + info.memory_size;
        let pool_size = (info.memory_size / 8).max(2 << 20);
        // The heap holds the mapping database, which records every page of
        // the root task's memory (about 100 bytes each), so it grows with
        // the cell: 2 MiB plus 1/16 of the memory.
        let heap_size = (2 << 20) + info.memory_size / 16;
        if free + heap_size + pool_size + (1 << 20) > end {
            return Err("the cell's memory is too small (give it at least 32 MiB)");
        }
        // SAFETY: [free, free + heap_size) is free cell memory, used only
        // by the heap from now on.
        unsafe { memory::init_heap(free, heap_size) };
        let pool_start = free + heap_size;
        let window_start = pool_start + pool_size;
        let mut pool = FramePool::new(pool_start, window_start);
        // SAFETY: once, at boot, interrupts off; the boot stack lives for
        // ever.
        unsafe { arch::init(arch::boot_stack_top()) };
        if paging::PCID_ENABLED.load(core::sync::atomic::Ordering::Relaxed) {
            kprintln!("microkernel: address spaces tagged with PCIDs (CR4.PCIDE)");
        }
        let kernel_root = arch::read_cr3() & !0xFFF;
        let has_x2apic = core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0;
        let xapic = if has_x2apic {
            0
        } else {
            paging::map_kernel_device(&mut pool, kernel_root, XAPIC_VIRTUAL, XAPIC_PHYSICAL)
                .ok_or("cannot map the local APIC")?
        };
        let owns_pit = info.boot_mode() == Some(BootMode::Bare);
        let (apic_mode, calibration) = apic::init(xapic, owns_pit, kernel::TICK_MICROSECONDS)?;
        match calibration {
            Ok(rates) => kprintln!(
                "microkernel: timer via {}, tick {} us ({})",
                apic_mode,
                kernel::TICK_MICROSECONDS,
                rates
            ),
            Err(why) => kprintln!(
                "microkernel: timer via {}, tick {} us (nominal: {})",
                apic_mode,
                kernel::TICK_MICROSECONDS,
                why
            ),
        }
        let modules: Vec<(&str, u64, u64)> = info
            .modules()
            .iter()
            .map(|m| (m.name(), m.phys, m.len))
            .collect();
        let platform = kernel::Platform {
            under_hvm: info.boot_mode() == Some(BootMode::VmxGuest),
            ram: (info.memory_base, end),
        };
        kernel::boot(pool, root, &modules, (window_start, end), args, platform)
    }
}
