//! Qids, stats and the bit sets of 9P2000: qid types, DM bits, open modes.
//!
//! Bit values are those of intro(5), open(5) and stat(5). Unknown bits are
//! kept (`from_bits_retain`) so a decoded value re-encodes byte for byte;
//! deciding whether an unknown bit is an error is the server's policy.

use alloc::string::String;
use alloc::vec::Vec;

use bitflags::bitflags;

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Writer};

bitflags! {
    /// The type byte of a qid (intro(5)): the high byte of a stat's mode.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct QidType: u8 {
        const DIR = 0x80;
        const APPEND = 0x40;
        const EXCL = 0x20;
        const MOUNT = 0x10;
        const AUTH = 0x08;
        const TMP = 0x04;
    }
}

impl QidType {
    /// A plain file (QTFILE is zero).
    pub const FILE: Self = Self::empty();
}

bitflags! {
    /// A stat's `mode[4]` and a Tcreate's `perm[4]` (stat(5)): DM bits over
    /// the nine Unix-style permission bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct FileMode: u32 {
        const DMDIR = 0x8000_0000;
        const DMAPPEND = 0x4000_0000;
        const DMEXCL = 0x2000_0000;
        const DMMOUNT = 0x1000_0000;
        const DMAUTH = 0x0800_0000;
        const DMTMP = 0x0400_0000;
        const OWNER_READ = 0o400;
        const OWNER_WRITE = 0o200;
        const OWNER_EXEC = 0o100;
        const GROUP_READ = 0o040;
        const GROUP_WRITE = 0o020;
        const GROUP_EXEC = 0o010;
        const OTHER_READ = 0o004;
        const OTHER_WRITE = 0o002;
        const OTHER_EXEC = 0o001;
    }
}

impl FileMode {
    /// The nine permission bits.
    pub const PERMISSIONS: u32 = 0o777;

    /// The qid type these DM bits imply (stat(5): the high byte of the mode
    /// is the qid type).
    pub fn qid_type(self) -> QidType {
        // The shift leaves exactly the top byte, so the cast is lossless.
        QidType::from_bits_retain((self.bits() >> 24) as u8)
    }

    pub fn is_dir(self) -> bool {
        self.contains(Self::DMDIR)
    }
}

bitflags! {
    /// The `mode[1]` of Topen and Tcreate (open(5)). The low two bits are
    /// not flags but an access value; read them with [`OpenMode::access`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct OpenMode: u8 {
        const OWRITE = 0x01;
        const ORDWR = 0x02;
        const OTRUNC = 0x10;
        /// Close on exec: a client-side bit Plan 9 passes through.
        const OCEXEC = 0x20;
        const ORCLOSE = 0x40;
    }
}

/// The access a Topen or Tcreate asks for (open(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Exec,
}

impl OpenMode {
    pub const OREAD: Self = Self::empty();
    pub const OEXEC: Self = Self::from_bits_retain(0x03);
    /// Every bit open(5) defines.
    pub const KNOWN: u8 = 0x03 | 0x10 | 0x20 | 0x40;

    pub fn access(self) -> Access {
        match self.bits() & 0x03 {
            0 => Access::Read,
            1 => Access::Write,
            2 => Access::ReadWrite,
            _ => Access::Exec,
        }
    }

    /// Whether the mode allows reading data through the fid.
    pub fn can_read(self) -> bool {
        matches!(
            self.access(),
            Access::Read | Access::ReadWrite | Access::Exec
        )
    }

    /// Whether the mode allows writing data through the fid.
    pub fn can_write(self) -> bool {
        matches!(self.access(), Access::Write | Access::ReadWrite)
    }
}

/// A server's unique identification of a file (intro(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Qid {
    pub kind: QidType,
    pub version: u32,
    pub path: u64,
}

impl Qid {
    /// The qid of a wstat that leaves the qid alone: every bit set (stat(5)).
    pub const DONT_TOUCH: Self = Self {
        kind: QidType::from_bits_retain(0xFF),
        version: u32::MAX,
        path: u64::MAX,
    };
}

/// A directory entry (stat(5)). On the wire it is preceded by its own
/// `size[2]`, which this type computes rather than stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stat {
    /// For kernel use (stat(5)).
    pub kind: u16,
    /// For kernel use (stat(5)).
    pub dev: u32,
    pub qid: Qid,
    pub mode: FileMode,
    pub atime: u32,
    pub mtime: u32,
    pub length: u64,
    pub name: String,
    pub uid: String,
    pub gid: String,
    pub muid: String,
}

/// Bytes of a stat's fixed fields after its size: type[2] dev[4] qid[13]
/// mode[4] atime[4] mtime[4] length[8] and four string lengths.
const STAT_FIXED: usize = 2 + 4 + 13 + 4 + 4 + 4 + 8 + 4 * 2;

impl Stat {
    /// A stat whose every field says "don't touch" (stat(5), wstat): the
    /// starting point of a Twstat that changes a few fields.
    pub fn dont_touch() -> Self {
        Self {
            kind: u16::MAX,
            dev: u32::MAX,
            qid: Qid::DONT_TOUCH,
            mode: FileMode::from_bits_retain(u32::MAX),
            atime: u32::MAX,
            mtime: u32::MAX,
            length: u64::MAX,
            name: String::new(),
            uid: String::new(),
            gid: String::new(),
            muid: String::new(),
        }
    }

    /// Bytes the stat takes on the wire, its own `size[2]` included.
    pub fn encoded_len(&self) -> usize {
        2 + STAT_FIXED + self.name.len() + self.uid.len() + self.gid.len() + self.muid.len()
    }

    /// Appends `size[2]` and the stat (stat(5)).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let body = self.encoded_len() - 2;
        let size = u16::try_from(body).map_err(|_| EncodeError::StatTooLong { len: body })?;
        let mut w = Writer { out };
        w.u16(size);
        w.u16(self.kind);
        w.u32(self.dev);
        w.qid(&self.qid);
        w.u32(self.mode.bits());
        w.u32(self.atime);
        w.u32(self.mtime);
        w.u64(self.length);
        w.string(&self.name, "stat.name")?;
        w.string(&self.uid, "stat.uid")?;
        w.string(&self.gid, "stat.gid")?;
        w.string(&self.muid, "stat.muid")?;
        Ok(())
    }

    /// Reads `size[2]` and exactly that many bytes of stat.
    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let size = r.u16("stat.size")?;
        if usize::from(size) < STAT_FIXED {
            return Err(DecodeError::StatTooShort { size });
        }
        let mut s = Reader::new(r.take(usize::from(size), "stat")?);
        let stat = Self {
            kind: s.u16("stat.type")?,
            dev: s.u32("stat.dev")?,
            qid: s.qid("stat.qid")?,
            mode: FileMode::from_bits_retain(s.u32("stat.mode")?),
            atime: s.u32("stat.atime")?,
            mtime: s.u32("stat.mtime")?,
            length: s.u64("stat.length")?,
            name: s.string("stat.name")?,
            uid: s.string("stat.uid")?,
            gid: s.string("stat.gid")?,
            muid: s.string("stat.muid")?,
        };
        s.finish("stat")?;
        Ok(stat)
    }

    /// Decodes one stat that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let stat = Self::decode_from(&mut r)?;
        r.finish("stat")?;
        Ok(stat)
    }

    /// Decodes the data of a directory read: whole stats back to back
    /// (read(5)).
    pub fn decode_directory(bytes: &[u8]) -> Result<Vec<Self>, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        while r.remaining() > 0 {
            out.push(Self::decode_from(&mut r)?);
        }
        Ok(out)
    }
}
