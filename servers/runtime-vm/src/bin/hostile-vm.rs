//! hostile-vm: a server VM that first misbehaves, then serves ramfs.
//!
//! `runtime_vm::hostile::run` makes hypercalls it may not make, writes
//! nonsense into PCI configuration space and the link device's registers,
//! and offers descriptors outside its memory; hvm must refuse each while
//! every other cell runs on. Then it serves ramfs like `ramfs-vm`, which
//! shows that this VM's link, reset, works again.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hostile-vm is a Kasane server VM: build it with `cargo build -p runtime-vm --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod vm {
    use ramfs::{Clock, RamFs};

    struct VmClock;

    impl Clock for VmClock {
        fn now(&self) -> u32 {
            runtime_vm::clock_seconds()
        }
    }

    fn main(_boot: &runtime_vm::Boot) -> ! {
        runtime_vm::hostile::run();
        let mut tree = RamFs::new(VmClock, "eve", "eve", 0o775);
        runtime_vm::serve(&mut tree)
    }

    runtime_vm::entry!(main);
}
