//! The unikernel runtime of 9P servers: a `ninep-server` Session in a VM.
//!
//! A file server written against `ninep_server::FileServer` (ramfs, say)
//! runs the same code as a host daemon, a microkernel task or, with this
//! crate, a server VM of its own under hvm (docs/runtime-vm.md). A binary
//! built with it for `x86_64-unknown-none` gets:
//! - `_start`, entered by hvm in 64-bit mode with RDI = the physical
//!   address of a `hvm_abi::BootInfo` (mode `ServerVm`): a stack, an IDT
//!   (vectors 0x40 timer, 0x50 link, 0x51 command; exceptions reported as
//!   faults), a heap over the cell's free memory, and the server's main;
//! - [`serve`]: finds the link (a virtio console at PCI 00:01.0) through
//!   configuration ports, drives it with `virtio-drivers`, and answers the
//!   9P byte stream on it with a [`ninep_server::Session`]; idle is HLT,
//!   woken by the link, the command vector or its heartbeat timer (the
//!   emulated x2APIC's TSC-deadline timer), which sends `Heartbeat` well
//!   inside the manifest's `heartbeat_ms`;
//! - the failure verbs of `TakeCommand`, performed for real
//!   ([`command::Verb`]);
//! - a panic handler that reports on the console and with `FaultReport`.
//!
//! On the host only the plain logic is built and tested: the stream
//! framing ([`stream`]) and the verbs ([`command`]).
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(target_os = "none"), forbid(unsafe_code))]

#[doc(hidden)]
pub extern crate alloc;

pub mod command;
pub mod stream;

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
pub mod hostile;
#[cfg(target_os = "none")]
pub mod link;
#[cfg(target_os = "none")]
mod runtime;

#[cfg(target_os = "none")]
pub mod ports;
#[cfg(target_os = "none")]
pub use runtime::{
    boot_info, clock_seconds, console, hypercall, interrupts_taken, map_device, print_line, serve,
    wait_for_interrupt, Boot,
};

/// Declares the image's main function (`fn(&Boot) -> !`). On bare metal it
/// becomes the target of `_start`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[no_mangle]
        fn runtime_vm_main(boot: &$crate::Boot) -> ! {
            $main(boot)
        }
    };
}
