//! Port I/O for a server VM's drivers (the ATA driver's `PortIo`).
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
