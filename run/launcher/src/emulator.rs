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
        Self::auto_on(&Host::probe())
    }

    /// [`auto`](Self::auto)'s choice on `host`.
    pub fn auto_on(host: &Host) -> Self {
        if host.runs_kvm() {
            Self::Kvm
        } else {
            Self::Bochs
        }
    }

    /// Why this emulator cannot run hvm on `host`, as one line that names
    /// the emulator to use instead; `None` when it can. Only KVM needs
    /// anything of the host: without `/dev/kvm` or VT-x, QEMU would start
    /// and show nothing until the timeout.
    pub fn refusal(self, host: &Host) -> Option<String> {
        if self != Self::Kvm || host.runs_kvm() {
            return None;
        }
        let missing = match (host.kvm, host.vmx) {
            (false, false) => "no /dev/kvm, and no vmx flag in /proc/cpuinfo",
            (false, true) => "no /dev/kvm",
            (true, _) => "no vmx flag in /proc/cpuinfo",
        };
        Some(format!(
            "--emulator kvm needs /dev/kvm and a CPU with VT-x ({missing}); \
             use --emulator bochs (emulates VT-x) or qemu (bare mode)"
        ))
    }
}

/// What the host offers QEMU for KVM with nested VT-x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// `/dev/kvm` exists.
    pub kvm: bool,
    /// The CPU has VT-x: `vmx` is among the flags in `/proc/cpuinfo`.
    pub vmx: bool,
}

impl Host {
    /// This machine.
    pub fn probe() -> Self {
        Host {
            kvm: Path::new("/dev/kvm").exists(),
            vmx: fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| lists_vmx(&info)),
        }
    }

    /// Whether QEMU can run hvm with KVM and nested VT-x here.
    pub fn runs_kvm(&self) -> bool {
        self.kvm && self.vmx
    }
}

/// Whether a `/proc/cpuinfo` text lists the `vmx` flag (Intel VT-x).
pub fn lists_vmx(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "vmx"))
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

    const INTEL: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
                         flags\t\t: fpu vme de pse msr vmx smx est tm2\n\
                         vmx flags\t: vnmi preemption_timer ept vpid\n";
    const NO_VMX: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\n\
                          flags\t\t: fpu vme de pse msr svm\nbugs\t\t: sysret_ss_attrs\n";

    #[test]
    fn the_vmx_flag_is_read_from_the_flags_line_only() {
        assert!(lists_vmx(INTEL));
        assert!(!lists_vmx(NO_VMX));
        // A word that merely contains vmx, or vmx outside the flags line.
        assert!(!lists_vmx("flags\t: fpu vmxe\nmodel name\t: vmx\n"));
        assert!(!lists_vmx(""));
    }

    #[test]
    fn kvm_is_refused_up_front_without_dev_kvm_or_vt_x() {
        let both = Host {
            kvm: true,
            vmx: true,
        };
        assert_eq!(Emulator::Kvm.refusal(&both), None);
        assert_eq!(Emulator::auto_on(&both), Emulator::Kvm);
        for (host, missing) in [
            (
                Host {
                    kvm: true,
                    vmx: false,
                },
                "(no vmx flag in /proc/cpuinfo)",
            ),
            (
                Host {
                    kvm: false,
                    vmx: true,
                },
                "(no /dev/kvm)",
            ),
            (
                Host {
                    kvm: false,
                    vmx: false,
                },
                "(no /dev/kvm, and no vmx flag in /proc/cpuinfo)",
            ),
        ] {
            let reason = Emulator::Kvm.refusal(&host).expect("refused");
            assert!(reason.contains(missing), "{reason}");
            assert!(
                reason.starts_with("--emulator kvm needs /dev/kvm"),
                "{reason}"
            );
            assert!(reason.ends_with("use --emulator bochs (emulates VT-x) or qemu (bare mode)"));
            assert!(!reason.contains('\n'), "one line: {reason}");
            // The others need nothing of the host, and auto picks Bochs.
            assert_eq!(Emulator::Bochs.refusal(&host), None);
            assert_eq!(Emulator::Qemu.refusal(&host), None);
            assert_eq!(Emulator::auto_on(&host), Emulator::Bochs);
        }
    }
}
