//! CPUID as each kind of cell sees it: which leaves pass, which are changed.
//!
//! hvm executes CPUID on the host and hands the result here with the
//! guest's request; these functions decide what the guest is told. The
//! leaf numbers and bits are those of SDM Vol. 2A, "CPUID—CPU
//! Identification". Every cell is told the TSC rate hvm measured (leaves
//! 0x15 and 0x16, docs/hypercalls.md "Time"); what else differs between a
//! microkernel cell and a Linux cell is documented at each function.

/// EAX, EBX, ECX, EDX of one CPUID leaf.
pub type Registers = [u32; 4];

/// The highest basic leaf every cell is offered, so that the TSC leaves
/// 0x15 and 0x16 are visible even where the host's maximum is lower.
pub const MAX_BASIC_LEAF: u32 = 0x16;

/// CPUID.1:ECX bits.
mod leaf1 {
    pub const VMX: u32 = 1 << 5;
    pub const X2APIC: u32 = 1 << 21;
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const HYPERVISOR: u32 = 1 << 31;
}

/// Leaf 0x15, "Time Stamp Counter and Nominal Core Crystal Clock": the
/// TSC runs at ECX * EBX / EAX Hz. hvm says "the crystal is the TSC":
/// EAX = EBX = 1 and ECX = the rate in Hz. A rate of 2^32 Hz or more does
/// not fit ECX; then EBX is the smallest factor that makes ECX fit.
pub fn tsc_leaf(hz: u64) -> Registers {
    let factor = hz / (1 << 32) + 1;
    [1, factor as u32, (hz / factor) as u32, 0]
}

/// Leaf 0x16, "Processor Frequency Information": base and maximum
/// frequency in MHz (the TSC rate) and a 100 MHz bus.
pub fn frequency_leaf(hz: u64) -> Registers {
    let mhz = ((hz + 500_000) / 1_000_000) as u32;
    [mhz, mhz, 100, 0]
}

/// The hypervisor vendor leaf 0x4000_0000 (CPUID.1:ECX[31] convention):
/// the highest hypervisor leaf and a 12-byte signature.
fn vendor_leaf(signature: &[u8; 12]) -> Registers {
    let word = |i: usize| {
        u32::from_le_bytes([
            signature[i],
            signature[i + 1],
            signature[i + 2],
            signature[i + 3],
        ])
    };
    [0x4000_0001, word(0), word(4), word(8)]
}

/// Basic leaves above the host's maximum are answered with zeros, like
/// a CPU answers leaves it does not have with its highest leaf's values:
/// zeros are the clearer "nothing here".
fn host_or_zero(leaf: u32, subleaf: u32, host: &impl Fn(u32, u32) -> Registers) -> Registers {
    let host_max = host(0, 0)[0];
    if leaf <= host_max || leaf >= 0x8000_0000 {
        host(leaf, subleaf)
    } else {
        [0; 4]
    }
}

/// CPUID for the microkernel cell (cell 0): the host's values, without
/// VMX, with the hypervisor bit and hvm's own vendor leaf (`KasaneHVM`,
/// which the microkernel checks to know it runs under hvm), and the TSC
/// leaves. `host` executes CPUID on the host.
pub fn microkernel(
    leaf: u32,
    subleaf: u32,
    tsc_hz: u64,
    host: impl Fn(u32, u32) -> Registers,
) -> Registers {
    let [mut a, b, mut c, d] = host_or_zero(leaf, subleaf, &host);
    match leaf {
        0 => a = a.max(MAX_BASIC_LEAF),
        1 => {
            c &= !leaf1::VMX;
            c |= leaf1::HYPERVISOR;
        }
        0x15 => return tsc_leaf(tsc_hz),
        0x16 => return frequency_leaf(tsc_hz),
        0x4000_0000 => return vendor_leaf(b"KasaneHVM\0\0\0"),
        0x4000_0001..=0x4000_00FF => return [0; 4],
        _ => {}
    }
    [a, b, c, d]
}

/// CPUID for a Linux cell: the host's values minus what hvm does not
/// emulate, plus what it does (x2APIC, TSC-deadline, ARAT, the TSC
/// frequency) and the KVM signature, which is how Linux learns that x2APIC
/// without interrupt remapping is fine (arch/x86/kernel/apic: "Using X2APIC
/// without IR is not architecturally supported on bare metal but may be
/// supported in guests") — with no KVM feature bits, so nothing else of
/// KVM's paravirtual interface is expected. `guest_osxsave` is the guest's
/// CR4.OSXSAVE, which CPUID.1:ECX[27] mirrors.
pub fn linux(
    leaf: u32,
    subleaf: u32,
    guest_osxsave: bool,
    tsc_hz: u64,
    host: impl Fn(u32, u32) -> Registers,
) -> Registers {
    let [mut a, mut b, mut c, mut d] = host_or_zero(leaf, subleaf, &host);
    match leaf {
        0 => a = a.max(MAX_BASIC_LEAF),
        1 => {
            b &= 0x00FF_FFFF; // initial APIC ID 0
                              // ECX: no DTES64 (2), MONITOR (3), DS-CPL (4), VMX (5), SMX (6),
                              // EST (7), TM2 (8), xTPR (14), PDCM (15), DCA (18).
            c &= !((1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8));
            c &= !((1 << 14) | (1 << 15) | (1 << 18));
            c |= leaf1::X2APIC | leaf1::TSC_DEADLINE | leaf1::HYPERVISOR;
            c &= !leaf1::OSXSAVE;
            if guest_osxsave {
                c |= leaf1::OSXSAVE;
            }
            // EDX: no MCE (7), MTRR (12), MCA (14), DS (21), ACPI thermal
            // (22), TM (29), PBE (31): their MSRs are not emulated.
            d &=
                !((1 << 7) | (1 << 12) | (1 << 14) | (1 << 21) | (1 << 22) | (1 << 29) | (1 << 31));
        }
        5 | 0xA | 0xF | 0x10 | 0x12 | 0x14 | 0x1B => return [0; 4],
        6 => return [1 << 2, 0, 0, 0], // ARAT only
        7 if subleaf == 0 => {
            // EBX: no TSC_ADJUST (1), SGX (2), RDT-M (12), MPX (14),
            // RDT-A (15), PT (25).
            b &= !((1 << 1) | (1 << 2) | (1 << 12) | (1 << 14) | (1 << 15) | (1 << 25));
            c &= !(1 << 5); // WAITPKG
                            // EDX: no hybrid (15), PCONFIG (18), CET-IBT (20), IBRS/IBPB
                            // (26), STIBP (27), L1D_FLUSH (28), ARCH_CAPABILITIES (29),
                            // CORE_CAPABILITIES (30), SSBD (31): their MSRs are refused.
            d &= !((1 << 15) | (1 << 18) | (1 << 20) | (0x3F << 26));
        }
        7 => return [0; 4],
        0xD if subleaf == 1 => {
            a &= !(1 << 3); // no XSAVES: IA32_XSS is not emulated
            c = 0;
            d = 0;
        }
        0x15 => return tsc_leaf(tsc_hz),
        0x16 => return frequency_leaf(tsc_hz),
        0x4000_0000 => return vendor_leaf(b"KVMKVMKVM\0\0\0"),
        0x4000_0001..=0x4000_00FF => return [0; 4],
        0x8000_0007 => return [0, 0, 0, 1 << 8], // invariant TSC
        _ => {}
    }
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host whose highest basic leaf is 0xD and whose every leaf has
    /// all bits set, so what hvm clears shows.
    fn host(leaf: u32, _subleaf: u32) -> Registers {
        if leaf == 0 {
            [0xD, 0x756E_6547, 0x6C65_746E, 0x4965_6E69]
        } else {
            [u32::MAX; 4]
        }
    }

    const HZ: u64 = 200_000_000;

    #[test]
    fn every_cell_is_told_the_measured_tsc_rate() {
        // The contract the microkernel relies on: EAX = EBX = 1, ECX = Hz.
        assert_eq!(microkernel(0x15, 0, HZ, host), [1, 1, 200_000_000, 0]);
        assert_eq!(linux(0x15, 0, false, HZ, host), [1, 1, 200_000_000, 0]);
        assert_eq!(
            microkernel(0x16, 0, 2_893_457_000, host),
            [2893, 2893, 100, 0]
        );
        assert_eq!(linux(0x16, 0, false, HZ, host), [200, 200, 100, 0]);
    }

    #[test]
    fn the_tsc_leaves_are_visible_above_a_low_host_maximum() {
        assert_eq!(microkernel(0, 0, HZ, host)[0], MAX_BASIC_LEAF);
        assert_eq!(linux(0, 0, false, HZ, host)[0], MAX_BASIC_LEAF);
        // The vendor string passes.
        assert_eq!(microkernel(0, 0, HZ, host)[1], 0x756E_6547);
        // Leaves between the host's maximum and 0x15 are empty.
        assert_eq!(microkernel(0x13, 0, HZ, host), [0; 4]);
        assert_eq!(linux(0x13, 0, false, HZ, host), [0; 4]);
    }

    #[test]
    fn a_rate_beyond_32_bits_keeps_the_product() {
        let [a, b, c, _] = tsc_leaf(5_000_000_000);
        assert_eq!((a, b), (1, 2));
        assert_eq!(u64::from(c) * u64::from(b) / u64::from(a), 5_000_000_000);
        assert_eq!(tsc_leaf(u64::from(u32::MAX)), [1, 1, u32::MAX, 0]);
    }

    #[test]
    fn the_microkernel_sees_kasane_and_no_vmx() {
        let [_, _, c, _] = microkernel(1, 0, HZ, host);
        assert_eq!(c & leaf1::VMX, 0);
        assert_ne!(c & leaf1::HYPERVISOR, 0);
        let [a, b, c, d] = microkernel(0x4000_0000, 0, HZ, host);
        assert_eq!(a, 0x4000_0001);
        let mut signature = [0u8; 12];
        signature[..4].copy_from_slice(&b.to_le_bytes());
        signature[4..8].copy_from_slice(&c.to_le_bytes());
        signature[8..].copy_from_slice(&d.to_le_bytes());
        assert_eq!(&signature, b"KasaneHVM\0\0\0");
        assert_eq!(microkernel(0x4000_0001, 0, HZ, host), [0; 4]);
        // Other leaves pass unchanged.
        assert_eq!(microkernel(7, 0, HZ, host), [u32::MAX; 4]);
        assert_eq!(microkernel(0x8000_0001, 0, HZ, host), [u32::MAX; 4]);
    }

    #[test]
    fn linux_sees_kvm_and_what_hvm_emulates() {
        let [_, b, c, d] = linux(1, 0, false, HZ, host);
        assert_eq!(b >> 24, 0, "initial APIC id 0");
        assert_eq!(c & leaf1::VMX, 0);
        assert_eq!(c & leaf1::OSXSAVE, 0);
        assert_ne!(c & leaf1::X2APIC, 0);
        assert_ne!(c & leaf1::TSC_DEADLINE, 0);
        assert_eq!(d & (1 << 12), 0, "no MTRRs");
        assert_ne!(linux(1, 0, true, HZ, host)[2] & leaf1::OSXSAVE, 0);
        assert_eq!(
            linux(0x4000_0000, 0, false, HZ, host)[1],
            u32::from_le_bytes(*b"KVMK")
        );
        assert_eq!(linux(6, 0, false, HZ, host), [4, 0, 0, 0]);
        assert_eq!(linux(7, 1, false, HZ, host), [0; 4]);
        assert_eq!(linux(0x8000_0007, 0, false, HZ, host), [0, 0, 0, 1 << 8]);
        assert_eq!(linux(0xD, 1, false, HZ, host)[0] & (1 << 3), 0);
        assert_eq!(linux(7, 0, false, HZ, host)[3] >> 26, 0);
    }
}
