//! Physical memory of the cell: the kernel heap and the kernel's frame pool.
//!
//! hvm maps the whole cell at `direct_map_base + phys`, so the kernel reaches
//! any frame through [`phys_to_virt`]. The pool hands out zeroed 4 KiB frames
//! for page tables and UTCBs and takes them back when a task is destroyed.

use alloc::vec::Vec;
use linked_list_allocator::LockedHeap;

/// Base of hvm's direct map (hvm_abi).
pub const DIRECT_MAP: u64 = hvm_abi::DIRECT_MAP_BASE;
/// Bytes of one page.
pub const PAGE: u64 = 4096;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Virtual address of physical `phys`.
pub fn phys_to_virt(phys: u64) -> u64 {
    DIRECT_MAP + phys
}

/// Hands `[start, start + size)` (physical) to the heap.
///
/// # Safety
/// Once; the range must be free cell memory used for nothing else.
pub unsafe fn init_heap(start: u64, size: u64) {
    // SAFETY: forwarded to the caller; the direct map covers the range.
    unsafe {
        HEAP.lock()
            .init(phys_to_virt(start) as *mut u8, size as usize)
    }
}

/// Frames for kernel objects.
pub struct FramePool {
    next: u64,
    end: u64,
    free: Vec<u64>,
}

impl FramePool {
    /// A pool over physical `[start, end)` (page aligned).
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            next: start,
            end,
            free: Vec::new(),
        }
    }

    /// A zeroed frame, or `None` when the pool is empty.
    pub fn allocate(&mut self) -> Option<u64> {
        let frame = match self.free.pop() {
            Some(frame) => frame,
            None if self.next < self.end => {
                self.next += PAGE;
                self.next - PAGE
            }
            None => return None,
        };
        // SAFETY: the frame belongs to the pool (cell memory, direct
        // mapped) and from now on to the caller alone.
        unsafe { core::ptr::write_bytes(phys_to_virt(frame) as *mut u8, 0, PAGE as usize) };
        Some(frame)
    }

    /// Returns a frame.
    pub fn release(&mut self, frame: u64) {
        self.free.push(frame);
    }

    /// Frames left.
    pub fn available(&self) -> u64 {
        (self.end - self.next) / PAGE + self.free.len() as u64
    }
}
