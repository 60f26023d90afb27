//! The error a file server answers with: a Plan 9 error string.
//!
//! 9P carries errors as text (error(5)). The constants below use the
//! spellings that Plan 9 servers write *and* that Linux's v9fs client maps to
//! an errno (net/9p/error.c); a string Linux does not know reaches programs
//! as errno 526. Where Plan 9's kernel spelling is not in Linux's table
//! ("directory not empty", "file is a directory") the mapped Plan 9-family
//! or Linux spelling is used instead, and the comment says which errno it
//! becomes.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt;

/// An error string for an Rerror (error(5)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Error(Cow<'static, str>);

impl Error {
    /// EACCES.
    pub const PERMISSION_DENIED: Self = Self::fixed("permission denied");
    /// ENOENT. A failed walk must say this, or Linux cannot create files.
    pub const NOT_FOUND: Self = Self::fixed("file does not exist");
    /// EEXIST.
    pub const EXISTS: Self = Self::fixed("file already exists");
    /// ENOTEMPTY (fossil's spelling; Plan 9's kernel "directory not empty"
    /// is not in Linux's table).
    pub const NOT_EMPTY: Self = Self::fixed("directory is not empty");
    /// EBADF.
    pub const UNKNOWN_FID: Self = Self::fixed("fid unknown or out of range");
    /// EBADF.
    pub const FID_IN_USE: Self = Self::fixed("fid already in use");
    /// EISDIR (Linux's spelling; Plan 9's "file is a directory" is not in
    /// Linux's table).
    pub const IS_DIR: Self = Self::fixed("Is a directory");
    /// ENOTDIR.
    pub const NOT_DIR: Self = Self::fixed("not a directory");
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
    /// EFBIG.
    pub const TOO_BIG: Self = Self::fixed("file too big");
    /// ENOSPC.
    pub const FULL: Self = Self::fixed("file system is full");
    /// EPERM.
    pub const CANNOT_REMOVE_ROOT: Self = Self::fixed("cannot remove root");
    /// EINVAL.
    pub const ILLEGAL_OFFSET: Self = Self::fixed("illegal offset");
    /// EOPNOTSUPP: what an operation a server does not serve answers.
    pub const NOT_SUPPORTED: Self = Self::fixed("Operation not supported");
    /// Answer to Tauth and to a Tattach with an afid: no authentication is
    /// done (Plan 9 lib9p's spelling; Linux sends no Tauth by default).
    pub const NO_AUTH: Self = Self::fixed("authentication not required");

    const fn fixed(text: &'static str) -> Self {
        Self(Cow::Borrowed(text))
    }

    /// An error with a message of the server's own.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Cow::Owned(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
