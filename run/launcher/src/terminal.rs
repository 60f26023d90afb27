//! The terminal while its keys go to the guest: raw, then as it was.

use std::process::{Command, Stdio};

/// The terminal on stdin taking keys one at a time without echoing them
/// (the guest echoes), as `stty` left it before on drop.
pub(crate) struct RawTerminal {
    saved: String,
}

impl RawTerminal {
    pub(crate) fn enter() -> Option<Self> {
        let saved = Command::new("stty")
            .arg("-g")
            .stdin(Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let saved = String::from_utf8(saved.stdout).ok()?.trim().to_owned();
        let status = Command::new("stty")
            .args(["-icanon", "-echo", "min", "1", "time", "0"])
            .stdin(Stdio::inherit())
            .status()
            .ok()?;
        status.success().then_some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = Command::new("stty")
            .arg(&self.saved)
            .stdin(Stdio::inherit())
            .status();
    }
}
