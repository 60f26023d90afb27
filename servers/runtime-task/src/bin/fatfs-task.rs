//! The FAT server's task build: not yet able to reach a disk.
//!
//! A `vm` server's task build is what core runs in bare mode (no VT-x).
//! The FAT server needs the ATA channel's ports, and the microkernel does
//! not grant I/O ports to a task yet, so this build answers every attach
//! with that reason instead of faulting on its first `in`. The storage VM
//! (`fatfs-vm`) is the placement that works (docs/storage.md).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("fatfs-task is a Kasane task: build it with `cargo build -p runtime-task --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod task {
    use microkernel_abi::ThreadId;
    use ninep::Qid;
    use ninep_server::{Error, FileServer};

    /// Refuses every attach, saying why.
    struct NoDisk;

    impl FileServer for NoDisk {
        type Node = ();

        fn attach(&mut self, _uname: &str, _aname: &str) -> Result<((), Qid), Error> {
            Err(Error::new(
                "fat: not yet in the task placement: the microkernel grants no I/O ports to tasks; place fatfs in a vm",
            ))
        }
    }

    fn main(core: ThreadId) -> ! {
        runtime_task::serve(core, &mut NoDisk)
    }

    runtime_task::entry!(main);
}
