//! An 8250/16550A UART on COM1 for a Linux cell: enough to be a console.
//!
//! Linux's 8250 driver probes the port before it trusts it (`autoconfig` in
//! drivers/tty/serial/8250/8250_port.c): the IER must keep its low nibble,
//! the loopback test must show CTS and DCD when RTS and OUT2 are looped
//! (MSR = 0x90), and FIFOs must show in IIR[7:6] once FCR enables them, so it
//! is taken for a 16550A. Transmitted bytes go to the console; the line is
//! always ready (LSR THRE|TEMT) and nothing is ever received.
//!
//! The UART has no interrupt line (a hardware-reduced cell has no PIC or
//! IOAPIC), so the kernel must poll it. The kernel console always does;
//! the tty layer does when the port fails Linux's THRE test
//! (`serial8250_do_startup`): the THR-empty interrupt shows in IIR once
//! and is not re-asserted by re-enabling it in IER, so Linux marks the
//! port `UART_BUG_THRE` and transmits from its backup timer.
//! Register layout: the 16550 datasheet.

/// Register offsets from the base port.
const DATA: u16 = 0;
const IER: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCRATCH: u16 = 7;

/// The UART's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    fcr: u8,
    scratch: u8,
    divisor: u16,
    /// A byte written in loopback mode, readable from RBR.
    looped: Option<u8>,
    /// A THR-empty interrupt is latched (set by a transmit, cleared by
    /// reading IIR).
    thre_latched: bool,
    /// The interrupt line as last seen by [`Uart::take_edge`].
    line: bool,
}

impl Uart {
    /// A UART after reset.
    pub fn new() -> Self {
        Self {
            thre_latched: true,
            ..Self::default()
        }
    }

    fn dlab(&self) -> bool {
        self.lcr & 0x80 != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & 0x10 != 0
    }

    /// Whether the interrupt line (IRQ 4) is raised: THR empty latched
    /// while enabled in IER.
    pub fn line(&self) -> bool {
        self.ier & 0x02 != 0 && self.thre_latched
    }

    /// Whether the line rose since the last call (an edge-triggered
    /// interrupt to deliver).
    pub fn take_edge(&mut self) -> bool {
        let line = self.line();
        let rose = line && !self.line;
        self.line = line;
        rose
    }

    /// A read of register `offset` (0..8).
    pub fn read(&mut self, offset: u16) -> u8 {
        match offset {
            DATA if self.dlab() => self.divisor as u8,
            DATA => self.looped.take().unwrap_or(0),
            IER if self.dlab() => (self.divisor >> 8) as u8,
            IER => self.ier,
            IIR_FCR => {
                let fifo = if self.fcr & 1 != 0 { 0xC0 } else { 0 };
                // THR empty is the only interrupt source; reading IIR
                // clears it (16550 datasheet, "Interrupt Identification").
                let cause = if self.ier & 0x02 != 0 && self.thre_latched {
                    self.thre_latched = false;
                    0x02
                } else {
                    0x01
                };
                fifo | cause
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let data_ready = u8::from(self.looped.is_some());
                0x60 | data_ready
            }
            MSR => {
                if self.loopback() {
                    // Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
                    let m = self.mcr;
                    ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
                } else {
                    0xB0 // DCD, DSR, CTS: a cable is attached
                }
            }
            SCRATCH => self.scratch,
            _ => 0xFF,
        }
    }

    /// A write; returns a byte to print when one was transmitted.
    pub fn write(&mut self, offset: u16, value: u8) -> Option<u8> {
        match offset {
            DATA if self.dlab() => self.divisor = (self.divisor & 0xFF00) | u16::from(value),
            DATA if self.loopback() => self.looped = Some(value),
            DATA => {
                self.thre_latched = true;
                return Some(value);
            }
            IER if self.dlab() => self.divisor = (self.divisor & 0x00FF) | (u16::from(value) << 8),
            IER => self.ier = value & 0x0F,
            IIR_FCR => self.fcr = value & 0xC9,
            LCR => self.lcr = value,
            MCR => self.mcr = value & 0x1F,
            SCRATCH => self.scratch = value,
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_linux_autoconfig_as_a_16550a() {
        let mut uart = Uart::new();
        // IER test.
        uart.write(IER, 0);
        assert_eq!(uart.read(IER) & 0x0F, 0);
        uart.write(IER, 0x0F);
        assert_eq!(uart.read(IER) & 0x0F, 0x0F);
        uart.write(IER, 0);
        // Loopback test: MCR = LOOP | OUT2 | RTS gives MSR[7:4] = 0x9.
        uart.write(MCR, 0x10 | 0x0A);
        assert_eq!(uart.read(MSR) & 0xF0, 0x90);
        uart.write(MCR, 0);
        // FIFO detection.
        uart.write(IIR_FCR, 0x01);
        assert_eq!(uart.read(IIR_FCR) >> 6, 3);
        // Scratch register and divisor latch.
        uart.write(SCRATCH, 0xA5);
        assert_eq!(uart.read(SCRATCH), 0xA5);
        uart.write(LCR, 0x80);
        uart.write(DATA, 0x01);
        uart.write(IER, 0x00);
        assert_eq!(uart.read(DATA), 1);
        uart.write(LCR, 0x03);
        assert_eq!(uart.read(LSR) & 0x60, 0x60);
    }

    #[test]
    fn thre_is_not_reasserted_so_linux_polls() {
        // serial8250_do_startup's test: IER=THRI, read IIR, IER=0,
        // IER=THRI, read IIR. An interrupt the first time and none the
        // second sets UART_BUG_THRE (the backup timer transmits).
        let mut uart = Uart::new();
        uart.write(IER, 0x02);
        let first = uart.read(IIR_FCR);
        uart.write(IER, 0);
        uart.write(IER, 0x02);
        let second = uart.read(IIR_FCR);
        assert_eq!(first & 1, 0, "interrupt pending");
        assert_eq!(second & 1, 1, "not re-asserted");
        uart.write(DATA, b'a');
        assert_eq!(
            uart.read(IIR_FCR) & 0x0F,
            0x02,
            "a transmit latches it again"
        );
    }

    #[test]
    fn a_transmit_with_thri_enabled_raises_an_edge() {
        let mut uart = Uart::new();
        uart.write(IER, 0x02);
        assert!(uart.take_edge(), "latched since reset");
        assert!(!uart.take_edge());
        assert_eq!(uart.read(IIR_FCR) & 0x0F, 0x02);
        assert!(!uart.take_edge(), "IIR read lowers the line");
        uart.write(DATA, b'x');
        assert!(uart.take_edge());
        uart.write(DATA, b'y');
        assert!(!uart.take_edge(), "still high: no new edge");
    }

    #[test]
    fn transmits_bytes_and_loops_back() {
        let mut uart = Uart::new();
        assert_eq!(uart.write(DATA, b'x'), Some(b'x'));
        uart.write(MCR, 0x10);
        assert_eq!(uart.write(DATA, b'y'), None);
        assert_eq!(uart.read(LSR) & 1, 1);
        assert_eq!(uart.read(DATA), b'y');
        assert_eq!(uart.read(LSR) & 1, 0);
    }
}
