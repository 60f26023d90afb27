//! The bridge agent's logic, kept apart from the system calls that use it.
//!
//! `kasane-agent` runs as `/init` in the Linux guest. Everything here is
//! plain logic testable on the host: the order to load modules in, where
//! the link port is, and what to answer to each frame. `main.rs` is the thin
//! shell that mounts, loads, opens and loops.
//!
//! Unsafe code is denied everywhere but `raw`, the one call that hands a
//! delegated system call, checked by `syscall`, to the kernel, and
//! `heap`'s lock, which lock_api's trait asks to be declared sound.
#![deny(unsafe_code)]

pub mod channels;
pub mod dispatch;
pub mod export;
pub mod fuse;
pub mod heap;
pub mod link;
pub mod linuxfs;
pub mod modules;
pub mod outbox;
pub mod proxy;
#[allow(unsafe_code)]
mod raw;
pub mod runs;
pub mod service;
pub mod syscall;
