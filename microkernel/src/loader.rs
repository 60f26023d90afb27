//! Loads the root task's ELF image into fresh frames.
//!
//! The image is untrusted input like any other: the header and every
//! program header are checked against the file and against user space
//! before a byte is copied (ELF-64 Object File Format, "Program Header").

use alloc::collections::BTreeMap;
use kasane_elf::Executable;
use microkernel_abi::{Rights, USER_ADDRESS_END};

use crate::memory::{phys_to_virt, FramePool, PAGE};

/// Copies each loadable segment into frames from `pool` and records the
/// pages in `pages` (address → frame, rights). Returns the entry point.
pub fn load_elf(
    bytes: &[u8],
    pool: &mut FramePool,
    pages: &mut BTreeMap<u64, (u64, Rights)>,
) -> Result<u64, &'static str> {
    let elf = Executable::parse(bytes)
        .map_err(|_| "the root task is not a valid x86-64 ELF executable")?;
    for segment in elf.segments() {
        let (vaddr, end) = (segment.virtual_address, segment.end());
        if end > USER_ADDRESS_END {
            return Err("a segment lies outside user space");
        }
        let mut rights = Rights::READ;
        if segment.writable {
            rights |= Rights::WRITE;
        }
        if segment.executable {
            rights |= Rights::EXECUTE;
        }
        let data = segment.data(bytes);
        let first = vaddr - vaddr % PAGE;
        for page in (first..end).step_by(PAGE as usize) {
            let frame = match pages.get_mut(&page) {
                Some((frame, existing)) => {
                    *existing |= rights;
                    *frame
                }
                None => {
                    let frame = pool
                        .allocate()
                        .ok_or("no memory for the root task's image")?;
                    pages.insert(page, (frame, rights));
                    frame
                }
            };
            // The part of this page backed by file bytes.
            let copy_start = page.max(vaddr);
            let copy_end = (page + PAGE).min(vaddr + data.len() as u64);
            if copy_start < copy_end {
                let source = &data[(copy_start - vaddr) as usize..(copy_end - vaddr) as usize];
                let destination = phys_to_virt(frame) + (copy_start - page);
                // SAFETY: the frame is fresh (or this loader's own) and
                // direct mapped; the copy stays inside the page.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        source.as_ptr(),
                        destination as *mut u8,
                        source.len(),
                    )
                };
            }
        }
    }
    Ok(elf.entry())
}
