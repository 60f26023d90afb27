//! Guest-physical addresses, checked once at the boundary.
//!
//! Every address a guest hands hvm (a hypercall buffer, later a virtqueue
//! descriptor) is untrusted. [`GuestMemory::check`] turns it into a
//! [`GuestRange`] that is known to lie inside the cell's memory, without
//! overflow, so the hardware shell can only ever touch the cell's own frames.

/// A cell's guest-physical memory: `[0, size)` backed by host memory at
/// `host_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMemory {
    pub host_base: u64,
    pub size: u64,
}

/// A range proven to be inside a cell's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRange {
    guest: u64,
    host: u64,
    len: u64,
}

impl GuestRange {
    /// Guest-physical start.
    pub fn guest(&self) -> u64 {
        self.guest
    }
    /// Host-physical start.
    pub fn host(&self) -> u64 {
        self.host
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A guest address outside its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    pub guest: u64,
    pub len: u64,
}

impl GuestMemory {
    /// Checks `[guest, guest + len)`; also refuses ranges that wrap.
    pub fn check(&self, guest: u64, len: u64) -> Result<GuestRange, OutOfBounds> {
        match guest.checked_add(len) {
            Some(end) if end <= self.size => Ok(GuestRange {
                guest,
                host: self.host_base + guest,
                len,
            }),
            _ => Err(OutOfBounds { guest, len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn inside_edges_and_outside() {
        let memory = GuestMemory {
            host_base: 0x100_0000,
            size: 0x1000,
        };
        assert_eq!(memory.check(0, 0x1000).unwrap().host(), 0x100_0000);
        assert_eq!(memory.check(0xFFF, 1).unwrap().host(), 0x100_0FFF);
        assert!(memory.check(0x1000, 1).is_err());
        assert!(memory.check(0xFFF, 2).is_err());
        assert!(memory.check(u64::MAX, 2).is_err());
    }

    proptest! {
        #[test]
        fn checked_ranges_stay_inside(guest: u64, len: u64) {
            let memory = GuestMemory { host_base: 0x4000_0000, size: 0x200_0000 };
            if let Ok(range) = memory.check(guest, len) {
                prop_assert!(range.host() >= memory.host_base);
                prop_assert!(range.host() + range.len() <= memory.host_base + memory.size);
            }
        }
    }
}

/// A cell's memory as bytes, with every access checked by
/// [`GuestMemory::check`]: the only way device models touch guest memory.
#[derive(Debug)]
pub struct Ram<'a> {
    memory: GuestMemory,
    bytes: &'a mut [u8],
}

impl<'a> Ram<'a> {
    /// Wraps the bytes of `memory` (`bytes.len()` must equal its size).
    pub fn new(memory: GuestMemory, bytes: &'a mut [u8]) -> Self {
        debug_assert_eq!(bytes.len() as u64, memory.size);
        Self { memory, bytes }
    }

    fn range(&self, guest: u64, len: usize) -> Result<core::ops::Range<usize>, OutOfBounds> {
        let range = self.memory.check(guest, len as u64)?;
        let start = (range.host() - self.memory.host_base) as usize;
        Ok(start..start + len)
    }

    /// Copies guest bytes out.
    pub fn read(&self, guest: u64, buffer: &mut [u8]) -> Result<(), OutOfBounds> {
        let range = self.range(guest, buffer.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    /// Copies bytes into the guest.
    pub fn write(&mut self, guest: u64, data: &[u8]) -> Result<(), OutOfBounds> {
        let range = self.range(guest, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }

    /// A little-endian u16.
    pub fn read_u16(&self, guest: u64) -> Result<u16, OutOfBounds> {
        let mut b = [0; 2];
        self.read(guest, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// A little-endian u32.
    pub fn read_u32(&self, guest: u64) -> Result<u32, OutOfBounds> {
        let mut b = [0; 4];
        self.read(guest, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A little-endian u64.
    pub fn read_u64(&self, guest: u64) -> Result<u64, OutOfBounds> {
        let mut b = [0; 8];
        self.read(guest, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A guest range as a slice, checked.
    pub fn slice(&self, guest: u64, len: u64) -> Result<&[u8], OutOfBounds> {
        let range = self.range(
            guest,
            usize::try_from(len).map_err(|_| OutOfBounds { guest, len })?,
        )?;
        Ok(&self.bytes[range])
    }

    /// A guest range as a mutable slice, checked.
    pub fn slice_mut(&mut self, guest: u64, len: u64) -> Result<&mut [u8], OutOfBounds> {
        let range = self.range(
            guest,
            usize::try_from(len).map_err(|_| OutOfBounds { guest, len })?,
        )?;
        Ok(&mut self.bytes[range])
    }
}
