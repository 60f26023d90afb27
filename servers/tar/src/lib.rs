//! A strict reader of ustar archives: the images 9P servers start from.
//!
//! A server's image (`image = "..."` in the manifest's `[[server]]`
//! table) is a tar boot module; ramfs unpacks it at every start, so its
//! files come back after a restart. The bytes are untrusted input: every
//! header is checked before use (POSIX.1-2017, pax, "ustar Interchange
//! Format"), and a bad archive is an error naming the offset of the
//! header at fault, never a panic or a read out of bounds.
//!
//! What is taken: regular files (typeflag `0`, or NUL) and directories
//! (`5`), each with its permission bits and, for files, its data. Names
//! are the ustar `prefix` and `name` joined, relative and clean (empty
//! elements, from a leading or trailing `/` or `//`, and a leading `.` are
//! dropped; `..`, any other `.`, control characters and non-UTF-8 names
//! are refused). Other
//! kinds (links, devices, pax extended headers) are refused, not skipped,
//! so an image never silently loses a file. A directory entry for the
//! root itself (`./`) is skipped. The archive ends at a zero
//! block, or at the end of the bytes on a block boundary.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use core::fmt;

/// A tar block.
pub const BLOCK: usize = 512;
/// Most entries an archive may hold (bounds the work of a hostile one).
pub const MAX_ENTRIES: usize = 4096;
/// Longest path (prefix, `/` and name).
pub const MAX_PATH: usize = 255;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Directory,
}

/// One file or directory of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Clean relative path, elements separated by `/`.
    pub path: String,
    pub kind: Kind,
    /// Permission bits (`mode & 0o777`).
    pub perm: u32,
    /// A file's bytes (empty for a directory).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// The path's elements.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.path.split('/')
    }
}

/// Why an archive was refused; `offset` is the header's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarError {
    /// The bytes end inside a header or a file's data.
    Truncated { offset: usize },
    /// The header's checksum does not match it.
    BadChecksum { offset: usize },
    /// A numeric field is not octal ASCII (or overflows).
    BadNumber { field: &'static str, offset: usize },
    /// The name is empty, too long, not UTF-8, or not a clean relative
    /// path.
    BadName { offset: usize },
    /// An entry kind images do not take (a link, a device, pax headers).
    Unsupported { typeflag: u8, offset: usize },
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries,
}

impl fmt::Display for TarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { offset } => write!(f, "tar: truncated at the entry at {offset}"),
            Self::BadChecksum { offset } => write!(f, "tar: bad header checksum at {offset}"),
            Self::BadNumber { field, offset } => {
                write!(f, "tar: bad {field} field in the header at {offset}")
            }
            Self::BadName { offset } => {
                write!(f, "tar: bad name (not a clean relative path) at {offset}")
            }
            Self::Unsupported { typeflag, offset } => write!(
                f,
                "tar: entry type {:?} at {offset} is not a file or a directory",
                char::from(*typeflag)
            ),
            Self::TooManyEntries => write!(f, "tar: more than {MAX_ENTRIES} entries"),
        }
    }
}

/// The entries of `bytes`, in order; the first error ends them.
pub fn entries(bytes: &[u8]) -> Entries<'_> {
    Entries {
        bytes,
        offset: 0,
        count: 0,
        done: false,
    }
}

/// Iterator over an archive's entries.
#[derive(Debug)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    offset: usize,
    count: usize,
    done: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, TarError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let result = self.step();
            match &result {
                // `./`, the root itself (GNU tar's `-C dir .`): nothing to
                // make.
                Some(Ok(entry)) if entry.path.is_empty() => continue,
                Some(Ok(_)) => {}
                _ => self.done = true,
            }
            return result;
        }
    }
}

impl<'a> Entries<'a> {
    fn step(&mut self) -> Option<Result<Entry<'a>, TarError>> {
        let offset = self.offset;
        if offset == self.bytes.len() {
            return None;
        }
        let Some(header) = self.bytes.get(offset..offset + BLOCK) else {
            return Some(Err(TarError::Truncated { offset }));
        };
        if header.iter().all(|&b| b == 0) {
            return None;
        }
        if self.count == MAX_ENTRIES {
            return Some(Err(TarError::TooManyEntries));
        }
        self.count += 1;
        Some(self.entry(header, offset))
    }

    fn entry(&mut self, header: &'a [u8], offset: usize) -> Result<Entry<'a>, TarError> {
        // ustar header fields: name 0..100, mode 100..108, size 124..136,
        // chksum 148..156, typeflag 156, magic 257..263, prefix 345..500.
        let stored = octal(&header[148..156]).ok_or(TarError::BadNumber {
            field: "chksum",
            offset,
        })?;
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if sum != stored {
            return Err(TarError::BadChecksum { offset });
        }
        let mode = octal(&header[100..108]).ok_or(TarError::BadNumber {
            field: "mode",
            offset,
        })?;
        let size = octal(&header[124..136]).ok_or(TarError::BadNumber {
            field: "size",
            offset,
        })?;
        let ustar = &header[257..262] == b"ustar";
        let name = field(&header[..100]);
        let prefix = if ustar { field(&header[345..500]) } else { &[] };
        let typeflag = header[156];
        let kind = match typeflag {
            b'5' => Kind::Directory,
            b'0' | 0 if name.last() == Some(&b'/') => Kind::Directory,
            b'0' | 0 => Kind::File,
            _ => return Err(TarError::Unsupported { typeflag, offset }),
        };
        let path = clean_path(prefix, name)
            .filter(|path| !path.is_empty() || kind == Kind::Directory)
            .ok_or(TarError::BadName { offset })?;
        let start = offset + BLOCK;
        let size = usize::try_from(size).map_err(|_| TarError::Truncated { offset })?;
        let data = match kind {
            Kind::File => start
                .checked_add(size)
                .and_then(|end| self.bytes.get(start..end))
                .ok_or(TarError::Truncated { offset })?,
            // A directory's size means nothing; its data is skipped.
            Kind::Directory => {
                start
                    .checked_add(size)
                    .and_then(|end| self.bytes.get(start..end))
                    .ok_or(TarError::Truncated { offset })?;
                &[]
            }
        };
        // The data is inside the bytes (checked above); its padding may
        // be missing at the very end, which ends the archive.
        let padded = size.div_ceil(BLOCK) * BLOCK;
        self.offset = start.saturating_add(padded).min(self.bytes.len());
        Ok(Entry {
            path,
            kind,
            perm: (mode & 0o777) as u32,
            data,
        })
    }
}

/// A NUL-terminated field's bytes.
fn field(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// An octal number, optionally led by blanks and ended by NUL or blank.
fn octal(bytes: &[u8]) -> Option<u64> {
    let text = field(bytes);
    let digits: &[u8] = {
        let start = text.iter().position(|&b| b != b' ')?;
        let text = &text[start..];
        let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
        if text[end..].iter().any(|&b| b != b' ') {
            return None;
        }
        &text[..end]
    };
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &b| {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value.checked_mul(8)?.checked_add(u64::from(b - b'0'))
    })
}

/// `prefix/name` as a clean relative path (empty: the root), or `None`:
/// empty elements
/// (a leading or trailing `/`, `//`) and a leading `.` are dropped; `..`,
/// any other `.`, control characters and non-UTF-8 bytes are refused.
fn clean_path(prefix: &[u8], name: &[u8]) -> Option<String> {
    let prefix = core::str::from_utf8(prefix).ok()?;
    let name = core::str::from_utf8(name).ok()?;
    let mut path = String::new();
    let mut first = true;
    for element in prefix.split('/').chain(name.split('/')) {
        match element {
            "" => continue,
            "." if first => {}
            "." | ".." => return None,
            _ if element.chars().any(char::is_control) => return None,
            _ => {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(element);
            }
        }
        first = false;
    }
    (path.len() <= MAX_PATH).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields() {
        assert_eq!(octal(b"0000644\0"), Some(0o644));
        assert_eq!(octal(b"  755 \0"), Some(0o755));
        assert_eq!(octal(b"00000000012\0"), Some(10));
        assert_eq!(octal(b"\0\0\0"), None);
        assert_eq!(octal(b"0008"), None);
        assert_eq!(octal(b"12 3"), None);
        assert_eq!(octal(b"7777777777777777777777777"), None, "overflow");
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path(b"", b"./a/b").as_deref(), Some("a/b"));
        assert_eq!(clean_path(b"", b"/a/").as_deref(), Some("a"));
        assert_eq!(clean_path(b"p/q", b"r").as_deref(), Some("p/q/r"));
        assert_eq!(clean_path(b"", b"a/../b"), None);
        assert_eq!(clean_path(b"", b"a/./b"), None);
        assert_eq!(clean_path(b"", b"./").as_deref(), Some(""));
        assert_eq!(clean_path(b"", b"a//b/").as_deref(), Some("a/b"));
        assert_eq!(clean_path(b"", b"").as_deref(), Some(""));
        assert_eq!(clean_path(b"", b"a\nb"), None);
        assert_eq!(clean_path(b"", &[0xff, b'a']), None);
    }
}
