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

#[cfg(test)]
mod tests {
    use super::*;

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
