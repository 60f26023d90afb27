//! Core's logic, apart from the microkernel: processes, calls, parking.
//!
//! Core (`core/server`, the root task of cell 0) is a thin shell around
//! this crate, as the microkernel is around `microkernel-core`: the shell
//! owns the UTCB, the frames and the IPC, decodes each message it receives
//! into a [`Message`], and asks [`System`] what to do. Everything else is
//! here, and tested on the host against a fake [`Kernel`] and the real
//! servants of `kasane-servant` and `kasane-mount`:
//!
//! - [`System`]: the process table (parents, zombies, namespaces and
//!   environment groups counted per process), the task servers' restarts,
//!   and one pass of core's loop ([`System::handle`], [`System::end_pass`]).
//! - [`Fds`]: a process's descriptor table.
//! - Parked calls: a call that must wait is kept unanswered and tried again
//!   when what it waits for may have happened; the reply to the call just
//!   handled is *deferred* to the shell's next receive.
//! - The call dispatch: one arm per `core-abi` call, against the process's
//!   namespace and the servants.
//! - [`Servants`]: the servant table, with the servants core reaches
//!   concretely (`#M`, `#s`, `#e`, `#p`, `#|`) as typed fields, and core's
//!   own servants `#b` ([`BootFiles`]) and `#c`'s `cons`
//!   ([`ConsoleDevice`]).
//!
//! Invariants:
//! - No unsafe code and no hardware: what needs the kernel goes through
//!   [`Kernel`], a handful of typed operations.
//! - Every request is hostile until checked: a bad label, item, descriptor
//!   or flag is refused with its Plan 9 error (docs/core-abi.md, "What core
//!   checks"), never a panic.
//! - A call is answered exactly once: at once, deferred, or after a park;
//!   a call of a process that has gone is dropped unanswered.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

mod calls;
mod fds;
mod linux;
mod park;
mod process;
mod servants;
mod servers;
mod system;
mod userlink;
mod vm;

pub use fds::{Fd, Fds, MAX_FD};
pub use kasane_mount::Transport;
pub use linux::{LinuxRuns, NO_LINUX, RESTARTED as LINUX_RESTARTED, RUN_ID_BASE};
pub use servants::{BootFiles, ConsoleDevice, Servants, CONS, CONS_INPUT};
pub use servers::{task_servers, vm_servers, ServerConfig, TaskStart, DEFAULT_RESTART_LIMIT};
pub use system::System;
pub use vm::{CellRecord, Cells, Verb, VmDevice};

/// The user name every process runs as.
pub const USER: &str = "eve";

/// A microkernel thread, by its raw id (a client to answer, a sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Thread(pub u64);

/// A reply to a call (docs/core-abi.md, "Calls"): MR1 `status`, MR2 and
/// MR3 `words`, and a string item over `data` when there is some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub client: Thread,
    pub status: u64,
    pub words: [u64; 2],
    pub data: Option<Vec<u8>>,
}

/// A message from a process, as the shell decoded it from its IPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The kernel's page fault of the sender (core is its pager).
    PageFault { address: u64, ip: u64 },
    /// The kernel's exception of the sender.
    Exception { vector: u64 },
    /// Any other message from the kernel: ignored.
    Kernel,
    /// A call: its label, the first four untyped words (0 where absent),
    /// and the string items as received.
    Call {
        label: u64,
        words: [u64; 4],
        items: Vec<Vec<u8>>,
    },
}

/// What core needs of the microkernel and the machine. The shell
/// (`core/server`) implements it over the real system calls; the host
/// tests implement it with a fake that records what happened.
pub trait Kernel {
    /// A process's task: its address space, thread and memory.
    type Task;
    /// A task server's link, `#M`'s transport; a process's pipe is one
    /// too (a user-level link, `userlink`).
    type Link: Transport + From<kasane_mount::UserLink> + 'static;

    /// How long a posted request to a task server may wait for its
    /// answer (µs) before the link is hung up.
    const ANSWER_LIMIT: u64;

    /// Microseconds since boot.
    fn now(&mut self) -> u64;

    /// Writes one of core's own messages (`core: ...`) to the console.
    fn log(&mut self, message: core::fmt::Arguments<'_>);

    /// Makes the task of process `pid`: loads `program` (identified by
    /// `identity` for the shared text) and the argument page with `argv`,
    /// and creates the task and its thread, not yet running.
    fn create(
        &mut self,
        pid: u32,
        program: &[u8],
        identity: (char, u64),
        argv: &[String],
    ) -> Result<(Self::Task, Thread), String>;

    /// Starts a created task's thread at its program's entry.
    fn start(&mut self, task: &Self::Task) -> Result<(), String>;

    /// Serves a page fault at `address`: maps the page and answers the
    /// faulting thread. False if the process has no page there.
    fn fault(&mut self, task: &mut Self::Task, address: u64) -> bool;

    /// Destroys a task and takes back its memory.
    fn destroy(&mut self, task: Self::Task);

    /// Kilobytes of memory a task uses.
    fn kilobytes(&self, task: &Self::Task) -> u64;

    /// Sends a reply now (a parked call answered; never blocks).
    fn send(&mut self, reply: &Reply);

    /// Starts a stopped task server again on a new task.
    fn restart(&mut self, link: Self::Link) -> Result<Self::Link, String>;

    /// Whether a hung-up server can be restarted now; `false` defers the
    /// restart to a later pass (a Linux cell that hvm restarted and whose
    /// agent is still booting), so that core serves everyone else while
    /// it waits. Never blocks.
    fn ready(&mut self, link: &mut Self::Link) -> bool {
        let _ = link;
        true
    }

    /// Core's own address of `length` bytes at `address` in a process's
    /// space, if they alias the process's buffer ([`buffer_alias`]): a read
    /// from a task server may put its data there directly.
    fn buffer_alias(&self, task: &Self::Task, address: u64, length: usize) -> Option<u64> {
        let _ = (task, address, length);
        None
    }
}

/// Bytes of a page, as core lends them to processes.
const PAGE: u64 = 4096;

/// Core's own address of a process's buffer `[address, address + length)`
/// for the zero-copy read (docs/performance.md): `page` gives, for a page
/// of the process, the frame backing it at core's address and whether the
/// process may write it. `Some` only if the process may write every page
/// of the range and their frames follow one another in core's space, so
/// that core's range is exactly the process's buffer; `None` for an
/// empty, unmapped, read-only, scattered or wrapping range, whatever the
/// process claimed.
pub fn buffer_alias(
    address: u64,
    length: usize,
    page: impl Fn(u64) -> Option<(u64, bool)>,
) -> Option<u64> {
    let end = address.checked_add(u64::try_from(length).ok()?.checked_sub(1)?)?;
    let first = address & !(PAGE - 1);
    let (base, _) = page(first).filter(|&(_, writable)| writable)?;
    let mut at = first;
    while at < end & !(PAGE - 1) {
        at += PAGE;
        let expected = base.checked_add(at - first)?;
        page(at).filter(|&(frame, writable)| writable && frame == expected)?;
    }
    base.checked_add(address - first)
}
