//! The host's PCI configuration space: where a device hvm hands a VM sits.
//!
//! Configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2): a dword
//! address to 0xCF8, the register through 0xCFC. hvm only reads, once per
//! cell, at its creation: the firmware assigned and enabled the BARs, and
//! no cell reaches these ports (hvm emulates them for its cells).

use crate::arch;

const ADDRESS: u16 = 0xCF8;
const DATA: u16 = 0xCFC;

/// Configuration register `offset` of function 0 of `slot` on bus 0.
pub fn read(slot: u8, offset: u8) -> u32 {
    // §3.2.2.3.2: enable bit 31, bus 23..16, device 15..11, register 7..2.
    let address = 0x8000_0000 | (u32::from(slot & 0x1F) << 11) | u32::from(offset & 0xFC);
    // SAFETY: the configuration ports are hvm's alone, and reading a
    // configuration register changes nothing.
    unsafe {
        arch::outl(ADDRESS, address);
        arch::inl(DATA)
    }
}
