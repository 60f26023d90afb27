//! The driver as a `hadris-storage` block device, for the FAT server.
//!
//! Requests larger than one command (256 sectors) are split; a disk not
//! identified yet has no blocks, so every request fails with the reason.

use hadris_io::{Error, ErrorKind, ErrorType};
use hadris_storage::sync::BlockDevice;
use hadris_storage::{BlockIndex, BlockSize};

use crate::{Ata, AtaError, PortIo, SECTOR};

impl<P: PortIo> ErrorType for Ata<P> {
    type Error = AtaError;
}

fn device_error(error: AtaError) -> Error<AtaError> {
    let kind = match error {
        AtaError::OutOfRange { .. } => ErrorKind::InvalidInput,
        _ => ErrorKind::Io,
    };
    Error::device(error, "ATA command failed").with_kind(kind)
}

/// Sectors one command moves at most.
const PER_COMMAND: usize = 256;

impl<P: PortIo> BlockDevice for Ata<P> {
    fn block_size(&self) -> BlockSize {
        BlockSize::new(SECTOR as u32).expect("512 is a valid block size")
    }

    fn block_count(&self) -> u64 {
        self.identity().map_or(0, |identity| identity.sectors)
    }

    fn writable(&self) -> bool {
        true
    }

    fn read_blocks(&mut self, first: BlockIndex, buf: &mut [u8]) -> Result<(), Error<AtaError>> {
        let mut lba = first.get();
        for chunk in buf.chunks_mut(PER_COMMAND * SECTOR) {
            self.read(lba, chunk).map_err(device_error)?;
            lba += (chunk.len() / SECTOR) as u64;
        }
        Ok(())
    }

    fn write_blocks(&mut self, first: BlockIndex, buf: &[u8]) -> Result<(), Error<AtaError>> {
        let mut lba = first.get();
        for chunk in buf.chunks(PER_COMMAND * SECTOR) {
            self.write(lba, chunk).map_err(device_error)?;
            lba += (chunk.len() / SECTOR) as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error<AtaError>> {
        Ata::flush(self).map_err(device_error)
    }
}
