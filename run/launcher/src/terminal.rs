//! The terminal on stdin during a boot: its mode noted, then put back.

use std::process::{Command, Stdio};

/// The terminal's mode as `stty` found it, put back on drop: after a boot
/// however it ends, signals included. While Bochs's console is forwarded
/// it takes keys one at a time without echoing them (the guest echoes);
/// QEMU sets its own mode, which it cannot put back when it is killed.
pub(crate) struct Terminal {
    saved: String,
}

impl Terminal {
    /// Notes the mode, if stdin is a terminal.
    pub(crate) fn save() -> Option<Self> {
        let saved = Command::new("stty")
            .arg("-g")
            .stdin(Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let saved = String::from_utf8(saved.stdout).ok()?.trim().to_owned();
        Some(Terminal { saved })
    }

    /// Notes the mode, then sets the terminal to -icanon -echo.
    pub(crate) fn raw() -> Option<Self> {
        let terminal = Self::save()?;
        let status = Command::new("stty")
            .args(["-icanon", "-echo", "min", "1", "time", "0"])
            .stdin(Stdio::inherit())
            .status()
            .ok()?;
        // Dropped on failure too: a half-set mode is put back.
        status.success().then_some(terminal)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("stty")
            .arg(&self.saved)
            .stdin(Stdio::inherit())
            .status();
    }
}
