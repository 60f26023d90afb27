//! The `FileServer` trait a 9P server implements, and what it is handed.
//!
//! Every method defaults to a denial, so a server writes only the methods
//! of what it serves (STYLE.md, "One file-server interface, default-deny").
//! The [`Session`](crate::Session) has already checked the protocol rules
//! and the permissions it can check from a stat before a method is called;
//! what is left to a server is said on each method.

use alloc::string::String;
use alloc::vec::Vec;

use ninep::{FileMode, OpenMode, Qid, Stat};

use crate::Error;

/// Identifies one request for as long as it is outstanding. Unlike a tag it
/// is never reused, so a late completion of a flushed request cannot be
/// mistaken for a newer request that reused the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Who is asking: the uname the fid was attached with, and which request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub uname: &'a str,
    pub request: RequestId,
}

/// An answer now, or later through [`Session::complete`](crate::Session::complete)
/// (for reads and writes that must wait, e.g. on a pipe or a console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    Now(T),
    Later,
}

/// The late answer to a read or write that returned [`Reply::Later`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Read(Result<Vec<u8>, Error>),
    Write(Result<u32, Error>),
}

/// What a Twstat asks to change, after the session applied stat(5)'s rules:
/// "don't touch" values became `None`, values equal to the current ones
/// too, and the owner, group and write-permission checks passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatChanges {
    /// New mode; its DMDIR bit is the file's current one.
    pub mode: Option<FileMode>,
    pub atime: Option<u32>,
    pub mtime: Option<u32>,
    /// New length; never set for a directory.
    pub length: Option<u64>,
    /// New name, already checked to be a legal name. The server checks
    /// write permission on the parent and that the name is free.
    pub name: Option<String>,
    /// New group, already checked against the caller's rights.
    pub gid: Option<String>,
}

impl StatChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A 9P2000 file server. `Node` is whatever the server needs to find a file
/// again from a fid (a path number, an index, a handle).
pub trait FileServer {
    type Node: Clone;

    /// Tattach (attach(5)): the root of the tree named by `aname`.
    fn attach(&mut self, uname: &str, aname: &str) -> Result<(Self::Node, Qid), Error> {
        let _ = (uname, aname);
        Err(Error::PERMISSION_DENIED)
    }

    /// One step of a Twalk (walk(5)) from the directory `dir`. The session
    /// has checked that `dir` is a directory the caller may search, and
    /// keeps ".." at the attach root; everything else, ".." included, is the
    /// server's. A name that is not there is [`Error::NOT_FOUND`].
    fn walk(
        &mut self,
        caller: &Caller<'_>,
        dir: &Self::Node,
        name: &str,
    ) -> Result<(Self::Node, Qid), Error> {
        let _ = (caller, dir, name);
        Err(Error::NOT_FOUND)
    }

    /// Tstat (stat(5)). The session also calls it to check permissions.
    fn stat(&mut self, node: &Self::Node) -> Result<Stat, Error> {
        let _ = node;
        Err(Error::PERMISSION_DENIED)
    }

    /// Topen (open(5)) after the session checked the mode and permissions.
    /// The server applies OTRUNC and DMEXCL and returns the current qid.
    fn open(
        &mut self,
        caller: &Caller<'_>,
        node: &Self::Node,
        mode: OpenMode,
    ) -> Result<Qid, Error> {
        let _ = (caller, node, mode);
        Err(Error::PERMISSION_DENIED)
    }

    /// Topen of a file whose opening stands for another file, as ip(3)'s
    /// `clone` opens the `ctl` of a new conversation: returns the node the
    /// fid names from now on and its qid (the Ropen's). By default the fid
    /// keeps `node` and [`open`](Self::open) decides.
    fn open_as(
        &mut self,
        caller: &Caller<'_>,
        node: &Self::Node,
        mode: OpenMode,
    ) -> Result<(Self::Node, Qid), Error> {
        let qid = self.open(caller, node, mode)?;
        Ok((node.clone(), qid))
    }

    /// Tcreate (open(5)) in `dir`. The session checked that `dir` is a
    /// writable directory, that `name` is legal and not there yet, and
    /// masked `perm` with the directory's permissions. The new file is
    /// opened with `mode`.
    fn create(
        &mut self,
        caller: &Caller<'_>,
        dir: &Self::Node,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<(Self::Node, Qid), Error> {
        let _ = (caller, dir, name, perm, mode);
        Err(Error::PERMISSION_DENIED)
    }

    /// Tread of a file (read(5)): at most `count` bytes from `offset`; fewer
    /// (or none, at the end) is fine.
    fn read(
        &mut self,
        caller: &Caller<'_>,
        node: &Self::Node,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        let _ = (caller, node, offset, count);
        Err(Error::PERMISSION_DENIED)
    }

    /// [`read`](Self::read), the bytes appended to `out` (the Rread being
    /// built) instead of returned, so a server that holds them copies them
    /// once. Appending more than `count` bytes is harmless: the session
    /// keeps `count`. By default it calls `read`.
    fn read_into(
        &mut self,
        caller: &Caller<'_>,
        node: &Self::Node,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<Reply<()>, Error> {
        match self.read(caller, node, offset, count)? {
            Reply::Now(data) => {
                out.extend_from_slice(&data);
                Ok(Reply::Now(()))
            }
            Reply::Later => Ok(Reply::Later),
        }
    }

    /// The entries of a directory, for a Tread at offset 0. The session
    /// packs them into whole-entry reads and keeps the offsets.
    fn read_dir(&mut self, caller: &Caller<'_>, dir: &Self::Node) -> Result<Vec<Stat>, Error> {
        let _ = (caller, dir);
        Err(Error::PERMISSION_DENIED)
    }

    /// Twrite (read(5)): returns how many bytes were written. The server
    /// bumps qid.vers and honours DMAPPEND.
    fn write(
        &mut self,
        caller: &Caller<'_>,
        node: &Self::Node,
        offset: u64,
        data: &[u8],
    ) -> Result<Reply<u32>, Error> {
        let _ = (caller, node, offset, data);
        Err(Error::PERMISSION_DENIED)
    }

    /// Tremove (remove(5)), and the remove of an ORCLOSE fid at clunk. The
    /// server checks write permission on the parent and emptiness.
    fn remove(&mut self, caller: &Caller<'_>, node: &Self::Node) -> Result<(), Error> {
        let _ = (caller, node);
        Err(Error::PERMISSION_DENIED)
    }

    /// Twstat (stat(5)): apply every change or none.
    fn wstat(
        &mut self,
        caller: &Caller<'_>,
        node: &Self::Node,
        changes: &StatChanges,
    ) -> Result<(), Error> {
        let _ = (caller, node, changes);
        Err(Error::PERMISSION_DENIED)
    }

    /// A fid on `node` went away (clunk, remove, Tversion or hang-up);
    /// `opened` is its open mode if it was open. For per-open state.
    fn clunk(&mut self, node: &Self::Node, opened: Option<OpenMode>) {
        let _ = (node, opened);
    }

    /// A request that returned [`Reply::Later`] was flushed or abandoned:
    /// forget it; its completion would be dropped anyway.
    fn flush(&mut self, request: RequestId) {
        let _ = request;
    }

    /// Runs a server whose requests finish on their own (a network stack,
    /// a device) at `now_ms`, milliseconds on the runtime's clock, and
    /// returns the late answers that are ready, for
    /// [`Session::complete`](crate::Session::complete). A runtime calls it
    /// after every batch of requests and whenever
    /// [`poll_delay_ms`](Self::poll_delay_ms) has passed. By default there
    /// is nothing to run.
    fn poll(&mut self, now_ms: u64) -> Vec<(RequestId, Completion)> {
        let _ = now_ms;
        Vec::new()
    }

    /// How long the runtime may sleep before it must call
    /// [`poll`](Self::poll) again; `None`: until a request comes.
    fn poll_delay_ms(&mut self) -> Option<u64> {
        None
    }

    /// Whether `uname` is a member of `group`. By default a user is a
    /// member of the group of its own name only.
    fn is_member(&self, uname: &str, group: &str) -> bool {
        uname == group
    }

    /// Whether `uname` leads `group` (may change its files' mode and group).
    fn is_leader(&self, uname: &str, group: &str) -> bool {
        uname == group
    }
}
