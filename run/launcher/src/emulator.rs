//! The emulators a system image boots in, and the choice among them.

use std::fmt;
use std::fs;
use std::path::Path;

/// Which emulator runs the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// Bochs with VT-x emulation (hvm runs in VMX mode).
    Bochs,
    /// QEMU with TCG: no VT-x, so hvm runs the microkernel in bare mode.
    Qemu,
    /// QEMU with KVM and nested VT-x (`-cpu host,+vmx`).
    Kvm,
}

impl Emulator {
    /// Parses `auto`, `bochs`, `qemu` or `kvm`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "auto" => Ok(Self::auto()),
            "bochs" => Ok(Self::Bochs),
            "qemu" => Ok(Self::Qemu),
            "kvm" => Ok(Self::Kvm),
            other => Err(format!(
                "unknown emulator `{other}` (expected auto, bochs, qemu or kvm)"
            )),
        }
    }

    /// KVM with nested VT-x when the host offers both, otherwise Bochs.
    pub fn auto() -> Self {
        let kvm = Path::new("/dev/kvm").exists();
        let vmx = fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
            info.lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "vmx"))
        });
        if kvm && vmx {
            Self::Kvm
        } else {
            Self::Bochs
        }
    }
}

impl fmt::Display for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bochs => "bochs",
            Self::Qemu => "qemu",
            Self::Kvm => "kvm",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    #[test]
    fn emulator_names() {
        assert_eq!(Emulator::parse("bochs"), Ok(Emulator::Bochs));
        assert_eq!(Emulator::parse("qemu"), Ok(Emulator::Qemu));
        assert!(Emulator::parse("vmware").is_err());
        assert_eq!(Outcome::Timeout.exit_code(), 124);
    }
}
