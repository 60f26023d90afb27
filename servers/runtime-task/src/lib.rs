//! The task runtime of 9P servers: a `ninep-server` Session on a server link.
//!
//! A file server written against `ninep_server::FileServer` (ramfs, say)
//! runs the same code as a host daemon or as a microkernel task of its
//! own; only the runtime and the transport differ. This crate is the task
//! runtime. A binary built with it for `x86_64-unknown-none` gets:
//! - `_start` (the user runtime's, `microkernel_rt::entry!`, through
//!   [`entry!`]): it reads the argument page core mapped at
//!   `task_link::layout::ARGS_ADDRESS` for core's thread, gives the
//!   runtime's heap `task_link::layout::HEAP_BASE` (zeroed pages core's
//!   pager supplies on first touch) and calls the server's
//!   `fn(ThreadId) -> !`;
//! - [`serve`]: the server loop of the link `task_link` describes, one
//!   frame in, one frame out, through a [`ninep_server::Session`]; and
//!   `serve_multiplexed`, the loop of a server whose requests may wait
//!   (several on the link at once, answered in any order);
//! - `device`, where core found a PCI device of the server's, and
//!   `ports`, port I/O on the ports core granted the task;
//! - [`clock_seconds`], time for the server from `kernel_info`;
//! - a panic handler that reports on the kernel console and faults, which
//!   core, the task's pager, sees as the end of the link.
//!
//! On the host only [`faulty`] is built (the failure-injection server,
//! host-tested); the runtime is bare-metal, so the binaries compile to
//! stubs there.
#![no_std]

#[doc(hidden)]
pub extern crate alloc;

#[cfg(target_os = "none")]
pub mod ports;
#[cfg(target_os = "none")]
mod task;

pub mod faulty;

#[cfg(target_os = "none")]
pub use task::{clock_seconds, device, image, pause, serve, serve_multiplexed, start_number};

/// Declares the server's main function (`fn(ThreadId) -> !`, given core's
/// thread). On bare metal it becomes the target of `_start`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[no_mangle]
        fn runtime_task_main(core: microkernel_abi::ThreadId) -> ! {
            $main(core)
        }
    };
}
