//! Physical memory: the frame allocator and hvm's heap.
//!
//! Free memory comes from the multiboot2 memory map minus everything already
//! in use (the first MiB, hvm's image, the boot information, the boot
//! modules). All of it is identity mapped by the boot stub (low 4 GiB), so a
//! physical address is also a pointer.

use linked_list_allocator::LockedHeap;

/// Most free regions tracked.
const MAX_REGIONS: usize = 64;

/// A half-open physical range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

/// Free physical memory, handed out in aligned, zeroed blocks.
pub struct FrameAllocator {
    regions: [Region; MAX_REGIONS],
    count: usize,
}

/// Highest address the boot stub maps.
pub const MAPPED_LIMIT: u64 = 4 << 30;

impl FrameAllocator {
    /// An allocator with no memory.
    pub const fn empty() -> Self {
        Self {
            regions: [Region { start: 0, end: 0 }; MAX_REGIONS],
            count: 0,
        }
    }

    /// Adds free memory, clipped to the mapped range.
    pub fn add(&mut self, start: u64, end: u64) {
        let end = end.min(MAPPED_LIMIT);
        if start < end && self.count < MAX_REGIONS {
            self.regions[self.count] = Region { start, end };
            self.count += 1;
        }
    }

    /// Removes `[start, end)` from the free memory (it is in use).
    pub fn reserve(&mut self, start: u64, end: u64) {
        let mut index = 0;
        while index < self.count {
            let region = self.regions[index];
            if end <= region.start || start >= region.end {
                index += 1;
                continue;
            }
            // Cut the region into what lies below and above the reservation.
            let below = Region {
                start: region.start,
                end: start.max(region.start),
            };
            let above = Region {
                start: end.min(region.end),
                end: region.end,
            };
            self.regions[index] = below;
            if above.start < above.end && self.count < MAX_REGIONS {
                self.regions[self.count] = above;
                self.count += 1;
            }
            index += 1;
        }
    }

    /// Takes `size` bytes aligned to `align` (a power of two), zeroed.
    pub fn allocate(&mut self, size: u64, align: u64) -> Option<u64> {
        for region in self.regions[..self.count].iter_mut() {
            let start = (region.start + align - 1) & !(align - 1);
            if start.checked_add(size).is_some_and(|end| end <= region.end) {
                // Keep the part skipped for alignment out of use: it is small.
                region.start = start + size;
                // SAFETY: [start, start+size) was free, is identity mapped
                // below MAPPED_LIMIT, and from now on belongs to the caller.
                unsafe { core::ptr::write_bytes(start as *mut u8, 0, size as usize) };
                return Some(start);
            }
        }
        None
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        self.regions[..self.count]
            .iter()
            .map(|r| r.end - r.start)
            .sum()
    }
}

/// hvm's heap (manifest decoding, cell bookkeeping).
#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Size of the heap carved from free memory at boot.
pub const HEAP_SIZE: u64 = 1 << 20;

/// Hands `[start, start + size)` to the heap.
///
/// # Safety
/// The range must be free, identity mapped, and never used for anything else.
pub unsafe fn init_heap(start: u64, size: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { HEAP.lock().init(start as *mut u8, size as usize) }
}
