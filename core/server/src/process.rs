//! A process's memory: loading an ELF program and serving its page faults.
//!
//! Every page a process can touch is in its [`Memory`]: ELF segments
//! (loaded eagerly at spawn), the argument page, and heap and stack pages
//! added on first touch. Code segments live in core's executable arena and
//! are shared by every process of the same program (cached by file
//! identity); writable and read-only data get fresh frames per process.
//!
//! Invariants:
//! - an `owned` page's frame is this process's alone and goes back to the
//!   window's allocator when the process's task is destroyed;
//! - arena frames are never freed (the text cache keeps them).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core_abi::layout::{ARGS_ADDRESS, HEAP_BASE, HEAP_SIZE, IMAGE_BASE, STACK_SIZE, STACK_TOP};
use core_abi::{encode_strings, StartBlock, START_MAGIC};
use kasane_elf::Executable;
use microkernel_abi::{Fpage, MapItem, Rights};
use microkernel_rt::frames::{FrameBitmap, FRAME_SIZE};

/// One page of a process.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub frame: u64,
    pub rights: Rights,
    pub owned: bool,
}

/// The pages of one process.
#[derive(Default)]
pub struct Memory {
    pub pages: BTreeMap<u64, Page>,
    /// Heap blocks with frames taken ahead.
    blocks: Vec<Block>,
}

/// 64 KiB of heap backed by 16 consecutive frames taken in one go, so that
/// a heap buffer lies in consecutive frames, which the zero-copy read needs
/// (`core_system::buffer_alias`), whatever order its pages fault in: heap
/// page `base + n` pages gets `frame + n` pages; `used` says which have.
struct Block {
    base: u64,
    frame: u64,
    used: u16,
}

/// Bytes of heap a [`Block`] covers.
const BLOCK_BYTES: u64 = 16 * FRAME_SIZE;

/// Text pages already loaded, by (servant letter, qid path) of the file.
pub type TextCache = BTreeMap<(char, u64), BTreeMap<u64, Page>>;

fn zeroed(frames: &mut FrameBitmap) -> Result<u64, String> {
    let frame = frames.allocate().ok_or("out of memory")?;
    // SAFETY: the allocator gave this page (in core's read/write window or
    // arena) to the caller alone; no Rust object lives there.
    unsafe { core::ptr::write_bytes(frame as *mut u8, 0, FRAME_SIZE as usize) };
    Ok(frame)
}

fn copy_into(frame: u64, offset: u64, bytes: &[u8]) {
    // SAFETY: `frame` is a page core owns (checked by the callers to be
    // fresh), and offset + len stays inside it.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), (frame + offset) as *mut u8, bytes.len())
    };
}

impl Memory {
    /// Loads `elf` (identified by `identity` for the text cache); returns
    /// the entry point.
    pub fn load(
        &mut self,
        elf: &[u8],
        identity: (char, u64),
        frames: &mut FrameBitmap,
        arena: &mut FrameBitmap,
        cache: &mut TextCache,
    ) -> Result<u64, String> {
        // Programs may come from any server: kasane-elf checks every header
        // against the file before anything is used.
        let file = Executable::parse(elf).map_err(|e| format!("not a program: {e}"))?;
        let entry = file.entry();
        let cached = cache.get(&identity).cloned();
        let mut text = BTreeMap::new();
        for segment in file.segments() {
            let (vaddr, end) = (segment.virtual_address, segment.end());
            if vaddr < IMAGE_BASE || end > HEAP_BASE {
                return Err("segment outside the program area".into());
            }
            let data = segment.data(elf);
            let mut rights = Rights::READ;
            if segment.writable {
                rights |= Rights::WRITE;
            }
            let execute = segment.executable && !segment.writable;
            if execute {
                rights |= Rights::EXECUTE;
            }
            let first = vaddr & !(FRAME_SIZE - 1);
            for page in (first..end).step_by(FRAME_SIZE as usize) {
                if execute {
                    if let Some(cached) = cached.as_ref().and_then(|c| c.get(&page)) {
                        self.pages.insert(page, *cached);
                        continue;
                    }
                }
                let frame = match self.pages.get_mut(&page) {
                    Some(existing) => {
                        existing.rights |= rights;
                        existing.frame
                    }
                    None => {
                        let frame = if execute {
                            zeroed(arena)?
                        } else {
                            zeroed(frames)?
                        };
                        let entry = Page {
                            frame,
                            rights,
                            owned: !execute,
                        };
                        self.pages.insert(page, entry);
                        if execute {
                            text.insert(page, entry);
                        }
                        frame
                    }
                };
                let copy_start = page.max(vaddr);
                let copy_end = (page + FRAME_SIZE).min(vaddr + data.len() as u64);
                if copy_start < copy_end {
                    let from = (copy_start - vaddr) as usize;
                    let to = (copy_end - vaddr) as usize;
                    copy_into(frame, copy_start - page, &data[from..to]);
                }
            }
        }
        if cached.is_none() && !text.is_empty() {
            cache.insert(identity, text);
        }
        Ok(entry)
    }

    /// Maps `bytes` (a boot module, mapped read-only in core for good)
    /// read only at `base` and up, page by page, sharing core's own pages;
    /// the offset of its first byte in the first page. The first and last
    /// pages show whatever shares them in core's module area (other boot
    /// modules, nothing secret).
    pub fn map_module(
        &mut self,
        base: u64,
        bytes: &'static [u8],
        limit: u64,
    ) -> Result<u64, String> {
        let start = bytes.as_ptr() as u64;
        let first = start & !(FRAME_SIZE - 1);
        let end = start + bytes.len() as u64;
        if end - first > limit {
            return Err("image too large".into());
        }
        for page in (first..end).step_by(FRAME_SIZE as usize) {
            let entry = Page {
                frame: page,
                rights: Rights::READ,
                owned: false,
            };
            self.pages.insert(base + (page - first), entry);
        }
        Ok(start - first)
    }

    /// Writes the argument page.
    pub fn set_arguments(
        &mut self,
        frames: &mut FrameBitmap,
        core_thread: u64,
        pid: u64,
        argv: &[String],
    ) -> Result<(), String> {
        let encoded = encode_strings(argv);
        if encoded.len() > FRAME_SIZE as usize - StartBlock::ARGV_OFFSET {
            return Err("argument list too long".into());
        }
        let frame = zeroed(frames)?;
        let block = StartBlock {
            magic: START_MAGIC,
            core_thread,
            pid,
            argv_length: encoded.len() as u64,
        };
        let mut head = Vec::new();
        for word in [block.magic, block.core_thread, block.pid, block.argv_length] {
            head.extend_from_slice(&word.to_le_bytes());
        }
        copy_into(frame, 0, &head);
        copy_into(frame, StartBlock::ARGV_OFFSET as u64, &encoded);
        self.pages.insert(
            ARGS_ADDRESS,
            Page {
                frame,
                rights: Rights::READ,
                owned: true,
            },
        );
        Ok(())
    }

    /// The map item answering a fault at `address`, adding a zeroed page
    /// for the heap and the stack; `None` for an address the process has
    /// no business touching.
    pub fn resolve(&mut self, address: u64, frames: &mut FrameBitmap) -> Option<MapItem> {
        let page = address & !(FRAME_SIZE - 1);
        let entry = match self.pages.get(&page) {
            Some(entry) => *entry,
            None => {
                let heap = (HEAP_BASE..HEAP_BASE + HEAP_SIZE).contains(&page);
                let stack = (STACK_TOP - STACK_SIZE..STACK_TOP).contains(&page);
                if !heap && !stack {
                    return None;
                }
                let frame = if heap {
                    self.heap_frame(page, frames)?
                } else {
                    self.next_to_neighbour(page, frames)
                        .or_else(|| zeroed(frames).ok())?
                };
                let entry = Page {
                    frame,
                    rights: Rights::READ | Rights::WRITE,
                    owned: true,
                };
                self.pages.insert(page, entry);
                entry
            }
        };
        Some(MapItem {
            send_base: page,
            fpage: Fpage::new(entry.frame, 12, entry.rights).ok()?,
            grant: false,
        })
    }

    /// A zeroed frame for heap page `page`: its frame in the page's
    /// [`Block`], taken when the block's first page faults (a single frame
    /// when no 16 free frames in a row are left).
    fn heap_frame(&mut self, page: u64, frames: &mut FrameBitmap) -> Option<u64> {
        let base = page & !(BLOCK_BYTES - 1);
        let index = (page - base) / FRAME_SIZE;
        let block = match self.blocks.iter_mut().position(|b| b.base == base) {
            Some(at) => Some(&mut self.blocks[at]),
            None => match frames.allocate_block() {
                Some(frame) => {
                    self.blocks.push(Block {
                        base,
                        frame,
                        used: 0,
                    });
                    self.blocks.last_mut()
                }
                None => None,
            },
        };
        let frame = match block {
            Some(block) if block.used & (1 << index) == 0 => {
                block.used |= 1 << index;
                block.frame + index * FRAME_SIZE
            }
            _ => frames.allocate()?,
        };
        // SAFETY: as in `zeroed`: the allocator gave this page to this
        // process alone.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, FRAME_SIZE as usize) };
        Some(frame)
    }

    /// A zeroed frame for a stack page right before the frame of the page
    /// above it (the stack grows down), if that frame is free, so that a
    /// stack buffer lies in consecutive frames too.
    fn next_to_neighbour(&self, page: u64, frames: &mut FrameBitmap) -> Option<u64> {
        let above = self.pages.get(&page.checked_add(FRAME_SIZE)?)?;
        let frame = above.frame.checked_sub(FRAME_SIZE)?;
        if !above.owned || !frames.allocate_at(frame) {
            return None;
        }
        // SAFETY: as in `zeroed`: the allocator gave this page to the
        // caller alone.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, FRAME_SIZE as usize) };
        Some(frame)
    }

    /// Gives back the owned frames (after the task was destroyed).
    pub fn release(self, frames: &mut FrameBitmap) {
        // The blocks' frames that no page took (the rest are pages').
        for block in &self.blocks {
            for n in (0..16).filter(|n| block.used & (1 << n) == 0) {
                frames.free(block.frame + n * FRAME_SIZE);
            }
        }
        for page in self.pages.values() {
            if page.owned {
                frames.free(page.frame);
            }
        }
    }

    /// Kilobytes of memory the process uses.
    pub fn kilobytes(&self) -> u64 {
        self.pages.len() as u64 * FRAME_SIZE / 1024
    }
}
