//! The task link: how core starts a task and speaks 9P with a task server.
//!
//! Core starts every task the same way, a program (`core-user`) or a file
//! server running as a task of its own (`runtime-task`): the ELF segments
//! where they are linked, a heap and a stack that core's pager fills on
//! first touch, and a read-only argument page whose head is a
//! [`StartBlock`] ([`layout`] says where each is). A task server then
//! speaks 9P2000 with core over IPC, as below. Core and the servers' side
//! both build on this crate; the system calls of programs are
//! `core-abi`'s, which re-exports the start contract from here.
//!
//! The link:
//! - The server starts as core starts a program (the argument page gives
//!   core's thread). It touches a receive buffer of [`MSIZE`] bytes,
//!   points its UTCB receive buffer 0 at it (the kernel does not
//!   page-fault string buffers), and sends [`READY_LABEL`] to core with a
//!   receive phase from core (a call).
//! - Core calls the server with [`NINEP_LABEL`], no untyped words and one
//!   string item, the T-message. The server answers with the same label
//!   and one string item, the R-message, into core's receive buffer 0,
//!   and waits for core again (reply and receive in one `ipc`). An Rread
//!   with data goes as two string items over its one frame, split by
//!   [`rread_split`]: the header into core's buffer 0, the data into its
//!   buffer 1, which core points either right after the header (the frame
//!   arrives whole) or at the reader's own buffer (docs/performance.md,
//!   "The zero-copy read"). Core always gives both buffers.
//! - One request is outstanding per link: core waits for each reply, so
//!   tags and flush never matter on this transport. An answer without a
//!   string item means the server could not take the frame; core hangs
//!   the link up.
//! - Only core's thread may call a server: the server receives from core
//!   alone (a closed receive).
//!
//! A server whose requests may wait (a `/net` read for data, a `listen`)
//! says so in its ready message: MR1 holds [`READY_MULTIPLEXES`]. Its link
//! then carries several requests at once, each on its own tag, answered in
//! any order (intro(5)), as a server VM's does:
//! - core sends each T-message when it likes, as above; the server
//!   receives between rounds of its own work (it waits for core with a
//!   timeout, the next time its device or timers need it);
//! - the server sends each answer when it is ready, with a send timeout of
//!   zero: it reaches core only if core is receiving, and otherwise waits
//!   in the server for the next round. So the two never wait on each
//!   other's send; the only message of the server's that waits for core
//!   is a page fault, and core takes it when a send of its own times out;
//! - such a link has no answer deadline; while a request waits, core asks
//!   from time to time whether the server still receives by sending
//!   [`PROBE_LABEL`], which the server takes and ignores.
//!
//! Invariant: the numbers here are the protocol between core and every
//! task it starts; changing one changes both sides.
#![no_std]
#![forbid(unsafe_code)]

/// Label of a T-message from core and of the R-message answering it.
pub const NINEP_LABEL: u64 = 0x9F_0000;
/// Label of the server's first message: it is ready for requests.
pub const READY_LABEL: u64 = 0x9F_0001;
/// Label of core's failure injection (a `/proc/N/ctl` verb): MR1 is a
/// [`Failure`]'s number. The server performs it for real (docs/core.md,
/// "Failure injection").
pub const INJECT_LABEL: u64 = 0x9F_0002;

/// Bit of the ready message's MR1: the server takes several requests at
/// once and answers them in any order.
pub const READY_MULTIPLEXES: u64 = 1;
/// Label of core's probe of a multiplexing server: no words, no items,
/// no answer. A server that receives it is alive.
pub const PROBE_LABEL: u64 = 0x9F_0003;

/// A failure core asks a task server to perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Panic: the runtime reports it and faults.
    Crash = 1,
    /// An exception the task cannot survive: an invalid opcode with the
    /// stack pointer on unmapped memory (a task's nearest thing to a
    /// triple fault; the kernel hands core exception 6).
    TripleFault = 2,
    /// A write to an address outside the task's memory (core's pager has
    /// no page for it).
    WildWrite = 3,
    /// A loop for ever (user mode cannot turn interrupts off; core's
    /// answer limit catches it).
    Hang = 4,
    /// Bytes that are not 9P, sent on the link.
    Garbage = 5,
}

impl Failure {
    /// Every verb, as `/proc/N/ctl` spells it.
    pub const ALL: [(&'static str, Failure); 5] = [
        ("crash", Failure::Crash),
        ("triple-fault", Failure::TripleFault),
        ("wild-write", Failure::WildWrite),
        ("hang", Failure::Hang),
        ("garbage", Failure::Garbage),
    ];

    /// The verb's failure.
    pub fn from_verb(verb: &str) -> Option<Failure> {
        Self::ALL.iter().find(|(v, _)| *v == verb).map(|(_, f)| *f)
    }

    /// The failure a message register names.
    pub fn from_number(number: u64) -> Option<Failure> {
        Self::ALL
            .iter()
            .find(|(_, f)| *f as u64 == number)
            .map(|(_, f)| *f)
    }

    /// Its verb.
    pub fn verb(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(v, _)| v)
    }
}

/// Bytes of an Rread before its data: size[4] Rread tag[2] count[4]
/// (read(5)).
pub const RREAD_HEADER: usize = 11;

/// Where a task server splits its answer `frame` into two string items:
/// [`RREAD_HEADER`] if it is exactly one Rread (type 117, read(5); its size
/// field is the frame's length) that carries data, else `None` (one item).
pub fn rread_split(frame: &[u8]) -> Option<usize> {
    let size = u32::from_le_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    let one_rread = size == frame.len() && frame.get(4) == Some(&117);
    (one_rread && size > RREAD_HEADER).then_some(RREAD_HEADER)
}

/// The msize core proposes, and the size of each side's receive buffer:
/// one 8 KiB read (core's `MAX_IO`) plus 9P's IOHDRSZ (24).
pub const MSIZE: u32 = 8192 + 24;

/// Where things are in a task core starts (all addresses user space): the
/// ELF segments where they are linked (below [`HEAP_BASE`]), a heap and a
/// stack that core's pager fills with zeroed pages on first touch, the
/// read-only argument page, and the UTCB.
pub mod layout {
    /// Lowest address a program segment may use.
    pub const IMAGE_BASE: u64 = 0x0010_0000;
    /// The heap: zero pages on demand.
    pub const HEAP_BASE: u64 = 0x1000_0000;
    /// Bytes of heap.
    pub const HEAP_SIZE: u64 = 0x0100_0000;
    /// The argument page ([`super::StartBlock`]), read only.
    pub const ARGS_ADDRESS: u64 = 0x3000_0000;
    /// Bytes of the argument page.
    pub const ARGS_SIZE: u64 = 4096;
    /// A task server's image (the manifest's `image`, a tar boot module),
    /// read only: core maps the module's pages here, and its argv says
    /// where in them the image starts and how long it is (argv\[1\] and
    /// argv\[2\], decimal).
    pub const SERVER_IMAGE: u64 = 0x4000_0000;
    /// Most bytes of the image window.
    pub const SERVER_IMAGE_SIZE: u64 = 0x1000_0000;
    /// First address above the stack; `_start` gets RSP here.
    pub const STACK_TOP: u64 = 0x7000_0000;
    /// Bytes of stack.
    pub const STACK_SIZE: u64 = 0x0004_0000;
    /// The main thread's UTCB.
    pub const UTCB: u64 = 0x7FFF_0000_0000;
}

/// "KSNCORE1": the first word of the argument page.
pub const START_MAGIC: u64 = u64::from_le_bytes(*b"KSNCORE1");

/// The head of the argument page; for a program, its argv (core-abi's
/// `encode_strings`) follows at byte [`StartBlock::ARGV_OFFSET`],
/// `argv_length` bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct StartBlock {
    /// [`START_MAGIC`].
    pub magic: u64,
    /// Core's server thread (raw `ThreadId`): where system calls go, and
    /// the only thread a task server answers.
    pub core_thread: u64,
    /// This process's pid.
    pub pid: u64,
    /// Bytes of the encoded argv.
    pub argv_length: u64,
}

impl StartBlock {
    /// Byte offset of the argv encoding in the argument page.
    pub const ARGV_OFFSET: usize = 32;
}

const _: () = {
    assert!(core::mem::size_of::<StartBlock>() == StartBlock::ARGV_OFFSET);
    assert!(layout::HEAP_BASE >= layout::IMAGE_BASE);
    assert!(layout::HEAP_BASE + layout::HEAP_SIZE <= layout::ARGS_ADDRESS);
    assert!(layout::ARGS_ADDRESS + layout::ARGS_SIZE <= layout::SERVER_IMAGE);
    assert!(
        layout::SERVER_IMAGE + layout::SERVER_IMAGE_SIZE <= layout::STACK_TOP - layout::STACK_SIZE
    );
};

#[cfg(test)]
mod tests {
    use super::*;

    fn rread(data: &[u8]) -> [u8; 16] {
        let mut frame = [0u8; 16];
        let size = (RREAD_HEADER + data.len()) as u32;
        frame[..4].copy_from_slice(&size.to_le_bytes());
        frame[4] = 117;
        frame[7..11].copy_from_slice(&(data.len() as u32).to_le_bytes());
        frame[11..11 + data.len()].copy_from_slice(data);
        frame
    }

    #[test]
    fn only_one_rread_with_data_is_split() {
        let frame = rread(b"hello");
        assert_eq!(rread_split(&frame), Some(RREAD_HEADER));
        // No data: one item.
        assert_eq!(rread_split(&rread(b"")[..RREAD_HEADER]), None);
        // Another answer (Rerror, 107) of the same length: one item.
        let mut error = frame;
        error[4] = 107;
        assert_eq!(rread_split(&error), None);
        // Two frames in one answer, or a size that lies: one item.
        assert_eq!(rread_split(&[frame, frame].concat()), None);
        assert_eq!(rread_split(&frame[..12]), None);
        assert_eq!(rread_split(&frame[..3]), None);
    }
}
