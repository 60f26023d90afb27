//! Runs the ELF reader's fuzz target body on stable: seeds and mutations.
//!
//! The body (`servers/fuzz/src/elf.rs`) is the one the cargo-fuzz binary
//! runs. The seed is a small executable with two loadable segments; the
//! mutations change the header and program header fields most likely to
//! matter (offsets, sizes, addresses, counts) as well as random bytes.

#[path = "../../../servers/fuzz/src/elf.rs"]
mod target;

use kasane_elf::Executable;
use proptest::prelude::*;

/// An x86-64 `ET_EXEC` with a text segment (R+X, holding the entry) and a
/// data segment (R+W, with a zeroed tail) after the program headers.
fn seed() -> Vec<u8> {
    let mut file = vec![0u8; 0x400];
    file[..4].copy_from_slice(b"\x7fELF");
    file[4] = 2; // ELFCLASS64
    file[5] = 1; // ELFDATA2LSB
    file[6] = 1; // EV_CURRENT
    file[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    file[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    file[24..32].copy_from_slice(&0x40_0200u64.to_le_bytes()); // e_entry
    file[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    file[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    file[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let segments: [(u32, u64, u64, u64, u64); 2] = [
        // flags, offset, vaddr, filesz, memsz
        (5, 0x200, 0x40_0200, 0x100, 0x100),
        (6, 0x300, 0x40_1300, 0x80, 0x1000),
    ];
    for (index, (flags, offset, vaddr, filesz, memsz)) in segments.into_iter().enumerate() {
        let at = 64 + 56 * index;
        file[at..at + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        file[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
        file[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
        file[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
        file[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
        file[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
    }
    file
}

/// Byte offsets of the fields worth aiming at: e_entry, e_phoff,
/// e_phentsize, e_phnum, and each program header's offset, address,
/// file size and memory size.
const FIELDS: [usize; 12] = [24, 32, 54, 56, 72, 80, 96, 104, 128, 136, 152, 160];

#[test]
fn the_seed_parses_and_every_cut_is_handled() {
    let file = seed();
    let executable = Executable::parse(&file).expect("the seed is an executable");
    assert_eq!(executable.segments().count(), 2);
    target::elf(&file);
    for cut in 0..file.len() {
        target::elf(&file[..cut]);
    }
}

proptest! {
    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        target::elf(&data);
    }

    #[test]
    fn random_bytes_behind_a_good_identity(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut file = seed()[..20].to_vec();
        file.extend_from_slice(&data);
        target::elf(&file);
    }

    #[test]
    fn mutated_fields(
        changes in proptest::collection::vec(
            (any::<prop::sample::Index>(), any::<u64>(), 0usize..4),
            1..5,
        ),
    ) {
        let mut file = seed();
        for (field, value, kind) in changes {
            let at = FIELDS[field.index(FIELDS.len())];
            // Small values, powers of two, near all ones, or anything.
            let value = match kind {
                0 => value % 0x500,
                1 => 1u64 << (value % 64),
                2 => u64::MAX - value % 16,
                _ => value,
            };
            let width = if at == 54 || at == 56 { 2 } else { 8 };
            file[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        target::elf(&file);
    }

    #[test]
    fn mutated_bytes(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut file = seed();
        for (at, byte) in flips {
            let i = at.index(file.len());
            file[i] = byte;
        }
        target::elf(&file);
    }
}
