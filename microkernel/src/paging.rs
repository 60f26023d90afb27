//! Address spaces: x86-64 4-level page tables for user tasks.
//!
//! Every space shares the kernel half (PML4 slots 256–511: hvm's direct map
//! and the kernel window) with the boot tables; the user half is the task's
//! own. Leaves are 4 KiB; rights follow the mapping database (read is
//! implied by presence, write sets R/W, no execute sets XD; SDM Vol. 3
//! 4.5, Table 4-19).

use core::sync::atomic::{AtomicBool, Ordering};

use microkernel_abi::Rights;
use spin::Mutex;

use crate::memory::{phys_to_virt, FramePool, PAGE};

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
/// PWT | PCD: uncached (SDM Vol. 3 4.9.2, with the default PAT).
const CACHE_DISABLE: u64 = (1 << 3) | (1 << 4);
/// A leaf the kernel made with `map_device` (bit 9 is ignored by the CPU,
/// SDM Vol. 3 Table 4-19): it names no frame of the cell, so the kernel
/// never reads or writes through it.
const DEVICE: u64 = 1 << 9;
const XD: u64 = 1 << 63;

/// Whether the CPU honours the XD bit (set once at boot by `arch::init`).
pub static NO_EXECUTE_SUPPORTED: AtomicBool = AtomicBool::new(false);

/// Whether CR4.PCIDE is on (set once at boot by `arch::init`): every space
/// then has its own PCID, a switch keeps the TLB entries of the others,
/// and every page-table change invalidates by PCID, loaded or not.
pub static PCID_ENABLED: AtomicBool = AtomicBool::new(false);

/// Bit 63 of a CR3 load with CR4.PCIDE set: keep the new PCID's cached
/// translations (SDM Vol. 3 4.10.4.1).
pub const NO_FLUSH: u64 = 1 << 63;

/// PCIDs in use, one bit each; PCID 0 stays the boot tables'.
static PCIDS: Mutex<[u64; 64]> = Mutex::new({
    let mut used = [0; 64];
    used[0] = 1;
    used
});

/// A free PCID (1..4095), or 0 when every one is taken.
fn allocate_pcid() -> u16 {
    if !PCID_ENABLED.load(Ordering::Relaxed) {
        return 0;
    }
    let mut used = PCIDS.lock();
    for (word, bits) in used.iter_mut().enumerate() {
        if *bits != u64::MAX {
            let bit = bits.trailing_ones();
            *bits |= 1 << bit;
            let pcid = (word * 64) as u16 + bit as u16;
            // Whatever an earlier space with this PCID left cached goes.
            crate::arch::invalidate_pcid(pcid, crate::arch::PcidInvalidation::Context);
            return pcid;
        }
    }
    0
}

fn release_pcid(pcid: u16) {
    if pcid != 0 {
        PCIDS.lock()[usize::from(pcid / 64)] &= !(1 << (pcid % 64));
    }
}

/// The value to load into CR3 for a space's `cr3` (root and PCID): with a
/// PCID of its own, without flushing it; PCID 0, which spaces share when
/// no PCID is free, always flushes (and so does every load without
/// CR4.PCIDE).
pub fn cr3_load_value(cr3: u64) -> u64 {
    if cr3 & 0xFFF != 0 {
        cr3 | NO_FLUSH
    } else {
        cr3
    }
}

fn no_execute() -> u64 {
    if NO_EXECUTE_SUPPORTED.load(Ordering::Relaxed) {
        XD
    } else {
        0
    }
}
const ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;

fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: page-table frames come from the frame pool, are direct mapped,
    // and are only touched by the kernel with interrupts off.
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
}

fn index(address: u64, level: u32) -> usize {
    ((address >> (12 + 9 * level)) & 0x1FF) as usize
}

/// One address space's top-level table.
pub struct AddressSpace {
    /// Physical address of the PML4.
    pub root: u64,
    /// Its PCID (0: none, with CR4.PCIDE off or every PCID taken).
    pcid: u16,
}

impl AddressSpace {
    /// A space with only the kernel half, copied from `kernel_root`.
    pub fn new(pool: &mut FramePool, kernel_root: u64) -> Option<Self> {
        let root = pool.allocate()?;
        table(root)[256..].copy_from_slice(&table(kernel_root)[256..]);
        Some(Self {
            root,
            pcid: allocate_pcid(),
        })
    }

    /// The CR3 value: the root and, in bits 11:0, the PCID.
    pub fn cr3(&self) -> u64 {
        self.root | u64::from(self.pcid)
    }

    /// Maps the user page at `address` to `frame`. Intermediate tables come
    /// from the pool; `None` when it is empty.
    pub fn map(
        &self,
        pool: &mut FramePool,
        address: u64,
        frame: u64,
        rights: Rights,
    ) -> Option<()> {
        let mut current = self.root;
        for level in (1..=3).rev() {
            let entry = &mut table(current)[index(address, level)];
            if *entry & PRESENT == 0 {
                let next = pool.allocate()?;
                *entry = next | PRESENT | WRITABLE | USER;
            }
            current = *entry & ADDRESS;
        }
        let mut leaf = frame | PRESENT | USER;
        if rights.contains(Rights::WRITE) {
            leaf |= WRITABLE;
        }
        if !rights.contains(Rights::EXECUTE) {
            leaf |= no_execute();
        }
        table(current)[index(address, 0)] = leaf;
        self.flush(address);
        Some(())
    }

    /// Maps the user page at `address` to the device page at physical
    /// `physical`: writable, uncached, never executable, marked
    /// [`DEVICE`]. The caller checked that `physical` is no frame of the
    /// cell (`microkernel_core::device::check_window`).
    pub fn map_device(&self, pool: &mut FramePool, address: u64, physical: u64) -> Option<()> {
        self.map(pool, address, physical, Rights::READ | Rights::WRITE)?;
        let entry = self.leaf(address)?;
        *entry |= CACHE_DISABLE | DEVICE | no_execute();
        self.flush(address);
        Some(())
    }

    /// Whether anything (a frame or a device page) is mapped at `address`.
    pub fn occupied(&self, address: u64) -> bool {
        self.leaf(address)
            .is_some_and(|entry| *entry & PRESENT != 0)
    }

    /// Removes the mapping at `address`, if any.
    pub fn unmap(&self, address: u64) {
        if let Some(entry) = self.leaf(address) {
            *entry = 0;
            self.flush(address);
        }
    }

    /// Lowers the rights of the mapping at `address`.
    pub fn restrict(&self, address: u64, rights: Rights) {
        if let Some(entry) = self.leaf(address) {
            if !rights.contains(Rights::WRITE) {
                *entry &= !WRITABLE;
            }
            if !rights.contains(Rights::EXECUTE) {
                *entry |= no_execute();
            }
            self.flush(address);
        }
    }

    /// The frame and whether it is writable, for a user page mapped to a
    /// frame of the cell (`None` for a device page: the kernel must not
    /// touch it through the direct map).
    pub fn translate(&self, address: u64) -> Option<(u64, bool)> {
        let entry = *self.leaf(address)?;
        (entry & PRESENT != 0 && entry & DEVICE == 0)
            .then_some((entry & ADDRESS, entry & WRITABLE != 0))
    }

    fn leaf(&self, address: u64) -> Option<&'static mut u64> {
        let mut current = self.root;
        for level in (1..=3).rev() {
            let entry = table(current)[index(address, level)];
            if entry & PRESENT == 0 {
                return None;
            }
            current = entry & ADDRESS;
        }
        Some(&mut table(current)[index(address, 0)])
    }

    fn flush(&self, address: u64) {
        if self.pcid != 0 {
            // Loaded or not: its entries outlive a switch away.
            crate::arch::invalidate_pcid(
                self.pcid,
                crate::arch::PcidInvalidation::Address(address),
            );
        } else if crate::arch::read_cr3() & ADDRESS == self.root {
            // Not loaded, it has nothing cached: loads of PCID 0 flush.
            crate::arch::invalidate_page(address);
        }
    }

    /// Frees the user-half tables (not the frames they map) and the root.
    pub fn destroy(self, pool: &mut FramePool) {
        fn free_level(pool: &mut FramePool, phys: u64, level: u32) {
            if level > 0 {
                for &entry in table(phys).iter() {
                    if entry & PRESENT != 0 {
                        free_level(pool, entry & ADDRESS, level - 1);
                    }
                }
            }
            pool.release(phys);
        }
        for slot in 0..256 {
            let entry = table(self.root)[slot];
            if entry & PRESENT != 0 {
                free_level(pool, entry & ADDRESS, 2);
            }
        }
        pool.release(self.root);
        release_pcid(self.pcid);
    }
}

/// Copies bytes between user memory and the kernel, page by page, through
/// the page tables: an unmapped (or, for writes, read-only) page is an error
/// rather than a kernel fault.
pub fn user_page_pointer(space: &AddressSpace, address: u64, write: bool) -> Option<*mut u8> {
    let (frame, writable) = space.translate(address & !(PAGE - 1))?;
    if write && !writable {
        return None;
    }
    Some((phys_to_virt(frame) + (address & (PAGE - 1))) as *mut u8)
}

/// Maps one page of device memory, uncached (PCD|PWT), at `virt` in the
/// kernel half of `kernel_root`. Call before any user space is created:
/// spaces copy the kernel half's top-level entries when they are made.
pub fn map_kernel_device(
    pool: &mut FramePool,
    kernel_root: u64,
    virt: u64,
    phys: u64,
) -> Option<u64> {
    let mut current = kernel_root;
    for level in (1..=3).rev() {
        let entry = &mut table(current)[index(virt, level)];
        if *entry & PRESENT == 0 {
            let next = pool.allocate()?;
            *entry = next | PRESENT | WRITABLE;
        } else if *entry & (1 << 7) != 0 {
            return None; // a large page is in the way
        }
        current = *entry & ADDRESS;
    }
    table(current)[index(virt, 0)] = phys | PRESENT | WRITABLE | CACHE_DISABLE | no_execute();
    crate::arch::invalidate_page(virt);
    Some(virt)
}
