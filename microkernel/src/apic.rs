//! The local APIC timer that drives ticks, timeslices and timeouts.
//!
//! Under hvm the APIC is the physical one, reached through x2APIC MSRs that
//! hvm passes to cell 0; bare, it is the xAPIC (or x2APIC when the CPU has
//! it). The `x2apic` crate picks the mode from CPUID.

use spin::Mutex;
use x2apic::lapic::{LocalApic, LocalApicBuilder, TimerDivide, TimerMode};

use crate::arch;

struct Apic(LocalApic);

// SAFETY: there is one CPU; the APIC is only touched with interrupts off
// under the lock.
unsafe impl Send for Apic {}

static APIC: Mutex<Option<Apic>> = Mutex::new(None);

/// Initial count of the periodic timer (divide by 16): one kernel tick.
pub const TIMER_INITIAL_COUNT: u32 = 20_000;

/// Starts the periodic tick. `xapic_base` is the virtual address of the
/// xAPIC registers, used only when the CPU lacks x2APIC.
pub fn init(xapic_base: u64) -> Result<&'static str, &'static str> {
    let mut apic = LocalApicBuilder::new()
        .timer_vector(usize::from(arch::TIMER_VECTOR))
        .error_vector(usize::from(arch::ERROR_VECTOR))
        .spurious_vector(usize::from(arch::SPURIOUS_VECTOR))
        .timer_mode(TimerMode::Periodic)
        .timer_divide(TimerDivide::Div16)
        .timer_initial(TIMER_INITIAL_COUNT)
        .set_xapic_base(xapic_base)
        .build()?;
    // SAFETY: the kernel owns the local APIC (bare) or hvm gave it to cell
    // 0; interrupts stay off until the first return to user mode or idle.
    unsafe { apic.enable() };
    let has_x2apic = core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0;
    *APIC.lock() = Some(Apic(apic));
    Ok(if has_x2apic { "x2apic" } else { "xapic" })
}

/// Signals the end of the current interrupt.
pub fn end_of_interrupt() {
    if let Some(apic) = APIC.lock().as_mut() {
        // SAFETY: called only from an APIC interrupt's handler.
        unsafe { apic.0.end_of_interrupt() };
    }
}
