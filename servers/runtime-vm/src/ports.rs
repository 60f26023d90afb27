//! Port I/O for a server VM's drivers (the ATA and NE2000 drivers' ports).
//!
//! Every port a server VM touches exits to hvm, which forwards the ports
//! of the devices the manifest gave this cell (`devices`) to the device
//! and answers the rest itself (all ones, or the console), so a driver
//! here can reach nothing it was not given.

use kasane_ata::PortIo;

use crate::arch;

/// The VM's I/O ports.
#[derive(Debug)]
pub struct Ports;

impl PortIo for Ports {
    fn read_u8(&mut self, port: u16) -> u8 {
        arch::inb(port)
    }
    fn write_u8(&mut self, port: u16, value: u8) {
        arch::outb(port, value);
    }
    fn read_u16(&mut self, port: u16) -> u16 {
        arch::inw(port)
    }
    fn write_u16(&mut self, port: u16, value: u16) {
        arch::outw(port, value);
    }
}

/// Where PC firmware places PCI I/O BARs: above the legacy ISA range.
const PCI_IO: core::ops::RangeInclusive<u16> = 0x1000..=0xFFE0;

/// The ports of a PCI NE2000 hvm gave this VM, from its I/O base.
#[derive(Debug)]
pub struct Card(pub u16);

impl Card {
    /// Finds the card hvm opened to this VM (the manifest's `ne2k`). hvm
    /// opens only the card's 32 ports, at the BAR the firmware chose, and
    /// answers every other port with all ones (`servervm.rs`), so the
    /// card is the first 32-port block in the PCI I/O range whose command
    /// register (offset 0, DP8390D §10) reads as anything else. Each probe
    /// of a closed port is one exit to hvm; the whole range is ~2 000.
    pub fn find() -> Option<Card> {
        PCI_IO
            .step_by(0x20)
            .find(|&base| arch::inb(base) != 0xFF)
            .map(Card)
    }
}

impl ne2k::Ports for Card {
    fn inb(&mut self, offset: u16) -> u8 {
        arch::inb(self.0.wrapping_add(offset))
    }
    fn outb(&mut self, offset: u16, value: u8) {
        arch::outb(self.0.wrapping_add(offset), value);
    }
    fn inw(&mut self, offset: u16) -> u16 {
        arch::inw(self.0.wrapping_add(offset))
    }
    fn outw(&mut self, offset: u16, value: u16) {
        arch::outw(self.0.wrapping_add(offset), value);
    }
}
