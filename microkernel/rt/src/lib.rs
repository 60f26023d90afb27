//! The user runtime: what every user task of the microkernel links.
//!
//! - [`entry!`]: `_start` and the panic handler, one of each per task;
//!   [`entry::fault`] ends a thread with an exception;
//! - [`user`]: the `syscall` wrappers, raw and safe (the only inline
//!   `syscall` in user space), and [`utcb::ReceiveTargets`], the unsafe
//!   setters of where a receive may write;
//! - `heap` (feature `heap`): the global allocator and [`heap::claim`];
//! - [`boot`]: a root task's boot modules as byte slices;
//! - [`console`]: formatted lines to the kernel console (`debug_write`),
//!   with a fixed buffer so that printing never allocates;
//! - [`pci`]: PCI configuration mechanism #1 through ports 0xCF8/0xCFC,
//!   which the kernel opens to the root task alone (a user-level
//!   driver's);
//! - [`frames`]: a bitmap allocator of pages over a window of memory (the
//!   root task's free-memory window, or any other page-aligned range).
//!
//! The ABI crate (`microkernel-abi`) has no unsafe code: everything that
//! needs it on the user side is here. The root tasks (hello, ktest, core)
//! and the tasks core starts (core's programs through `core-user`, task
//! servers through `runtime-task`) all start through [`entry!`].
//!
//! The crate is `no_std`. What needs the target (`target_os = "none"`) is
//! built only there; the rest is host-tested.
#![cfg_attr(not(test), no_std)]

pub mod boot;
pub mod console;
pub mod entry;
pub mod frames;
#[cfg(all(target_os = "none", feature = "heap"))]
pub mod heap;
#[cfg(target_os = "none")]
pub mod pci;
#[cfg(target_os = "none")]
pub mod user;
pub mod utcb;
