//! Measures the TSC rate at boot against a timer of known frequency.
//!
//! CPUID leaf 0x15 gives the rate outright on CPUs that enumerate their
//! crystal; otherwise hvm counts TSC ticks across a one-shot countdown of
//! the 8254 PIT's channel 2, whose gate and output are reached through
//! port 0x61 (as Linux's `pit_calibrate_tsc` does). The arithmetic, bounds
//! and fallback are `hvm_logic::clock`. Under Bochs the PIT runs on the
//! same instruction clock as the TSC, so the result is the `ips` setting.

use hvm_logic::clock::{self, Rate};

use crate::arch;

/// Port 0x61 (NMI status and control): bit 0 gates PIT channel 2, bit 1
/// routes it to the speaker, bit 5 reads its output.
const PORT_B: u16 = 0x61;
/// The PIT's mode/command register and channel 2's data port (8254
/// datasheet, "Control Word Format").
const PIT_COMMAND: u16 = 0x43;
const PIT_CHANNEL2: u16 = 0x42;
/// Polls of OUT2 before hvm gives up on a PIT that does not count: far more
/// than 50 ms of port reads on any machine or emulator.
const POLL_LIMIT: u64 = 100_000_000;

/// The TSC rate: CPUID leaf 0x15 when it is complete, else the PIT, else
/// `clock::FALLBACK_HZ`.
pub fn calibrate() -> Rate {
    let max_leaf = arch::cpuid(0, 0).0;
    let crystal = if max_leaf >= 0x15 {
        let (a, b, c, _) = arch::cpuid(0x15, 0);
        clock::from_crystal(a, b, c)
    } else {
        None
    };
    let pit = if crystal.is_none() {
        measure_pit()
    } else {
        None
    };
    let rate = clock::choose(crystal, pit);
    let source = match rate.source {
        clock::Source::Crystal => "from CPUID leaf 0x15",
        clock::Source::Pit => "measured against the PIT",
        clock::Source::Fallback => "not measurable; assumed",
    };
    log!("tsc: {} kHz ({})", rate.hz / 1000, source);
    rate
}

/// TSC ticks across a [`clock::PIT_COUNT`]-tick countdown of PIT channel 2
/// in mode 0 ("interrupt on terminal count": OUT goes low when the count
/// is written and high when it reaches zero), as a rate.
fn measure_pit() -> Option<u64> {
    let [low, high] = clock::PIT_COUNT.to_le_bytes();
    // SAFETY: port 0x61's gate and speaker bits and PIT channel 2 drive
    // only the speaker line, which is kept off; nothing else uses them.
    let saved = unsafe {
        let saved = arch::inb(PORT_B);
        arch::outb(PORT_B, (saved & !0x02) | 0x01);
        // Channel 2, low byte then high byte, mode 0, binary.
        arch::outb(PIT_COMMAND, 0b1011_0000);
        arch::outb(PIT_CHANNEL2, low);
        arch::outb(PIT_CHANNEL2, high);
        saved
    };
    let start = arch::rdtsc();
    let mut polls = 0u64;
    // SAFETY: reading port 0x61 has no side effect.
    while unsafe { arch::inb(PORT_B) } & 0x20 == 0 {
        polls += 1;
        if polls == POLL_LIMIT {
            break;
        }
    }
    let end = arch::rdtsc();
    // SAFETY: puts back the gate and speaker bits as they were.
    unsafe { arch::outb(PORT_B, saved) };
    if polls == POLL_LIMIT {
        return None;
    }
    clock::from_pit(end.wrapping_sub(start), u64::from(clock::PIT_COUNT))
}
