//! Builds a cell's initial memory: kernel image, modules, boot info, paging.
//!
//! The same loader serves both modes. Under VMX the cell's memory appears at
//! guest-physical 0 (EPT maps it to wherever hvm placed it); in bare mode the
//! kernel sees real physical addresses. The kernel is linked in the top 2 GiB
//! (`KERNEL_WINDOW_BASE`), so it runs wherever its memory lies.
//!
//! Cell memory layout (offsets from the cell's first byte):
//! `0x1000` boot info, `0x2000` GDT, `0x3000..0x20000` page tables,
//! `0x20000..0x30000` boot stack, `0x200000..` kernel image, then each module
//! page-aligned. The kernel image is untrusted input: every program header is
//! checked against the file and the kernel window before a byte is copied.

use hvm_abi::{
    BootInfo, BootModule, ARGS_LEN, BOOT_INFO_MAGIC, DIRECT_MAP_BASE, KERNEL_WINDOW_BASE,
};
use hvm_abi::{MAX_MODULES, MODULE_NAME_LEN};
use hvm_logic::ept::{Access, Format, MapError, PageTables, TableMemory};
use kasane_elf::{ElfError, Executable};

const BOOT_INFO_OFFSET: u64 = 0x1000;
const GDT_OFFSET: u64 = 0x2000;
const GDT_POINTER_OFFSET: u64 = 0x2100;
const TABLES_START: u64 = 0x3000;
const TABLES_END: u64 = 0x20000;
const STACK_TOP: u64 = 0x30000;
const KERNEL_OFFSET: u64 = 0x20_0000;
const KERNEL_WINDOW_SIZE: u64 = 1 << 30;
const PAGE: u64 = 4096;

/// Where a cell's memory is and how the cell addresses it.
#[derive(Clone, Copy, Debug)]
pub struct CellLayout {
    /// Host-physical (identity-mapped in hvm) address of the first byte.
    pub host_base: u64,
    /// The address the cell uses for the first byte (0 under VMX).
    pub guest_base: u64,
    /// Bytes.
    pub size: u64,
}

impl CellLayout {
    fn host(&self, offset: u64) -> *mut u8 {
        (self.host_base + offset) as *mut u8
    }

    fn copy_in(&self, offset: u64, bytes: &[u8]) {
        debug_assert!(offset + bytes.len() as u64 <= self.size);
        // SAFETY: callers check `offset + len <= size`; the cell's memory is
        // identity mapped in hvm and owned by hvm while the cell is loaded.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.host(offset), bytes.len()) }
    }
}

/// What the vCPU (or the bare-mode jump) starts with.
#[derive(Clone, Copy, Debug)]
pub struct EntryState {
    pub rip: u64,
    pub rsp: u64,
    /// Physical address of the boot info (RDI).
    pub rdi: u64,
    /// Physical address of the top-level page table.
    pub cr3: u64,
    /// Virtual base and limit of the GDT.
    pub gdt_base: u64,
    pub gdt_limit: u16,
    /// Virtual address of the 10-byte GDT pointer (for `lgdt` in bare mode).
    pub gdt_pointer: u64,
}

/// Why a cell image could not be loaded.
#[derive(Clone, Copy, Debug)]
pub enum LoadError {
    /// The kernel is not a well-formed ELF64 x86-64 executable (this also
    /// covers an entry point outside every executable segment).
    BadElf(ElfError),
    /// A segment lies outside the kernel window or the cell's memory.
    SegmentOutside { vaddr: u64, size: u64 },
    /// The modules do not fit in the cell's memory.
    NoRoom(&'static str),
    /// More modules than the boot info can list.
    TooManyModules,
    /// Building the page tables failed.
    Paging(MapError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadElf(why) => write!(
                f,
                "kernel image is not a valid ELF64 x86-64 executable: {why}"
            ),
            Self::SegmentOutside { vaddr, size } => {
                write!(
                    f,
                    "kernel segment {vaddr:#x}+{size:#x} lies outside the cell's kernel window"
                )
            }
            Self::NoRoom(what) => write!(f, "cell memory too small for {what}"),
            Self::TooManyModules => write!(f, "more than {MAX_MODULES} modules"),
            Self::Paging(e) => write!(f, "building page tables failed: {e:?}"),
        }
    }
}

/// Page-table frames carved from the cell's own boot area.
struct CellTables {
    layout: CellLayout,
    next: u64,
}

impl TableMemory for CellTables {
    fn allocate(&mut self) -> Option<u64> {
        if self.next >= TABLES_END {
            return None;
        }
        let offset = self.next;
        self.next += PAGE;
        // SAFETY: the frame is inside the cell's boot area, owned by hvm
        // during loading, identity mapped.
        unsafe { core::ptr::write_bytes(self.layout.host(offset), 0, PAGE as usize) };
        Some(self.layout.guest_base + offset)
    }

    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        let offset = phys - self.layout.guest_base;
        assert!(
            (TABLES_START..TABLES_END).contains(&offset),
            "table outside the boot area"
        );
        // SAFETY: `offset` names a 4 KiB-aligned frame this allocator handed
        // out inside the cell's memory; hvm holds the only reference.
        unsafe { &mut *(self.layout.host(offset) as *mut [u64; 512]) }
    }
}

/// Loads a microkernel into a cell and returns its entry state.
#[allow(clippy::too_many_arguments)]
pub fn load_microkernel(
    layout: CellLayout,
    mode: u32,
    cell: u32,
    kernel: &[u8],
    modules: &[(&str, &[u8])],
    manifest: &[u8],
    args: &str,
    extra_identity: Option<(u64, u64)>,
) -> Result<EntryState, LoadError> {
    // A restarted cell starts from zeroed memory.
    // SAFETY: the whole cell memory is hvm's while the cell is not running;
    // it is 2 MiB aligned and sized in MiB.
    unsafe { crate::arch::zero(layout.host_base, layout.size) };

    let elf = Executable::parse(kernel).map_err(LoadError::BadElf)?;
    let window = layout.size.min(KERNEL_WINDOW_SIZE);
    let mut kernel_end = KERNEL_OFFSET;
    for segment in elf.segments() {
        let (vaddr, memsz) = (segment.virtual_address, segment.memory_size);
        let outside = LoadError::SegmentOutside { vaddr, size: memsz };
        let start = vaddr.checked_sub(KERNEL_WINDOW_BASE).ok_or(outside)?;
        let end = start.checked_add(memsz).ok_or(outside)?;
        if start < KERNEL_OFFSET || end > window {
            return Err(outside);
        }
        layout.copy_in(start, segment.data(kernel));
        kernel_end = kernel_end.max(end);
    }
    let entry = elf.entry();

    let mut info = BootInfo {
        magic: BOOT_INFO_MAGIC,
        mode,
        cell,
        memory_base: layout.guest_base,
        memory_size: layout.size,
        free_base: 0,
        direct_map_base: DIRECT_MAP_BASE,
        manifest_phys: 0,
        manifest_len: 0,
        serial_port: crate::serial::COM1,
        reserved: [0; 6],
        module_count: 0,
        modules: [BootModule {
            phys: 0,
            len: 0,
            name: [0; MODULE_NAME_LEN],
        }; MAX_MODULES],
        args_len: 0,
        args: [0; ARGS_LEN],
    };
    let mut cursor = align_up(kernel_end, PAGE);
    let mut place = |bytes: &[u8], what: &'static str| -> Result<u64, LoadError> {
        let end = cursor
            .checked_add(bytes.len() as u64)
            .filter(|&e| e <= layout.size);
        let end = end.ok_or(LoadError::NoRoom(what))?;
        layout.copy_in(cursor, bytes);
        let at = cursor;
        cursor = align_up(end, PAGE);
        Ok(layout.guest_base + at)
    };
    info.manifest_phys = place(manifest, "the manifest")?;
    info.manifest_len = manifest.len() as u64;
    if modules.len() > MAX_MODULES {
        return Err(LoadError::TooManyModules);
    }
    for (slot, (name, bytes)) in info.modules.iter_mut().zip(modules) {
        slot.phys = place(bytes, "a boot module")?;
        slot.len = bytes.len() as u64;
        let name = name.as_bytes();
        let n = name.len().min(MODULE_NAME_LEN - 1);
        slot.name[..n].copy_from_slice(&name[..n]);
    }
    info.module_count = modules.len() as u64;
    info.free_base = layout.guest_base + cursor;
    let args = args.as_bytes();
    let n = args.len().min(ARGS_LEN);
    info.args[..n].copy_from_slice(&args[..n]);
    info.args_len = n as u64;
    // SAFETY: BOOT_INFO_OFFSET..+size_of::<BootInfo>() (< 4 KiB) is in the
    // cell's boot area; write_unaligned needs no alignment.
    unsafe { core::ptr::write_unaligned(layout.host(BOOT_INFO_OFFSET) as *mut BootInfo, info) };

    // GDT: null, 64-bit code (0x08), data (0x10) — the selectors boot.rst
    // style entry code and our kernel expect.
    let gdt: [u64; 3] = [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];
    let gdt_base = DIRECT_MAP_BASE + layout.guest_base + GDT_OFFSET;
    for (i, entry) in gdt.iter().enumerate() {
        layout.copy_in(GDT_OFFSET + 8 * i as u64, &entry.to_le_bytes());
    }
    let mut pointer = [0u8; 10];
    pointer[..2].copy_from_slice(&23u16.to_le_bytes());
    pointer[2..].copy_from_slice(&gdt_base.to_le_bytes());
    layout.copy_in(GDT_POINTER_OFFSET, &pointer);

    let mut tables = CellTables {
        layout,
        next: TABLES_START,
    };
    let format = Format::X86 {
        user: false,
        global: false,
    };
    let paging = PageTables::new(&mut tables, format, true).map_err(LoadError::Paging)?;
    let base = layout.guest_base;
    paging
        .map(&mut tables, base, base, layout.size, Access::ALL)
        .map_err(LoadError::Paging)?;
    paging
        .map(
            &mut tables,
            DIRECT_MAP_BASE + base,
            base,
            layout.size,
            Access::ALL,
        )
        .map_err(LoadError::Paging)?;
    paging
        .map(&mut tables, KERNEL_WINDOW_BASE, base, window, Access::ALL)
        .map_err(LoadError::Paging)?;
    if let Some((start, end)) = extra_identity {
        paging
            .map(&mut tables, start, start, end - start, Access::ALL)
            .map_err(LoadError::Paging)?;
    }

    Ok(EntryState {
        rip: entry,
        rsp: DIRECT_MAP_BASE + base + STACK_TOP,
        rdi: base + BOOT_INFO_OFFSET,
        cr3: paging.root,
        gdt_base,
        gdt_limit: 23,
        gdt_pointer: DIRECT_MAP_BASE + base + GDT_POINTER_OFFSET,
    })
}

fn align_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}
