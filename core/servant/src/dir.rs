//! Helpers servants share: qids, stats, open checks, reads at an offset.
//!
//! Plan 9's devdir, devopen and readstr in Rust: small enough that each
//! servant stays about what it serves.

use alloc::string::String;
use alloc::vec::Vec;

use ninep::{Access, FileMode, OpenMode, Qid, QidType, Stat};

use crate::Error;

/// The owner of files that belong to the system, Plan 9's host owner.
pub const EVE: &str = "eve";

pub const fn dir_qid(path: u64) -> Qid {
    Qid {
        kind: QidType::DIR,
        version: 0,
        path,
    }
}

pub const fn file_qid(path: u64) -> Qid {
    Qid {
        kind: QidType::FILE,
        version: 0,
        path,
    }
}

/// A directory entry as Plan 9's devdir makes one: `type` is the
/// servant's letter, `dev` its instance, and a directory's mode has DMDIR.
pub fn stat(
    letter: char,
    dev: u32,
    qid: Qid,
    name: &str,
    perm: u32,
    length: u64,
    owner: &str,
) -> Stat {
    let mut mode = FileMode::from_bits_retain(perm & FileMode::PERMISSIONS);
    if qid.kind.contains(QidType::DIR) {
        mode |= FileMode::DMDIR;
    }
    Stat {
        // The letters are ASCII; anything else has no short form.
        kind: u16::try_from(u32::from(letter)).unwrap_or(0),
        dev,
        qid,
        mode,
        atime: 0,
        mtime: 0,
        length: if qid.kind.contains(QidType::DIR) {
            0
        } else {
            length
        },
        name: String::from(name),
        uid: String::from(owner),
        gid: String::from(owner),
        muid: String::from(owner),
    }
}

/// Checks an open against what a file allows (Plan 9's devopen and
/// open(5)): directories open only for reading, OTRUNC needs write.
pub fn check_open(
    is_dir: bool,
    mode: OpenMode,
    readable: bool,
    writable: bool,
) -> Result<(), Error> {
    let access = mode.access();
    if is_dir && (access != Access::Read || mode.contains(OpenMode::OTRUNC)) {
        return Err(Error::IS_DIR);
    }
    let wants_read = matches!(access, Access::Read | Access::ReadWrite | Access::Exec);
    let wants_write = mode.can_write() || mode.contains(OpenMode::OTRUNC);
    if (wants_read && !readable) || (wants_write && !writable) {
        return Err(Error::PERMISSION_DENIED);
    }
    Ok(())
}

/// At most `count` bytes of `data` from `offset` (Plan 9's readstr and
/// readbuf); nothing past the end.
pub fn read_at(data: &[u8], offset: u64, count: u32) -> Vec<u8> {
    let Ok(start) = usize::try_from(offset) else {
        return Vec::new();
    };
    if start >= data.len() {
        return Vec::new();
    }
    let end = data.len().min(start.saturating_add(count as usize));
    data[start..end].to_vec()
}

/// Writes `data` into `buffer` at `offset`, growing it, as a file write.
/// `limit` bounds the resulting size ("read or write too large").
pub fn write_at(
    buffer: &mut Vec<u8>,
    offset: u64,
    data: &[u8],
    limit: usize,
) -> Result<u32, Error> {
    let start = usize::try_from(offset).map_err(|_| Error::TOO_BIG)?;
    let end = start.checked_add(data.len()).ok_or(Error::TOO_BIG)?;
    if end > limit {
        return Err(Error::TOO_BIG);
    }
    if buffer.len() < end {
        buffer.resize(end, 0);
    }
    buffer[start..end].copy_from_slice(data);
    u32::try_from(data.len()).map_err(|_| Error::TOO_BIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        assert_eq!(read_at(b"hello", 1, 3), b"ell");
        assert_eq!(read_at(b"hello", 3, 10), b"lo");
        assert!(read_at(b"hello", 5, 1).is_empty());
        assert!(read_at(b"hello", u64::MAX, 1).is_empty());
    }

    #[test]
    fn writes_grow_and_respect_the_limit() {
        let mut buffer = b"ab".to_vec();
        assert_eq!(write_at(&mut buffer, 3, b"xy", 8), Ok(2));
        assert_eq!(buffer, b"ab\0xy");
        assert_eq!(write_at(&mut buffer, 7, b"xy", 8), Err(Error::TOO_BIG));
        assert_eq!(
            write_at(&mut buffer, u64::MAX, b"x", 8),
            Err(Error::TOO_BIG)
        );
    }

    #[test]
    fn opens_are_checked_as_devopen_does() {
        assert_eq!(
            check_open(true, OpenMode::OWRITE, true, true),
            Err(Error::IS_DIR)
        );
        assert_eq!(check_open(true, OpenMode::OREAD, true, false), Ok(()));
        assert_eq!(
            check_open(false, OpenMode::ORDWR, true, false),
            Err(Error::PERMISSION_DENIED)
        );
        assert_eq!(
            check_open(false, OpenMode::OREAD | OpenMode::OTRUNC, true, false),
            Err(Error::PERMISSION_DENIED)
        );
        assert_eq!(check_open(false, OpenMode::OWRITE, false, true), Ok(()));
    }

    #[test]
    fn stats_mark_directories() {
        let s = stat('e', 3, dir_qid(0), "/", 0o775, 99, "glenda");
        assert!(s.mode.is_dir());
        assert_eq!((s.kind, s.dev, s.length), (u16::from(b'e'), 3, 0));
        let s = stat('e', 3, file_qid(1), "home", 0o664, 12, "glenda");
        assert!(!s.mode.is_dir());
        assert_eq!(s.length, 12);
    }
}
