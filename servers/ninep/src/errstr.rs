//! Plan 9 error strings: the one table core and the 9P servers answer with.
//!
//! Plan 9 system calls fail with text, not numbers (intro(2), errstr(2)),
//! and 9P carries the same text in Rerror (error(5)). Core's servants and
//! namespaces, the mount driver and every 9P server therefore share one
//! vocabulary, so an error that crosses from a mounted server to a program,
//! or from a servant out through an exported tree, reads the same
//! everywhere. One name has one text.
//!
//! Two sources of spelling, kept apart below:
//! - **Core's kernel strings** are Plan 9's own (`port/error.h`).
//! - **File-server strings** are those Plan 9's file servers write *and*
//!   Linux's v9fs client maps to an errno (net/9p/error.c); a string Linux
//!   does not know reaches programs as errno 526 (ESERVERFAULT). Where
//!   Plan 9's spelling is not in Linux's table ("directory not empty",
//!   "file is a directory") the mapped Plan 9-family or Linux spelling is
//!   used instead, and the comment says which errno it becomes.
//!
//! Plan 9 itself has two "too big" errors, and so does this table: the
//! kernel's Etoobig, "read or write too large", for one request that is too
//! large ([`Error::TOO_BIG`]), and fossil's ETooBig, "file too big", for a
//! file that would outgrow what its server keeps ([`Error::FILE_TOO_BIG`];
//! Linux maps it to EFBIG, and has no entry for the kernel's text).
//! `docs/core.md` and `docs/9p.md` list the strings.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt;

/// An error string (errstr(2)), as an Rerror's `ename` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Error(Cow<'static, str>);

impl Error {
    // Shared by core and the file servers.

    /// Eperm; EACCES. What every servant and server operation answers
    /// unless it serves it (STYLE.md 5, "default-deny").
    pub const PERMISSION_DENIED: Self = Self::fixed("permission denied");
    /// Enonexist; ENOENT. A failed walk must say this, or Linux cannot
    /// create files.
    pub const NOT_FOUND: Self = Self::fixed("file does not exist");
    /// Eexist; EEXIST: a create, or a post to /srv, under a name in use.
    pub const EXISTS: Self = Self::fixed("file already exists");
    /// Enotdir; ENOTDIR.
    pub const NOT_DIR: Self = Self::fixed("not a directory");
    /// EISDIR, in Linux's spelling (Plan 9's "file is a directory" is not
    /// in Linux's table).
    pub const IS_DIR: Self = Self::fixed("Is a directory");
    /// EOPNOTSUPP: what an operation a server or servant does not
    /// implement answers.
    pub const NOT_SUPPORTED: Self = Self::fixed("Operation not supported");

    // Core's kernel strings (Plan 9's port/error.h).

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
    /// Etoobig: one read or write larger than the file takes (an env value
    /// over its bound, fd text in /srv). Not in Linux's table.
    pub const TOO_BIG: Self = Self::fixed("read or write too large");
    /// Eshort: a directory read too small for the next whole entry.
    pub const SHORT: Self = Self::fixed("i/o count too small");
    /// Ebadfd: a chan handle that names no live chan.
    pub const BAD_FD: Self = Self::fixed("fd out of range or not open");
    /// Not an answer but "ask again later": a file server has not
    /// answered yet, and core parks the call instead of failing it
    /// (`kasane-mount`). The namespace passes it on at once, without
    /// trying another union member, so a slow member is never taken for a
    /// missing one. Never sent in an Rerror.
    /// `#M`'s transparent recovery (core/mount/src/recover.rs): an
    /// operation that may have changed the server (create, remove, wstat,
    /// an open for writing) was under way when the server failed and was
    /// restarted; it is not sent again.
    pub const RESTARTED: Self = Self::fixed("server restarted");
    /// `#M`'s transparent recovery: the chan's file is not on the
    /// restarted server (it was made after the server started, say).
    pub const GONE: Self = Self::fixed("server restarted: file is gone");
    pub const PENDING: Self = Self::fixed("the file server has not answered yet");

    // File-server strings (each one in Linux's net/9p/error.c).

    /// ENOTEMPTY (fossil's spelling; Plan 9's kernel "directory not empty"
    /// is not in Linux's table).
    pub const NOT_EMPTY: Self = Self::fixed("directory is not empty");
    /// EBADF.
    pub const UNKNOWN_FID: Self = Self::fixed("fid unknown or out of range");
    /// EBADF.
    pub const FID_IN_USE: Self = Self::fixed("fid already in use");
    /// EBADF: I/O on a fid not open for it, or a walk from an open fid.
    pub const BAD_FID_USE: Self = Self::fixed("bad use of fid");
    /// ETXTBSY: Topen or Tcreate on a fid that is already open.
    pub const ALREADY_OPEN: Self = Self::fixed("file already open for I/O");
    /// ESPIPE: a directory read at an offset that is neither 0 nor the end
    /// of the previous read (read(5)).
    pub const BAD_DIR_OFFSET: Self = Self::fixed("bad offset in directory read");
    /// EINVAL: open mode bits that open(5) does not define.
    pub const ILLEGAL_MODE: Self = Self::fixed("illegal mode");
    /// ENAMETOOLONG (sic, Linux's mapping): ".", "..", "" or a name with '/'.
    pub const ILLEGAL_NAME: Self = Self::fixed("illegal name");
    /// EACCES: only the owner (or group leader) may change mode and times.
    pub const NOT_OWNER: Self = Self::fixed("not owner");
    /// EPERM: a wstat touching a field stat(5) says cannot change.
    pub const WSTAT_PROHIBITED: Self = Self::fixed("wstat prohibited");
    /// EPERM: a wstat that flips DMDIR.
    pub const WSTAT_DIR_BIT: Self =
        Self::fixed("wstat can't convert between files and directories");
    /// EPERM.
    pub const NOT_GROUP_MEMBER: Self = Self::fixed("not a member of proposed group");
    /// EACCES.
    pub const GROUP_CHANGE: Self = Self::fixed("only owner can change group in wstat");
    /// EAGAIN: DMEXCL file already open.
    pub const EXCLUSIVE: Self = Self::fixed("exclusive use file already open");
    /// EIDRM: the fid's file was removed through another fid.
    pub const REMOVED: Self = Self::fixed("file has been removed");
    /// EFBIG: a file would outgrow what its server keeps (fossil's
    /// ETooBig; see [`Error::TOO_BIG`] for one request too large).
    pub const FILE_TOO_BIG: Self = Self::fixed("file too big");
    /// ENOSPC.
    pub const FULL: Self = Self::fixed("file system is full");
    /// EPERM.
    pub const CANNOT_REMOVE_ROOT: Self = Self::fixed("cannot remove root");
    /// EINVAL.
    pub const ILLEGAL_OFFSET: Self = Self::fixed("illegal offset");
    /// Answer to Tauth and to a Tattach with an afid: no authentication is
    /// done (Plan 9 lib9p's spelling; Linux sends no Tauth by default).
    pub const NO_AUTH: Self = Self::fixed("authentication not required");

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

    /// The error as Plan 9's namec reports a failed name: the name in rc's
    /// single quotes (each quote doubled, rc(1)) in front of the reason,
    /// e.g. `'/n/x' file does not exist`.
    pub fn for_name(&self, name: &str) -> Self {
        let mut text = String::with_capacity(name.len() + self.0.len() + 3);
        text.push('\'');
        for c in name.chars() {
            if c == '\'' {
                text.push('\'');
            }
            text.push(c);
        }
        text.push_str("' ");
        text.push_str(&self.0);
        Self::new(text)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for Error {}

/// The strings of the table that Linux's net/9p/error.c maps to an errno
/// (checked by hand against the kernel's table). A file server that
/// answers a Linux v9fs client should send only these: any other string
/// reaches the application as errno 526 (ESERVERFAULT).
pub const LINUX_MAPPED: &[&str] = &[
    "permission denied",
    "file does not exist",
    "file already exists",
    "directory is not empty",
    "fid unknown or out of range",
    "fid already in use",
    "Is a directory",
    "not a directory",
    "bad use of fid",
    "file already open for I/O",
    "bad offset in directory read",
    "illegal mode",
    "illegal name",
    "not owner",
    "wstat prohibited",
    "wstat can't convert between files and directories",
    "not a member of proposed group",
    "only owner can change group in wstat",
    "exclusive use file already open",
    "file has been removed",
    "file too big",
    "file system is full",
    "cannot remove root",
    "illegal offset",
    "Operation not supported",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_server_strings_are_ones_linux_maps() {
        for e in [
            Error::PERMISSION_DENIED,
            Error::NOT_FOUND,
            Error::EXISTS,
            Error::NOT_DIR,
            Error::IS_DIR,
            Error::NOT_SUPPORTED,
            Error::NOT_EMPTY,
            Error::UNKNOWN_FID,
            Error::FID_IN_USE,
            Error::BAD_FID_USE,
            Error::ALREADY_OPEN,
            Error::BAD_DIR_OFFSET,
            Error::ILLEGAL_MODE,
            Error::ILLEGAL_NAME,
            Error::NOT_OWNER,
            Error::WSTAT_PROHIBITED,
            Error::WSTAT_DIR_BIT,
            Error::NOT_GROUP_MEMBER,
            Error::GROUP_CHANGE,
            Error::EXCLUSIVE,
            Error::REMOVED,
            Error::FILE_TOO_BIG,
            Error::FULL,
            Error::CANNOT_REMOVE_ROOT,
            Error::ILLEGAL_OFFSET,
        ] {
            assert!(LINUX_MAPPED.contains(&e.as_str()), "{e} is not mapped");
        }
    }

    #[test]
    fn the_two_too_bigs_are_plan9s_two() {
        // port/error.h's Etoobig and fossil's ETooBig.
        assert_eq!(Error::TOO_BIG.as_str(), "read or write too large");
        assert_eq!(Error::FILE_TOO_BIG.as_str(), "file too big");
        assert!(!LINUX_MAPPED.contains(&Error::TOO_BIG.as_str()));
    }

    #[test]
    fn names_are_quoted_as_namec_reports_them() {
        assert_eq!(
            Error::NOT_FOUND.for_name("/n/x").as_str(),
            "'/n/x' file does not exist"
        );
        assert_eq!(
            Error::PERMISSION_DENIED.for_name("it's").as_str(),
            "'it''s' permission denied"
        );
        assert_eq!(Error::new("x"), Error::new(String::from("x")));
    }
}
