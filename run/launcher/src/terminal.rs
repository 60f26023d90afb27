//! The terminal on stdin during a boot: its mode noted, then put back.

use std::process::{Command, Stdio};

/// The terminal's mode as `stty` found it, put back on drop: after a boot
/// however it ends, signals included. While Bochs's console is forwarded
/// it takes keys one at a time without echoing them (the guest echoes);
/// QEMU sets its own mode, and makes stdin non-blocking, which it cannot
/// undo when it is killed.
pub(crate) struct Terminal {
    saved: String,
    /// Stdin's file status flags (fcntl(2) F_GETFL), O_NONBLOCK among them.
    flags: Option<libc::c_int>,
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
        // SAFETY: fcntl(2) F_GETFL on fd 0 takes and returns integers and
        // touches none of our memory.
        let flags = unsafe { libc::fcntl(libc::STDIN_FILENO, libc::F_GETFL) };
        Some(Terminal {
            saved,
            flags: (flags >= 0).then_some(flags),
        })
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
        if let Some(flags) = self.flags {
            // SAFETY: fcntl(2) F_SETFL on fd 0 takes integers and touches
            // none of our memory.
            unsafe { libc::fcntl(libc::STDIN_FILENO, libc::F_SETFL, flags) };
        }
    }
}
