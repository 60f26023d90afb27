//! The call gate: which call core is handling, shared with the driver.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::{MountDriver, Transport};

/// Which call core is handling, shared between core and the driver so
/// that neither goes through the servant table on every call: core says
/// when a call begins and ends, the driver says whether it blocked.
/// Core is one thread; the atomics are there to make sharing sound, not
/// for contention.
#[derive(Clone, Default)]
pub struct CallGate(pub(crate) Arc<GateState>);

#[derive(Default)]
pub(crate) struct GateState {
    /// The call's serial in bits 32..64 and its pid in bits 0..32; 0
    /// when no call is being handled.
    pub(crate) call: AtomicU64,
    pub(crate) serial: AtomicU32,
    /// The call met an operation still to be answered.
    pub(crate) blocked: AtomicBool,
    /// Some process has a journal: a call's end must be told to the
    /// driver ([`MountDriver::end_call`]).
    pub(crate) journals: AtomicBool,
    /// A link hung up since core last asked ([`MountDriver::take_dead`]).
    pub(crate) hung_up: AtomicBool,
}

impl CallGate {
    /// Core starts handling a call of process `pid`: operations on
    /// posting links are posted and journalled, and a rerun of a parked
    /// call takes its results from the journal (module docs).
    pub fn begin(&self, pid: u32) {
        let serial = self.0.serial.fetch_add(1, Ordering::Relaxed).max(1);
        let word = (u64::from(serial) << 32) | u64::from(pid);
        self.0.call.store(word, Ordering::Relaxed);
        self.0.blocked.store(false, Ordering::Relaxed);
    }

    /// Whether the call being handled met an operation still to be
    /// answered ([`Error::PENDING`]): core parks it, whatever error the
    /// call ended with, and runs it again after a wakeup.
    ///
    /// [`Error::PENDING`]: kasane_servant::Error::PENDING
    pub fn blocked(&self) -> bool {
        self.0.blocked.load(Ordering::Relaxed)
    }

    /// Core is done with the call. True if the driver must hear of it
    /// ([`MountDriver::end_call`]): some process has a journal.
    pub fn end(&self) -> bool {
        self.0.call.store(0, Ordering::Relaxed);
        self.0.journals.load(Ordering::Relaxed)
    }

    /// Whether a link hung up since the last time this was asked: only
    /// then has [`MountDriver::take_dead`] anything to give.
    pub fn take_hang_ups(&self) -> bool {
        self.0.hung_up.swap(false, Ordering::Relaxed)
    }

    /// The call being handled: its pid and serial.
    pub(crate) fn current(&self) -> Option<(u32, u32)> {
        let word = self.0.call.load(Ordering::Relaxed);
        (word != 0).then_some((word as u32, (word >> 32) as u32))
    }

    pub(crate) fn block(&self) {
        self.0.blocked.store(true, Ordering::Relaxed);
    }
}

impl<T: Transport> MountDriver<T> {
    /// The gate core marks its calls with.
    pub fn gate(&self) -> CallGate {
        self.gate.clone()
    }

    /// [`CallGate::begin`].
    pub fn begin_call(&mut self, pid: u32) {
        self.gate.begin(pid);
    }

    /// [`CallGate::blocked`].
    pub fn call_blocked(&self) -> bool {
        self.gate.blocked()
    }

    /// Core is done with the call of `pid`: `parked` if it will run again
    /// (its journal stays), else its journal goes and its spare fids are
    /// clunked.
    pub fn end_call(&mut self, pid: u32, parked: bool) {
        self.gate.end();
        if !parked {
            self.drop_journal(pid);
        }
    }
}
