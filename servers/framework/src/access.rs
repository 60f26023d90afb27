//! Plan 9 permission checks: owner, group and other bits against a uname.
//!
//! As in Plan 9, the "other" bits apply to everyone, and the owner and group
//! bits add to them for the owner and for members of the file's group.

use ninep::{OpenMode, Stat};

/// Read permission, as in the `r` of rwx.
pub const READ: u32 = 4;
/// Write permission.
pub const WRITE: u32 = 2;
/// Execute (for a directory: search) permission.
pub const EXEC: u32 = 1;

/// Whether `uname` holds every bit of `want` (a mask of READ, WRITE, EXEC)
/// on a file whose status is `stat`. `is_member` says whether a user belongs
/// to a group.
pub fn permitted(
    stat: &Stat,
    uname: &str,
    is_member: impl Fn(&str, &str) -> bool,
    want: u32,
) -> bool {
    let mode = stat.mode.bits();
    let mut have = mode & 7;
    if uname == stat.uid {
        have |= (mode >> 6) & 7;
    }
    if is_member(uname, &stat.gid) {
        have |= (mode >> 3) & 7;
    }
    have & want == want
}

/// The permission an open mode needs (open(5)): OTRUNC needs write as well.
pub fn needed_for_open(mode: OpenMode) -> u32 {
    let base = match mode.access() {
        ninep::Access::Read => READ,
        ninep::Access::Write => WRITE,
        ninep::Access::ReadWrite => READ | WRITE,
        ninep::Access::Exec => EXEC,
    };
    if mode.contains(OpenMode::OTRUNC) {
        base | WRITE
    } else {
        base
    }
}
