//! The console: a polled 16550 UART on COM1, shared by hvm and its cells.
//!
//! Output is line-oriented and serialised by a spin lock, so a cell's line
//! and an hvm line never interleave mid-line.

use core::fmt::{self, Write};
use spin::Mutex;

use crate::arch;

/// COM1's base port.
pub const COM1: u16 = 0x3F8;

struct Uart {
    base: u16,
}

impl Uart {
    fn init(&self) {
        // SAFETY: COM1 is hvm's console; programming it to 115200 8N1 with
        // FIFOs on (16550 datasheet, registers 0–5) affects nothing else.
        unsafe {
            arch::outb(self.base + 1, 0x00); // no interrupts
            arch::outb(self.base + 3, 0x80); // DLAB
            arch::outb(self.base, 0x01); // divisor 1 = 115200 baud
            arch::outb(self.base + 1, 0x00);
            arch::outb(self.base + 3, 0x03); // 8N1
            arch::outb(self.base + 2, 0xC7); // FIFO on, cleared, 14-byte threshold
            arch::outb(self.base + 4, 0x03); // DTR, RTS
        }
    }

    fn put(&self, byte: u8) {
        for _ in 0..100_000 {
            // SAFETY: reading the line-status register has no side effects.
            if unsafe { arch::inb(self.base + 5) } & 0x20 != 0 {
                break;
            }
        }
        // SAFETY: writing the transmit register sends one byte.
        unsafe { arch::outb(self.base, byte) }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.put(b'\r');
            }
            self.put(byte);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Uart> = Mutex::new(Uart { base: COM1 });

/// Initialises the UART.
pub fn init() {
    CONSOLE.lock().init();
}

/// Waits until the UART has sent every byte (LSR bit 6, transmitter empty),
/// so nothing is lost when the machine powers off right after.
pub fn drain() {
    let console = CONSOLE.lock();
    for _ in 0..1_000_000 {
        // SAFETY: reading the line-status register has no side effects.
        if unsafe { arch::inb(console.base + 5) } & 0x40 != 0 {
            break;
        }
    }
}

/// The next byte of console input, if the UART holds one (16550: LSR bit 0
/// is "data ready"; reading RBR takes the byte).
pub fn read_byte() -> Option<u8> {
    let console = CONSOLE.lock();
    // SAFETY: reading LSR has no side effects; RBR is read only when it
    // holds a byte, and COM1 is hvm's.
    unsafe { (arch::inb(console.base + 5) & 1 != 0).then(|| arch::inb(console.base)) }
}

/// Writes raw bytes (a cell's output) to the console.
pub fn write_bytes(bytes: &[u8]) {
    let console = CONSOLE.lock();
    for &byte in bytes {
        if byte == b'\n' {
            console.put(b'\r');
        }
        console.put(byte);
    }
}

#[doc(hidden)]
pub fn print_args(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints a line prefixed with `hvm: `.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::serial::print_args(format_args!("hvm: {}\n", format_args!($($arg)*)))
    };
}
