//! ACPI tables for a Linux cell: RSDP, XSDT, a hardware-reduced FADT, MADT.
//!
//! Debian's cloud kernel has no MP-table parser, so CPUs and the local APIC
//! are described with ACPI (ACPI 6.4 chapter 5). The platform is
//! "hardware-reduced" (FADT flag HW_REDUCED_ACPI, 5.2.9): no PM timer, no
//! SCI, no legacy PIC, no 8042, no CMOS clock, so Linux expects none of the
//! fixed hardware hvm does not emulate. The FADT's reset register is port
//! 0xCF9 (value 6), so an ACPI reboot reaches hvm as a reset it can see.
//! The MADT also lists an I/O APIC (GSIs 0–23, `ioapic.rs`), and the DSDT
//! describes one device, COM1 (PNP0501 with I/O 0x3F8 and IRQ 4), so Linux
//! can map the serial port's interrupt; PCI is found by configuration
//! cycles (`pci=lastbus=1`).

/// Size of the block [`build`] fills.
pub const TABLES_SIZE: usize = 0x400;

const RSDP_AT: usize = 0x000;
const XSDT_AT: usize = 0x040;
const FADT_AT: usize = 0x100;
const MADT_AT: usize = 0x240;
const DSDT_AT: usize = 0x300;
const _: () = assert!(DSDT_AT + DSDT_LEN <= TABLES_SIZE && MADT_AT + MADT_LEN <= DSDT_AT);

const FADT_LEN: usize = 276;
const MADT_LEN: usize = 44 + 8 + 12;
const DSDT_LEN: usize = 36 + COM1_AML.len();

/// AML for `Scope (\_SB) { Device (COM1) { Name (_HID, EisaId ("PNP0501"))
/// Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 0, 8)
/// IRQNoFlags () {4} }) } }` (ACPI 6.4 chapter 20, "ACPI Machine Language
/// Specification"; resource descriptors 6.4.2.5 and 6.4.2.1).
const COM1_AML: [u8; 46] = [
    0x10, 0x2D, b'\\', b'_', b'S', b'B', b'_', // ScopeOp, PkgLength 45, \_SB_
    0x5B, 0x82, 0x25, b'C', b'O', b'M', b'1', // DeviceOp, PkgLength 37, COM1
    0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, 0x05, 0x01, // _HID EISAID PNP0501
    0x08, b'_', b'C', b'R', b'S', 0x11, 0x10, 0x0A, 0x0D, // _CRS Buffer(13)
    0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x00, 0x08, // IO Decode16 0x3F8, length 8
    0x22, 0x10, 0x00, // IRQNoFlags {4}
    0x79, 0x00, // End tag
];
const XSDT_LEN: usize = 36 + 2 * 8;

/// Port of the FADT reset register (the PCI reset control register).
pub const RESET_PORT: u16 = 0xCF9;
/// Value written to [`RESET_PORT`] to reset.
pub const RESET_VALUE: u8 = 0x06;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, &b| sum.wrapping_add(b))
        .wrapping_neg()
}

/// The common header (ACPI 6.4 5.2.6, "System Description Table Header").
fn header(table: &mut [u8], signature: &[u8; 4], revision: u8) {
    let length = table.len() as u32;
    table[0..4].copy_from_slice(signature);
    table[4..8].copy_from_slice(&length.to_le_bytes());
    table[8] = revision;
    table[10..16].copy_from_slice(b"KASANE");
    table[16..24].copy_from_slice(b"KASANEHV");
    table[24..28].copy_from_slice(&1u32.to_le_bytes());
    table[28..32].copy_from_slice(b"KSNE");
    table[32..36].copy_from_slice(&1u32.to_le_bytes());
    table[9] = 0;
    table[9] = checksum(table);
}

/// Builds every table into `block`, which the guest sees at `base`.
/// Returns the RSDP's guest-physical address.
pub fn build(block: &mut [u8; TABLES_SIZE], base: u64) -> u64 {
    block.fill(0);
    let address = |offset: usize| base + offset as u64;

    // DSDT (5.2.11.1): COM1 only.
    block[DSDT_AT + 36..DSDT_AT + DSDT_LEN].copy_from_slice(&COM1_AML);
    header(&mut block[DSDT_AT..DSDT_AT + DSDT_LEN], b"DSDT", 2);

    // MADT (5.2.12): local APIC address, no PC-AT 8259s (flags 0), one
    // Processor Local APIC structure (type 0): UID 0, APIC ID 0, enabled.
    {
        let madt = &mut block[MADT_AT..MADT_AT + MADT_LEN];
        madt[36..40].copy_from_slice(&0xFEE0_0000u32.to_le_bytes());
        madt[40..44].copy_from_slice(&0u32.to_le_bytes());
        madt[44] = 0; // type: Processor Local APIC
        madt[45] = 8; // length
        madt[46] = 0; // ACPI processor UID
        madt[47] = 0; // APIC ID
        madt[48..52].copy_from_slice(&1u32.to_le_bytes()); // enabled
                                                           // I/O APIC structure (type 1, 5.2.12.3): ID 0, GSI base 0.
        madt[52] = 1;
        madt[53] = 12;
        madt[54] = 0;
        madt[56..60].copy_from_slice(&(crate::ioapic::BASE as u32).to_le_bytes());
        madt[60..64].copy_from_slice(&0u32.to_le_bytes());
        header(madt, b"APIC", 5);
    }

    // FADT (5.2.9), revision 6.
    {
        let fadt = &mut block[FADT_AT..FADT_AT + FADT_LEN];
        fadt[40..44].copy_from_slice(&(address(DSDT_AT) as u32).to_le_bytes());
        // IAPC_BOOT_ARCH (5.2.9.3): VGA not present (bit 2), CMOS RTC not
        // present (bit 5); bit 1 (8042) and bit 3 (MSI not supported) stay
        // clear.
        fadt[109..111].copy_from_slice(&((1u16 << 2) | (1 << 5)).to_le_bytes());
        // Flags (Table 5.10): RESET_REG_SUP (10), HW_REDUCED_ACPI (20).
        fadt[112..116].copy_from_slice(&((1u32 << 10) | (1 << 20)).to_le_bytes());
        // RESET_REG: Generic Address Structure (5.2.3.2), System I/O space,
        // 8 bits wide, byte access.
        fadt[116] = 1;
        fadt[117] = 8;
        fadt[118] = 0;
        fadt[119] = 1;
        fadt[120..128].copy_from_slice(&u64::from(RESET_PORT).to_le_bytes());
        fadt[128] = RESET_VALUE;
        fadt[131] = 4; // FADT minor version (ACPI 6.4)
        fadt[140..148].copy_from_slice(&address(DSDT_AT).to_le_bytes());
        fadt[268..276].copy_from_slice(b"KASANEHV");
        header(fadt, b"FACP", 6);
    }

    // XSDT (5.2.8): the FADT and the MADT.
    {
        let xsdt = &mut block[XSDT_AT..XSDT_AT + XSDT_LEN];
        xsdt[36..44].copy_from_slice(&address(FADT_AT).to_le_bytes());
        xsdt[44..52].copy_from_slice(&address(MADT_AT).to_le_bytes());
        header(xsdt, b"XSDT", 1);
    }

    // RSDP (5.2.5.3), revision 2: checksum over the first 20 bytes, the
    // extended checksum over all 36.
    {
        let rsdp = &mut block[RSDP_AT..RSDP_AT + 36];
        rsdp[0..8].copy_from_slice(b"RSD PTR ");
        rsdp[9..15].copy_from_slice(b"KASANE");
        rsdp[15] = 2;
        rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
        rsdp[24..32].copy_from_slice(&address(XSDT_AT).to_le_bytes());
        rsdp[8] = checksum(&rsdp[..20]);
        rsdp[32] = checksum(&rsdp[..36]);
    }
    address(RSDP_AT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) == 0
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn tables_are_linked_and_checksummed() {
        let mut block = [0u8; TABLES_SIZE];
        let base = 0xE_0000;
        let rsdp = build(&mut block, base);
        assert_eq!(rsdp, base);
        assert_eq!(&block[0..8], b"RSD PTR ");
        assert!(sums_to_zero(&block[0..20]));
        assert!(sums_to_zero(&block[0..36]));
        let xsdt = (u64_at(&block, 24) - base) as usize;
        assert_eq!(&block[xsdt..xsdt + 4], b"XSDT");
        let xsdt_len = u32::from_le_bytes(block[xsdt + 4..xsdt + 8].try_into().unwrap()) as usize;
        assert!(sums_to_zero(&block[xsdt..xsdt + xsdt_len]));
        let mut signatures = std::vec::Vec::new();
        for entry in 0..(xsdt_len - 36) / 8 {
            let at = (u64_at(&block, xsdt + 36 + 8 * entry) - base) as usize;
            let len = u32::from_le_bytes(block[at + 4..at + 8].try_into().unwrap()) as usize;
            assert!(sums_to_zero(&block[at..at + len]));
            signatures.push(std::string::String::from_utf8_lossy(&block[at..at + 4]).into_owned());
            if &block[at..at + 4] == b"FACP" {
                let flags = u32::from_le_bytes(block[at + 112..at + 116].try_into().unwrap());
                assert_ne!(flags & (1 << 20), 0, "hardware-reduced");
                let dsdt = (u64_at(&block, at + 140) - base) as usize;
                assert_eq!(&block[dsdt..dsdt + 4], b"DSDT");
                let len =
                    u32::from_le_bytes(block[dsdt + 4..dsdt + 8].try_into().unwrap()) as usize;
                assert_eq!(len, 36 + 46);
                assert!(sums_to_zero(&block[dsdt..dsdt + len]));
                assert_eq!(u64_at(&block, at + 120), 0xCF9);
            }
        }
        assert_eq!(signatures, ["FACP", "APIC"]);
    }

    #[test]
    fn aml_package_lengths_add_up() {
        // Scope: PkgLength counts itself and everything after it.
        assert_eq!(COM1_AML[1] as usize, COM1_AML.len() - 1);
        // Device: 0x5B 0x82 at 7, PkgLength at 9.
        assert_eq!(COM1_AML[9] as usize, COM1_AML.len() - 9);
        // Buffer: PkgLength at 30 covers the size prefix and 13 bytes.
        assert_eq!(COM1_AML[30] as usize, 1 + 2 + 13);
        assert_eq!(COM1_AML[32] as usize, COM1_AML.len() - 33);
    }
}
