//! ramfs as a server VM: the `ramfs` crate on a virtio link under hvm.
//!
//! The tree and the 9P rules are the same code the host daemon
//! `kasane-ramfs` and the task `ramfs-task` run; `runtime-vm` supplies the
//! entry, the heap, the clock, the heartbeat and the link. hvm boots it as
//! a `server-vm` cell whose `image` is `ramfs-vm`.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ramfs-vm is a Kasane server VM: build it with `cargo build -p runtime-vm --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod vm {
    use ramfs::{Clock, Limits, RamFs};

    struct VmClock;

    impl Clock for VmClock {
        fn now(&self) -> u32 {
            runtime_vm::clock_seconds()
        }
    }

    fn main(boot: &runtime_vm::Boot) -> ! {
        let limits = Limits {
            max_file_size: 1 << 20,
            max_total_bytes: 2 << 20,
        };
        let mut tree = RamFs::new(VmClock, "eve", "eve", 0o775).with_limits(limits);
        // The manifest's image (the cell's one module, a tar archive),
        // unpacked at every start: a restarted VM serves the same files,
        // as the task placement does.
        if let Some(module) = boot.info.modules().first() {
            if let Some(image) = boot.module(module.name()) {
                if let Err(e) = tree.unpack_tar(image) {
                    runtime_vm::print_line(format_args!("ramfs: {e}"));
                }
            }
        }
        runtime_vm::serve(&mut tree)
    }

    runtime_vm::entry!(main);
}
