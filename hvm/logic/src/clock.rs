//! TSC calibration arithmetic: a measured rate, checked, rounded and chosen.
//!
//! hvm does not assume a TSC frequency: at boot it measures the TSC against
//! a timer of known frequency and tells every cell the result (CPUID leaves
//! 0x15 and 0x16, see `cpuid`), and it derives time slices, watchdog
//! periods and timeouts from it. The source is CPUID leaf 0x15 when the CPU
//! gives both the crystal ratio and the crystal's frequency, otherwise the
//! 8254 PIT's channel 2 as a one-shot countdown. This module holds the
//! arithmetic; `hvm/src/clock.rs` reads the hardware.

/// The 8254 PIT's input clock (the PC's 14.31818 MHz oscillator / 12).
pub const PIT_HZ: u64 = 1_193_182;

/// The PIT countdown hvm measures against: 50 ms, the most a 16-bit count
/// holds at [`PIT_HZ`] with a margin (54.9 ms is the limit).
pub const PIT_COUNT: u16 = (PIT_HZ * 50 / 1000) as u16;

/// The rate used when nothing could be measured: Bochs' instruction clock
/// at the `ips` the launcher gives it, which is what hvm assumed before it
/// measured.
pub const FALLBACK_HZ: u64 = 200_000_000;

/// A measured rate outside these bounds is a failed measurement (a PIT that
/// never counted, an emulator's stalled TSC), not a TSC.
pub const MIN_HZ: u64 = 10_000_000;
/// See [`MIN_HZ`].
pub const MAX_HZ: u64 = 20_000_000_000;

/// Where a rate came from, as the summary reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// CPUID leaf 0x15: crystal frequency times the TSC/crystal ratio.
    Crystal,
    /// Counted against the PIT.
    Pit,
    /// Nothing usable was measured: [`FALLBACK_HZ`].
    Fallback,
}

/// The TSC's rate and how hvm knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Ticks per second.
    pub hz: u64,
    /// Where `hz` came from.
    pub source: Source,
}

impl Rate {
    /// TSC ticks in one millisecond.
    pub fn per_ms(&self) -> u64 {
        self.hz / 1000
    }

    /// The rate in whole MHz, rounded to nearest (for the summary line and
    /// CPUID leaf 0x16).
    pub fn mhz(&self) -> u64 {
        (self.hz + 500_000) / 1_000_000
    }
}

fn sane(hz: u64) -> Option<u64> {
    (MIN_HZ..=MAX_HZ).contains(&hz).then_some(hz)
}

/// The TSC rate CPUID leaf 0x15 gives, if it gives one: EAX is the ratio's
/// denominator, EBX its numerator, ECX the crystal's frequency in Hz; any
/// of them zero means "not enumerated" (SDM Vol. 2A, CPUID leaf 15H).
pub fn from_crystal(eax: u32, ebx: u32, ecx: u32) -> Option<u64> {
    if eax == 0 || ebx == 0 || ecx == 0 {
        return None;
    }
    sane(u64::from(ecx) * u64::from(ebx) / u64::from(eax))
}

/// The TSC rate from `tsc_ticks` counted while the PIT counted `pit_ticks`,
/// rounded to the nearest kHz (the PIT read takes about a microsecond, so
/// finer digits are noise).
pub fn from_pit(tsc_ticks: u64, pit_ticks: u64) -> Option<u64> {
    if pit_ticks == 0 {
        return None;
    }
    let hz = u128::from(tsc_ticks) * u128::from(PIT_HZ) / u128::from(pit_ticks);
    let khz = (hz + 500) / 1000;
    sane(u64::try_from(khz * 1000).ok()?)
}

/// The rate to use: the crystal if CPUID gave one, else the PIT's, else the
/// fallback.
pub fn choose(crystal: Option<u64>, pit: Option<u64>) -> Rate {
    match (crystal, pit) {
        (Some(hz), _) => Rate {
            hz,
            source: Source::Crystal,
        },
        (None, Some(hz)) => Rate {
            hz,
            source: Source::Pit,
        },
        (None, None) => Rate {
            hz: FALLBACK_HZ,
            source: Source::Fallback,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_countdown_is_fifty_milliseconds() {
        assert_eq!(PIT_COUNT, 59_659);
    }

    #[test]
    fn crystal_needs_all_three_values() {
        assert_eq!(from_crystal(0, 200, 24_000_000), None);
        assert_eq!(from_crystal(2, 0, 24_000_000), None);
        assert_eq!(from_crystal(2, 200, 0), None);
        // A 24 MHz crystal at 2/200 (a 2.4 GHz TSC).
        assert_eq!(from_crystal(2, 200, 24_000_000), Some(2_400_000_000));
        // What hvm tells its own cells (EAX = EBX = 1).
        assert_eq!(from_crystal(1, 1, 200_000_000), Some(200_000_000));
    }

    #[test]
    fn crystal_rate_outside_the_bounds_is_refused() {
        assert_eq!(from_crystal(1, 1, 1_000_000), None);
        assert_eq!(from_crystal(1, 200, u32::MAX), None);
    }

    #[test]
    fn pit_measurement_at_bochs_rate_gives_200_mhz() {
        // 50 ms at 200 MHz, off by a tick either way.
        let ticks = 200_000_000 * u64::from(PIT_COUNT) / PIT_HZ;
        assert_eq!(from_pit(ticks, u64::from(PIT_COUNT)), Some(200_000_000));
        assert_eq!(from_pit(ticks + 1, u64::from(PIT_COUNT)), Some(200_000_000));
        assert_eq!(from_pit(ticks - 1, u64::from(PIT_COUNT)), Some(200_000_000));
    }

    #[test]
    fn pit_measurement_rounds_to_the_nearest_khz() {
        // 2 893 456 789 Hz measured: 2 893 457 kHz.
        let pit = u64::from(PIT_COUNT);
        let ticks = 2_893_456_789u64 * pit / PIT_HZ;
        assert_eq!(from_pit(ticks, pit), Some(2_893_457_000));
    }

    #[test]
    fn failed_pit_measurements_are_refused() {
        assert_eq!(from_pit(1_000, 0), None);
        assert_eq!(from_pit(0, u64::from(PIT_COUNT)), None);
        // A TSC that barely moved (10 kHz) or raced (1 THz).
        assert_eq!(from_pit(500, u64::from(PIT_COUNT)), None);
        assert_eq!(from_pit(u64::MAX, u64::from(PIT_COUNT)), None);
    }

    #[test]
    fn choice_prefers_crystal_then_pit_then_fallback() {
        assert_eq!(
            choose(Some(2_400_000_000), Some(2_399_000_000)).source,
            Source::Crystal
        );
        assert_eq!(
            choose(None, Some(199_998_000)),
            Rate {
                hz: 199_998_000,
                source: Source::Pit
            }
        );
        assert_eq!(
            choose(None, None),
            Rate {
                hz: FALLBACK_HZ,
                source: Source::Fallback
            }
        );
    }

    #[test]
    fn rate_in_milliseconds_and_rounded_megahertz() {
        let rate = choose(None, Some(199_998_000));
        assert_eq!(rate.mhz(), 200);
        assert_eq!(rate.per_ms(), 199_998);
        assert_eq!(choose(None, Some(2_893_457_000)).mhz(), 2893);
    }
}
