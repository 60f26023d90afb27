//! Runtime pieces that user tasks of the microkernel share.
//!
//! - [`console`]: formatted lines to the kernel console (`debug_write`),
//!   with a fixed buffer so that printing never allocates.
//! - [`frames`]: a bitmap allocator of pages over a window of memory (the
//!   root task's free-memory window, or any other page-aligned range).
//!
//! The crate is `no_std` and allocation-free. Only `console::print` needs
//! the target (`target_os = "none"`); the rest is host-tested.
#![cfg_attr(not(test), no_std)]

pub mod console;
pub mod frames;
