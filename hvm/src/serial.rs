//! The console: a polled 16550 UART on COM1, shared by hvm and its cells.
//!
//! Output is line-oriented and serialised by a spin lock, so a cell's line
//! and an hvm line never interleave mid-line. It is buffered (`Output`) and
//! handed to the UART a FIFO-full at a time as hvm passes by.

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

    /// LSR bit 5: the transmit FIFO is empty and takes up to [`FIFO`]
    /// bytes at once.
    fn ready(&self) -> bool {
        // SAFETY: reading the line-status register has no side effects.
        unsafe { arch::inb(self.base + 5) & 0x20 != 0 }
    }

    fn send(&self, byte: u8) {
        // SAFETY: writing the transmit register queues one byte; callers
        // saw the FIFO empty and write at most FIFO bytes.
        unsafe { arch::outb(self.base, byte) }
    }
}

/// The 16550's transmit FIFO.
const FIFO: usize = 16;

/// Output not yet handed to the UART. The UART sends a byte per 87 µs at
/// 115 200 baud; Bochs times that in guest time, so writing a line and
/// waiting for it cost about 17 000 cycles a character of everyone's time.
/// Bytes wait here instead and go out a FIFO-full at a time whenever hvm
/// passes by (`pump`: every exit and every turn), and all of them before
/// a power-off (`drain`). A full buffer makes the writer wait, as before.
struct Output {
    ring: [u8; 32 * 1024],
    head: usize,
    len: usize,
}

impl Output {
    fn push(&mut self, uart: &Uart, byte: u8) {
        if self.len == self.ring.len() {
            self.wait_and_send(uart);
        }
        let at = (self.head + self.len) % self.ring.len();
        self.ring[at] = byte;
        self.len += 1;
    }

    /// Hands the UART up to a FIFO-full if it can take it now.
    fn send_some(&mut self, uart: &Uart) {
        if self.len == 0 || !uart.ready() {
            return;
        }
        for _ in 0..FIFO.min(self.len) {
            uart.send(self.ring[self.head]);
            self.head = (self.head + 1) % self.ring.len();
            self.len -= 1;
        }
    }

    fn wait_and_send(&mut self, uart: &Uart) {
        // A UART that never becomes ready loses output rather than hvm.
        for _ in 0..1_000_000 {
            if uart.ready() {
                break;
            }
        }
        self.send_some(uart);
        if self.len == self.ring.len() {
            self.len -= 1;
        }
    }
}

struct Console {
    uart: Uart,
    output: Output,
}

impl Console {
    fn put(&mut self, byte: u8) {
        if byte == b'\n' {
            self.output.push(&self.uart, b'\r');
        }
        self.output.push(&self.uart, byte);
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            self.put(byte);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    uart: Uart { base: COM1 },
    output: Output {
        ring: [0; 32 * 1024],
        head: 0,
        len: 0,
    },
});

/// Initialises the UART.
pub fn init() {
    CONSOLE.lock().uart.init();
}

/// Moves waiting output to the UART as far as it takes it without waiting.
pub fn pump() {
    let mut console = CONSOLE.lock();
    let Console { uart, output } = &mut *console;
    output.send_some(uart);
}

/// Sends every waiting byte and waits until the UART has sent them all
/// (LSR bit 6, transmitter empty), so nothing is lost when the machine
/// powers off or hvm hands the machine to the microkernel right after.
pub fn drain() {
    let mut console = CONSOLE.lock();
    let Console { uart, output } = &mut *console;
    for _ in 0..output.ring.len() {
        if output.len == 0 {
            break;
        }
        output.wait_and_send(uart);
    }
    for _ in 0..1_000_000 {
        // SAFETY: reading the line-status register has no side effects.
        if unsafe { arch::inb(uart.base + 5) } & 0x40 != 0 {
            break;
        }
    }
}

/// The next byte of console input, if the UART holds one (16550: LSR bit 0
/// is "data ready"; reading RBR takes the byte).
pub fn read_byte() -> Option<u8> {
    let console = CONSOLE.lock();
    let base = console.uart.base;
    // SAFETY: reading LSR has no side effects; RBR is read only when it
    // holds a byte, and COM1 is hvm's.
    unsafe { (arch::inb(base + 5) & 1 != 0).then(|| arch::inb(base)) }
}

/// Writes raw bytes (a cell's output) to the console.
pub fn write_bytes(bytes: &[u8]) {
    let mut console = CONSOLE.lock();
    for &byte in bytes {
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
