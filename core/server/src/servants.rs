//! What core's servants need of the machine: the kernel clock for `#c`'s
//! time, and the console for `/dev/cons` (`core_system::ConsoleDevice`).
//!
//! Console input comes from `kernel_info(ConsoleInput)` (root task only;
//! under hvm the `ConsoleRead` hypercall, in bare mode the UART), which
//! never blocks; output goes to the kernel console, whole.

use kasane_servant::servants::cons::{Clock, Time};
use microkernel_abi::{KernelInfoSelector, NO_CONSOLE_INPUT};
use microkernel_rt::console::write_bytes;
use microkernel_rt::user::kernel_info;

/// The kernel's clock, in microseconds since boot.
pub struct KernelClock;

impl Clock for KernelClock {
    fn now(&self) -> Time {
        let micros = kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0);
        Time {
            nanoseconds: micros * 1000,
            ticks: micros,
            frequency: 1_000_000,
        }
    }
}

/// Writes to the kernel console (`/dev/cons`'s output).
pub fn console_out(bytes: &[u8]) {
    write_bytes(bytes);
}

/// The next byte typed on the console, if one is waiting (never blocks).
pub fn console_input() -> Option<u8> {
    match kernel_info(KernelInfoSelector::ConsoleInput) {
        Ok(value) if value < NO_CONSOLE_INPUT => Some(value as u8),
        _ => None,
    }
}
