//! The life cycle of a cell and what hvm does when one fails.
//!
//! A cell is created from the manifest, runs, and may fail (triple fault,
//! stray memory access, unhandled exit, missed heartbeats). Its manifest
//! policy decides: stop it and carry on, restart it from its pristine image up
//! to a limit, or power the machine off as a failure. The machine powers off
//! cleanly when no cell is left running.

/// Life-cycle state (mirrors `hvm_abi::CellState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Stopped,
    Failed,
}

/// The manifest's failure policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Stop,
    Restart { limit: u32 },
    Poweroff,
}

/// What hvm must do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Reload the pristine image and start again; `attempt` counts from 1.
    Restart { attempt: u32 },
    /// Leave the cell stopped; others keep running.
    Stop,
    /// Leave it stopped because it already used all its restarts.
    StopAfterLimit { restarts: u32 },
    /// Power the machine off, reporting failure.
    PowerOff,
}

/// One cell's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Life {
    pub state: State,
    pub policy: Policy,
    pub restarts: u32,
}

impl Life {
    /// A cell described but not started.
    pub fn new(policy: Policy) -> Self {
        Self {
            state: State::Created,
            policy,
            restarts: 0,
        }
    }

    /// The cell was launched.
    pub fn started(&mut self) {
        self.state = State::Running;
    }

    /// The cell asked to stop, or was stopped by cell 0.
    pub fn stopped(&mut self) {
        self.state = State::Stopped;
    }

    /// The cell failed; returns what to do and updates the state.
    pub fn failed(&mut self) -> Decision {
        match self.policy {
            Policy::Stop => {
                self.state = State::Stopped;
                Decision::Stop
            }
            Policy::Poweroff => {
                self.state = State::Stopped;
                Decision::PowerOff
            }
            Policy::Restart { limit } if self.restarts < limit => {
                self.restarts += 1;
                self.state = State::Failed;
                Decision::Restart {
                    attempt: self.restarts,
                }
            }
            Policy::Restart { .. } => {
                self.state = State::Stopped;
                Decision::StopAfterLimit {
                    restarts: self.restarts,
                }
            }
        }
    }

    /// Whether the cell still needs CPU time (running, or about to restart).
    pub fn alive(&self) -> bool {
        matches!(self.state, State::Running | State::Failed)
    }
}

/// Why a cell failed, as hvm reports it and counts restarts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    TripleFault,
    /// The guest asked for a reset (i8042 0xFE, port 0xCF9, ACPI reset).
    ResetRequested,
    /// An exit hvm does not handle, or an access it refuses.
    Unhandled,
    /// The watchdog expired.
    MissedHeartbeats,
    /// The cell reported a fault itself.
    Reported,
}

/// The heartbeat watchdog of one cell (manifest `heartbeat_ms`).
///
/// It arms at the cell's first sign of life (a Heartbeat hypercall, or for
/// a Linux cell the first bytes it sends on its link), so a slow boot is
/// not a missed heartbeat; after that, every sign of life pushes the
/// deadline one period ahead. Time is in TSC ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchdog {
    period: u64,
    deadline: Option<u64>,
}

impl Watchdog {
    /// A watchdog with `period` ticks (0: never expires).
    pub fn new(period: u64) -> Self {
        Self {
            period,
            deadline: None,
        }
    }

    /// A sign of life at `now`.
    pub fn feed(&mut self, now: u64) {
        if self.period != 0 {
            self.deadline = Some(now.saturating_add(self.period));
        }
    }

    /// Back to unarmed (the cell restarted).
    pub fn disarm(&mut self) {
        self.deadline = None;
    }

    /// Whether the deadline passed without a sign of life.
    pub fn expired(&self, now: u64) -> bool {
        self.deadline.is_some_and(|deadline| now > deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_arms_on_first_heartbeat_and_expires() {
        let mut dog = Watchdog::new(100);
        assert!(
            !dog.expired(1_000_000),
            "unarmed until the first sign of life"
        );
        dog.feed(1000);
        assert!(!dog.expired(1100));
        assert!(dog.expired(1101));
        dog.feed(1101);
        assert!(!dog.expired(1150));
        dog.disarm();
        assert!(!dog.expired(u64::MAX));
        let mut off = Watchdog::new(0);
        off.feed(5);
        assert!(!off.expired(u64::MAX));
    }

    #[test]
    fn restart_until_the_limit_then_stop() {
        let mut life = Life::new(Policy::Restart { limit: 2 });
        life.started();
        assert_eq!(life.failed(), Decision::Restart { attempt: 1 });
        assert!(life.alive());
        life.started();
        assert_eq!(life.failed(), Decision::Restart { attempt: 2 });
        life.started();
        assert_eq!(life.failed(), Decision::StopAfterLimit { restarts: 2 });
        assert!(!life.alive());
    }

    #[test]
    fn stop_and_poweroff_policies() {
        let mut life = Life::new(Policy::Stop);
        life.started();
        assert_eq!(life.failed(), Decision::Stop);
        assert_eq!(life.state, State::Stopped);
        let mut life = Life::new(Policy::Poweroff);
        life.started();
        assert_eq!(life.failed(), Decision::PowerOff);
    }

    #[test]
    fn zero_limit_never_restarts() {
        let mut life = Life::new(Policy::Restart { limit: 0 });
        life.started();
        assert_eq!(life.failed(), Decision::StopAfterLimit { restarts: 0 });
    }
}
