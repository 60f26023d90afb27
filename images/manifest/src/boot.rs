//! The compact boot form of a manifest, and its strict decoder.
//!
//! Layout: `magic[8] version[4] length[4] crc32[4] payload[length]`, all
//! little-endian, where the payload is the [`BootManifest`] in `postcard`
//! encoding. Decoding checks each field before use and re-runs the semantic
//! checks, so a truncated or tampered module is an error, never a hang.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::{CellKind, OnFailure, Placement};

/// First bytes of a compiled manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"KSNMANI\0";
/// Version of the compiled form.
pub const MANIFEST_VERSION: u32 = 4;
const HEADER_LEN: usize = 20;
/// Largest payload accepted (a manifest is small; this bounds allocation).
const MAX_PAYLOAD: usize = 64 * 1024;

/// One cell in the boot form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootCell {
    /// Unique name.
    pub name: String,
    /// What it runs.
    pub kind: CellKind,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Name of the boot module holding its kernel image.
    pub image: String,
    /// Arguments for its kernel.
    pub args: String,
    /// Other boot modules loaded into its memory (tasks, initrd).
    pub modules: Vec<String>,
    /// Failure policy.
    pub on_failure: OnFailure,
    /// Most restarts before the cell is left stopped.
    pub restart_limit: u32,
    /// Watchdog period in milliseconds; 0 turns the watchdog off.
    pub heartbeat_ms: u32,
    /// Linux cells: the boot module holding the initial RAM disk (empty:
    /// none; always empty for other kinds).
    pub initrd: String,
    /// Linux cells: the kernel command line (empty for other kinds).
    pub cmdline: String,
    /// Server VM cells: the devices (rows of [`crate::DEVICES`]) whose
    /// ports hvm lets this cell reach, and no other.
    pub devices: Vec<String>,
}

/// One 9P server in the boot form (`[[server]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootServer {
    /// Unique name; core posts it as `/srv/NAME`, and a `vm` server is the
    /// `server-vm` cell of this name.
    pub name: String,
    /// The server program (its modules are `PROGRAM-task`, `PROGRAM-vm`).
    pub program: String,
    /// Where it runs.
    pub placement: Placement,
    /// A `vm` server's memory in MiB (its cell's); 0 for a task server,
    /// which core pages from its own pool.
    pub memory_mib: u32,
    /// Where core mounts it in the boot namespace (empty: not mounted).
    pub mount: String,
    /// mount(1)'s flags for that mount: any of `a` or `b`, and `c`.
    pub mount_flags: String,
    /// `stop` or `restart` (a server never powers the machine off).
    pub on_failure: OnFailure,
    /// Most restarts before it is left stopped.
    pub restart_limit: u32,
    /// Boot module the server starts from (a tar archive; empty: none).
    pub image: String,
    /// Devices given to the server's VM whole (`ata1`); vm servers only.
    pub devices: Vec<String>,
}

/// The whole system in the boot form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootManifest {
    /// System name.
    pub name: String,
    /// Cells; index 0 is the microkernel.
    pub cells: Vec<BootCell>,
    /// 9P servers, each a task of cell 0 or a server-vm cell.
    pub servers: Vec<BootServer>,
}

/// Why a compiled manifest was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the length field promises.
    Truncated,
    /// The magic bytes are wrong: not a compiled manifest.
    BadMagic,
    /// A version this hvm does not read.
    UnsupportedVersion(u32),
    /// The payload length exceeds the bound.
    TooLarge(usize),
    /// The checksum does not match the payload.
    BadChecksum,
    /// The payload does not decode, or bytes follow it.
    Malformed,
    /// It decodes but breaks a rule of the checker.
    Invalid(crate::ManifestError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("compiled manifest is truncated"),
            Self::BadMagic => f.write_str("not a compiled manifest (bad magic)"),
            Self::UnsupportedVersion(v) => {
                write!(f, "compiled manifest version {v} is not supported")
            }
            Self::TooLarge(n) => write!(f, "compiled manifest payload of {n} bytes is too large"),
            Self::BadChecksum => f.write_str("compiled manifest checksum mismatch"),
            Self::Malformed => f.write_str("compiled manifest payload is malformed"),
            Self::Invalid(e) => write!(f, "compiled manifest is invalid: {e}"),
        }
    }
}

impl BootManifest {
    /// Encodes into the compact boot form.
    pub fn encode(&self) -> Vec<u8> {
        let payload = postcard::to_allocvec(self).expect("serialising to memory cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes and re-checks the boot form. Trailing bytes after the payload
    /// (module padding) are ignored; everything inside it must be consumed.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        if bytes[..8] != MANIFEST_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if version != MANIFEST_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let length = word(12) as usize;
        if length > MAX_PAYLOAD {
            return Err(DecodeError::TooLarge(length));
        }
        let payload = bytes
            .get(HEADER_LEN..HEADER_LEN + length)
            .ok_or(DecodeError::Truncated)?;
        if crc32fast::hash(payload) != word(16) {
            return Err(DecodeError::BadChecksum);
        }
        let (manifest, rest): (Self, &[u8]) =
            postcard::take_from_bytes(payload).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        crate::check(&manifest).map_err(DecodeError::Invalid)?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    fn sample() -> BootManifest {
        BootManifest {
            name: "smoke".to_string(),
            cells: vec![BootCell {
                name: "cell0".to_string(),
                kind: CellKind::Microkernel,
                memory_mib: 64,
                image: "microkernel".to_string(),
                args: "test=smoke".to_string(),
                modules: vec![],
                on_failure: OnFailure::Stop,
                restart_limit: 0,
                heartbeat_ms: 0,
                initrd: String::new(),
                cmdline: String::new(),
                devices: vec![],
            }],
            servers: vec![],
        }
    }

    #[test]
    fn round_trip() {
        let bytes = sample().encode();
        assert_eq!(BootManifest::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn padding_after_payload_is_ignored() {
        let mut bytes = sample().encode();
        bytes.extend_from_slice(&[0; 100]);
        assert_eq!(BootManifest::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn header_errors() {
        let bytes = sample().encode();
        assert_eq!(
            BootManifest::decode(&bytes[..10]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            BootManifest::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated)
        );
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(BootManifest::decode(&bad), Err(DecodeError::BadMagic));
        let mut bad = bytes.clone();
        bad[8] = 9;
        assert_eq!(
            BootManifest::decode(&bad),
            Err(DecodeError::UnsupportedVersion(9))
        );
        let mut bad = bytes.clone();
        bad[15] = 0x7f;
        assert!(matches!(
            BootManifest::decode(&bad),
            Err(DecodeError::TooLarge(_))
        ));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        assert_eq!(BootManifest::decode(&bad), Err(DecodeError::BadChecksum));
    }

    #[test]
    fn semantic_rules_are_rechecked_at_decode() {
        let mut manifest = sample();
        manifest.cells[0].memory_mib = 1;
        let bytes = manifest.encode();
        assert!(matches!(
            BootManifest::decode(&bytes),
            Err(DecodeError::Invalid(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = BootManifest::decode(&bytes);
        }

        #[test]
        fn decode_of_flipped_valid_bytes_never_panics(index in 0usize..200, value: u8) {
            let mut bytes = sample().encode();
            let at = index % bytes.len();
            bytes[at] = value;
            let _ = BootManifest::decode(&bytes);
        }
    }
}
