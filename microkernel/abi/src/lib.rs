//! The Kasane microkernel's system-call ABI, shared by kernel and user code.
//!
//! Everything a user task and the kernel must agree on lives here: syscall
//! numbers and their register convention, thread and task ids, the message
//! tag, typed items (strings, map and grant flexpages), timeouts, error codes
//! and the layout of the per-thread UTCB page. `docs/microkernel-abi.md`
//! describes the same contract in prose and must change with this crate.
//!
//! Invariants:
//! - Every numeric value here (syscall numbers, error codes, bit positions,
//!   UTCB offsets) is part of the ABI: changing one is a breaking change and
//!   bumps [`ABI_VERSION`].
//! - Decoding a word that came from the other side never panics: it returns
//!   an [`Error`] instead, because both sides treat the other as untrusted.
//! - The crate is `no_std` and allocation-free so both the kernel and the
//!   smallest user task can use it.
//! - The crate has no unsafe code: the `syscall` instruction, and every
//!   call that lets the kernel write a task's memory, are in the user
//!   runtime (`microkernel-rt`, module `user`), which user tasks link.
#![no_std]
#![forbid(unsafe_code)]

pub mod boot;
pub mod error;
pub mod item;
pub mod message;
pub mod syscall;
pub mod thread;
pub mod timeout;
pub mod utcb;

pub use error::{Error, IpcError, IpcPhase};
pub use item::{Fpage, MapItem, Rights, StringItem, TypedItem};
pub use message::{
    FromSpecifier, MessageTag, TagFlags, EXCEPTION_LABEL, INTERRUPT_LABEL, MESSAGE_REGISTER_COUNT,
    PAGE_FAULT_LABEL, REGISTER_MESSAGE_REGISTERS,
};
pub use syscall::{
    ExchangeControl, InterruptControlOperation, KernelInfoSelector, SpaceControlOperation, Syscall,
    ThreadControlOperation, ThreadStateFlags, UnmapFlags, NO_CONSOLE_INPUT,
};
pub use thread::{TaskId, ThreadId};
pub use timeout::{Timeout, Timeouts};
pub use utcb::{ReceiveBuffer, Utcb};

/// The ABI revision that `kernel_info(ApiVersion)` reports. Bumped whenever
/// a number, layout or meaning in this crate changes incompatibly.
pub const ABI_VERSION: u64 = 1;

/// log2 of the smallest page the kernel maps.
pub const PAGE_SHIFT: u32 = 12;

/// The smallest page the kernel maps, in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// The first address above the user part of every address space.
///
/// The lower canonical half of x86-64 ends at 2^47; the last page below it is
/// kept out of user space too. A `syscall` instruction in that page would
/// make `sysret` return to the non-canonical address 2^47, and `sysret` with
/// a non-canonical RCX faults in ring 0 on Intel CPUs (the reason Linux's
/// `TASK_SIZE_MAX` stops one page short as well).
pub const USER_ADDRESS_END: u64 = (1 << 47) - PAGE_SIZE;

/// log2 of the size of the whole lower canonical half; the largest flexpage.
pub const ADDRESS_SPACE_SHIFT: u32 = 47;
