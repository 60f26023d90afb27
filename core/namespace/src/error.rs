//! The error core answers with: a Plan 9 error string.
//!
//! Plan 9 system calls fail with text, not numbers (intro(2), errstr(2)),
//! and 9P carries the same text in Rerror (error(5)). Servants, the
//! namespace and 9P servers therefore share one vocabulary. Where a string
//! also exists in the 9P server framework (`ninep-server`'s `Error`), the
//! spelling here is the same, so an error that crosses from a mounted server
//! to a program, or from a servant out through an exported tree, reads the
//! same everywhere. The namespace strings are Plan 9's kernel ones
//! (`port/error.h`); `docs/core.md` lists them all.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use core::fmt;

/// An error string (errstr(2)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Error(Cow<'static, str>);

impl Error {
    /// Eperm: what every servant operation answers unless the servant
    /// serves it (STYLE.md 5, "default-deny").
    pub const PERMISSION_DENIED: Self = Self::fixed("permission denied");
    /// Enonexist. The 9P framework and Linux v9fs spell it the same.
    pub const NOT_FOUND: Self = Self::fixed("file does not exist");
    /// Eexist: a create, or a post to /srv, under a name in use.
    pub const EXISTS: Self = Self::fixed("file already exists");
    /// Enotdir.
    pub const NOT_DIR: Self = Self::fixed("not a directory");
    /// Eisdir, in the framework's spelling (Linux's table lacks Plan 9's
    /// "file is a directory").
    pub const IS_DIR: Self = Self::fixed("Is a directory");
    /// What an operation a servant does not implement answers, as the 9P
    /// framework spells it.
    pub const NOT_SUPPORTED: Self = Self::fixed("Operation not supported");
    /// Enocreate: a create in a union with no MCREATE member (bind(2)).
    pub const NO_CREATE: Self = Self::fixed("mounted directory forbids creation");
    /// Emount: a bind or mount whose two sides disagree (bind(2)).
    pub const INCONSISTENT_MOUNT: Self = Self::fixed("inconsistent mount");
    /// Eunmount: unmount of a name nothing is mounted on (bind(2)).
    pub const NOT_MOUNTED: Self = Self::fixed("not mounted");
    /// Eunion: unmount of a member the union does not hold (bind(2)).
    pub const NOT_IN_UNION: Self = Self::fixed("not in union");
    /// Ebadarg: e.g. bind flags with both MBEFORE and MAFTER.
    pub const BAD_ARG: Self = Self::fixed("bad arg in system call");
    /// Ebadsharp: a `#x` name whose device letter no servant has.
    pub const BAD_SHARP: Self = Self::fixed("unknown device in # filename");
    /// Enoattach: `#M` may not be named directly (intro(3)).
    pub const NO_ATTACH: Self = Self::fixed("mount/attach disallowed");
    /// Efilename.
    pub const FILE_NAME: Self = Self::fixed("file name syntax");
    /// The empty path, as Plan 9's namec says it.
    pub const EMPTY_NAME: Self = Self::fixed("empty file name");
    /// Ebadchar: a control character or DEL in a name (intro(2)).
    pub const BAD_CHAR: Self = Self::fixed("bad character in file name");
    /// Ehungup: a write to a pipe whose other end is closed (pipe(3)).
    pub const HUNGUP: Self = Self::fixed("i/o on hungup channel");
    /// Eshutdown: an open of a /srv entry that holds no link yet (srv(3)).
    pub const SHUTDOWN: Self = Self::fixed("device shut down");
    /// Ebadspec: an attach specifier the servant does not take.
    pub const BAD_SPEC: Self = Self::fixed("bad attach specifier");
    /// Ebadctl: a control message a ctl file does not understand (proc(3)).
    pub const BAD_CTL: Self = Self::fixed("bad process or channel control request");
    /// Einuse.
    pub const IN_USE: Self = Self::fixed("device or object already in use");
    /// Eprocdied: the process a /proc file names has gone (proc(3)).
    pub const PROC_DIED: Self = Self::fixed("process exited");
    /// Ebadusefd: e.g. a write to a srv file that already holds a link
    /// (srv(3)), or I/O on a chan not open for it.
    pub const BAD_USE_FD: Self = Self::fixed("inappropriate use of fd");
    /// Etoobig.
    pub const TOO_BIG: Self = Self::fixed("read or write too large");
    /// Ebadfd: a chan handle that names no live chan.
    pub const BAD_FD: Self = Self::fixed("fd out of range or not open");

    /// Not an answer but "ask again later": a file server has not
    /// answered yet, and core parks the call instead of failing it
    /// (`kasane-mount`). The namespace passes it on at once, without
    /// trying another union member, so a slow member is never taken for a
    /// missing one.
    pub const PENDING: Self = Self::fixed("the file server has not answered yet");

    const fn fixed(text: &'static str) -> Self {
        Self(Cow::Borrowed(text))
    }

    /// An error with text of the caller's own, e.g. an Rerror's ename.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Cow::Owned(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The error as Plan 9's namec reports a failed name: the name quoted
    /// in front of the reason, e.g. `'/n/x' file does not exist`.
    pub fn for_name(&self, name: &str) -> Self {
        Self::new(format!("{} {}", crate::ns::quote_always(name), self.0))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for Error {}
