//! faulty as a microkernel task: the failure-injection server on core's link.
//!
//! Core starts it from the boot module `faulty-task` and posts it as
//! /srv/faulty. A read of its file `slow` takes a second; a read of
//! `crash` kills the task mid-request (see `runtime_task::faulty`); the failure tests check that core hangs the
//! link up, restarts the server alone, and keeps serving everything else.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("faulty-task is a Kasane task: build it with `cargo build -p runtime-task --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod task {
    use microkernel_abi::ThreadId;
    use runtime_task::faulty::Faulty;

    fn main(core: ThreadId) -> ! {
        let pause = move |microseconds| runtime_task::pause(core, microseconds);
        runtime_task::serve(
            core,
            &mut Faulty::new(runtime_task::alloc::boxed::Box::new(pause)),
        )
    }

    runtime_task::entry!(main);
}
