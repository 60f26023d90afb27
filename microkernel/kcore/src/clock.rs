//! Timer calibration: the TSC's and the APIC timer's rates, and the tick.
//!
//! The local APIC timer counts at a rate the architecture does not fix (the
//! bus or crystal clock; SDM Vol. 3 11.5.4 "APIC Timer"), so the kernel
//! measures it: first the TSC's rate, from CPUID leaf 0x15 (SDM Vol. 2
//! CPUID, "Time Stamp Counter and Nominal Core Crystal Clock Information
//! Leaf") or else against the PIT's fixed 1.193182 MHz, then the APIC
//! timer's count rate against the TSC. This module judges the measurements
//! and turns them into the timer's divide and initial count; the kernel
//! does the port, MSR and TSC accesses.
//!
//! Invariants: every rate it returns lies within the bounds below, so an
//! absurd measurement (a missing PIT reads as all ones; a hypervisor may
//! answer CPUID with zeros) gives `None` and the kernel falls back to the
//! nominal count it used before calibration existed.

/// The PIT's input clock, Hz (Intel 8254 datasheet; every PC since 1981).
pub const PIT_HZ: u64 = 1_193_182;

/// PIT counts in one calibration window: 10 ms (11 931.82 rounded).
pub const PIT_WINDOW_COUNTS: u16 = 11_932;

/// TSC ticks per calibration window of the APIC timer, as a fraction of
/// the TSC's rate: 1/100 s.
pub const APIC_WINDOWS_PER_SECOND: u64 = 100;

/// The slowest TSC believed (a 10 MHz TSC is older than x86-64).
pub const MIN_TSC_HZ: u64 = 10_000_000;
/// The fastest TSC believed.
pub const MAX_TSC_HZ: u64 = 20_000_000_000;
/// The slowest APIC timer count rate believed (before the divider).
pub const MIN_APIC_HZ: u64 = 1_000_000;
/// The fastest APIC timer count rate believed (before the divider).
pub const MAX_APIC_HZ: u64 = 20_000_000_000;

/// The divider the tick runs with when the count fits (the one the kernel
/// always used).
pub const PREFERRED_DIVIDE: u32 = 16;
/// The smallest initial count a tick may have: one count is then at most
/// 0.1 % of the tick.
pub const MIN_TICK_COUNT: u64 = 1_000;
/// The initial count with [`PREFERRED_DIVIDE`] when nothing could be
/// measured (the uncalibrated value the kernel started with).
pub const NOMINAL_TICK_COUNT: u32 = 20_000;

/// The divide values the APIC timer offers (SDM Figure 11-10).
pub const DIVIDES: [u32; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// The TSC's rate from CPUID leaf 0x15: `crystal_hz * numerator /
/// denominator` (EAX is the denominator, EBX the numerator, ECX the crystal
/// frequency). `None` when a field is zero (not enumerated) or the result
/// is out of bounds.
pub fn tsc_hz_from_cpuid_15(denominator: u32, numerator: u32, crystal_hz: u32) -> Option<u64> {
    if denominator == 0 || numerator == 0 || crystal_hz == 0 {
        return None;
    }
    let hz = u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator);
    within(hz, MIN_TSC_HZ, MAX_TSC_HZ)
}

/// The TSC's rate from `tsc_elapsed` TSC ticks over `pit_counts` PIT counts.
pub fn tsc_hz_from_pit(tsc_elapsed: u64, pit_counts: u64) -> Option<u64> {
    within(
        rate(tsc_elapsed, pit_counts, PIT_HZ)?,
        MIN_TSC_HZ,
        MAX_TSC_HZ,
    )
}

/// The APIC timer's count rate before the divider: `counted` counts at
/// divide `divide` over `tsc_elapsed` ticks of a `tsc_hz` TSC.
pub fn apic_hz(counted: u64, divide: u32, tsc_elapsed: u64, tsc_hz: u64) -> Option<u64> {
    let counted = counted.checked_mul(u64::from(divide))?;
    within(
        rate(counted, tsc_elapsed, tsc_hz)?,
        MIN_APIC_HZ,
        MAX_APIC_HZ,
    )
}

/// How to program the periodic timer for one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerSetting {
    /// The divide value, one of [`DIVIDES`].
    pub divide: u32,
    /// The initial count.
    pub initial_count: u32,
}

impl TimerSetting {
    /// The setting used when nothing could be measured.
    pub const NOMINAL: TimerSetting = TimerSetting {
        divide: PREFERRED_DIVIDE,
        initial_count: NOMINAL_TICK_COUNT,
    };
}

/// The setting for a tick of `tick_microseconds` on an APIC timer counting
/// at `apic_hz` before the divider: [`PREFERRED_DIVIDE`] if its count is at
/// least [`MIN_TICK_COUNT`] and fits 32 bits, else the largest divide
/// whose count is that fine, else the smallest whose count fits. The count
/// is rounded to the nearest.
pub fn tick_setting(apic_hz: u64, tick_microseconds: u64) -> Option<TimerSetting> {
    let count_at = |divide: u32| {
        let divided = u128::from(apic_hz) * u128::from(tick_microseconds);
        let scale = 1_000_000 * u128::from(divide);
        (divided + scale / 2) / scale
    };
    let fits = |count: u128| (1..=u128::from(u32::MAX)).contains(&count);
    let fine = |count: u128| count >= u128::from(MIN_TICK_COUNT);
    let preferred = count_at(PREFERRED_DIVIDE);
    let divide = if fits(preferred) && fine(preferred) {
        PREFERRED_DIVIDE
    } else if let Some(&divide) = DIVIDES.iter().rev().find(|&&d| {
        let count = count_at(d);
        fits(count) && fine(count)
    }) {
        divide
    } else {
        *DIVIDES.iter().find(|&&d| fits(count_at(d)))?
    };
    Some(TimerSetting {
        divide,
        initial_count: u32::try_from(count_at(divide)).ok()?,
    })
}

/// The measured rates behind a calibrated tick; shown in the boot line as
/// `calibrated: tsc 200 MHz by cpuid, apic 200 MHz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calibration {
    /// The TSC's rate.
    pub tsc_hz: u64,
    /// Where it came from: `cpuid` (leaf 0x15) or `pit`.
    pub tsc_source: &'static str,
    /// The APIC timer's count rate before the divider.
    pub apic_hz: u64,
}

impl core::fmt::Display for Calibration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mhz = |hz: u64| (hz + 500_000) / 1_000_000;
        write!(
            f,
            "calibrated: tsc {} MHz by {}, apic {} MHz",
            mhz(self.tsc_hz),
            self.tsc_source,
            mhz(self.apic_hz)
        )
    }
}

/// `counted * reference_hz / reference_elapsed`, rounded to the nearest;
/// `None` for an empty window or nothing counted.
fn rate(counted: u64, reference_elapsed: u64, reference_hz: u64) -> Option<u64> {
    if reference_elapsed == 0 || counted == 0 {
        return None;
    }
    let product = u128::from(counted) * u128::from(reference_hz);
    let elapsed = u128::from(reference_elapsed);
    u64::try_from((product + elapsed / 2) / elapsed).ok()
}

fn within(value: u64, min: u64, max: u64) -> Option<u64> {
    (min..=max).contains(&value).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_15_gives_the_tsc_rate() {
        // What hvm answers cell 0: crystal = TSC.
        assert_eq!(tsc_hz_from_cpuid_15(1, 1, 200_000_000), Some(200_000_000));
        // A Skylake client: 24 MHz crystal, ratio 216/2.
        assert_eq!(
            tsc_hz_from_cpuid_15(2, 216, 24_000_000),
            Some(2_592_000_000)
        );
    }

    #[test]
    fn cpuid_15_without_a_field_is_not_enumerated() {
        assert_eq!(tsc_hz_from_cpuid_15(0, 1, 200_000_000), None);
        assert_eq!(tsc_hz_from_cpuid_15(2, 0, 24_000_000), None);
        assert_eq!(tsc_hz_from_cpuid_15(2, 216, 0), None);
        // Enumerated but absurd: 1 MHz.
        assert_eq!(tsc_hz_from_cpuid_15(1, 1, 1_000_000), None);
    }

    #[test]
    fn pit_window_measures_the_tsc() {
        // 10 ms at 200 MHz is 2 000 000 ticks over 11 932 PIT counts.
        let elapsed = 200_000_000 * u64::from(PIT_WINDOW_COUNTS) / PIT_HZ;
        let hz = tsc_hz_from_pit(elapsed, u64::from(PIT_WINDOW_COUNTS)).unwrap();
        assert!(hz.abs_diff(200_000_000) < 200, "{hz}");
    }

    #[test]
    fn an_absent_pit_is_absurd() {
        // The gate reads as already expired: a few TSC ticks for a window.
        assert_eq!(tsc_hz_from_pit(40, u64::from(PIT_WINDOW_COUNTS)), None);
        assert_eq!(tsc_hz_from_pit(2_000_000, 0), None);
        // A PIT that never expired until the loop gave up.
        assert_eq!(
            tsc_hz_from_pit(u64::MAX, u64::from(PIT_WINDOW_COUNTS)),
            None
        );
    }

    #[test]
    fn apic_rate_is_measured_against_the_tsc() {
        // QEMU: a 1 GHz APIC timer at divide 16 counts 625 000 in 10 ms of
        // a 3 GHz TSC.
        assert_eq!(
            apic_hz(625_000, 16, 30_000_000, 3_000_000_000),
            Some(1_000_000_000)
        );
        // Bochs: TSC and APIC timer both run at the 200 MHz ips.
        assert_eq!(
            apic_hz(125_000, 16, 2_000_000, 200_000_000),
            Some(200_000_000)
        );
        // A timer that did not count, or an empty window.
        assert_eq!(apic_hz(0, 16, 2_000_000, 200_000_000), None);
        assert_eq!(apic_hz(125_000, 16, 0, 200_000_000), None);
        assert_eq!(apic_hz(u64::MAX, 128, 1, u64::MAX), None);
    }

    #[test]
    fn tick_keeps_divide_16_when_it_can() {
        assert_eq!(
            tick_setting(1_000_000_000, 1000),
            Some(TimerSetting {
                divide: 16,
                initial_count: 62_500
            })
        );
        assert_eq!(
            tick_setting(200_000_000, 1000),
            Some(TimerSetting {
                divide: 16,
                initial_count: 12_500
            })
        );
    }

    #[test]
    fn tick_count_rounds_to_the_nearest() {
        // 14 318 180 Hz / 16 / 1000 = 894.886: too coarse at 16, so 8 gives
        // 1 789.7725, rounded up.
        assert_eq!(
            tick_setting(14_318_180, 1000),
            Some(TimerSetting {
                divide: 8,
                initial_count: 1_790
            })
        );
    }

    #[test]
    fn slow_timer_takes_a_smaller_divide() {
        // 1 MHz: 62.5 at 16; only divide 1 gives 1 000 counts.
        assert_eq!(
            tick_setting(1_000_000, 1000),
            Some(TimerSetting {
                divide: 1,
                initial_count: 1_000
            })
        );
        // Slower still: the finest the timer offers, even if coarse.
        assert_eq!(
            tick_setting(1_000_000, 100),
            Some(TimerSetting {
                divide: 1,
                initial_count: 100
            })
        );
    }

    #[test]
    fn long_tick_takes_a_larger_divide() {
        // 10 s at 20 GHz is 12.5e9 at divide 16: too big; 128 fits.
        assert_eq!(
            tick_setting(20_000_000_000, 10_000_000),
            Some(TimerSetting {
                divide: 128,
                initial_count: 1_562_500_000
            })
        );
        // Nothing fits.
        assert_eq!(tick_setting(u64::MAX, u64::MAX), None);
        assert_eq!(tick_setting(0, 1000), None);
    }

    #[test]
    fn calibration_shows_rounded_megahertz() {
        let calibration = Calibration {
            tsc_hz: 2_612_600_000,
            tsc_source: "pit",
            apic_hz: 1_004_499_999,
        };
        assert_eq!(
            calibration.to_string(),
            "calibrated: tsc 2613 MHz by pit, apic 1004 MHz"
        );
    }

    #[test]
    fn nominal_setting_is_the_old_count() {
        assert_eq!(TimerSetting::NOMINAL.divide, 16);
        assert_eq!(TimerSetting::NOMINAL.initial_count, 20_000);
    }
}
