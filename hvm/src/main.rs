//! hvm: Kasane's VT-x type-1 hypervisor.
//!
//! GRUB loads hvm (multiboot2) with the microkernel, the compiled manifest
//! and the other components as modules. hvm turns VMX on and runs each cell
//! the manifest describes in its own VMCS with its own EPT and VPID; cell 0 is
//! the microkernel. Without usable VT-x it says why and hands the machine to
//! the microkernel directly ("bare mode").
//!
//! On the host this file builds to a stub that explains how to build hvm, so
//! the workspace's host tests and lints cover the crate.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "hvm runs on bare metal: build it with `cargo build -p hvm --target x86_64-unknown-none`"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[macro_use]
mod serial;
#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod cell;
#[cfg(target_os = "none")]
mod clock;
#[cfg(target_os = "none")]
mod devices;
#[cfg(target_os = "none")]
mod gdt;
#[cfg(target_os = "none")]
mod guest;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod linux;
#[cfg(target_os = "none")]
mod loader;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod run;
#[cfg(target_os = "none")]
mod vmcs;
#[cfg(target_os = "none")]
mod vmx;

#[cfg(target_os = "none")]
pub use boot::*;

#[cfg(target_os = "none")]
mod boot {
    use alloc::vec::Vec;
    use hvm_abi::BootMode;
    use kasane_manifest::BootManifest;
    use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};

    use crate::loader::{self, CellLayout};
    use crate::memory::{self, FrameAllocator};
    use crate::{arch, clock, gdt, serial, vmx};

    /// Multiboot2 magic in EAX at entry (Multiboot2 spec 3.2).
    const MULTIBOOT2_MAGIC: u32 = 0x36D7_6289;

    /// The boot modules GRUB loaded, by name (the module's command line).
    pub struct BootModules {
        modules: Vec<(&'static str, &'static [u8])>,
    }

    impl BootModules {
        /// The module called `name`.
        pub fn find(&self, name: &str) -> Option<&'static [u8]> {
            self.modules
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, bytes)| *bytes)
        }
    }

    /// Powers the machine off, reporting whether the run was clean.
    ///
    /// Tools read the line `hvm: poweroff ok` or `hvm: poweroff failed (...)`.
    /// QEMU's isa-debug-exit (port 0xF4) exits with 0x21/0x23, Bochs' shutdown
    /// port (0x8900) ends the emulator, and the ACPI PM1a port of QEMU's
    /// chipsets covers the rest.
    pub fn power_off(ok: bool, why: &str) -> ! {
        if ok {
            log!("poweroff ok ({})", why);
        } else {
            log!("poweroff failed ({})", why);
        }
        serial::drain();
        // SAFETY: the machine is being switched off; these ports either end
        // the emulator or do nothing.
        unsafe {
            arch::outb(0xF4, if ok { 0x10 } else { 0x11 });
            for byte in *b"Shutdown" {
                arch::outb(0x8900, byte);
            }
            arch::outw(0x604, 0x2000);
        }
        log!("poweroff did not take effect; halting");
        arch::halt_forever()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        serial::print_args(format_args!("hvm: PANIC: {info}\n"));
        power_off(false, "hvm panicked")
    }

    #[no_mangle]
    extern "C" fn hvm_main(magic: u32, info: u32) -> ! {
        serial::init();
        gdt::init();
        // hvm routes interrupts through the local APIC only: mask both 8259
        // PICs so a timer the BIOS left running cannot raise a stray vector.
        // SAFETY: writing the PICs' interrupt-mask registers only masks.
        unsafe {
            arch::outb(0x21, 0xFF);
            arch::outb(0xA1, 0xFF);
        }
        log!("Kasane hvm {} starting", env!("CARGO_PKG_VERSION"));
        if magic != MULTIBOOT2_MAGIC {
            log!("not started by a multiboot2 loader (magic {:#x})", magic);
            power_off(false, "bad boot magic");
        }
        // SAFETY: the magic says EBX held a multiboot2 information structure,
        // identity mapped below 4 GiB, left intact by the boot stub.
        let mbi =
            match unsafe { BootInformation::load(info as usize as *const BootInformationHeader) } {
                Ok(mbi) => mbi,
                Err(_) => power_off(false, "the multiboot2 information is malformed"),
            };

        let mut frames = FrameAllocator::empty();
        let Some(map) = mbi.memory_map_tag() else {
            power_off(false, "the boot loader gave no memory map")
        };
        for area in map.memory_areas() {
            if MemoryAreaType::from(area.typ()) == MemoryAreaType::Available {
                frames.add(area.start_address(), area.end_address());
            }
        }
        let (image_start, image_end) = arch::image_range();
        frames.reserve(0, 1 << 20);
        frames.reserve(image_start, image_end);
        frames.reserve(mbi.start_address() as u64, mbi.end_address() as u64);
        let mut modules = Vec::new();
        for module in mbi.module_tags() {
            frames.reserve(
                u64::from(module.start_address()),
                u64::from(module.end_address()),
            );
        }
        let heap = frames
            .allocate(memory::HEAP_SIZE, 4096)
            .unwrap_or_else(|| power_off(false, "no memory for hvm's heap"));
        // SAFETY: the range was just taken from the allocator for the heap.
        unsafe { memory::init_heap(heap, memory::HEAP_SIZE) };
        for module in mbi.module_tags() {
            let name = module.cmdline().unwrap_or("?");
            let len = module.module_size() as usize;
            // SAFETY: GRUB loaded the module there; the range is reserved
            // above and never written by hvm.
            let bytes: &'static [u8] = unsafe {
                core::slice::from_raw_parts(module.start_address() as usize as *const u8, len)
            };
            // GRUB's command line outlives hvm's use of it (reserved MBI).
            let name: &'static str = unsafe_static_str(name);
            modules.push((name, bytes));
        }
        let modules = BootModules { modules };

        let Some(manifest_bytes) = modules.find("manifest") else {
            power_off(false, "no `manifest` boot module");
        };
        let manifest = match BootManifest::decode(manifest_bytes) {
            Ok(m) => m,
            Err(e) => {
                log!("manifest rejected: {}", e);
                power_off(false, "bad manifest");
            }
        };
        log!(
            "system `{}`: {} cell(s), {} MiB free",
            manifest.name,
            manifest.cells.len(),
            frames.free_bytes() >> 20
        );

        match vmx::unavailable_reason() {
            None => match vmx::enable(&mut frames, clock::calibrate()) {
                Ok(hypervisor) => {
                    run_vmx(hypervisor, &mut frames, &manifest, &modules, manifest_bytes)
                }
                Err(reason) => {
                    log!("vmx=off ({}) -> bare mode", reason);
                    run_bare(&mut frames, &manifest, &modules, manifest_bytes)
                }
            },
            Some(reason) => {
                log!("vmx=off ({}) -> bare mode", reason);
                run_bare(&mut frames, &manifest, &modules, manifest_bytes)
            }
        }
    }

    /// The module names live in the multiboot2 information, which hvm keeps
    /// reserved and never frees, so they are effectively `'static`.
    fn unsafe_static_str(s: &str) -> &'static str {
        // SAFETY: see above; the bytes are never written or freed.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(s.as_ptr(), s.len())) }
    }

    fn run_vmx(
        mut hypervisor: vmx::Hypervisor,
        frames: &mut FrameAllocator,
        manifest: &BootManifest,
        modules: &BootModules,
        manifest_bytes: &[u8],
    ) -> ! {
        let summary = hypervisor.summary();
        let chosen = summary.chosen;
        let on_off = |b: bool| if b { "on" } else { "off" };
        let mut created = 0;
        // Every Linux cell and server VM has a link to cell 0, numbered in
        // manifest order (hvm_logic::link).
        let has_link: Vec<bool> = manifest
            .cells
            .iter()
            .map(|c| {
                matches!(
                    c.kind,
                    kasane_manifest::CellKind::Linux | kasane_manifest::CellKind::ServerVm
                )
            })
            .collect();
        for (index, cell) in manifest.cells.iter().enumerate() {
            match hypervisor.create_cell(
                frames,
                index as u32,
                cell,
                modules,
                manifest_bytes,
                &has_link,
            ) {
                Ok(()) => created += 1,
                Err(reason) => {
                    log!(
                        "cell {} ({}) could not be created: {}",
                        index,
                        cell.name,
                        reason
                    );
                    if index == 0 {
                        power_off(false, "cell 0 could not be created");
                    }
                }
            }
        }
        log!(
            "vmx=on ept={} ug={} vpid={} preemption-timer={} cells={} tsc={}MHz",
            on_off(chosen.ept()),
            on_off(chosen.unrestricted_guest()),
            on_off(chosen.vpid()),
            on_off(chosen.preemption_timer()),
            created,
            summary.clock.mhz()
        );
        hypervisor.run(modules, manifest_bytes)
    }

    fn run_bare(
        frames: &mut FrameAllocator,
        manifest: &BootManifest,
        modules: &BootModules,
        manifest_bytes: &[u8],
    ) -> ! {
        let cell = &manifest.cells[0];
        for other in &manifest.cells[1..] {
            log!("cell {}: needs VT-x; not started in bare mode", other.name);
        }
        let size = u64::from(cell.memory_mib) << 20;
        let Some(base) = frames.allocate(size, 2 << 20) else {
            power_off(false, "not enough memory for cell 0")
        };
        let Some(kernel) = modules.find(&cell.image) else {
            power_off(false, "the microkernel module is missing")
        };
        let mut extra = Vec::new();
        for name in &cell.modules {
            match modules.find(name) {
                Some(bytes) => extra.push((name.as_str(), bytes)),
                None => {
                    log!("boot module `{}` is missing", name);
                    power_off(false, "a boot module is missing");
                }
            }
        }
        let (image_start, image_end) = arch::image_range();
        let identity = (
            image_start & !0x1F_FFFF,
            (image_end + 0x1F_FFFF) & !0x1F_FFFF,
        );
        let layout = CellLayout {
            host_base: base,
            guest_base: base,
            size,
        };
        let entry = match loader::load_microkernel(
            layout,
            BootMode::Bare as u32,
            0,
            kernel,
            &extra,
            manifest_bytes,
            &cell.args,
            Some(identity),
        ) {
            Ok(entry) => entry,
            Err(e) => {
                log!("cannot load the microkernel: {}", e);
                power_off(false, "the microkernel image is invalid");
            }
        };
        log!(
            "bare mode: microkernel at {:#x}, {} MiB",
            base,
            cell.memory_mib
        );
        // The microkernel drives COM1 itself from here on.
        serial::drain();
        // SAFETY: the loader mapped hvm's image identically, the kernel
        // window, the stack and the GDT; nothing of hvm runs afterwards.
        unsafe {
            arch::jump_to_kernel(
                entry.rip,
                entry.rdi,
                entry.rsp,
                entry.cr3,
                entry.gdt_pointer,
            )
        }
    }
}
