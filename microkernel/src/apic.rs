//! The local APIC timer that drives ticks, timeslices and timeouts.
//!
//! Under hvm the APIC is the physical one, reached through x2APIC MSRs that
//! hvm passes to cell 0; bare, it is the xAPIC (or x2APIC when the CPU has
//! it). The `x2apic` crate picks the mode from CPUID.
//!
//! The timer's count rate is not architectural (SDM Vol. 3 11.5.4), so
//! [`init`] calibrates it before the first tick: the TSC's rate comes from
//! CPUID leaf 0x15 (hvm answers it for cell 0) or, bare, from the PIT; the
//! APIC timer is then timed against the TSC. `microkernel_core::clock`
//! judges the figures and computes the count; when a figure is missing or
//! absurd the tick keeps the nominal count it had before calibration.

use microkernel_core::clock::{self, Calibration, TimerSetting};
use spin::Mutex;
use x2apic::lapic::{LocalApic, LocalApicBuilder, TimerDivide, TimerMode};

use crate::arch;

struct Apic(LocalApic);

// SAFETY: there is one CPU; the APIC is only touched with interrupts off
// under the lock.
unsafe impl Send for Apic {}

static APIC: Mutex<Option<Apic>> = Mutex::new(None);

/// Starts the periodic tick of `tick_microseconds`. `xapic_base` is the
/// virtual address of the xAPIC registers, used only when the CPU lacks
/// x2APIC; `owns_pit` says whether the kernel may time the TSC against the
/// PIT (bare mode: under hvm the PIT's ports are not the cell's). Returns
/// the APIC's mode and what calibration found, or why the tick is nominal.
pub fn init(
    xapic_base: u64,
    owns_pit: bool,
    tick_microseconds: u64,
) -> Result<(&'static str, Result<Calibration, &'static str>), &'static str> {
    let mut apic = LocalApicBuilder::new()
        .timer_vector(usize::from(arch::TIMER_VECTOR))
        .error_vector(usize::from(arch::ERROR_VECTOR))
        .spurious_vector(usize::from(arch::SPURIOUS_VECTOR))
        .timer_mode(TimerMode::Periodic)
        .timer_divide(divide_code(TimerSetting::NOMINAL.divide))
        .timer_initial(TimerSetting::NOMINAL.initial_count)
        .set_xapic_base(xapic_base)
        .build()?;
    // SAFETY: the kernel owns the local APIC (bare) or hvm gave it to cell
    // 0; interrupts stay off until the first return to user mode or idle.
    // The timer is masked at once, so the nominal tick does not fire (and
    // stay pending) during calibration; it is unmasked with its real count.
    unsafe {
        apic.enable();
        apic.disable_timer();
    }
    let calibration = calibrate(&mut apic, owns_pit);
    let setting = calibration
        .ok()
        .and_then(|c| clock::tick_setting(c.apic_hz, tick_microseconds));
    let calibration = match setting {
        Some(_) => calibration,
        None => calibration.and(Err("no tick count fits the measured rate")),
    };
    let setting = setting.unwrap_or(TimerSetting::NOMINAL);
    // SAFETY: as above; the timer restarts periodic with the new count.
    unsafe {
        apic.set_timer_mode(TimerMode::Periodic);
        apic.set_timer_divide(divide_code(setting.divide));
        apic.set_timer_initial(setting.initial_count);
        apic.enable_timer();
    }
    let has_x2apic = core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0;
    *APIC.lock() = Some(Apic(apic));
    Ok((if has_x2apic { "x2apic" } else { "xapic" }, calibration))
}

/// Measures the TSC's rate, then the APIC timer's against it.
fn calibrate(apic: &mut LocalApic, owns_pit: bool) -> Result<Calibration, &'static str> {
    let (tsc_hz, tsc_source) = match tsc_hz_from_cpuid() {
        Some(hz) => (hz, "cpuid"),
        None if owns_pit => {
            // SAFETY: bare, the kernel owns the PIT and port 0x61.
            let hz = unsafe { tsc_hz_from_pit() }.ok_or("the PIT gave an absurd TSC rate")?;
            (hz, "pit")
        }
        None => return Err("no TSC rate in CPUID 0x15"),
    };
    let window = tsc_hz / clock::APIC_WINDOWS_PER_SECOND;
    // SAFETY: the timer is masked while it counts down from the top once
    // (SDM 11.5.4: writing the initial count starts the count); nothing
    // else uses it yet.
    let (counted, elapsed) = unsafe {
        apic.set_timer_mode(TimerMode::OneShot);
        apic.set_timer_divide(divide_code(clock::PREFERRED_DIVIDE));
        apic.set_timer_initial(u32::MAX);
        let start = arch::read_tsc();
        let first = apic.timer_current();
        while arch::read_tsc().wrapping_sub(start) < window {
            core::hint::spin_loop();
        }
        let last = apic.timer_current();
        let end = arch::read_tsc();
        apic.set_timer_initial(0);
        (first.saturating_sub(last), end.wrapping_sub(start))
    };
    let apic_hz = clock::apic_hz(u64::from(counted), clock::PREFERRED_DIVIDE, elapsed, tsc_hz)
        .ok_or("the APIC timer's rate is absurd")?;
    Ok(Calibration {
        tsc_hz,
        tsc_source,
        apic_hz,
    })
}

/// The TSC's rate from CPUID leaf 0x15, when the CPU (or hvm) gives it.
fn tsc_hz_from_cpuid() -> Option<u64> {
    if core::arch::x86_64::__cpuid(0).eax < 0x15 {
        return None;
    }
    let leaf = core::arch::x86_64::__cpuid(0x15);
    clock::tsc_hz_from_cpuid_15(leaf.eax, leaf.ebx, leaf.ecx)
}

/// Times [`clock::PIT_WINDOW_COUNTS`] of PIT channel 2 (about 10 ms) with
/// the TSC. Channel 2's gate is bit 0 of port 0x61 and its output reads
/// back as bit 5; in mode 0 the output goes low when the count is written
/// and high at terminal count (Intel 8254 datasheet, "Mode 0"). A missing
/// PIT reads as all ones, so its output looks high from the start.
///
/// # Safety
/// The caller owns the PIT and port 0x61.
unsafe fn tsc_hz_from_pit() -> Option<u64> {
    /// Far more polls than 10 ms takes anywhere, so a stuck gate ends.
    const MAX_POLLS: u32 = 50_000_000;
    // SAFETY: the caller owns the ports; the speaker stays off (bit 1).
    unsafe {
        let control = arch::inb(0x61);
        arch::outb(0x61, (control & !0x02) | 0x01);
        // Channel 2, low then high byte, mode 0, binary.
        arch::outb(0x43, 0b1011_0000);
        let [low, high] = clock::PIT_WINDOW_COUNTS.to_le_bytes();
        arch::outb(0x42, low);
        arch::outb(0x42, high);
        let start = arch::read_tsc();
        let mut polls = 0;
        let mut expired = arch::inb(0x61) & 0x20 != 0;
        if expired {
            arch::outb(0x61, control);
            return None;
        }
        while !expired && polls < MAX_POLLS {
            expired = arch::inb(0x61) & 0x20 != 0;
            polls += 1;
        }
        let end = arch::read_tsc();
        arch::outb(0x61, control);
        if !expired {
            return None;
        }
        clock::tsc_hz_from_pit(end.wrapping_sub(start), u64::from(clock::PIT_WINDOW_COUNTS))
    }
}

fn divide_code(divide: u32) -> TimerDivide {
    match divide {
        1 => TimerDivide::Div1,
        2 => TimerDivide::Div2,
        4 => TimerDivide::Div4,
        8 => TimerDivide::Div8,
        32 => TimerDivide::Div32,
        64 => TimerDivide::Div64,
        128 => TimerDivide::Div128,
        _ => TimerDivide::Div16,
    }
}

/// Signals the end of the current interrupt.
pub fn end_of_interrupt() {
    if let Some(apic) = APIC.lock().as_mut() {
        // SAFETY: called only from an APIC interrupt's handler.
        unsafe { apic.0.end_of_interrupt() };
    }
}
