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
fn read(slot: u32, offset: u32) -> u32 {
    // §3.2.2.3.2: enable bit 31, bus 23..16, device 15..11, register 7..2.
    let address = 0x8000_0000 | (slot << 11) | offset;
    // SAFETY: the configuration ports are hvm's alone, and reading a
    // configuration register changes nothing.
    unsafe {
        arch::outl(ADDRESS, address);
        arch::inl(DATA)
    }
}

/// The I/O base of BAR 0 of the function on bus 0 whose ID is
/// (`vendor`, `device`), if it is there and its BAR 0 is an I/O BAR.
pub fn io_base(vendor: u16, device: u16) -> Option<u16> {
    let id = (u32::from(device) << 16) | u32::from(vendor);
    let slot = (0..32).find(|&slot| read(slot, 0) == id)?;
    let bar = read(slot, 0x10);
    // §6.2.5.1: bit 0 set is an I/O BAR; bits 31..2 its base (x86 I/O
    // space is 16 bits).
    (bar & 1 == 1).then_some((bar & 0xFFFC) as u16)
}
