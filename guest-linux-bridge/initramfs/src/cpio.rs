//! A writer for the cpio "newc" format, as the kernel's initramfs wants it.
//!
//! Layout per entry (Linux `Documentation/driver-api/early-userspace/
//! buffer-format.rst`): a 110-byte ASCII header of the magic `070701` and
//! thirteen 8-digit hex fields, the NUL-terminated name padded to a 4-byte
//! boundary, then the data padded likewise. The archive ends with an entry
//! named `TRAILER!!!`.
//!
//! Invariants: names are relative, free of NUL and of `.`/`..` parts; every
//! entry gets a distinct inode number; times are 0 so that a build is
//! reproducible. The kernel does not create parent directories, so callers
//! add a directory before what it holds (`Archive` checks this).

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER_NAME: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
const TYPE_DIRECTORY: u32 = 0o040000;
const TYPE_REGULAR: u32 = 0o100000;
const TYPE_CHARACTER_DEVICE: u32 = 0o020000;
const TYPE_SYMBOLIC_LINK: u32 = 0o120000;

/// Why an entry was refused.
#[derive(Debug)]
pub enum CpioError {
    /// The name was empty, absolute after trimming, or held NUL, `.`, `..`.
    BadName(String),
    /// The entry's parent directory was not added first.
    MissingParent {
        name: String,
        parent: String,
    },
    /// The same name was added twice.
    Duplicate(String),
    /// The data is larger than the format's 32-bit size field.
    TooLarge {
        name: String,
        size: usize,
    },
    /// The permission bits held more than the low twelve bits.
    BadMode {
        name: String,
        mode: u32,
    },
    Io(io::Error),
}

impl fmt::Display for CpioError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::BadName(name) => write!(formatter, "bad archive name {name:?}"),
            CpioError::MissingParent { name, parent } => {
                write!(formatter, "{name:?} added before its directory {parent:?}")
            }
            CpioError::Duplicate(name) => write!(formatter, "{name:?} added twice"),
            CpioError::TooLarge { name, size } => {
                write!(
                    formatter,
                    "{name:?} is {size} bytes, over cpio's 4 GiB limit"
                )
            }
            CpioError::BadMode { name, mode } => {
                write!(
                    formatter,
                    "{name:?} has mode {mode:o}; only permission bits are allowed"
                )
            }
            CpioError::Io(error) => write!(formatter, "writing the archive: {error}"),
        }
    }
}

impl std::error::Error for CpioError {}

impl From<io::Error> for CpioError {
    fn from(error: io::Error) -> Self {
        CpioError::Io(error)
    }
}

/// A newc archive being written to `W`.
pub struct Archive<W: Write> {
    output: W,
    next_inode: u32,
    written: u64,
    names: BTreeSet<String>,
    directories: BTreeSet<String>,
}

impl<W: Write> fmt::Debug for Archive<W> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Archive")
            .field("entries", &self.names.len())
            .field("written", &self.written)
            .finish()
    }
}

/// What kind of entry, with what it needs beyond a name and mode.
enum Body<'a> {
    Directory,
    Regular(&'a [u8]),
    CharacterDevice { major: u32, minor: u32 },
    SymbolicLink(&'a str),
}

impl<W: Write> Archive<W> {
    pub fn new(output: W) -> Self {
        Archive {
            output,
            next_inode: 1,
            written: 0,
            names: BTreeSet::new(),
            directories: BTreeSet::new(),
        }
    }

    /// Adds a directory. `mode` is the permission bits, e.g. `0o755`.
    pub fn directory(&mut self, name: &str, mode: u32) -> Result<(), CpioError> {
        let name = self.entry(name, mode, Body::Directory)?;
        self.directories.insert(name);
        Ok(())
    }

    /// Adds every missing directory on the way to `name`, and `name` itself.
    pub fn directories(&mut self, name: &str, mode: u32) -> Result<(), CpioError> {
        let name = normalise(name)?;
        let mut path = String::new();
        for part in name.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            if !self.directories.contains(&path) {
                self.directory(&path, mode)?;
            }
        }
        Ok(())
    }

    /// Adds a regular file holding `data`.
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(name, mode, Body::Regular(data)).map(drop)
    }

    /// Adds a character device node, e.g. `dev/console` as 5:1.
    pub fn character_device(
        &mut self,
        name: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(name, mode, Body::CharacterDevice { major, minor })
            .map(drop)
    }

    /// Adds a symbolic link to `target`.
    pub fn symbolic_link(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        self.entry(name, 0o777, Body::SymbolicLink(target))
            .map(drop)
    }

    /// Writes the trailer and returns the output and the archive's length.
    pub fn finish(mut self) -> Result<(W, u64), CpioError> {
        self.write_entry(TRAILER_NAME, 0, 0, 0, (0, 0), &[])?;
        self.output.flush()?;
        Ok((self.output, self.written))
    }

    fn entry(&mut self, name: &str, mode: u32, body: Body<'_>) -> Result<String, CpioError> {
        let name = normalise(name)?;
        if mode & !0o7777 != 0 {
            return Err(CpioError::BadMode { name, mode });
        }
        if let Some((parent, _)) = name.rsplit_once('/') {
            if !self.directories.contains(parent) {
                return Err(CpioError::MissingParent {
                    parent: parent.to_string(),
                    name,
                });
            }
        }
        if self.names.contains(&name) {
            return Err(CpioError::Duplicate(name));
        }
        let (type_bits, nlink, device, data) = match body {
            Body::Directory => (TYPE_DIRECTORY, 2, (0, 0), &[][..]),
            Body::Regular(data) => (TYPE_REGULAR, 1, (0, 0), data),
            Body::CharacterDevice { major, minor } => {
                (TYPE_CHARACTER_DEVICE, 1, (major, minor), &[][..])
            }
            Body::SymbolicLink(target) => (TYPE_SYMBOLIC_LINK, 1, (0, 0), target.as_bytes()),
        };
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge {
                name,
                size: data.len(),
            });
        }
        let inode = self.next_inode;
        self.next_inode += 1;
        self.write_entry(&name, inode, type_bits | mode, nlink, device, data)?;
        self.names.insert(name.clone());
        Ok(name)
    }

    fn write_entry(
        &mut self,
        name: &str,
        inode: u32,
        mode: u32,
        nlink: u32,
        (device_major, device_minor): (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        // Both lengths were checked to fit by the caller or are constants.
        let name_size = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let file_size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let fields = [
            inode,
            mode,
            0, // uid: root
            0, // gid: root
            nlink,
            0, // mtime: 0, for reproducible archives
            file_size,
            0, // devmajor of the file system holding it: meaningless here
            0, // devminor
            device_major,
            device_minor,
            name_size,
            0, // check: only for the "070702" variant
        ];
        let mut header = Vec::with_capacity(110 + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        pad(&mut header);
        self.output.write_all(&header)?;
        self.output.write_all(data)?;
        let padding = (4 - data.len() % 4) % 4;
        self.output.write_all(&[0u8; 3][..padding])?;
        self.written += (header.len() + data.len() + padding) as u64;
        Ok(())
    }
}

fn pad(bytes: &mut Vec<u8>) {
    while bytes.len() % 4 != 0 {
        bytes.push(0);
    }
}

/// Strips leading `/` and refuses names the kernel would mishandle.
fn normalise(name: &str) -> Result<String, CpioError> {
    let trimmed = name.trim_start_matches('/').trim_end_matches('/');
    let bad = trimmed.is_empty()
        || trimmed == TRAILER_NAME
        || trimmed.contains('\0')
        || trimmed
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(CpioError::BadName(name.to_string()));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Lists `archive` with the system's `cpio -tv`, one line per entry.
    fn list(archive: &[u8], verbose: bool) -> Vec<String> {
        let mut child = Command::new("cpio")
            .arg(if verbose { "-tv" } else { "-t" })
            .arg("--quiet")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the cpio command is installed");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(archive)
            .expect("cpio reads the archive");
        let output = child.wait_with_output().expect("cpio runs");
        assert!(
            output.status.success(),
            "cpio failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("utf-8 listing")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn sample() -> Vec<u8> {
        let mut archive = Archive::new(Vec::new());
        archive.directory("dev", 0o755).unwrap();
        archive
            .character_device("dev/console", 0o600, 5, 1)
            .unwrap();
        archive.file("/init", 0o755, b"#!/bin/sh\n").unwrap();
        archive
            .directories("lib/modules/6.1.0/kernel", 0o755)
            .unwrap();
        archive
            .file("lib/modules/6.1.0/modules.dep", 0o644, b"")
            .unwrap();
        archive.symbolic_link("bin", "lib").unwrap();
        let (bytes, length) = archive.finish().unwrap();
        assert_eq!(bytes.len() as u64, length);
        bytes
    }

    #[test]
    fn cpio_lists_every_entry_in_order() {
        assert_eq!(
            list(&sample(), false),
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.1.0",
                "lib/modules/6.1.0/kernel",
                "lib/modules/6.1.0/modules.dep",
                "bin",
            ]
        );
    }

    #[test]
    fn cpio_sees_types_modes_and_devices() {
        let lines = list(&sample(), true);
        let line = |name: &str| {
            lines
                .iter()
                .find(|line| line.ends_with(name))
                .unwrap_or_else(|| panic!("{name} missing from {lines:?}"))
                .clone()
        };
        assert!(line(" dev").starts_with("drwxr-xr-x"));
        let console = line(" dev/console");
        assert!(console.starts_with("crw-------"), "{console}");
        assert!(console.contains("5,"), "{console}");
        assert!(line(" init").starts_with("-rwxr-xr-x"));
        assert!(line(" init").contains(" 10 "), "size of /init");
        assert!(line(" bin -> lib").starts_with("lrwxrwxrwx"));
    }

    #[test]
    fn data_round_trips_through_cpio_extract() {
        let mut archive = Archive::new(Vec::new());
        let data: Vec<u8> = (0..1001u32).map(|value| (value * 7) as u8).collect();
        archive.directory("a", 0o755).unwrap();
        archive.file("a/odd", 0o644, &data).unwrap();
        let (bytes, _) = archive.finish().unwrap();
        let mut child = Command::new("cpio")
            .args(["-i", "--quiet", "--to-stdout", "a/odd"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cpio");
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, data);
    }

    #[test]
    fn header_is_exactly_newc() {
        let mut archive = Archive::new(Vec::new());
        archive.file("x", 0o644, b"abc").unwrap();
        let (bytes, _) = archive.finish().unwrap();
        assert_eq!(&bytes[..6], b"070701");
        // mode field: regular file 0644 = 0x81A4.
        assert_eq!(&bytes[14..22], b"000081A4");
        // 110 header bytes + "x\0" = 112, already aligned; then "abc" + 1 pad.
        assert_eq!(&bytes[110..112], b"x\0");
        assert_eq!(&bytes[112..116], b"abc\0");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut archive = Archive::new(Vec::new());
        for name in ["", "/", "a/../b", "a//b", "./x", "nul\0", "TRAILER!!!"] {
            assert!(
                matches!(archive.file(name, 0o644, b""), Err(CpioError::BadName(_))),
                "{name:?}"
            );
        }
        assert!(matches!(
            archive.file("missing/x", 0o644, b""),
            Err(CpioError::MissingParent { .. })
        ));
        assert!(matches!(
            archive.file("x", 0o100644, b""),
            Err(CpioError::BadMode { .. })
        ));
        archive.file("x", 0o644, b"").unwrap();
        assert!(matches!(
            archive.file("/x", 0o644, b""),
            Err(CpioError::Duplicate(_))
        ));
    }
}
