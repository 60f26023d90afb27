//! A fixed-size, lock-free frame allocator over the free-memory window.
//!
//! The kernel maps the root task's free memory read/write at one contiguous
//! window (`RootBootInfo::memory_base`, `memory_size`); every page there is
//! a root mapping ktest may lend to the tasks it creates. The allocator
//! hands out naturally aligned runs of 1, 2, 4, ..., 64 pages from the
//! first [`MAX_FRAMES`] pages of the window, one bit per page.
//!
//! Lock-free on purpose: the pager thread (high priority) and the test
//! thread (low priority) both allocate, and a spin lock held by a preempted
//! low-priority thread would make the pager spin forever.
//!
//! Invariants:
//! - A set bit is a page that is handed out or does not exist; a run is
//!   claimed with one compare-and-swap on one bitmap word, so two threads
//!   never get the same page.
//! - `free` clears only bits of one earlier `allocate` of the same size.
//! - This module only hands out addresses; clearing and touching the
//!   memory is the caller's business.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes per frame.
pub const FRAME_SIZE: u64 = 4096;

/// Most pages of the window the allocator manages (16 MiB).
pub const MAX_FRAMES: usize = 4096;

const WORDS: usize = MAX_FRAMES / 64;

/// The bitmap allocator. `new` starts empty (every page taken) until
/// [`FrameAllocator::init`] lends it the window.
pub struct FrameAllocator {
    base: AtomicU64,
    bitmap: [AtomicU64; WORDS],
}

impl FrameAllocator {
    /// An allocator with no pages.
    pub const fn new() -> Self {
        FrameAllocator {
            base: AtomicU64::new(0),
            bitmap: [const { AtomicU64::new(u64::MAX) }; WORDS],
        }
    }

    /// Manages `frames` pages (at most [`MAX_FRAMES`]) from `base`. Returns
    /// how many it manages. Call once, before any `allocate`.
    pub fn init(&self, base: u64, frames: usize) -> usize {
        let frames = frames.min(MAX_FRAMES);
        self.base.store(base, Ordering::Relaxed);
        for (index, word) in self.bitmap.iter().enumerate() {
            let first = index * 64;
            let free_here = frames.saturating_sub(first).min(64);
            let taken = if free_here == 64 {
                0
            } else {
                u64::MAX << free_here
            };
            word.store(taken, Ordering::Release);
        }
        frames
    }

    /// Claims a naturally aligned run of `count` pages (a power of two up
    /// to 64); returns the address of the first.
    pub fn allocate(&self, count: usize) -> Option<u64> {
        let mask = run_mask(count)?;
        for (index, word) in self.bitmap.iter().enumerate() {
            let mut current = word.load(Ordering::Acquire);
            'word: loop {
                let mut shift = 0;
                while shift < 64 {
                    let run = mask << shift;
                    if current & run == 0 {
                        match word.compare_exchange(
                            current,
                            current | run,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => return Some(self.address(index * 64 + shift)),
                            Err(seen) => {
                                current = seen;
                                continue 'word;
                            }
                        }
                    }
                    shift += count;
                }
                break;
            }
        }
        None
    }

    /// Returns a run that `allocate(count)` handed out. Returns false (and
    /// changes nothing) for a misaligned or foreign address or a run with a
    /// page that is not handed out; the bitmap cannot tell a whole run from
    /// part of a longer one, so callers free with the size they allocated.
    pub fn free(&self, address: u64, count: usize) -> bool {
        let Some(mask) = run_mask(count) else {
            return false;
        };
        let base = self.base.load(Ordering::Relaxed);
        let Some(offset) = address.checked_sub(base) else {
            return false;
        };
        if offset % FRAME_SIZE != 0 {
            return false;
        }
        let Ok(frame) = usize::try_from(offset / FRAME_SIZE) else {
            return false;
        };
        if frame >= MAX_FRAMES || frame % count != 0 {
            return false;
        }
        let run = mask << (frame % 64);
        let word = &self.bitmap[frame / 64];
        let mut current = word.load(Ordering::Acquire);
        loop {
            if current & run != run {
                return false;
            }
            match word.compare_exchange(
                current,
                current & !run,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Pages free now.
    pub fn free_count(&self) -> usize {
        self.bitmap
            .iter()
            .map(|word| word.load(Ordering::Relaxed).count_zeros() as usize)
            .sum()
    }

    fn address(&self, frame: usize) -> u64 {
        self.base.load(Ordering::Relaxed) + frame as u64 * FRAME_SIZE
    }
}

/// The bitmap bits of a run of `count` pages at bit 0, if `count` is a
/// power of two from 1 to 64.
fn run_mask(count: usize) -> Option<u64> {
    if !count.is_power_of_two() || count > 64 {
        return None;
    }
    Some(if count == 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x5000_0000_0000;

    #[test]
    fn empty_until_init() {
        let frames = FrameAllocator::new();
        assert_eq!(frames.allocate(1), None);
        assert_eq!(frames.init(BASE, 3), 3);
        assert_eq!(frames.free_count(), 3);
    }

    #[test]
    fn hands_out_distinct_pages_and_takes_them_back() {
        let frames = FrameAllocator::new();
        frames.init(BASE, 3);
        let a = frames.allocate(1).unwrap();
        let b = frames.allocate(1).unwrap();
        let c = frames.allocate(1).unwrap();
        assert_eq!([a, b, c], [BASE, BASE + 0x1000, BASE + 0x2000]);
        assert_eq!(frames.allocate(1), None);
        assert!(frames.free(b, 1));
        assert!(!frames.free(b, 1), "a double free is refused");
        assert_eq!(frames.allocate(1), Some(b));
    }

    #[test]
    fn runs_are_aligned_within_one_word() {
        let frames = FrameAllocator::new();
        frames.init(BASE, 200);
        let one = frames.allocate(1).unwrap();
        let eight = frames.allocate(8).unwrap();
        assert_eq!(one, BASE);
        assert_eq!(eight, BASE + 8 * FRAME_SIZE);
        let sixty_four = frames.allocate(64).unwrap();
        assert_eq!(sixty_four, BASE + 64 * FRAME_SIZE);
        assert!(!frames.free(eight + FRAME_SIZE, 8), "misaligned run");
        assert!(frames.free(eight, 8));
        assert_eq!(frames.allocate(3), None, "not a power of two");
        assert_eq!(frames.allocate(128), None, "longer than a word");
    }

    #[test]
    fn refuses_foreign_addresses() {
        let frames = FrameAllocator::new();
        frames.init(BASE, 64);
        assert!(!frames.free(BASE - FRAME_SIZE, 1));
        assert!(!frames.free(BASE + 1, 1));
        assert!(!frames.free(BASE + MAX_FRAMES as u64 * FRAME_SIZE, 1));
    }

    #[test]
    fn caps_at_max_frames() {
        let frames = FrameAllocator::new();
        assert_eq!(frames.init(BASE, MAX_FRAMES * 2), MAX_FRAMES);
        assert_eq!(frames.free_count(), MAX_FRAMES);
    }
}
