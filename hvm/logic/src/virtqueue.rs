//! Split virtqueues, walked from the device side with every address checked.
//!
//! The rings and buffers live in the guest (virtio 1.2 2.7 "Split
//! Virtqueues"): the descriptor table (2.7.5), the driver's available ring
//! (2.7.6) and the device's used ring (2.7.8). All of it is hostile input:
//! a ring or buffer outside the cell's memory, an index past the queue size,
//! a chain that loops or is too long, or an available index that runs ahead
//! by more than the queue size is refused with a [`QueueError`], never
//! followed. Every access goes through [`Ram`], which checks it with
//! `GuestMemory::check`.

use crate::guest::Ram;

/// Largest queue hvm offers (virtio 1.2 2.7: a power of 2, at most 32768).
pub const MAX_QUEUE_SIZE: u16 = 256;
/// Most buffers in one chain hvm follows.
pub const MAX_SEGMENTS: usize = 8;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;

/// A buffer of a chain, already checked to be inside the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub address: u64,
    pub len: u32,
    /// Device-writable (VIRTQ_DESC_F_WRITE).
    pub writable: bool,
}

/// A descriptor chain taken from the available ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Head descriptor index, returned in the used ring.
    pub head: u16,
    pub segments: [Segment; MAX_SEGMENTS],
    pub count: usize,
}

impl Chain {
    /// The chain's buffers.
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }
}

/// What was wrong with a queue or a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// A ring lies outside the cell's memory.
    RingOutside,
    /// The available index moved ahead by more than the queue size.
    IndexRunaway { available: u16, seen: u16 },
    /// A head or next index is not below the queue size.
    BadIndex(u16),
    /// A buffer lies outside the cell's memory.
    BufferOutside { head: u16, address: u64, len: u32 },
    /// A chain longer than [`MAX_SEGMENTS`] or looping.
    ChainTooLong { head: u16 },
    /// Indirect descriptors were not negotiated.
    Indirect { head: u16 },
}

impl QueueError {
    /// The head of the chain the error is about, when it can be returned.
    pub fn head(&self) -> Option<u16> {
        match *self {
            Self::BufferOutside { head, .. }
            | Self::ChainTooLong { head }
            | Self::Indirect { head } => Some(head),
            _ => None,
        }
    }
}

impl core::fmt::Display for QueueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::RingOutside => f.write_str("a ring lies outside the cell's memory"),
            Self::IndexRunaway { available, seen } => {
                write!(f, "available index {available} ran ahead of {seen} by more than the queue size")
            }
            Self::BadIndex(i) => write!(f, "descriptor index {i} is past the queue size"),
            Self::BufferOutside { head, address, len } => write!(
                f,
                "descriptor chain {head}: buffer {address:#x}+{len:#x} lies outside the cell's memory"
            ),
            Self::ChainTooLong { head } => write!(f, "descriptor chain {head} is too long or loops"),
            Self::Indirect { head } => {
                write!(f, "descriptor chain {head} uses indirect descriptors (not negotiated)")
            }
        }
    }
}

/// One split virtqueue's device-side state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    /// Entries (a power of 2, at most [`MAX_QUEUE_SIZE`]).
    pub size: u16,
    /// `queue_enable`.
    pub ready: bool,
    /// `queue_msix_vector` (0xFFFF: none).
    pub msix_vector: u16,
    /// Descriptor table (`queue_desc`).
    pub desc: u64,
    /// Available ring (`queue_driver`).
    pub driver: u64,
    /// Used ring (`queue_device`).
    pub device: u64,
    next_available: u16,
    next_used: u16,
    /// The queue is broken and is not processed again until reset.
    pub broken: bool,
}

/// VIRTIO_MSI_NO_VECTOR.
pub const NO_VECTOR: u16 = 0xFFFF;

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

impl Queue {
    /// A queue after device reset.
    pub const fn new() -> Self {
        Self {
            size: MAX_QUEUE_SIZE,
            ready: false,
            msix_vector: NO_VECTOR,
            desc: 0,
            driver: 0,
            device: 0,
            next_available: 0,
            next_used: 0,
            broken: false,
        }
    }

    fn check_rings(&self, ram: &Ram<'_>) -> Result<(), QueueError> {
        let size = u64::from(self.size);
        let ok = ram.slice(self.desc, 16 * size).is_ok()
            && ram.slice(self.driver, 6 + 2 * size).is_ok()
            && ram.slice(self.device, 6 + 8 * size).is_ok();
        if ok {
            Ok(())
        } else {
            Err(QueueError::RingOutside)
        }
    }

    /// Whether the driver has made buffers available that are not taken.
    pub fn has_available(&self, ram: &Ram<'_>) -> bool {
        self.ready
            && !self.broken
            && ram
                .read_u16(self.driver + 2)
                .is_ok_and(|index| index != self.next_available)
    }

    /// Whether the driver asked for no used-buffer notifications: virtio
    /// 1.2 2.7.7.2, without VIRTIO_F_EVENT_IDX the device should not
    /// notify while the available ring's flags hold
    /// VIRTQ_AVAIL_F_NO_INTERRUPT (1). An unreadable ring asks for none.
    pub fn quiet(&self, ram: &Ram<'_>) -> bool {
        ram.read_u16(self.driver).is_ok_and(|flags| flags & 1 != 0)
    }

    /// Takes the next chain from the available ring (virtio 1.2 2.7.13.1
    /// seen from the device), or `None` when there is none.
    pub fn pop(&mut self, ram: &Ram<'_>) -> Result<Option<Chain>, QueueError> {
        if !self.ready || self.broken {
            return Ok(None);
        }
        self.check_rings(ram)?;
        let available = ram
            .read_u16(self.driver + 2)
            .map_err(|_| QueueError::RingOutside)?;
        if available == self.next_available {
            return Ok(None);
        }
        if available.wrapping_sub(self.next_available) > self.size {
            return Err(QueueError::IndexRunaway {
                available,
                seen: self.next_available,
            });
        }
        let slot = u64::from(self.next_available % self.size);
        let head = ram
            .read_u16(self.driver + 4 + 2 * slot)
            .map_err(|_| QueueError::RingOutside)?;
        self.next_available = self.next_available.wrapping_add(1);
        if head >= self.size {
            return Err(QueueError::BadIndex(head));
        }
        let mut chain = Chain {
            head,
            segments: [Segment::default(); MAX_SEGMENTS],
            count: 0,
        };
        let mut index = head;
        loop {
            if chain.count == MAX_SEGMENTS {
                return Err(QueueError::ChainTooLong { head });
            }
            // Descriptor layout (2.7.5): addr u64, len u32, flags u16, next u16.
            let at = self.desc + 16 * u64::from(index);
            let address = ram.read_u64(at).map_err(|_| QueueError::RingOutside)?;
            let len = ram.read_u32(at + 8).map_err(|_| QueueError::RingOutside)?;
            let flags = ram.read_u16(at + 12).map_err(|_| QueueError::RingOutside)?;
            let next = ram.read_u16(at + 14).map_err(|_| QueueError::RingOutside)?;
            if flags & DESC_F_INDIRECT != 0 {
                return Err(QueueError::Indirect { head });
            }
            if ram.slice(address, u64::from(len)).is_err() {
                return Err(QueueError::BufferOutside { head, address, len });
            }
            chain.segments[chain.count] = Segment {
                address,
                len,
                writable: flags & DESC_F_WRITE != 0,
            };
            chain.count += 1;
            if flags & DESC_F_NEXT == 0 {
                return Ok(Some(chain));
            }
            if next >= self.size {
                return Err(QueueError::BadIndex(next));
            }
            index = next;
        }
    }

    /// Says in the used ring's flags whether the driver should notify
    /// when it adds buffers (virtio 1.2 2.7.10: VIRTQ_USED_F_NO_NOTIFY,
    /// 1, while not `wanted`). A ring outside memory is left alone.
    pub fn ask_notify(&self, ram: &mut Ram<'_>, wanted: bool) {
        if self.ready && !self.broken && self.check_rings(ram).is_ok() {
            let _ = ram.write(self.device, &u16::from(!wanted).to_le_bytes());
        }
    }

    /// Returns a chain to the driver with `written` bytes (2.7.8).
    pub fn push_used(
        &mut self,
        ram: &mut Ram<'_>,
        head: u16,
        written: u32,
    ) -> Result<(), QueueError> {
        self.check_rings(ram)?;
        let slot = u64::from(self.next_used % self.size);
        let at = self.device + 4 + 8 * slot;
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        element[4..].copy_from_slice(&written.to_le_bytes());
        ram.write(at, &element)
            .map_err(|_| QueueError::RingOutside)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The index is written after the element (2.7.8.2 ordering); the
        // vCPU is stopped, so program order is the order it sees.
        ram.write(self.device + 2, &self.next_used.to_le_bytes())
            .map_err(|_| QueueError::RingOutside)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::guest::GuestMemory;

    /// A guest memory of 64 KiB with a queue of 8 at 0x1000/0x2000/0x3000.
    pub(crate) struct Guest {
        pub bytes: std::vec::Vec<u8>,
    }

    impl Guest {
        pub fn new() -> Self {
            Self {
                bytes: std::vec![0; 0x10000],
            }
        }
        pub fn ram(&mut self) -> Ram<'_> {
            let memory = GuestMemory {
                host_base: 0x100_0000,
                size: self.bytes.len() as u64,
            };
            Ram::new(memory, &mut self.bytes)
        }
        pub fn descriptor(
            &mut self,
            queue: &Queue,
            index: u16,
            address: u64,
            len: u32,
            flags: u16,
            next: u16,
        ) {
            let at = (queue.desc + 16 * u64::from(index)) as usize;
            self.bytes[at..at + 8].copy_from_slice(&address.to_le_bytes());
            self.bytes[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
            self.bytes[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
            self.bytes[at + 14..at + 16].copy_from_slice(&next.to_le_bytes());
        }
        /// Puts `head` in the available ring and bumps its index.
        pub fn offer(&mut self, queue: &Queue, head: u16) {
            let at = queue.driver as usize;
            let index = u16::from_le_bytes([self.bytes[at + 2], self.bytes[at + 3]]);
            let slot = at + 4 + 2 * usize::from(index % queue.size);
            self.bytes[slot..slot + 2].copy_from_slice(&head.to_le_bytes());
            self.bytes[at + 2..at + 4].copy_from_slice(&index.wrapping_add(1).to_le_bytes());
        }
        pub fn used_index(&self, queue: &Queue) -> u16 {
            let at = queue.device as usize + 2;
            u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
        }
        pub fn used(&self, queue: &Queue, slot: u16) -> (u32, u32) {
            let at = queue.device as usize + 4 + 8 * usize::from(slot);
            let word = |a: usize| u32::from_le_bytes(self.bytes[a..a + 4].try_into().unwrap());
            (word(at), word(at + 4))
        }
    }

    pub(crate) fn queue(desc: u64, driver: u64, device: u64) -> Queue {
        Queue {
            size: 8,
            ready: true,
            desc,
            driver,
            device,
            ..Queue::new()
        }
    }

    #[test]
    fn pops_a_chain_and_returns_it() {
        let mut guest = Guest::new();
        let mut q = queue(0x1000, 0x2000, 0x3000);
        guest.descriptor(&q, 0, 0x8000, 16, DESC_F_NEXT, 1);
        guest.descriptor(&q, 1, 0x9000, 32, DESC_F_WRITE, 0);
        guest.offer(&q, 0);
        let chain = q.pop(&guest.ram()).unwrap().unwrap();
        assert_eq!(chain.head, 0);
        assert_eq!(chain.segments().len(), 2);
        assert!(chain.segments()[1].writable);
        assert_eq!(q.pop(&guest.ram()).unwrap(), None);
        q.push_used(&mut guest.ram(), 0, 5).unwrap();
        assert_eq!(guest.used_index(&q), 1);
        assert_eq!(guest.used(&q, 0), (0, 5));
    }

    #[test]
    fn hostile_chains_are_refused() {
        let mut guest = Guest::new();
        let mut q = queue(0x1000, 0x2000, 0x3000);
        // A buffer past the end of memory.
        guest.descriptor(&q, 0, 0xFFF0, 0x100, 0, 0);
        guest.offer(&q, 0);
        assert_eq!(
            q.pop(&guest.ram()),
            Err(QueueError::BufferOutside {
                head: 0,
                address: 0xFFF0,
                len: 0x100
            })
        );
        // An address that wraps.
        guest.descriptor(&q, 1, u64::MAX - 4, 16, 0, 0);
        guest.offer(&q, 1);
        assert!(matches!(
            q.pop(&guest.ram()),
            Err(QueueError::BufferOutside { .. })
        ));
        // A loop.
        guest.descriptor(&q, 2, 0x8000, 1, DESC_F_NEXT, 2);
        guest.offer(&q, 2);
        assert_eq!(
            q.pop(&guest.ram()),
            Err(QueueError::ChainTooLong { head: 2 })
        );
        // A head past the queue size.
        guest.offer(&q, 99);
        assert_eq!(q.pop(&guest.ram()), Err(QueueError::BadIndex(99)));
        // Indirect descriptors.
        guest.descriptor(&q, 3, 0x8000, 16, DESC_F_INDIRECT, 0);
        guest.offer(&q, 3);
        assert_eq!(q.pop(&guest.ram()), Err(QueueError::Indirect { head: 3 }));
        // An index that runs away.
        let at = q.driver as usize + 2;
        guest.bytes[at..at + 2].copy_from_slice(&500u16.to_le_bytes());
        assert!(matches!(
            q.pop(&guest.ram()),
            Err(QueueError::IndexRunaway { .. })
        ));
        // Rings outside memory.
        let mut outside = queue(0xFFF8, 0x2000, 0x3000);
        assert_eq!(outside.pop(&guest.ram()), Err(QueueError::RingOutside));
    }

    proptest::proptest! {
        #[test]
        fn random_rings_never_escape(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0x400)) {
            let mut guest = Guest::new();
            guest.bytes[0x1000..0x1400].copy_from_slice(&bytes);
            guest.bytes[0x2000..0x2020].copy_from_slice(&bytes[..0x20]);
            let mut q = queue(0x1000, 0x2000, 0x3000);
            for _ in 0..16 {
                match q.pop(&guest.ram()) {
                    Ok(Some(chain)) => {
                        for s in chain.segments() {
                            proptest::prop_assert!(s.address + u64::from(s.len) <= 0x10000);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
        }
    }
}
