//! VM exits as an enum the generic code matches, decoded from raw fields.
//!
//! The hardware shell reads the exit reason, qualification and related VMCS
//! fields and hands them to [`VmExit::decode`]; nothing here touches the VMCS.
//! Reason numbers are from SDM Vol. 3 Appendix C; qualification layouts from
//! SDM Vol. 3 28.2.1.

/// The raw exit information read from the VMCS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawExit {
    /// VM_EXIT_REASON (bits 15:0 basic reason, bit 31 entry failure).
    pub reason: u32,
    /// EXIT_QUALIFICATION.
    pub qualification: u64,
    /// GUEST_PHYSICAL_ADDRESS (valid for EPT exits).
    pub guest_physical: u64,
    /// VM_EXIT_INTERRUPTION_INFO.
    pub interruption_info: u32,
}

/// An I/O instruction (SDM Table 28-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    /// `in` (true) or `out`.
    pub input: bool,
    /// `ins`/`outs`.
    pub string: bool,
    /// `rep` prefix.
    pub repeat: bool,
}

/// A control-register access (SDM Table 28-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrAccess {
    pub register: u8,
    /// 0 = MOV to CR, 1 = MOV from CR, 2 = CLTS, 3 = LMSW.
    pub access_type: u8,
    /// General-purpose register number (0 = RAX … 15 = R15).
    pub gpr: u8,
}

/// An EPT violation (SDM Table 28-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptViolation {
    pub guest_physical: u64,
    pub read: bool,
    pub write: bool,
    pub fetch: bool,
}

/// Why the guest exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    ExceptionOrNmi {
        vector: u8,
    },
    ExternalInterrupt {
        vector: u8,
    },
    TripleFault,
    InitSignal,
    StartupIpi,
    InterruptWindow,
    Cpuid,
    Hlt,
    Vmcall,
    /// A VMX instruction the guest may not use (VMCLEAR … VMXON, INVEPT,
    /// INVVPID, VMFUNC); answered with #UD.
    VmxInstruction,
    CrAccess(CrAccess),
    Io(IoAccess),
    Rdmsr,
    Wrmsr,
    /// VM entry failed: invalid guest state (reason 33).
    InvalidGuestState,
    /// VM entry failed while loading MSRs (reason 34).
    MsrLoading,
    /// VM entry failed on a machine check (reason 41).
    MachineCheckAtEntry,
    EptViolation(EptViolation),
    EptMisconfig {
        guest_physical: u64,
    },
    PreemptionTimer,
    Xsetbv,
    /// Any other basic reason.
    Other(u16),
}

impl VmExit {
    /// Decodes the raw fields.
    pub fn decode(raw: RawExit) -> Self {
        let q = raw.qualification;
        match raw.reason & 0xFFFF {
            0 => Self::ExceptionOrNmi {
                vector: raw.interruption_info as u8,
            },
            1 => Self::ExternalInterrupt {
                vector: raw.interruption_info as u8,
            },
            2 => Self::TripleFault,
            3 => Self::InitSignal,
            4 => Self::StartupIpi,
            7 => Self::InterruptWindow,
            10 => Self::Cpuid,
            12 => Self::Hlt,
            18 => Self::Vmcall,
            19..=27 | 50 | 53 | 59 => Self::VmxInstruction,
            28 => Self::CrAccess(CrAccess {
                register: (q & 0xF) as u8,
                access_type: ((q >> 4) & 3) as u8,
                gpr: ((q >> 8) & 0xF) as u8,
            }),
            30 => Self::Io(IoAccess {
                port: (q >> 16) as u16,
                size: (q & 7) as u8 + 1,
                input: q & (1 << 3) != 0,
                string: q & (1 << 4) != 0,
                repeat: q & (1 << 5) != 0,
            }),
            31 => Self::Rdmsr,
            32 => Self::Wrmsr,
            33 => Self::InvalidGuestState,
            34 => Self::MsrLoading,
            41 => Self::MachineCheckAtEntry,
            48 => Self::EptViolation(EptViolation {
                guest_physical: raw.guest_physical,
                read: q & 1 != 0,
                write: q & 2 != 0,
                fetch: q & 4 != 0,
            }),
            49 => Self::EptMisconfig {
                guest_physical: raw.guest_physical,
            },
            52 => Self::PreemptionTimer,
            55 => Self::Xsetbv,
            other => Self::Other(other as u16),
        }
    }

    /// A short name for logs ("triple fault", "EPT violation", …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::ExceptionOrNmi { .. } => "exception or NMI",
            Self::ExternalInterrupt { .. } => "external interrupt",
            Self::TripleFault => "triple fault",
            Self::InitSignal => "INIT signal",
            Self::StartupIpi => "startup IPI",
            Self::InterruptWindow => "interrupt window",
            Self::Cpuid => "CPUID",
            Self::Hlt => "HLT",
            Self::Vmcall => "VMCALL",
            Self::VmxInstruction => "VMX instruction",
            Self::CrAccess(_) => "control-register access",
            Self::Io(_) => "I/O instruction",
            Self::Rdmsr => "RDMSR",
            Self::Wrmsr => "WRMSR",
            Self::InvalidGuestState => "VM entry failure (invalid guest state)",
            Self::MsrLoading => "VM entry failure (MSR loading)",
            Self::MachineCheckAtEntry => "VM entry failure (machine check)",
            Self::EptViolation(_) => "EPT violation",
            Self::EptMisconfig { .. } => "EPT misconfiguration",
            Self::PreemptionTimer => "preemption timer",
            Self::Xsetbv => "XSETBV",
            Self::Other(_) => "unhandled exit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_qualification() {
        // out dx, al to 0x3f8: size 1, output, port in bits 31:16
        let raw = RawExit {
            reason: 30,
            qualification: 0x03F8_0000 | 0x40,
            ..Default::default()
        };
        assert_eq!(
            VmExit::decode(raw),
            VmExit::Io(IoAccess {
                port: 0x3F8,
                size: 1,
                input: false,
                string: false,
                repeat: false
            })
        );
        let raw = RawExit {
            reason: 30,
            qualification: 0x0CFC_0000 | 0b0011_1011,
            ..Default::default()
        };
        assert_eq!(
            VmExit::decode(raw),
            VmExit::Io(IoAccess {
                port: 0xCFC,
                size: 4,
                input: true,
                string: true,
                repeat: true
            })
        );
    }

    #[test]
    fn ept_violation_carries_address_and_kind() {
        let raw = RawExit {
            reason: 48,
            qualification: 0b010,
            guest_physical: 0xdead_0000,
            ..Default::default()
        };
        let exit = VmExit::decode(raw);
        assert_eq!(
            exit,
            VmExit::EptViolation(EptViolation {
                guest_physical: 0xdead_0000,
                read: false,
                write: true,
                fetch: false
            })
        );
        assert_eq!(exit.name(), "EPT violation");
    }

    #[test]
    fn entry_failure_bit_is_ignored_in_the_basic_reason() {
        let raw = RawExit {
            reason: 0x8000_0021,
            ..Default::default()
        };
        assert_eq!(VmExit::decode(raw), VmExit::InvalidGuestState);
    }

    #[test]
    fn cr_access_and_others() {
        let raw = RawExit {
            reason: 28,
            qualification: 0x0304,
            ..Default::default()
        };
        assert_eq!(
            VmExit::decode(raw),
            VmExit::CrAccess(CrAccess {
                register: 4,
                access_type: 0,
                gpr: 3
            })
        );
        assert_eq!(
            VmExit::decode(RawExit {
                reason: 2,
                ..Default::default()
            }),
            VmExit::TripleFault
        );
        assert_eq!(
            VmExit::decode(RawExit {
                reason: 27,
                ..Default::default()
            }),
            VmExit::VmxInstruction
        );
        assert_eq!(
            VmExit::decode(RawExit {
                reason: 99,
                ..Default::default()
            }),
            VmExit::Other(99)
        );
    }
}
