//! An I/O APIC register file for a Linux cell, so legacy IRQs can be set up.
//!
//! A hardware-reduced platform has no PIC, so Linux only has interrupt
//! numbers for GSIs an I/O APIC (in the MADT) provides; without one the 8250
//! on COM1 (IRQ 4 in the DSDT) cannot request its interrupt, and as root
//! the console opens with every write failing (EIO). This model gives Linux
//! the registers to program (82093AA datasheet: IOREGSEL at 0x00, IOWIN at
//! 0x10; ID, version, arbitration, 24 redirection entries) and remembers
//! them. hvm raises no interrupt through it: the UART is polled (see
//! `uart.rs`), so the entries only need to read back what was written.

/// Guest-physical address of the I/O APIC window (the PC default).
pub const BASE: u64 = 0xFEC0_0000;
/// Size of the window.
pub const SIZE: u64 = 0x1000;
/// Redirection entries (pins).
pub const PINS: usize = 24;

/// The I/O APIC's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ioapic {
    select: u32,
    id: u32,
    redirection: [u64; PINS],
}

impl Default for Ioapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Ioapic {
    /// After reset every pin is masked (bit 16).
    pub const fn new() -> Self {
        Self {
            select: 0,
            id: 0,
            redirection: [1 << 16; PINS],
        }
    }

    /// A 32-bit read at `offset` in the window.
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            0x00 => self.select,
            0x10 => self.register(),
            _ => 0,
        }
    }

    fn register(&self) -> u32 {
        match self.select {
            0 => self.id,
            // Version 0x11, maximum redirection entry 23.
            1 => 0x0017_0011,
            2 => self.id,
            index @ 0x10..=0x3F => {
                let entry = self.redirection[((index - 0x10) / 2) as usize];
                if index % 2 == 0 {
                    entry as u32
                } else {
                    (entry >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    /// A 32-bit write at `offset` in the window.
    pub fn write(&mut self, offset: u64, value: u32) {
        match offset {
            0x00 => self.select = value & 0xFF,
            0x10 => match self.select {
                0 => self.id = value & 0x0F00_0000,
                index @ 0x10..=0x3F => {
                    let entry = &mut self.redirection[((index - 0x10) / 2) as usize];
                    *entry = if index % 2 == 0 {
                        // Delivery status (12) and remote IRR (14) are
                        // read-only.
                        (*entry & 0xFFFF_FFFF_0000_5000) | u64::from(value & !0x5000)
                    } else {
                        (*entry & 0xFFFF_FFFF) | (u64::from(value) << 32)
                    };
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// The vector pin `pin` is programmed with, if unmasked.
    pub fn vector(&self, pin: usize) -> Option<u8> {
        let entry = *self.redirection.get(pin)?;
        (entry & (1 << 16) == 0).then_some(entry as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirection_entries_read_back() {
        let mut ioapic = Ioapic::new();
        ioapic.write(0x00, 1);
        assert_eq!(ioapic.read(0x10) & 0xFF, 0x11);
        assert_eq!((ioapic.read(0x10) >> 16) as usize + 1, PINS);
        assert_eq!(ioapic.vector(4), None, "masked at reset");
        ioapic.write(0x00, 0x10 + 8);
        ioapic.write(0x10, 0x0000_0031 | (1 << 12));
        ioapic.write(0x00, 0x10 + 9);
        ioapic.write(0x10, 0x0100_0000);
        assert_eq!(ioapic.vector(4), Some(0x31));
        ioapic.write(0x00, 0x10 + 8);
        assert_eq!(ioapic.read(0x10), 0x31, "delivery status stays read-only");
        ioapic.write(0x00, 0x10 + 9);
        assert_eq!(ioapic.read(0x10), 0x0100_0000);
        ioapic.write(0x00, 0xEE);
        ioapic.write(0x10, 5);
        assert_eq!(ioapic.read(0x10), 0);
        assert_eq!(ioapic.read(0x20), 0);
        assert_eq!(ioapic.vector(99), None);
    }
}
