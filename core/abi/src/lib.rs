//! The core system-call protocol: Plan 9 calls as microkernel IPC.
//!
//! A process calls core with one `call` IPC per system call. The label
//! names the call ([`Call`]); small arguments travel in untyped message
//! registers; paths, data and other byte strings travel as string items
//! (ABI §6), which the kernel copies into core's receive buffers (request)
//! or the caller's receive buffer 0 (reply). `docs/core.md` ("The core
//! protocol") has the per-call table; this crate is the same in code.
//!
//! Reply: the label of the request, MR1 = [`STATUS_OK`] or
//! [`STATUS_ERROR`], MR2 and MR3 = results, and for calls that return
//! bytes one string item. After an error the caller fetches the error
//! string with [`Call::Errstr`] (Plan 9's errstr(2)); core keeps the last
//! one per process.
//!
//! Invariants:
//! - Numbers here are the protocol: changing one changes every program.
//! - Decoding bytes from the other side never panics ([`decode_strings`],
//!   [`decode_spawn`] return `None` on malformed input).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// Labels start here, away from small numbers other protocols use.
pub const LABEL_BASE: u64 = 0xC0_0000;

/// The system calls. The label of a request is `LABEL_BASE + call`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Call {
    /// MR1 mode; item 0 path. Reply MR2 fd.
    Open = 1,
    /// MR1 mode, MR2 perm; item 0 path. Reply MR2 fd.
    Create = 2,
    /// MR1 fd, MR2 count. Reply MR2 bytes, item: the bytes.
    Read = 3,
    /// MR1 fd; item 0 data. Reply MR2 bytes written.
    Write = 4,
    /// MR1 fd, MR2 count, MR3 offset. Reply as Read.
    Pread = 5,
    /// MR1 fd, MR2 offset; item 0 data. Reply as Write.
    Pwrite = 6,
    /// MR1 fd, MR2 offset (two's complement), MR3 whence. Reply MR2 offset.
    Seek = 7,
    /// MR1 fd.
    Close = 8,
    /// Item 0 path. Reply item: a [`FileInfo`] encoding.
    Stat = 9,
    /// MR1 fd. Reply as Stat.
    Fstat = 10,
    /// Item 0 path, item 1 the new name (a name within the same
    /// directory: renaming is the only change served, as stat(5)'s wstat
    /// with every other field "don't touch").
    Wstat = 11,
    /// Item 0 path.
    Remove = 12,
    /// Item 0 path.
    Chdir = 13,
    /// MR1 flags; item 0 new, item 1 old.
    Bind = 14,
    /// MR1 fd, MR2 flags; item 0 old, item 1 spec.
    Mount = 15,
    /// MR1 = 1 if a `new` is given; item 0 new (if given), then old.
    Unmount = 16,
    /// Reply MR2 the read end, MR3 the write end.
    Pipe = 17,
    /// MR1 old fd, MR2 new fd or `u64::MAX` for the lowest free. Reply MR2.
    Dup = 18,
    /// Item 0 a [`encode_spawn`] block. Reply MR2 pid.
    Spawn = 19,
    /// Item 0 the exit string, absent for success. No reply.
    Exits = 20,
    /// MR1 pid (0 = any child). Reply MR2 pid, item the exit string.
    Wait = 21,
    /// MR1 milliseconds.
    Sleep = 22,
    /// Reply MR2 pid.
    Getpid = 23,
    /// Reply item: the last error string.
    Errstr = 24,
    /// MR1 [`RFNAMEG`]-style flags: change the caller's own process, as
    /// Plan 9's rfork(2) without RFPROC (new processes come from Spawn).
    Rfork = 25,
}

/// rfork(2) flags core serves (Plan 9's values, libc.h). Any other bit is
/// refused with "bad arg in system call".
/// Copy the namespace: later binds and mounts are the caller's alone.
pub const RFNAMEG: u64 = 1 << 0;
/// Copy the environment group.
pub const RFENVG: u64 = 1 << 1;
/// Dissociate from the parent: the process leaves no wait record when it
/// ends, and its parent's `wait` does not count it.
pub const RFNOWAIT: u64 = 1 << 6;
/// A clean namespace: `#R` at `/` and nothing bound.
pub const RFCNAMEG: u64 = 1 << 10;
/// A clean, empty environment group.
pub const RFCENVG: u64 = 1 << 11;

impl Call {
    /// Every call, in label order.
    pub const ALL: [Call; 25] = [
        Call::Open,
        Call::Create,
        Call::Read,
        Call::Write,
        Call::Pread,
        Call::Pwrite,
        Call::Seek,
        Call::Close,
        Call::Stat,
        Call::Fstat,
        Call::Wstat,
        Call::Remove,
        Call::Chdir,
        Call::Bind,
        Call::Mount,
        Call::Unmount,
        Call::Pipe,
        Call::Dup,
        Call::Spawn,
        Call::Exits,
        Call::Wait,
        Call::Sleep,
        Call::Getpid,
        Call::Errstr,
        Call::Rfork,
    ];

    /// The IPC label of this call.
    pub const fn label(self) -> u64 {
        LABEL_BASE + self as u64
    }

    /// The call a label names.
    pub fn from_label(label: u64) -> Option<Call> {
        let number = label.checked_sub(LABEL_BASE)?;
        Call::ALL.iter().copied().find(|c| *c as u64 == number)
    }
}

/// MR1 of a successful reply.
pub const STATUS_OK: u64 = 0;
/// MR1 of a failed reply: fetch the string with [`Call::Errstr`].
pub const STATUS_ERROR: u64 = 1;

/// Most bytes one read or write moves; the user library splits longer ones.
pub const MAX_IO: usize = 8192;
/// Longest path or other name string core accepts.
pub const MAX_NAME: usize = 1024;
/// Longest spawn block.
pub const MAX_SPAWN: usize = 4096;
/// Longest error or exit string.
pub const MAX_ERROR: usize = 256;

/// Core's receive buffer sizes (buffer 0 carries data, buffer 1 a name).
pub const SERVER_BUFFER_0: usize = MAX_IO;
/// See [`SERVER_BUFFER_0`].
pub const SERVER_BUFFER_1: usize = MAX_NAME;

/// Open modes (open(2)).
pub const OREAD: u64 = 0;
/// Write only.
pub const OWRITE: u64 = 1;
/// Read and write.
pub const ORDWR: u64 = 2;
/// Truncate on open.
pub const OTRUNC: u64 = 0x10;
/// The directory bit of a create's perm (DMDIR).
pub const DMDIR: u64 = 0x8000_0000;

/// Seek from the start, the current offset, the end (seek(2)).
pub const SEEK_SET: u64 = 0;
/// See [`SEEK_SET`].
pub const SEEK_CUR: u64 = 1;
/// See [`SEEK_SET`].
pub const SEEK_END: u64 = 2;

/// How core starts a process: where its parts are, and the head of its
/// argument page. A task server starts the same way, so the contract is
/// the task link's (`task-link`), re-exported here for programs.
pub use task_link::{layout, StartBlock, START_MAGIC};

// A task server's link carries one MAX_IO read plus 9P's IOHDRSZ.
const _: () = assert!(task_link::MSIZE as usize == MAX_IO + 24);

fn put_u32(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u32).to_le_bytes());
}

fn take_u32(bytes: &mut &[u8]) -> Option<usize> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    *bytes = rest;
    Some(u32::from_le_bytes(*head) as usize)
}

fn take_string(bytes: &mut &[u8]) -> Option<String> {
    let length = take_u32(bytes)?;
    if length > bytes.len() {
        return None;
    }
    let (text, rest) = bytes.split_at(length);
    *bytes = rest;
    Some(String::from(core::str::from_utf8(text).ok()?))
}

/// A list of strings: a u32 count, then each as a u32 length and bytes
/// (little endian).
pub fn encode_strings<S: AsRef<str>>(strings: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    put_strings(&mut out, strings);
    out
}

fn put_strings<S: AsRef<str>>(out: &mut Vec<u8>, strings: &[S]) {
    put_u32(out, strings.len());
    for s in strings {
        put_u32(out, s.as_ref().len());
        out.extend_from_slice(s.as_ref().as_bytes());
    }
}

fn take_strings(bytes: &mut &[u8]) -> Option<Vec<String>> {
    let count = take_u32(bytes)?;
    // Each string takes at least four bytes: bound the allocation.
    if count > bytes.len() / 4 {
        return None;
    }
    (0..count).map(|_| take_string(bytes)).collect()
}

/// Decodes [`encode_strings`]; `None` if malformed or followed by more.
pub fn decode_strings(mut bytes: &[u8]) -> Option<Vec<String>> {
    let strings = take_strings(&mut bytes)?;
    bytes.is_empty().then_some(strings)
}

/// What [`Call::Spawn`] starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnRequest {
    /// The program file, named in the caller's namespace.
    pub path: String,
    /// Its arguments, argv\[0\] first.
    pub argv: Vec<String>,
    /// (child fd, caller fd): the child's descriptors are copies of these
    /// caller descriptors; no other descriptor is passed.
    pub fds: Vec<(u32, u32)>,
    /// rfork(2) flags for the child: [`RFNAMEG`] a copy of the caller's
    /// namespace, [`RFCNAMEG`] a clean one, [`RFENVG`] a copy of its
    /// environment, [`RFCENVG`] an empty one; 0 shares both, as a Plan 9
    /// fork does.
    pub flags: u64,
}

/// The spawn block: path, argv, the fd pairs, the flags.
pub fn encode_spawn(request: &SpawnRequest) -> Vec<u8> {
    let mut out = Vec::new();
    put_strings(&mut out, &[request.path.as_str()]);
    put_strings(&mut out, &request.argv);
    put_u32(&mut out, request.fds.len());
    for (child, parent) in &request.fds {
        put_u32(&mut out, *child as usize);
        put_u32(&mut out, *parent as usize);
    }
    put_u32(&mut out, (request.flags & u64::from(u32::MAX)) as usize);
    out
}

/// Decodes [`encode_spawn`]; `None` if malformed.
pub fn decode_spawn(mut bytes: &[u8]) -> Option<SpawnRequest> {
    let mut path = take_strings(&mut bytes)?;
    if path.len() != 1 {
        return None;
    }
    let argv = take_strings(&mut bytes)?;
    let count = take_u32(&mut bytes)?;
    if count > bytes.len() / 8 {
        return None;
    }
    let mut fds = Vec::with_capacity(count);
    for _ in 0..count {
        let child = take_u32(&mut bytes)? as u32;
        let parent = take_u32(&mut bytes)? as u32;
        fds.push((child, parent));
    }
    let flags = take_u32(&mut bytes)? as u64;
    if !bytes.is_empty() {
        return None;
    }
    Some(SpawnRequest {
        path: path.remove(0),
        argv,
        fds,
        flags,
    })
}

/// What stat returns: a simplified stat(5) (name, length, mode, qid path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The last element of the name.
    pub name: String,
    /// Bytes.
    pub length: u64,
    /// Permission bits, with [`DMDIR`] for a directory.
    pub mode: u32,
    /// The qid's path.
    pub qid_path: u64,
    /// The owner.
    pub uid: String,
    /// The servant letter or server type, e.g. `c`.
    pub kind: char,
}

impl FileInfo {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        u64::from(self.mode) & DMDIR != 0
    }

    /// Encodes one entry (directory reads are several back to back).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.mode.to_le_bytes());
        out.extend_from_slice(&self.qid_path.to_le_bytes());
        out.extend_from_slice(&(self.kind as u32).to_le_bytes());
        put_strings(out, &[self.name.as_str(), self.uid.as_str()]);
    }

    /// Decodes one entry from the front of `bytes`.
    pub fn decode_from(bytes: &mut &[u8]) -> Option<FileInfo> {
        let (length, rest) = bytes.split_first_chunk::<8>()?;
        let (mode, rest) = rest.split_first_chunk::<4>()?;
        let (qid_path, rest) = rest.split_first_chunk::<8>()?;
        let (kind, rest) = rest.split_first_chunk::<4>()?;
        let mut rest = rest;
        let mut strings = take_strings(&mut rest)?;
        if strings.len() != 2 {
            return None;
        }
        *bytes = rest;
        let uid = strings.pop()?;
        let name = strings.pop()?;
        Some(FileInfo {
            name,
            length: u64::from_le_bytes(*length),
            mode: u32::from_le_bytes(*mode),
            qid_path: u64::from_le_bytes(*qid_path),
            uid,
            kind: char::from_u32(u32::from_le_bytes(*kind)).unwrap_or('?'),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn labels_round_trip() {
        for call in Call::ALL {
            assert_eq!(Call::from_label(call.label()), Some(call));
        }
        assert_eq!(Call::from_label(0), None);
        assert_eq!(Call::from_label(LABEL_BASE + 99), None);
    }

    #[test]
    fn spawn_round_trips_and_rejects_garbage() {
        let request = SpawnRequest {
            path: "/bin/ls".into(),
            argv: vec!["ls".into(), "-l".into()],
            fds: vec![(0, 3), (1, 1)],
            flags: RFNAMEG | RFCENVG,
        };
        let bytes = encode_spawn(&request);
        assert_eq!(decode_spawn(&bytes), Some(request));
        for cut in 0..bytes.len() {
            assert_eq!(decode_spawn(&bytes[..cut]), None);
        }
        assert_eq!(decode_spawn(&[0xFF; 16]), None);
    }

    #[test]
    fn file_info_round_trips() {
        let info = FileInfo {
            name: "cons".into(),
            length: 0,
            mode: 0o666,
            qid_path: 5,
            uid: "eve".into(),
            kind: 'c',
        };
        let mut bytes = Vec::new();
        info.encode_into(&mut bytes);
        info.encode_into(&mut bytes);
        let mut rest = bytes.as_slice();
        assert_eq!(FileInfo::decode_from(&mut rest), Some(info.clone()));
        assert_eq!(FileInfo::decode_from(&mut rest), Some(info));
        assert!(rest.is_empty());
        assert_eq!(
            decode_strings(&encode_strings(&["a", "bc"])).unwrap(),
            ["a", "bc"]
        );
    }
}
