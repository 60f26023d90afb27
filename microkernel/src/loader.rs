//! Loads the root task's ELF image into fresh frames.
//!
//! The image is untrusted input like any other: the header and every
//! program header are checked against the file and against user space
//! before a byte is copied (ELF-64 Object File Format, "Program Header").

use alloc::collections::BTreeMap;
use microkernel_abi::{Rights, USER_ADDRESS_END};
use xmas_elf::program::{Flags, Type};
use xmas_elf::ElfFile;

use crate::memory::{phys_to_virt, FramePool, PAGE};

fn check_header(bytes: &[u8]) -> Result<ElfFile<'_>, &'static str> {
    if bytes.len() < 64 || bytes[..4] != *b"\x7fELF" {
        return Err("the root task is not an ELF file");
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("the root task is not a 64-bit little-endian ELF");
    }
    let half = |at: usize| u64::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().map_err(|_| "short header")?);
    let (phentsize, phnum) = (half(54), half(56));
    if phentsize != 56
        || phoff
            .checked_add(phentsize * phnum)
            .is_none_or(|end| end > bytes.len() as u64)
    {
        return Err("the root task's program headers lie outside the file");
    }
    if half(18) != 62 || half(16) != 2 {
        return Err("the root task is not an x86-64 executable");
    }
    ElfFile::new(bytes)
}

/// Copies each loadable segment into frames from `pool` and records the
/// pages in `pages` (address → frame, rights). Returns the entry point.
pub fn load_elf(
    bytes: &[u8],
    pool: &mut FramePool,
    pages: &mut BTreeMap<u64, (u64, Rights)>,
) -> Result<u64, &'static str> {
    let elf = check_header(bytes)?;
    let entry = elf.header.pt2.entry_point();
    let mut entry_ok = false;
    for header in elf.program_iter() {
        if header.get_type() != Ok(Type::Load) || header.mem_size() == 0 {
            continue;
        }
        let (vaddr, memsz, filesz, offset) = (
            header.virtual_addr(),
            header.mem_size(),
            header.file_size(),
            header.offset(),
        );
        let end = vaddr
            .checked_add(memsz)
            .filter(|&end| end <= USER_ADDRESS_END)
            .ok_or("a segment lies outside user space")?;
        if filesz > memsz
            || offset
                .checked_add(filesz)
                .is_none_or(|e| e > bytes.len() as u64)
        {
            return Err("a segment's data lies outside the file");
        }
        let flags: Flags = header.flags();
        let mut rights = Rights::READ;
        if flags.is_write() {
            rights |= Rights::WRITE;
        }
        if flags.is_execute() {
            rights |= Rights::EXECUTE;
        }
        entry_ok |= (vaddr..end).contains(&entry) && flags.is_execute();
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
            let copy_end = (page + PAGE).min(vaddr + filesz);
            if copy_start < copy_end {
                let source = &bytes
                    [(offset + copy_start - vaddr) as usize..(offset + copy_end - vaddr) as usize];
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
    if !entry_ok {
        return Err("the root task's entry point is not in an executable segment");
    }
    Ok(entry)
}
