//! VMX capability decoding and the choice of VM-execution controls.
//!
//! SDM Vol. 3 Appendix A (VMX capability reporting facility) says each control
//! MSR reports, in its low half, the bits that must be 1 ("allowed 0-settings")
//! and, in its high half, the bits that may be 1 ("allowed 1-settings"). When
//! IA32_VMX_BASIC[55] is set the TRUE_* MSRs give the real minimums, letting
//! us clear default-1 controls such as CR3-load exiting.

use bitflags::bitflags;

/// IA32_VMX_BASIC and friends (SDM Vol. 3 Appendix A.1 – A.10).
pub mod msr {
    pub const IA32_FEATURE_CONTROL: u32 = 0x3A;
    pub const IA32_VMX_BASIC: u32 = 0x480;
    pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
    pub const IA32_VMX_MISC: u32 = 0x485;
    pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
    pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
    pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
    pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
    pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48B;
    pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48C;
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48D;
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48E;
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48F;
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
}

bitflags! {
    /// Pin-based VM-execution controls (SDM Vol. 3 24.6.1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PinBased: u32 {
        const EXTERNAL_INTERRUPT_EXITING = 1 << 0;
        const NMI_EXITING = 1 << 3;
        const VIRTUAL_NMIS = 1 << 5;
        const PREEMPTION_TIMER = 1 << 6;
    }

    /// Primary processor-based VM-execution controls (SDM Vol. 3 24.6.2).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ProcBased: u32 {
        const INTERRUPT_WINDOW_EXITING = 1 << 2;
        const USE_TSC_OFFSETTING = 1 << 3;
        const HLT_EXITING = 1 << 7;
        const INVLPG_EXITING = 1 << 9;
        const MWAIT_EXITING = 1 << 10;
        const RDPMC_EXITING = 1 << 11;
        const RDTSC_EXITING = 1 << 12;
        const CR3_LOAD_EXITING = 1 << 15;
        const CR3_STORE_EXITING = 1 << 16;
        const CR8_LOAD_EXITING = 1 << 19;
        const CR8_STORE_EXITING = 1 << 20;
        const USE_TPR_SHADOW = 1 << 21;
        const NMI_WINDOW_EXITING = 1 << 22;
        const MOV_DR_EXITING = 1 << 23;
        const UNCONDITIONAL_IO_EXITING = 1 << 24;
        const USE_IO_BITMAPS = 1 << 25;
        const MONITOR_TRAP_FLAG = 1 << 27;
        const USE_MSR_BITMAPS = 1 << 28;
        const MONITOR_EXITING = 1 << 29;
        const PAUSE_EXITING = 1 << 30;
        const ACTIVATE_SECONDARY = 1 << 31;
    }

    /// Secondary processor-based VM-execution controls (SDM Vol. 3 24.6.2).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ProcBased2: u32 {
        const VIRTUALIZE_APIC_ACCESSES = 1 << 0;
        const ENABLE_EPT = 1 << 1;
        const DESCRIPTOR_TABLE_EXITING = 1 << 2;
        const ENABLE_RDTSCP = 1 << 3;
        const VIRTUALIZE_X2APIC = 1 << 4;
        const ENABLE_VPID = 1 << 5;
        const WBINVD_EXITING = 1 << 6;
        const UNRESTRICTED_GUEST = 1 << 7;
        const APIC_REGISTER_VIRTUALIZATION = 1 << 8;
        const VIRTUAL_INTERRUPT_DELIVERY = 1 << 9;
        const PAUSE_LOOP_EXITING = 1 << 10;
        const RDRAND_EXITING = 1 << 11;
        const ENABLE_INVPCID = 1 << 12;
        const ENABLE_VM_FUNCTIONS = 1 << 13;
        const VMCS_SHADOWING = 1 << 14;
        const RDSEED_EXITING = 1 << 16;
        const ENABLE_PML = 1 << 17;
        const EPT_VIOLATION_VE = 1 << 18;
        const ENABLE_XSAVES = 1 << 20;
        const TSC_SCALING = 1 << 25;
    }

    /// VM-exit controls (SDM Vol. 3 24.7.1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ExitControls: u32 {
        const SAVE_DEBUG_CONTROLS = 1 << 2;
        const HOST_ADDRESS_SPACE_SIZE = 1 << 9;
        const LOAD_PERF_GLOBAL_CTRL = 1 << 12;
        const ACKNOWLEDGE_INTERRUPT_ON_EXIT = 1 << 15;
        const SAVE_PAT = 1 << 18;
        const LOAD_PAT = 1 << 19;
        const SAVE_EFER = 1 << 20;
        const LOAD_EFER = 1 << 21;
        const SAVE_PREEMPTION_TIMER = 1 << 22;
    }

    /// VM-entry controls (SDM Vol. 3 24.8.1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct EntryControls: u32 {
        const LOAD_DEBUG_CONTROLS = 1 << 2;
        const IA32E_MODE_GUEST = 1 << 9;
        const ENTRY_TO_SMM = 1 << 10;
        const LOAD_PERF_GLOBAL_CTRL = 1 << 13;
        const LOAD_PAT = 1 << 14;
        const LOAD_EFER = 1 << 15;
    }
}

/// Raw values of the VMX capability MSRs, read by the hardware shell.
///
/// `pinbased`, `procbased`, `exit` and `entry` hold the TRUE_* MSRs when
/// IA32_VMX_BASIC[55] says they exist, and the plain ones otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxCapabilities {
    pub basic: u64,
    pub pinbased: u64,
    pub procbased: u64,
    pub exit: u64,
    pub entry: u64,
    pub procbased2: u64,
    pub ept_vpid: u64,
    pub misc: u64,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
}

impl VmxCapabilities {
    /// VMCS revision identifier, IA32_VMX_BASIC[30:0] (SDM A.1).
    pub fn revision_id(&self) -> u32 {
        (self.basic & 0x7FFF_FFFF) as u32
    }

    /// Whether the TRUE_* control MSRs exist, IA32_VMX_BASIC[55] (SDM A.1).
    pub fn has_true_controls(&self) -> bool {
        self.basic & (1 << 55) != 0
    }

    /// Whether "use I/O bitmaps" may be set (IA32_VMX_PROCBASED_CTLS
    /// allowed-1, SDM A.3.2).
    pub fn io_bitmaps_usable(&self) -> bool {
        (self.procbased >> 32) & u64::from(ProcBased::USE_IO_BITMAPS.bits()) != 0
    }

    /// Whether the processor offers secondary controls at all.
    pub fn has_secondary(&self) -> bool {
        (self.procbased >> 32) & u64::from(ProcBased::ACTIVATE_SECONDARY.bits()) != 0
    }

    fn may_set2(&self, control: ProcBased2) -> bool {
        self.has_secondary() && (self.procbased2 >> 32) as u32 & control.bits() == control.bits()
    }

    /// EPT with a 4-level walk and write-back paging structures
    /// (IA32_VMX_EPT_VPID_CAP bits 6 and 14, SDM A.10).
    pub fn ept_usable(&self) -> bool {
        self.may_set2(ProcBased2::ENABLE_EPT)
            && self.ept_vpid & (1 << 6) != 0
            && self.ept_vpid & (1 << 14) != 0
    }

    /// EPT 2 MiB pages (IA32_VMX_EPT_VPID_CAP bit 16).
    pub fn ept_2mib_pages(&self) -> bool {
        self.ept_vpid & (1 << 16) != 0
    }

    /// INVEPT single-context (bits 20 and 25) is available.
    pub fn invept_single_context(&self) -> bool {
        self.ept_vpid & (1 << 20) != 0 && self.ept_vpid & (1 << 25) != 0
    }

    /// INVVPID single-context (bits 32 and 41).
    pub fn invvpid_single_context(&self) -> bool {
        self.ept_vpid & (1 << 32) != 0 && self.ept_vpid & (1 << 41) != 0
    }

    /// VMX-preemption timer rate: it counts down once every 2^rate TSC ticks
    /// (IA32_VMX_MISC[4:0], SDM A.6).
    pub fn preemption_timer_rate(&self) -> u32 {
        (self.misc & 0x1F) as u32
    }
}

/// A control the configuration needs that the processor does not offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingControl {
    /// Which control field ("pin-based", "secondary", ...).
    pub field: &'static str,
    /// The bits that were needed but may not be set.
    pub bits: u32,
}

/// Combines wanted bits with a capability MSR: bits the processor forces to 1
/// are set, bits it forbids are dropped (SDM A.3.1: "VM entry fails if a bit
/// is 1 that the high dword reports as 0, or 0 that the low dword reports as
/// 1"). `required` bits must survive, or the result is an error.
pub fn adjust(
    field: &'static str,
    capability: u64,
    wanted: u32,
    required: u32,
) -> Result<u32, MissingControl> {
    let must_be_one = capability as u32;
    let may_be_one = (capability >> 32) as u32;
    let missing = required & !may_be_one;
    if missing != 0 {
        return Err(MissingControl {
            field,
            bits: missing,
        });
    }
    Ok((wanted | must_be_one) & may_be_one)
}

/// The controls hvm runs every cell with, and what they turned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChosenControls {
    pub pinbased: PinBased,
    pub procbased: ProcBased,
    pub procbased2: ProcBased2,
    pub exit: ExitControls,
    pub entry: EntryControls,
}

impl ChosenControls {
    /// EPT is on.
    pub fn ept(&self) -> bool {
        self.procbased2.contains(ProcBased2::ENABLE_EPT)
    }
    /// VPID is on.
    pub fn vpid(&self) -> bool {
        self.procbased2.contains(ProcBased2::ENABLE_VPID)
    }
    /// Unrestricted guest is on.
    pub fn unrestricted_guest(&self) -> bool {
        self.procbased2.contains(ProcBased2::UNRESTRICTED_GUEST)
    }
    /// The VMX preemption timer is on.
    pub fn preemption_timer(&self) -> bool {
        self.pinbased.contains(PinBased::PREEMPTION_TIMER)
    }
}

/// Chooses the controls for a 64-bit guest isolated by EPT.
///
/// Required: external-interrupt exits (hvm owns the physical interrupts and
/// forwards them), HLT, I/O and MSR-bitmap exits (so a guest cannot touch devices or
/// MSRs it was not given), EPT (a cell sees only its own memory), 64-bit host
/// and guest, EFER switching. Wanted where offered: VPID, unrestricted guest,
/// RDTSCP, INVPCID, XSAVES, and the preemption timer.
pub fn choose(caps: &VmxCapabilities) -> Result<ChosenControls, MissingControl> {
    let pinbased = adjust(
        "pin-based",
        caps.pinbased,
        (PinBased::EXTERNAL_INTERRUPT_EXITING | PinBased::PREEMPTION_TIMER).bits(),
        PinBased::EXTERNAL_INTERRUPT_EXITING.bits(),
    )?;
    let required_proc = ProcBased::HLT_EXITING
        | ProcBased::UNCONDITIONAL_IO_EXITING
        | ProcBased::USE_MSR_BITMAPS
        | ProcBased::ACTIVATE_SECONDARY;
    let procbased = adjust(
        "primary processor-based",
        caps.procbased,
        required_proc.bits(),
        required_proc.bits(),
    )?;
    if !caps.ept_usable() {
        return Err(MissingControl {
            field: "secondary (EPT with 4-level walk and WB)",
            bits: ProcBased2::ENABLE_EPT.bits(),
        });
    }
    let wanted2 = ProcBased2::ENABLE_EPT
        | ProcBased2::ENABLE_VPID
        | ProcBased2::UNRESTRICTED_GUEST
        | ProcBased2::ENABLE_RDTSCP
        | ProcBased2::ENABLE_INVPCID
        | ProcBased2::ENABLE_XSAVES;
    let procbased2 = adjust(
        "secondary processor-based",
        caps.procbased2,
        wanted2.bits(),
        ProcBased2::ENABLE_EPT.bits(),
    )?;
    let required_exit = ExitControls::HOST_ADDRESS_SPACE_SIZE
        | ExitControls::ACKNOWLEDGE_INTERRUPT_ON_EXIT
        | ExitControls::SAVE_EFER
        | ExitControls::LOAD_EFER;
    let exit = adjust(
        "VM-exit",
        caps.exit,
        (required_exit
            | ExitControls::SAVE_PAT
            | ExitControls::LOAD_PAT
            | ExitControls::SAVE_PREEMPTION_TIMER)
            .bits(),
        required_exit.bits(),
    )?;
    let required_entry = EntryControls::IA32E_MODE_GUEST | EntryControls::LOAD_EFER;
    let entry = adjust(
        "VM-entry",
        caps.entry,
        (required_entry | EntryControls::LOAD_PAT).bits(),
        required_entry.bits(),
    )?;
    let mut chosen = ChosenControls {
        pinbased: PinBased::from_bits_retain(pinbased),
        procbased: ProcBased::from_bits_retain(procbased),
        procbased2: ProcBased2::from_bits_retain(procbased2),
        exit: ExitControls::from_bits_retain(exit),
        entry: EntryControls::from_bits_retain(entry),
    };
    // VPID is useless without INVVPID to flush a cell's entries on restart.
    if !caps.invvpid_single_context() && (caps.ept_vpid & (1 << 32) == 0) {
        chosen.procbased2.remove(ProcBased2::ENABLE_VPID);
    }
    // Saving the timer value on exit only makes sense with the timer.
    if !chosen.preemption_timer() {
        chosen.exit.remove(ExitControls::SAVE_PREEMPTION_TIMER);
    }
    Ok(chosen)
}

/// Applies IA32_VMX_CRx_FIXED0/1 (SDM A.7, A.8): bits 1 in FIXED0 must be 1,
/// bits 0 in FIXED1 must be 0.
pub fn fixed_bits(value: u64, fixed0: u64, fixed1: u64) -> u64 {
    (value | fixed0) & fixed1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Capabilities as Bochs 2.7 `corei7_skylake_x` reports them
    /// (PLATFORM.md), with plausible primary values.
    pub(crate) fn bochs() -> VmxCapabilities {
        VmxCapabilities {
            basic: (1 << 55) | (1 << 54) | (6 << 50) | (4096 << 32) | 1,
            pinbased: 0x0000_007f_0000_0016,
            procbased: 0xfff9_fffe_0401_e172,
            exit: 0x00ff_ffff_0003_6dfb,
            entry: 0x0000_f3ff_0000_11fb,
            procbased2: 0x0217_7fff_0000_0000,
            ept_vpid: 0xf01_0633_4141,
            misc: 0x5,
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x0037_67ff,
        }
    }

    #[test]
    fn adjust_forces_and_drops_bits() {
        // must-be-one = 0b0001, may-be-one = 0b0111
        let cap = (0b0111u64 << 32) | 0b0001;
        assert_eq!(adjust("t", cap, 0b1010, 0b0010), Ok(0b0011));
        assert_eq!(
            adjust("t", cap, 0, 0b1000),
            Err(MissingControl {
                field: "t",
                bits: 0b1000
            })
        );
    }

    #[test]
    fn bochs_gets_ept_vpid_unrestricted_guest() {
        let chosen = choose(&bochs()).expect("Bochs offers what hvm needs");
        assert!(chosen.ept());
        assert!(chosen.vpid());
        assert!(chosen.unrestricted_guest());
        assert!(chosen
            .procbased
            .contains(ProcBased::HLT_EXITING | ProcBased::USE_MSR_BITMAPS));
        assert!(chosen.entry.contains(EntryControls::IA32E_MODE_GUEST));
        // Default-1 bits reported by the TRUE MSR stay set.
        assert_eq!(chosen.procbased.bits() & 0x0401_e172, 0x0401_e172);
    }

    #[test]
    fn missing_ept_is_an_error_naming_the_field() {
        let mut caps = bochs();
        caps.procbased2 = 0;
        let error = choose(&caps).unwrap_err();
        assert!(error.field.contains("EPT"));
    }

    #[test]
    fn missing_unrestricted_guest_is_optional() {
        let mut caps = bochs();
        caps.procbased2 &= !(u64::from(ProcBased2::UNRESTRICTED_GUEST.bits()) << 32);
        let chosen = choose(&caps).expect("UG is optional");
        assert!(!chosen.unrestricted_guest());
    }

    #[test]
    fn revision_and_capability_decoding() {
        let caps = bochs();
        assert_eq!(caps.revision_id(), 1);
        assert!(caps.has_true_controls());
        assert!(caps.ept_2mib_pages());
        assert!(caps.invept_single_context());
        assert_eq!(caps.preemption_timer_rate(), 5);
    }

    #[test]
    fn fixed_bits_apply_both_masks() {
        assert_eq!(fixed_bits(0, 0x2000, 0xffff), 0x2000);
        assert_eq!(fixed_bits(0x1_0000, 0, 0xffff), 0);
    }
}

/// Bytes of the two I/O bitmaps, A (ports 0x0000-0x7FFF) then B
/// (0x8000-0xFFFF), one 4 KiB page each.
pub const IO_BITMAPS_BYTES: usize = 8192;

/// Fills I/O bitmaps A and B so that every port exits except those in
/// `open` (ranges as first port and count). SDM 25.6.4 "I/O-Bitmap
/// Addresses": with "use I/O bitmaps" set, bit n of A (n < 0x8000) or of B
/// controls port n (0x8000 + n), a set bit makes an access exit, and an
/// access that touches any port whose bit is set (or wraps past 0xFFFF,
/// SDM 26.1.3) exits; "unconditional I/O exiting" is then ignored.
pub fn build_io_bitmaps(bitmaps: &mut [u8; IO_BITMAPS_BYTES], open: &[(u16, u16)]) {
    bitmaps.fill(0xFF);
    for &(first, count) in open {
        for port in u32::from(first)..(u32::from(first) + u32::from(count)).min(0x1_0000) {
            bitmaps[(port / 8) as usize] &= !(1 << (port % 8));
        }
    }
}

#[cfg(test)]
mod io_bitmap_tests {
    use super::*;

    fn exits(bitmaps: &[u8; IO_BITMAPS_BYTES], port: u32) -> bool {
        bitmaps[(port / 8) as usize] & (1 << (port % 8)) != 0
    }

    #[test]
    fn only_the_open_ports_pass() {
        let mut bitmaps = [0u8; IO_BITMAPS_BYTES];
        build_io_bitmaps(&mut bitmaps, &[(0x170, 8), (0x376, 1), (0xFFFF, 4)]);
        let open: Vec<u32> = (0..0x1_0000).filter(|&p| !exits(&bitmaps, p)).collect();
        let mut expected: Vec<u32> = (0x170..0x178).collect();
        expected.extend([0x376, 0xFFFF]);
        assert_eq!(open, expected);
    }
}
