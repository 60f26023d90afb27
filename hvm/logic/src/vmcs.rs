//! VMCS field encodings (SDM Vol. 3 Appendix B) and their widths.
//!
//! An encoding's bits 14:13 give the field width and bit 0 the "high" access
//! type of 64-bit fields (SDM 25.11.2). hvm only uses full-width accesses.

/// Width of a VMCS field, from its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Bits16,
    Bits64,
    Bits32,
    Natural,
}

/// A VMCS field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum Field {
    // 16-bit control and guest/host state (SDM B.1)
    VirtualProcessorId = 0x0000,
    GuestEsSelector = 0x0800,
    GuestCsSelector = 0x0802,
    GuestSsSelector = 0x0804,
    GuestDsSelector = 0x0806,
    GuestFsSelector = 0x0808,
    GuestGsSelector = 0x080A,
    GuestLdtrSelector = 0x080C,
    GuestTrSelector = 0x080E,
    HostEsSelector = 0x0C00,
    HostCsSelector = 0x0C02,
    HostSsSelector = 0x0C04,
    HostDsSelector = 0x0C06,
    HostFsSelector = 0x0C08,
    HostGsSelector = 0x0C0A,
    HostTrSelector = 0x0C0C,
    // 64-bit (SDM B.2)
    IoBitmapA = 0x2000,
    IoBitmapB = 0x2002,
    MsrBitmap = 0x2004,
    TscOffset = 0x2010,
    EptPointer = 0x201A,
    GuestPhysicalAddress = 0x2400,
    VmcsLinkPointer = 0x2800,
    GuestDebugctl = 0x2802,
    GuestPat = 0x2804,
    GuestEfer = 0x2806,
    HostPat = 0x2C00,
    HostEfer = 0x2C02,
    // 32-bit (SDM B.3)
    PinBasedControls = 0x4000,
    ProcBasedControls = 0x4002,
    ExceptionBitmap = 0x4004,
    PageFaultErrorCodeMask = 0x4006,
    PageFaultErrorCodeMatch = 0x4008,
    Cr3TargetCount = 0x400A,
    ExitControls = 0x400C,
    ExitMsrStoreCount = 0x400E,
    ExitMsrLoadCount = 0x4010,
    EntryControls = 0x4012,
    EntryMsrLoadCount = 0x4014,
    EntryInterruptionInfo = 0x4016,
    EntryExceptionErrorCode = 0x4018,
    EntryInstructionLength = 0x401A,
    TprThreshold = 0x401C,
    ProcBasedControls2 = 0x401E,
    InstructionError = 0x4400,
    ExitReason = 0x4402,
    ExitInterruptionInfo = 0x4404,
    ExitInterruptionErrorCode = 0x4406,
    IdtVectoringInfo = 0x4408,
    IdtVectoringErrorCode = 0x440A,
    ExitInstructionLength = 0x440C,
    ExitInstructionInfo = 0x440E,
    GuestEsLimit = 0x4800,
    GuestCsLimit = 0x4802,
    GuestSsLimit = 0x4804,
    GuestDsLimit = 0x4806,
    GuestFsLimit = 0x4808,
    GuestGsLimit = 0x480A,
    GuestLdtrLimit = 0x480C,
    GuestTrLimit = 0x480E,
    GuestGdtrLimit = 0x4810,
    GuestIdtrLimit = 0x4812,
    GuestEsAccessRights = 0x4814,
    GuestCsAccessRights = 0x4816,
    GuestSsAccessRights = 0x4818,
    GuestDsAccessRights = 0x481A,
    GuestFsAccessRights = 0x481C,
    GuestGsAccessRights = 0x481E,
    GuestLdtrAccessRights = 0x4820,
    GuestTrAccessRights = 0x4822,
    GuestInterruptibility = 0x4824,
    GuestActivityState = 0x4826,
    GuestSysenterCs = 0x482A,
    PreemptionTimerValue = 0x482E,
    HostSysenterCs = 0x4C00,
    // natural width (SDM B.4)
    Cr0GuestHostMask = 0x6000,
    Cr4GuestHostMask = 0x6002,
    Cr0ReadShadow = 0x6004,
    Cr4ReadShadow = 0x6006,
    ExitQualification = 0x6400,
    GuestLinearAddress = 0x640A,
    GuestCr0 = 0x6800,
    GuestCr3 = 0x6802,
    GuestCr4 = 0x6804,
    GuestEsBase = 0x6806,
    GuestCsBase = 0x6808,
    GuestSsBase = 0x680A,
    GuestDsBase = 0x680C,
    GuestFsBase = 0x680E,
    GuestGsBase = 0x6810,
    GuestLdtrBase = 0x6812,
    GuestTrBase = 0x6814,
    GuestGdtrBase = 0x6816,
    GuestIdtrBase = 0x6818,
    GuestDr7 = 0x681A,
    GuestRsp = 0x681C,
    GuestRip = 0x681E,
    GuestRflags = 0x6820,
    GuestPendingDebugExceptions = 0x6822,
    GuestSysenterEsp = 0x6824,
    GuestSysenterEip = 0x6826,
    HostCr0 = 0x6C00,
    HostCr3 = 0x6C02,
    HostCr4 = 0x6C04,
    HostFsBase = 0x6C06,
    HostGsBase = 0x6C08,
    HostTrBase = 0x6C0A,
    HostGdtrBase = 0x6C0C,
    HostIdtrBase = 0x6C0E,
    HostSysenterEsp = 0x6C10,
    HostSysenterEip = 0x6C12,
    HostRsp = 0x6C14,
    HostRip = 0x6C16,
}

impl Field {
    /// The encoding passed to VMREAD/VMWRITE.
    pub const fn encoding(self) -> u32 {
        self as u32
    }

    /// The field's width (SDM 25.11.2, bits 14:13 of the encoding).
    pub const fn width(self) -> Width {
        match (self.encoding() >> 13) & 3 {
            0 => Width::Bits16,
            1 => Width::Bits64,
            2 => Width::Bits32,
            _ => Width::Natural,
        }
    }

    /// Whether a value fits the field (natural width is 64-bit here).
    pub const fn fits(self, value: u64) -> bool {
        match self.width() {
            Width::Bits16 => value <= u16::MAX as u64,
            Width::Bits32 => value <= u32::MAX as u64,
            Width::Bits64 | Width::Natural => true,
        }
    }

    /// Whether an exit handler may write the field without arguing for it:
    /// guest state (bits 11:10 of the encoding are 2, SDM 25.11.2), which
    /// under EPT touches nothing but the cell, and the VM-entry event
    /// fields and CR read shadows, which only shape what the guest sees.
    /// Controls and host state decide what the cell can reach.
    pub const fn guest_writable(self) -> bool {
        (self.encoding() >> 10) & 3 == 2
            || matches!(
                self,
                Field::EntryInterruptionInfo
                    | Field::EntryExceptionErrorCode
                    | Field::EntryInstructionLength
                    | Field::Cr0ReadShadow
                    | Field::Cr4ReadShadow
            )
    }
}

/// Segment access rights in the VMCS format (SDM 25.4.1, Table 25-2).
pub mod access_rights {
    /// 64-bit code: type 0xB (execute/read, accessed), S, P, L, G.
    pub const CODE64: u32 = 0xA09B;
    /// Data: type 0x3 (read/write, accessed), S, P, D/B, G.
    pub const DATA: u32 = 0xC093;
    /// 64-bit busy TSS: type 0xB, P.
    pub const TSS_BUSY: u32 = 0x008B;
    /// The "unusable" bit (bit 16): the register is not in use.
    pub const UNUSABLE: u32 = 1 << 16;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_encoding() {
        assert_eq!(Field::VirtualProcessorId.width(), Width::Bits16);
        assert_eq!(Field::EptPointer.width(), Width::Bits64);
        assert_eq!(Field::ExitReason.width(), Width::Bits32);
        assert_eq!(Field::GuestRip.width(), Width::Natural);
        assert_eq!(Field::HostRip.width(), Width::Natural);
    }

    #[test]
    fn only_guest_and_event_fields_are_guest_writable() {
        for field in [
            Field::GuestRip,
            Field::GuestRsp,
            Field::GuestCr0,
            Field::GuestInterruptibility,
            Field::GuestActivityState,
            Field::PreemptionTimerValue,
            Field::EntryInterruptionInfo,
            Field::Cr4ReadShadow,
        ] {
            assert!(field.guest_writable(), "{field:?}");
        }
        for field in [
            Field::EptPointer,
            Field::MsrBitmap,
            Field::ProcBasedControls,
            Field::Cr0GuestHostMask,
            Field::HostRip,
            Field::HostCr3,
            Field::ExitReason,
        ] {
            assert!(!field.guest_writable(), "{field:?}");
        }
    }

    #[test]
    fn fits_checks_narrow_fields() {
        assert!(Field::GuestCsSelector.fits(0xFFFF));
        assert!(!Field::GuestCsSelector.fits(0x1_0000));
        assert!(!Field::PinBasedControls.fits(1 << 32));
        assert!(Field::GuestRip.fits(u64::MAX));
    }
}
