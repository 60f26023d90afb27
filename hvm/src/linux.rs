//! Loads a stock Linux bzImage and its initrd into a cell (boot.rst).
//!
//! Every decision (where things go, what boot_params say, the ACPI tables,
//! the entry page tables) is made by `hvm_logic::linux` and
//! `hvm_logic::acpi`; this file copies bytes into the cell's memory, which
//! is identity mapped in hvm and not running while it is loaded.

use hvm_logic::acpi;
use hvm_logic::linux::{self, BzImage};

use crate::loader::CellLayout;

/// The vCPU state boot.rst's 64-bit protocol asks for.
#[derive(Clone, Copy, Debug)]
pub struct LinuxEntry {
    pub rip: u64,
    pub rsi: u64,
    pub rsp: u64,
    pub cr3: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
}

/// Loads kernel, initrd, command line, boot_params, ACPI tables, GDT and
/// page tables into zeroed cell memory.
pub fn load_linux(
    layout: CellLayout,
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> Result<LinuxEntry, linux::BzImageError> {
    let image = BzImage::parse(kernel)?;
    let placement = linux::place(&image, layout.size, initrd.len() as u64)?;
    // A restarted cell starts from zeroed memory.
    // SAFETY: the whole cell memory is hvm's while the cell is not running.
    unsafe { core::ptr::write_bytes(layout.host_base as *mut u8, 0, layout.size as usize) };

    let kernel_bytes = image.kernel();
    copy(layout, linux::KERNEL_LOAD, kernel_bytes);
    if !initrd.is_empty() {
        copy(layout, placement.initrd, initrd);
    }
    // The command line, NUL-terminated (boot.rst "cmd_line_ptr").
    copy(layout, linux::CMDLINE, cmdline.as_bytes());
    copy(layout, linux::CMDLINE + cmdline.len() as u64, &[0]);

    let mut tables = [0u8; acpi::TABLES_SIZE];
    let rsdp = acpi::build(&mut tables, linux::ACPI_TABLES);
    copy(layout, linux::ACPI_TABLES, &tables);

    let mut params = [0u8; 4096];
    let map = linux::e820_map(layout.size);
    linux::build_boot_params(
        &mut params,
        &image,
        cmdline.len(),
        placement.initrd,
        initrd.len() as u64,
        rsdp,
        &map,
    )?;
    copy(layout, linux::BOOT_PARAMS, &params);

    for (i, entry) in linux::GDT_ENTRIES.iter().enumerate() {
        copy(layout, linux::GDT + 8 * i as u64, &entry.to_le_bytes());
    }
    for (i, page) in linux::identity_tables().iter().enumerate() {
        for (j, entry) in page.iter().enumerate() {
            let at = linux::PAGE_TABLES + 4096 * i as u64 + 8 * j as u64;
            copy(layout, at, &entry.to_le_bytes());
        }
    }
    Ok(LinuxEntry {
        rip: image.entry(),
        rsi: linux::BOOT_PARAMS,
        rsp: linux::STACK_TOP,
        cr3: linux::PAGE_TABLES,
        gdt_base: linux::GDT,
        gdt_limit: (8 * linux::GDT_ENTRIES.len() - 1) as u16,
    })
}

fn copy(layout: CellLayout, guest: u64, bytes: &[u8]) {
    assert!(
        guest
            .checked_add(bytes.len() as u64)
            .is_some_and(|end| end <= layout.size),
        "linux loader wrote outside the cell"
    );
    // SAFETY: checked to be inside the cell's memory (identity mapped in
    // hvm, not running while it is loaded); the source is a separate buffer.
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (layout.host_base + guest) as *mut u8,
            bytes.len(),
        )
    }
}
