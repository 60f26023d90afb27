//! The disk under the volumes: one shared block device, and its partitions.
//!
//! A disk is either a "superfloppy" (a FAT boot sector at LBA 0, as
//! `mkfs.fat` writes to a whole image) or carries an MBR whose four primary
//! entries name the partitions. Everything read from sector 0 is untrusted:
//! an entry whose extent leaves the disk, or that overlaps sector 0, is
//! refused with an error that names it, never followed.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use hadris_io::{Error as IoError, ErrorType};
use hadris_storage::sync::BlockDevice;
use hadris_storage::{BlockIndex, BlockSize};

/// Bytes in a sector; the only size the ATA driver and MBRs speak.
pub const SECTOR: usize = 512;

/// One block device shared by every mounted volume of the disk. The server
/// is single-threaded, so a `RefCell` is enough; a re-entrant borrow would
/// be a bug in this crate, and is answered as an I/O error, not a panic.
pub struct Shared<D>(Rc<RefCell<D>>);

impl<D> Shared<D> {
    pub fn new(device: D) -> Self {
        Self(Rc::new(RefCell::new(device)))
    }

    /// Runs `f` on the device (for tests and the runtime's own calls).
    pub fn with<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

impl<D> Clone for Shared<D> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<D: ErrorType> ErrorType for Shared<D> {
    type Error = D::Error;
}

const BUSY: &str = "disk already in use by another request";

impl<D: BlockDevice> BlockDevice for Shared<D> {
    fn block_size(&self) -> BlockSize {
        self.0.borrow().block_size()
    }

    fn block_count(&self) -> u64 {
        self.0.borrow().block_count()
    }

    fn writable(&self) -> bool {
        self.0.borrow().writable()
    }

    fn read_blocks(&mut self, first: BlockIndex, buf: &mut [u8]) -> Result<(), IoError<D::Error>> {
        let mut device = self
            .0
            .try_borrow_mut()
            .map_err(|_| IoError::new(hadris_io::ErrorKind::Busy, BUSY))?;
        device.read_blocks(first, buf)
    }

    fn write_blocks(&mut self, first: BlockIndex, buf: &[u8]) -> Result<(), IoError<D::Error>> {
        let mut device = self
            .0
            .try_borrow_mut()
            .map_err(|_| IoError::new(hadris_io::ErrorKind::Busy, BUSY))?;
        device.write_blocks(first, buf)
    }

    fn flush(&mut self) -> Result<(), IoError<D::Error>> {
        let mut device = self
            .0
            .try_borrow_mut()
            .map_err(|_| IoError::new(hadris_io::ErrorKind::Busy, BUSY))?;
        device.flush()
    }
}

/// Where one volume lies on the disk, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// 0 for the whole disk, 1–4 for an MBR primary partition.
    pub number: u8,
    pub first_sector: u64,
    pub sectors: u64,
}

/// Why sector 0 cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// No 0x55AA signature at bytes 510–511 (MBR and boot sector alike).
    NoSignature,
    /// An MBR entry whose extent is empty, starts at LBA 0 or leaves the disk.
    BadEntry {
        number: u8,
        first: u64,
        sectors: u64,
    },
    /// An MBR with no FAT partition in it.
    NoFatPartition,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSignature => write!(f, "sector 0 has no 55AA signature: neither MBR nor FAT"),
            Self::BadEntry {
                number,
                first,
                sectors,
            } => write!(
                f,
                "MBR partition {number} (first sector {first}, {sectors} sectors) lies outside the disk"
            ),
            Self::NoFatPartition => write!(f, "the MBR names no FAT partition"),
        }
    }
}

/// MBR partition types that hold FAT (FAT12, FAT16 < 32 MiB, FAT16, FAT32
/// CHS, FAT32 LBA, FAT16 LBA).
const FAT_TYPES: [u8; 6] = [0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E];

/// Whether sector 0 is a FAT boot sector rather than an MBR: a jump
/// instruction at byte 0 and a power-of-two bytes-per-sector at byte 11
/// (Microsoft FAT specification, "Boot Sector and BPB").
fn is_boot_sector(sector: &[u8; SECTOR]) -> bool {
    let jump = sector[0] == 0xEB || sector[0] == 0xE9;
    let bytes_per_sector = u16::from_le_bytes([sector[11], sector[12]]);
    jump && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
}

/// The volumes of a disk of `disk_sectors` sectors whose sector 0 is
/// `sector`: the whole disk for a superfloppy, else each FAT partition of
/// the MBR.
pub fn volumes(sector: &[u8; SECTOR], disk_sectors: u64) -> Result<Vec<Extent>, LayoutError> {
    if sector[510] != 0x55 || sector[511] != 0xAA {
        return Err(LayoutError::NoSignature);
    }
    if is_boot_sector(sector) {
        return Ok(alloc::vec![Extent {
            number: 0,
            first_sector: 0,
            sectors: disk_sectors,
        }]);
    }
    let mut found = Vec::new();
    // The partition table: four 16-byte entries from byte 446; type at +4,
    // first LBA at +8, sector count at +12 (little-endian).
    for index in 0..4u8 {
        let entry = &sector[446 + 16 * usize::from(index)..][..16];
        let kind = entry[4];
        if !FAT_TYPES.contains(&kind) {
            continue;
        }
        let first = u64::from(u32::from_le_bytes([
            entry[8], entry[9], entry[10], entry[11],
        ]));
        let sectors = u64::from(u32::from_le_bytes([
            entry[12], entry[13], entry[14], entry[15],
        ]));
        let number = index + 1;
        if first == 0 || sectors == 0 || first.saturating_add(sectors) > disk_sectors {
            return Err(LayoutError::BadEntry {
                number,
                first,
                sectors,
            });
        }
        found.push(Extent {
            number,
            first_sector: first,
            sectors,
        });
    }
    if found.is_empty() {
        return Err(LayoutError::NoFatPartition);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(entries: &[(u8, u8, u32, u32)]) -> [u8; SECTOR] {
        let mut sector = [0u8; SECTOR];
        for &(index, kind, first, count) in entries {
            let entry = &mut sector[446 + 16 * usize::from(index)..][..16];
            entry[4] = kind;
            entry[8..12].copy_from_slice(&first.to_le_bytes());
            entry[12..16].copy_from_slice(&count.to_le_bytes());
        }
        sector[510] = 0x55;
        sector[511] = 0xAA;
        sector
    }

    #[test]
    fn superfloppy_is_the_whole_disk() {
        let mut sector = [0u8; SECTOR];
        sector[0] = 0xEB;
        sector[11..13].copy_from_slice(&512u16.to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xAA;
        let found = volumes(&sector, 2048).unwrap();
        assert_eq!(
            found,
            [Extent {
                number: 0,
                first_sector: 0,
                sectors: 2048
            }]
        );
    }

    #[test]
    fn mbr_lists_fat_partitions_only() {
        let sector = mbr(&[
            (0, 0x83, 2048, 100),
            (1, 0x0C, 4096, 1000),
            (3, 0x06, 8192, 10),
        ]);
        let found = volumes(&sector, 10_000).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].number, 2);
        assert_eq!(found[0].first_sector, 4096);
        assert_eq!(found[1].number, 4);
    }

    #[test]
    fn entry_past_the_disk_is_refused() {
        let sector = mbr(&[(0, 0x0C, 2048, u32::MAX)]);
        let error = volumes(&sector, 10_000).unwrap_err();
        assert!(matches!(error, LayoutError::BadEntry { number: 1, .. }));
        assert!(error.to_string().contains("outside the disk"));
    }

    #[test]
    fn no_signature_and_no_fat_are_errors() {
        assert_eq!(volumes(&[0u8; SECTOR], 100), Err(LayoutError::NoSignature));
        let sector = mbr(&[(0, 0x83, 2048, 100)]);
        assert_eq!(volumes(&sector, 10_000), Err(LayoutError::NoFatPartition));
    }
}
