//! ramfs as a microkernel task: the `ramfs` crate on core's server link.
//!
//! The tree and the 9P rules are the same code the host daemon
//! `kasane-ramfs` runs; `runtime-task` supplies the entry, the heap, the
//! clock and the link. Core starts it at boot from the boot module
//! `ramfs-task` and posts its link as /srv/ramfs. Its limits keep the
//! tree within the frames core lends the task (see core's mount driver).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ramfs-task is a Kasane task: build it with `cargo build -p runtime-task --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod task {
    use microkernel_abi::ThreadId;
    use ramfs::{Clock, Limits, RamFs};

    struct KernelClock;

    impl Clock for KernelClock {
        fn now(&self) -> u32 {
            runtime_task::clock_seconds()
        }
    }

    fn main(core: ThreadId) -> ! {
        let limits = Limits {
            max_file_size: 1 << 20,
            max_total_bytes: 2 << 20,
        };
        let mut tree = RamFs::new(KernelClock, "eve", "eve", 0o775).with_limits(limits);
        // The manifest's image, unpacked at every start: a restart serves
        // the same files.
        if let Some(image) = runtime_task::image() {
            if let Err(e) = tree.unpack_tar(image) {
                microkernel_rt::console::print(format_args!("ramfs: {e}\n"));
            }
        }
        runtime_task::serve(core, &mut tree)
    }

    runtime_task::entry!(main);
}
