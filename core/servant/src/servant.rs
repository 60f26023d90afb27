//! The one interface every servant implements, default-deny.
//!
//! This is Plan 9's `struct Dev` (attach, walk, stat, open, create, read,
//! write, remove, wstat, close) in the shape of the 9P framework's
//! `FileServer`: the same `ninep` qid, stat and open-mode types, directory
//! reads as whole stat entries that the caller packs, and every method
//! denying by default so a servant writes only what it serves (STYLE.md 5).
//! A servant that has a table ([`Servant::devgen`], Plan 9's Dirtab) gets
//! attach, walk, parent, stat, open and read_dir served from it instead
//! ([`crate::dev`]), and writes only the table and what its files do.
//!
//! Contract between the caller (core's Chan layer) and a servant:
//! - every [`File`] a servant hands out (attach, walk, parent, create)
//!   becomes one chan, and comes back exactly once through
//!   [`Servant::close`], with the open mode if it was opened;
//! - the caller has checked the open mode before `read` and `write`
//!   (open(5)), and packs `read_dir` into reads;
//! - `read` and `write` never block: a servant that must wait answers
//!   [`Io::WouldBlock`] with a [`WaitKey`], and later lists that key from
//!   [`Servant::take_wakeups`] when it is worth trying again.

use alloc::vec::Vec;

use ninep::{FileMode, OpenMode, Qid, Stat};

use crate::dev::{self, Devgen};
use crate::Error;

/// What a servant's file is to its caller: which instance of the servant
/// (Plan 9's `c->dev`) and which file (the qid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct File {
    pub dev: u32,
    pub qid: Qid,
}

/// A chan posted in /srv, or the link a mounted tree is reached through.
/// Opaque to servants: core gives them meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// Something a parked read or write waits on, named by the servant that
/// answered [`Io::WouldBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitKey {
    pub letter: char,
    pub key: u64,
}

/// The answer of an operation that may have to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Io<T> {
    Ready(T),
    /// Park the caller until `take_wakeups` lists the key, then try again.
    WouldBlock(WaitKey),
}

/// What an open gives: the file itself, or (for a /srv entry, srv(3)) the
/// chan that was posted there, which the caller opens in its stead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    File(Qid),
    Link(LinkId),
}

/// Turns a file descriptor of the calling process into the link it holds,
/// for srv(3)'s "write the fd number".
pub trait FdLinks {
    fn link(&self, fd: u32) -> Result<LinkId, Error>;
}

/// A caller with no descriptors.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFds;

impl FdLinks for NoFds {
    fn link(&self, _fd: u32) -> Result<LinkId, Error> {
        Err(Error::BAD_FD)
    }
}

/// Who is asking.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub pid: u32,
    pub uname: &'a str,
    /// The environment group (env(3)): processes share one unless they
    /// forked with RFENVG or RFCENVG.
    pub env_group: u32,
    pub fds: &'a dyn FdLinks,
}

impl core::fmt::Debug for Caller<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Caller")
            .field("pid", &self.pid)
            .field("uname", &self.uname)
            .field("env_group", &self.env_group)
            .finish_non_exhaustive()
    }
}

impl<'a> Caller<'a> {
    /// A caller with environment group 0 and no descriptors.
    pub fn new(pid: u32, uname: &'a str) -> Self {
        Self {
            pid,
            uname,
            env_group: 0,
            fds: &NoFds,
        }
    }

    pub fn with_env_group(self, env_group: u32) -> Self {
        Self { env_group, ..self }
    }

    pub fn with_fds(self, fds: &'a dyn FdLinks) -> Self {
        Self { fds, ..self }
    }
}

/// An in-core file server (a servant; Plan 9's `Dev`). Every method but
/// `letter` denies by default, unless the servant has a table
/// ([`devgen`](Self::devgen)): then attach, walk, parent, stat, open and
/// read_dir serve the table, as Plan 9's devattach, devwalk, devstat,
/// devopen and devdirread do.
pub trait Servant {
    /// The letter after `#` that names the servant (intro(3)).
    fn letter(&self) -> char;

    /// The servant's tree as a table (Plan 9's Dirtab and devgen), if it
    /// is one; `None` by default.
    fn devgen(&self) -> Option<&dyn Devgen> {
        None
    }

    /// The root of the servant's tree for `#letter spec` (attach(5)).
    fn attach(&mut self, caller: &Caller<'_>, spec: &str) -> Result<File, Error> {
        let _ = (caller, spec);
        self.devgen()
            .map(|_| dev::attach())
            .ok_or(Error::PERMISSION_DENIED)
    }

    /// One step of a walk (walk(5)): `name` in the directory `dir`. Never
    /// `.` or `..`; a name that is not there is "file does not exist".
    fn walk(&mut self, caller: &Caller<'_>, dir: &File, name: &str) -> Result<File, Error> {
        match self.devgen() {
            Some(gen) => dev::walk(gen, caller, dir, name),
            None => Err(Error::NOT_FOUND),
        }
    }

    /// A second chan on `file`, as a walk of no names gives (Plan 9's
    /// cclone): an open takes its own chan so its offset and mode are not
    /// those of the chan a namespace holds. A servant that counts its
    /// chans counts this one too; it comes back through `close`.
    fn clone_file(&mut self, caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        let _ = caller;
        Ok(*file)
    }

    /// The servant's own `..` of `file`; the root's is the root.
    fn parent(&mut self, caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        let _ = caller;
        match self.devgen() {
            Some(gen) => Ok(dev::parent(gen, file)),
            None => Err(Error::NOT_SUPPORTED),
        }
    }

    /// stat(5).
    fn stat(&mut self, caller: &Caller<'_>, file: &File) -> Result<Stat, Error> {
        match self.devgen() {
            Some(gen) => dev::stat(self.letter(), gen, caller, file),
            None => Err(Error::PERMISSION_DENIED),
        }
    }

    /// open(5); the servant checks `mode` against what the file allows.
    fn open(&mut self, caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        match self.devgen() {
            Some(gen) => dev::open(gen, caller, file, mode).map(|()| Opened::File(file.qid)),
            None => Err(Error::PERMISSION_DENIED),
        }
    }

    /// create(5): a new file `name` in `dir`, opened with `mode`.
    fn create(
        &mut self,
        caller: &Caller<'_>,
        dir: &File,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<File, Error> {
        let _ = (caller, dir, name, perm, mode);
        Err(Error::PERMISSION_DENIED)
    }

    /// read(5) of a file: at most `count` bytes from `offset`; none at the
    /// end of the file.
    fn read(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        let _ = (caller, file, offset, count);
        Err(Error::PERMISSION_DENIED)
    }

    /// The entries of a directory; the caller packs them into reads.
    fn read_dir(&mut self, caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        match self.devgen() {
            Some(gen) => dev::entries(self.letter(), gen, caller, dir),
            None => Err(Error::PERMISSION_DENIED),
        }
    }

    /// write(5): how many bytes were taken. Fewer than given means "write
    /// the rest again".
    fn write(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        let _ = (caller, file, offset, data);
        Err(Error::PERMISSION_DENIED)
    }

    /// remove(5). The caller closes the chan afterwards as usual.
    fn remove(&mut self, caller: &Caller<'_>, file: &File) -> Result<(), Error> {
        let _ = (caller, file);
        Err(Error::PERMISSION_DENIED)
    }

    /// wstat(5).
    fn wstat(&mut self, caller: &Caller<'_>, file: &File, stat: &Stat) -> Result<(), Error> {
        let _ = (caller, file, stat);
        Err(Error::PERMISSION_DENIED)
    }

    /// The last reference to a chan on `file` went (clunk(5)); `opened` is
    /// its open mode if it was opened.
    fn close(&mut self, file: &File, opened: Option<OpenMode>) {
        let _ = (file, opened);
    }

    /// The keys of parked operations that may now go ahead, oldest first.
    fn take_wakeups(&mut self) -> Vec<WaitKey> {
        Vec::new()
    }
}
