//! PCI configuration space through mechanism #1 (ports 0xCF8 and 0xCFC).
//!
//! The kernel lets the root task's threads use ports 0xCF8..0xCFF and no
//! others (docs/microkernel-abi.md §9.12); any other task, or any other
//! port, faults. Under hvm these are hvm's emulated ports (the link
//! devices of docs/hypercalls.md); in bare mode the machine's own.
//! Writes can move a device's windows or turn on its bus mastering, so
//! they are `unsafe`; reads only observe.

use core::arch::asm;

const ADDRESS_PORT: u16 = 0xCF8;
const DATA_PORT: u16 = 0xCFC;

/// The configuration address of a register (PCI Local Bus 3.0, 3.2.2.3.2):
/// enable bit, bus, device, function, dword-aligned offset.
pub const fn address(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    0x8000_0000
        | ((bus as u32) << 16)
        | (((device & 0x1F) as u32) << 11)
        | (((function & 0x7) as u32) << 8)
        | (offset & 0xFC) as u32
}

fn outl(port: u16, value: u32) {
    // SAFETY: the configuration ports change no memory by being written
    // an address; the kernel lets the root task use them (a fault ends a
    // task that may not, which is no memory unsafety either).
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads the configuration dword at `address` (see [`address`]).
pub fn read(address: u32) -> u32 {
    outl(ADDRESS_PORT, address);
    let value: u32;
    // SAFETY: reading the data port only observes the device's
    // configuration space.
    unsafe {
        asm!("in eax, dx", in("dx") DATA_PORT, out("eax") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Writes the configuration dword at `address`.
///
/// # Safety
///
/// A configuration write can place a device's memory window over memory
/// the caller uses, or let a device master the bus (DMA): the caller must
/// know what the register does.
pub unsafe fn write(address: u32, value: u32) {
    outl(ADDRESS_PORT, address);
    outl(DATA_PORT, value);
}
