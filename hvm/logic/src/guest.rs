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
