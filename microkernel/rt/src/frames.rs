//! A bitmap allocator of single pages over one page-aligned window.
//!
//! The owner (one thread, so methods take `&mut self`) lends it a window,
//! such as the root task's free memory (`RootBootInfo::memory_base`,
//! `memory_size`), and takes pages out and puts them back one at a time.
//!
//! Invariants:
//! - a set bit is a page handed out, or one past the end of the window;
//! - `free` accepts only a page-aligned address inside the window that is
//!   handed out, so a double or foreign free changes nothing.
//! - The allocator hands out addresses only; zeroing is the caller's.

/// Bytes per page.
pub const FRAME_SIZE: u64 = 4096;

/// Most pages one allocator manages (128 MiB).
pub const MAX_FRAMES: usize = 32768;

const WORDS: usize = MAX_FRAMES / 64;

/// The allocator: a base address and one bit per page.
pub struct FrameBitmap {
    base: u64,
    bitmap: [u64; WORDS],
    /// First word that may have a clear bit.
    hint: usize,
}

impl FrameBitmap {
    /// An allocator with no pages.
    pub const fn new() -> Self {
        FrameBitmap {
            base: 0,
            bitmap: [u64::MAX; WORDS],
            hint: 0,
        }
    }

    /// Manages `frames` pages (at most [`MAX_FRAMES`]) from `base`;
    /// returns how many it manages.
    pub fn init(&mut self, base: u64, frames: usize) -> usize {
        let frames = frames.min(MAX_FRAMES);
        self.base = base;
        self.hint = 0;
        for (index, word) in self.bitmap.iter_mut().enumerate() {
            let here = frames.saturating_sub(index * 64).min(64);
            *word = if here == 64 { 0 } else { u64::MAX << here };
        }
        frames
    }

    /// Takes one page; returns its address.
    pub fn allocate(&mut self) -> Option<u64> {
        for index in self.hint..WORDS {
            let word = &mut self.bitmap[index];
            if *word != u64::MAX {
                let bit = word.trailing_ones() as usize;
                *word |= 1 << bit;
                self.hint = index;
                return Some(self.base + ((index * 64 + bit) as u64) * FRAME_SIZE);
            }
        }
        None
    }

    /// Takes 16 free pages in a row (64 KiB, aligned to 64 KiB from the
    /// window's base); returns the first one's address.
    pub fn allocate_block(&mut self) -> Option<u64> {
        for index in self.hint..WORDS {
            let word = &mut self.bitmap[index];
            if let Some(group) = (0..4).find(|g| (*word >> (16 * g)) & 0xFFFF == 0) {
                *word |= 0xFFFF << (16 * group);
                return Some(self.base + ((index * 64 + group * 16) as u64) * FRAME_SIZE);
            }
        }
        None
    }

    /// Takes the page at `address` if it is inside the window and free;
    /// false, and no change, otherwise.
    pub fn allocate_at(&mut self, address: u64) -> bool {
        let Some(offset) = address.checked_sub(self.base) else {
            return false;
        };
        let frame = offset / FRAME_SIZE;
        if offset % FRAME_SIZE != 0 || frame >= MAX_FRAMES as u64 {
            return false;
        }
        let (index, bit) = (frame as usize / 64, frame % 64);
        if self.bitmap[index] & (1 << bit) != 0 {
            return false;
        }
        self.bitmap[index] |= 1 << bit;
        true
    }

    /// Puts back a page that `allocate` handed out; false (and no change)
    /// for any other address.
    pub fn free(&mut self, address: u64) -> bool {
        let Some(offset) = address.checked_sub(self.base) else {
            return false;
        };
        if offset % FRAME_SIZE != 0 {
            return false;
        }
        let Ok(frame) = usize::try_from(offset / FRAME_SIZE) else {
            return false;
        };
        if frame >= MAX_FRAMES {
            return false;
        }
        let (index, bit) = (frame / 64, frame % 64);
        if self.bitmap[index] & (1 << bit) == 0 {
            return false;
        }
        self.bitmap[index] &= !(1 << bit);
        self.hint = self.hint.min(index);
        true
    }

    /// Pages free now.
    pub fn free_count(&self) -> usize {
        self.bitmap.iter().map(|w| w.count_zeros() as usize).sum()
    }
}

impl Default for FrameBitmap {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x5000_0000_0000;

    #[test]
    fn hands_out_distinct_pages_and_takes_them_back() {
        let mut frames = Box::new(FrameBitmap::new());
        assert_eq!(frames.allocate(), None);
        assert_eq!(frames.init(BASE, 3), 3);
        let pages = [
            frames.allocate().unwrap(),
            frames.allocate().unwrap(),
            frames.allocate().unwrap(),
        ];
        assert_eq!(pages, [BASE, BASE + 0x1000, BASE + 0x2000]);
        assert_eq!(frames.allocate(), None);
        assert!(frames.free(pages[1]));
        assert!(!frames.free(pages[1]), "double free");
        assert!(!frames.free(BASE + 1), "misaligned");
        assert!(!frames.free(BASE - 0x1000), "foreign");
        assert_eq!(frames.allocate(), Some(pages[1]));
        assert_eq!(frames.free_count(), 0);
    }

    #[test]
    fn takes_a_chosen_page_only_if_free() {
        let mut frames = Box::new(FrameBitmap::new());
        assert_eq!(frames.init(BASE, 4), 4);
        assert!(frames.allocate_at(BASE + 0x2000));
        assert!(!frames.allocate_at(BASE + 0x2000), "taken");
        assert!(!frames.allocate_at(BASE + 0x4000), "past the window");
        assert!(!frames.allocate_at(BASE - 0x1000), "before it");
        assert!(!frames.allocate_at(BASE + 0x10), "misaligned");
        let rest = [frames.allocate(), frames.allocate(), frames.allocate()];
        assert_eq!(rest, [Some(BASE), Some(BASE + 0x1000), Some(BASE + 0x3000)]);
        assert_eq!(frames.allocate(), None);
    }

    #[test]
    fn takes_blocks_of_sixteen_free_pages() {
        let mut frames = Box::new(FrameBitmap::new());
        assert_eq!(frames.init(BASE, 40), 40);
        assert_eq!(frames.allocate(), Some(BASE));
        // The first group has a page taken: the next whole group.
        assert_eq!(frames.allocate_block(), Some(BASE + 16 * 0x1000));
        // Only 8 pages are left past it (40 - 32): no block.
        assert_eq!(frames.allocate_block(), None);
        assert_eq!(frames.free_count(), 40 - 1 - 16);
    }

    #[test]
    fn caps_at_max_frames() {
        let mut frames = Box::new(FrameBitmap::new());
        assert_eq!(frames.init(BASE, MAX_FRAMES + 5), MAX_FRAMES);
        assert_eq!(frames.free_count(), MAX_FRAMES);
    }
}
