//! MSR policy: which MSRs a cell reaches directly, which hvm emulates, and
//! which are refused with #GP.
//!
//! The MSR bitmap (SDM 25.6.9) lets the listed MSRs through without an
//! exit; every other RDMSR/WRMSR exits, and the functions here say what
//! hvm does with it. hvm's binary performs the answer (the host MSR
//! accesses, the #GP injection).

use crate::lapic;

/// MSRs every cell may touch directly. Their values are the cell's own:
/// FS/GS bases and the SYSCALL MSRs are not used by hvm, and EFER/PAT are
/// switched by the VMCS.
pub const PASSTHROUGH: [u32; 13] = [
    0x0000_0174, // SYSENTER_CS (always saved and loaded, SDM 27.3.1, 28.3)
    0x0000_0175, // SYSENTER_ESP
    0x0000_0176, // SYSENTER_EIP
    0xC000_0080, // EFER (saved and loaded on every exit and entry)
    0xC000_0081, // STAR
    0xC000_0082, // LSTAR
    0xC000_0083, // CSTAR
    0xC000_0084, // SFMASK
    0xC000_0100, // FS_BASE
    0xC000_0101, // GS_BASE
    0xC000_0102, // KERNEL_GS_BASE
    0xC000_0103, // TSC_AUX
    0x0000_0277, // PAT (saved and loaded)
];

/// IA32_TIME_STAMP_COUNTER: reading it directly is harmless and fast.
pub const TSC: u32 = 0x10;
/// IA32_APIC_BASE.
pub const APIC_BASE: u32 = lapic::MSR_APIC_BASE;
/// IA32_APIC_BASE.EXTD: x2APIC mode (SDM 11.12.1).
const X2APIC_ENABLE: u64 = 1 << 10;

/// Byte offsets in the bitmap page (SDM 25.6.9): read-low, read-high,
/// write-low, write-high, 1 KiB each; "high" is 0xC000_0000 upwards.
fn position(msr: u32) -> Option<(usize, u8)> {
    let (base, bit) = match msr {
        0..=0x1FFF => (0, msr),
        0xC000_0000..=0xC000_1FFF => (1024, msr - 0xC000_0000),
        _ => return None,
    };
    Some((base + (bit / 8) as usize, 1 << (bit % 8)))
}

/// Fills an MSR bitmap page: every access exits except the passthrough
/// MSRs and TSC reads. `apic` also passes the x2APIC register MSRs
/// 0x800–0x8FF (SDM 11.12.1): the microkernel cell drives the physical
/// local APIC (its timer and EOI); hvm re-injects the interrupts it
/// delivers.
pub fn build_bitmap(page: &mut [u8; 4096], apic: bool) {
    page.fill(0xFF);
    for msr in PASSTHROUGH {
        let (byte, bit) = position(msr).expect("listed MSRs are in the bitmap's ranges");
        page[byte] &= !bit;
        page[2048 + byte] &= !bit;
    }
    if apic {
        for half in [0usize, 2048] {
            page[half + (lapic::X2APIC_FIRST / 8) as usize
                ..=half + (lapic::X2APIC_LAST / 8) as usize]
                .fill(0);
        }
    }
    let (byte, bit) = position(TSC).expect("in range");
    page[byte] &= !bit;
}

/// What hvm answers to a microkernel cell's RDMSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// This value.
    Value(u64),
    /// The host's IA32_APIC_BASE (cell 0 owns the local APIC).
    HostApicBase,
    /// #GP(0).
    Refuse,
}

/// RDMSR by the microkernel cell.
pub fn microkernel_read(msr: u32) -> Read {
    match msr {
        0x3A => Read::Value(1), // IA32_FEATURE_CONTROL: locked, VMX off
        APIC_BASE => Read::HostApicBase,
        0xFE => Read::Value(0),  // MTRRCAP: no MTRRs
        0x1A0 => Read::Value(1), // MISC_ENABLE: fast strings
        _ => Read::Refuse,
    }
}

/// WRMSR by the microkernel cell `cell` (its index), given the host's
/// current IA32_APIC_BASE. Cell 0 may switch the APIC it owns to x2APIC
/// mode (EXTD); moving the base or disabling it is refused (SDM 11.12.5),
/// and so are writes to every MSR a cell does not own. `true` means
/// "write `value` to the host's IA32_APIC_BASE".
pub fn microkernel_write(cell: u32, msr: u32, value: u64, host_apic_base: u64) -> bool {
    cell == 0 && msr == APIC_BASE && (value ^ host_apic_base) & !X2APIC_ENABLE == 0
}

/// What hvm does with a Linux cell's RDMSR or WRMSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linux {
    /// The emulated local APIC's (x2APIC, APIC base, TSC deadline).
    Apic,
    /// Reads give this value; writes are accepted and ignored.
    Fixed(u64),
    /// #GP(0) (Linux's safe accessors survive that).
    Refuse,
}

/// RDMSR/WRMSR by a Linux cell: the local APIC, a few identification MSRs,
/// everything else #GP.
pub fn linux(msr: u32) -> Linux {
    if lapic::handles(msr) {
        return Linux::Apic;
    }
    match msr {
        0x3A => Linux::Fixed(1),  // IA32_FEATURE_CONTROL: locked, VMX off
        0x8B => Linux::Fixed(0),  // IA32_BIOS_SIGN_ID: no microcode revision
        0x1A0 => Linux::Fixed(1), // IA32_MISC_ENABLE: fast strings
        0x1D9 => Linux::Fixed(0), // IA32_DEBUGCTL
        _ => Linux::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether an access to `msr` exits under `page`, as the CPU reads the
    /// bitmap (SDM 25.6.9: MSRs outside both ranges always exit).
    fn exits(page: &[u8; 4096], msr: u32, write: bool) -> bool {
        match position(msr) {
            Some((byte, bit)) => page[if write { 2048 } else { 0 } + byte] & bit != 0,
            None => true,
        }
    }

    fn bitmap(apic: bool) -> [u8; 4096] {
        let mut page = [0u8; 4096];
        build_bitmap(&mut page, apic);
        page
    }

    #[test]
    fn passthrough_msrs_and_tsc_reads_do_not_exit() {
        let page = bitmap(false);
        for msr in PASSTHROUGH {
            assert!(!exits(&page, msr, false), "{msr:#x} read");
            assert!(!exits(&page, msr, true), "{msr:#x} write");
        }
        assert!(!exits(&page, TSC, false));
        assert!(exits(&page, TSC, true), "TSC writes exit");
    }

    #[test]
    fn everything_else_exits() {
        let page = bitmap(false);
        for msr in [0x1B, 0x3A, 0x6E0, 0x802, 0x80B, 0xC000_0104, 0x4000_0000] {
            assert!(exits(&page, msr, false), "{msr:#x} read");
            assert!(exits(&page, msr, true), "{msr:#x} write");
        }
        // Exactly the listed MSRs plus the TSC read are open.
        let open = page.iter().map(|b| b.count_zeros()).sum::<u32>();
        assert_eq!(open, 2 * PASSTHROUGH.len() as u32 + 1);
    }

    #[test]
    fn the_apic_owner_reaches_the_x2apic_registers() {
        let page = bitmap(true);
        for msr in [0x800, 0x80B, 0x832, 0x838, 0x8FF] {
            assert!(!exits(&page, msr, false));
            assert!(!exits(&page, msr, true));
        }
        assert!(exits(&page, 0x7FF, true));
        assert!(exits(&page, 0x900, true));
        assert!(exits(&page, APIC_BASE, true), "the APIC base is checked");
    }

    #[test]
    fn the_microkernel_reads_a_few_msrs() {
        assert_eq!(microkernel_read(0x3A), Read::Value(1));
        assert_eq!(microkernel_read(0x1B), Read::HostApicBase);
        assert_eq!(microkernel_read(0xFE), Read::Value(0));
        assert_eq!(microkernel_read(0x1A0), Read::Value(1));
        assert_eq!(microkernel_read(0x8B), Read::Refuse);
    }

    #[test]
    fn only_cell_0_switches_its_apic_to_x2apic_mode() {
        let base = 0xFEE0_0900; // enabled, BSP, xAPIC mode
        assert!(microkernel_write(0, APIC_BASE, base | X2APIC_ENABLE, base));
        assert!(microkernel_write(0, APIC_BASE, base, base));
        // Moving the base or disabling the APIC is refused.
        assert!(!microkernel_write(0, APIC_BASE, 0xFED0_0900, base));
        assert!(!microkernel_write(0, APIC_BASE, base & !(1 << 11), base));
        assert!(!microkernel_write(1, APIC_BASE, base | X2APIC_ENABLE, base));
        assert!(!microkernel_write(0, 0x3A, 1, base));
    }

    #[test]
    fn linux_gets_its_apic_a_few_fixed_values_and_gp() {
        assert_eq!(linux(0x1B), Linux::Apic);
        assert_eq!(linux(0x6E0), Linux::Apic);
        assert_eq!(linux(0x832), Linux::Apic);
        assert_eq!(linux(0x3A), Linux::Fixed(1));
        assert_eq!(linux(0x8B), Linux::Fixed(0));
        assert_eq!(linux(0x1D9), Linux::Fixed(0));
        assert_eq!(linux(0x48), Linux::Refuse, "SPEC_CTRL");
        assert_eq!(linux(0xFE), Linux::Refuse, "MTRRCAP");
    }
}
