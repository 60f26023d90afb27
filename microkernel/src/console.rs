//! Kernel console: hypercalls under hvm, the COM1 UART when bare.
//!
//! Output is buffered per line and sent in one hypercall, so a line costs one
//! VM exit rather than one per byte. Reading input sends the partial line
//! first (a prompt has no newline).

use core::fmt::{self, Write};
use hvm_abi::{BootMode, Hypercall, KERNEL_WINDOW_BASE};
use spin::Mutex;

use crate::arch;

struct Console {
    mode: BootMode,
    port: u16,
    /// Physical address of the cell's first byte (to translate buffer
    /// addresses in the kernel window for hypercalls).
    memory_base: u64,
    line: [u8; 256],
    len: usize,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    mode: BootMode::Bare,
    port: 0x3F8,
    memory_base: 0,
    line: [0; 256],
    len: 0,
});

/// Selects the console for the boot mode.
pub fn init(mode: BootMode, port: u16, memory_base: u64) {
    let mut c = CONSOLE.lock();
    c.mode = mode;
    c.port = port;
    c.memory_base = memory_base;
    if mode == BootMode::Bare {
        // SAFETY: in bare mode the kernel owns COM1; 115200 8N1 as hvm did.
        unsafe {
            arch::outb(port + 1, 0);
            arch::outb(port + 3, 0x80);
            arch::outb(port, 1);
            arch::outb(port + 1, 0);
            arch::outb(port + 3, 3);
            arch::outb(port + 2, 0xC7);
        }
    }
}

impl Console {
    fn flush(&mut self) {
        match self.mode {
            BootMode::VmxGuest => {
                // The line buffer is in the kernel image: translate its
                // window address to the physical address hvm checks.
                let phys = self.line.as_ptr() as u64 - KERNEL_WINDOW_BASE + self.memory_base;
                // SAFETY: under hvm; the buffer stays valid during the call.
                unsafe { arch::hypercall(Hypercall::ConsoleWrite as u64, phys, self.len as u64) };
            }
            BootMode::Bare => {
                for &byte in &self.line[..self.len] {
                    if byte == b'\n' {
                        self.put_uart(b'\r');
                    }
                    self.put_uart(byte);
                }
            }
        }
        self.len = 0;
    }

    fn put_uart(&self, byte: u8) {
        for _ in 0..100_000 {
            // SAFETY: the kernel owns COM1 in bare mode.
            if unsafe { arch::inb(self.port + 5) } & 0x20 != 0 {
                break;
            }
        }
        // SAFETY: as above.
        unsafe { arch::outb(self.port, byte) }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            self.line[self.len] = byte;
            self.len += 1;
            if byte == b'\n' || self.len == self.line.len() {
                self.flush();
            }
        }
        Ok(())
    }
}

/// Writes raw bytes (a task's `debug_write`) to the console.
pub fn write_bytes(bytes: &[u8]) {
    let mut console = CONSOLE.lock();
    for &byte in bytes {
        let at = console.len;
        console.line[at] = byte;
        console.len += 1;
        if byte == b'\n' || console.len == console.line.len() {
            console.flush();
        }
    }
}

/// The next byte of console input, if one is waiting: hvm's
/// `ConsoleRead` under VT-x, the UART's receive buffer when bare (16550:
/// LSR bit 0 is "data ready", RBR at the base port). The line buffered so
/// far goes out first: whoever reads input has printed a prompt or an
/// echo that has no newline yet.
pub fn read_byte() -> Option<u8> {
    let mut console = CONSOLE.lock();
    if console.len > 0 {
        console.flush();
    }
    match console.mode {
        BootMode::VmxGuest => {
            // SAFETY: under hvm; the call reads no guest memory.
            let (status, value) = unsafe { arch::hypercall(Hypercall::ConsoleRead as u64, 0, 0) };
            (status == 0 && value < hvm_abi::NO_CONSOLE_INPUT).then_some(value as u8)
        }
        BootMode::Bare => {
            // SAFETY: the kernel owns COM1 in bare mode; reading LSR has no
            // side effects and RBR is read only when it holds a byte.
            unsafe { (arch::inb(console.port + 5) & 1 != 0).then(|| arch::inb(console.port)) }
        }
    }
}

#[doc(hidden)]
pub fn print_args(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints a line on the kernel console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {
        $crate::console::print_args(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Powers the machine off: through hvm when a guest, directly when bare.
pub fn power_off(ok: bool) -> ! {
    let (mode, port) = {
        let mut c = CONSOLE.lock();
        if c.len > 0 {
            c.flush();
        }
        (c.mode, c.port)
    };
    match mode {
        BootMode::VmxGuest => {
            // SAFETY: under hvm; cell 0 may power the machine off.
            unsafe { arch::hypercall(Hypercall::PowerOff as u64, u64::from(!ok), 0) };
        }
        BootMode::Bare => {
            crate::kprintln!("microkernel: poweroff {}", if ok { "ok" } else { "failed" });
            for _ in 0..1_000_000 {
                // SAFETY: reading COM1's line status has no side effects;
                // bit 6 says every byte has left (so none is lost).
                if unsafe { arch::inb(port + 5) } & 0x40 != 0 {
                    break;
                }
            }
            // SAFETY: switching the machine off: QEMU isa-debug-exit, Bochs'
            // shutdown port, then the ACPI PM1a control port of QEMU.
            unsafe {
                arch::outb(0xF4, if ok { 0x10 } else { 0x11 });
                for byte in *b"Shutdown" {
                    arch::outb(0x8900, byte);
                }
                arch::outw(0x604, 0x2000);
            }
        }
    }
    crate::kprintln!("microkernel: poweroff did not take effect; halting");
    arch::halt_forever()
}
