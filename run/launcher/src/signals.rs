//! SIGTERM, SIGINT and SIGHUP: the launcher ends its emulator, then exits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that end `run/up`, and its emulator with it.
pub const TERMINATING: [i32; 3] = [SIGTERM, SIGINT, SIGHUP];

/// The terminating signal caught so far (0: none), once
/// [`catch_terminating`] has put the handlers in.
static CAUGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// From now on a terminating signal does not end the process at once. It
/// is noted, and [`boot`](crate::boot) ends its emulator with whatever the
/// emulator started, puts the terminal back and answers
/// [`Outcome::Signalled`](crate::Outcome::Signalled). A second one ends the
/// process at once, with the same status, in case that clean-up hangs.
///
/// Before this the signals keep their default action, which is right while
/// there is no emulator to end (`run/up` building). The boot tests do not
/// call it: an interrupted test run ends its emulators as it always did,
/// through the terminal's process group.
pub fn catch_terminating() -> Result<(), String> {
    if CAUGHT.get().is_some() {
        return Ok(());
    }
    let caught = Arc::new(AtomicUsize::new(0));
    let again = Arc::new(AtomicBool::new(false));
    for signal in TERMINATING {
        // signal-hook runs a signal's actions in the order they were
        // registered: the first signal finds `again` false, then sets it.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            exit_status(signal),
            Arc::clone(&again),
        )
        .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&again)))
        .and_then(|_| {
            signal_hook::flag::register_usize(signal, Arc::clone(&caught), signal as usize)
        })
        .map_err(|e| format!("cannot catch {}: {e}", name(signal)))?;
    }
    let _ = CAUGHT.set(caught);
    Ok(())
}

/// The terminating signal caught, if any.
pub fn caught() -> Option<i32> {
    let signal = CAUGHT.get()?.load(Ordering::SeqCst);
    (signal != 0).then_some(signal as i32)
}

/// Whether terminating signals are caught ([`catch_terminating`]).
pub(crate) fn catching() -> bool {
    CAUGHT.get().is_some()
}

/// The conventional exit status of a process ended by `signal`.
pub fn exit_status(signal: i32) -> i32 {
    128 + signal
}

/// `SIGTERM` for SIGTERM, and so on.
pub fn name(signal: i32) -> &'static str {
    signal_hook::low_level::signal_name(signal).unwrap_or("a signal")
}

/// Sends SIGKILL to every process in the process group `group` (an
/// emulator started as the leader of a group of its own, with whatever it
/// started since).
pub(crate) fn kill_group(group: u32) {
    let Ok(group) = libc::pid_t::try_from(group) else {
        return;
    };
    // -0 and -1 would name our own group and every process: never those.
    if group > 1 {
        // SAFETY: kill(2) takes two integers and touches none of our
        // memory; a negative pid names the process group (kill(2)).
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}
