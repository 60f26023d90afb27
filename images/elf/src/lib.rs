//! A strict, allocation-free reader of the ELF64 executables Kasane loads.
//!
//! hvm loads the microkernel, the microkernel loads the root task, and core
//! loads programs named by a path — possibly served by a 9P peer. All of
//! them read ELF through this crate, which checks the header and every
//! loadable program header against the file before anything is copied
//! (ELF-64 Object File Format 1.5, "ELF Header" and "Program Header Table";
//! System V ABI AMD64 supplement for `EM_X86_64`). Invariants of a
//! [`Executable`]: every [`Segment`]'s file bytes lie inside the file,
//! `file_size <= memory_size`, its virtual range does not wrap, and the entry
//! point lies in an executable segment. Nothing here panics on any input.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;

/// Why a file is not a loadable executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header, or not starting with `\x7fELF`.
    NotElf,
    /// Not ELFCLASS64 / ELFDATA2LSB / version 1.
    WrongFormat,
    /// `e_machine` is not x86-64.
    WrongMachine,
    /// `e_type` is not `ET_EXEC` (position-dependent executables only).
    NotExecutable,
    /// The program header table lies outside the file or has a bad entry
    /// size.
    BadProgramHeaders,
    /// A segment's file bytes lie outside the file, or it is larger in the
    /// file than in memory, or its address range wraps.
    BadSegment {
        /// Index of the program header.
        index: usize,
    },
    /// The entry point is not inside an executable loadable segment.
    BadEntry(u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf => f.write_str("not an ELF file"),
            Self::WrongFormat => f.write_str("not a 64-bit little-endian ELF file"),
            Self::WrongMachine => f.write_str("not an x86-64 program"),
            Self::NotExecutable => f.write_str("not a position-dependent executable (ET_EXEC)"),
            Self::BadProgramHeaders => f.write_str("program header table lies outside the file"),
            Self::BadSegment { index } => {
                write!(f, "program header {index} describes bytes outside the file")
            }
            Self::BadEntry(entry) => {
                write!(f, "entry point {entry:#x} is not in an executable segment")
            }
        }
    }
}

/// A loadable segment (`PT_LOAD`), checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the first byte.
    pub virtual_address: u64,
    /// Bytes in memory (the tail past `file_size` is zero).
    pub memory_size: u64,
    /// Offset of the segment's bytes in the file.
    pub file_offset: usize,
    /// Bytes present in the file.
    pub file_size: usize,
    /// `PF_R`.
    pub readable: bool,
    /// `PF_W`.
    pub writable: bool,
    /// `PF_X`.
    pub executable: bool,
}

impl Segment {
    /// One past the last virtual address.
    pub fn end(&self) -> u64 {
        self.virtual_address + self.memory_size
    }

    /// The segment's bytes in `file` (the file it was read from).
    pub fn data<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        file.get(self.file_offset..self.file_offset + self.file_size)
            .unwrap_or(&[])
    }
}

const HEADER_SIZE: usize = 64;
const PROGRAM_HEADER_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;

/// A checked executable.
#[derive(Clone, Copy, Debug)]
pub struct Executable<'a> {
    file: &'a [u8],
    entry: u64,
    table: usize,
    count: usize,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl<'a> Executable<'a> {
    /// Checks `file` and every loadable segment in it.
    pub fn parse(file: &'a [u8]) -> Result<Self, ElfError> {
        if file.len() < HEADER_SIZE || file[..4] != *b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        // e_ident: EI_CLASS = 2 (64-bit), EI_DATA = 1 (LSB), EI_VERSION = 1.
        if file[4] != 2 || file[5] != 1 || file[6] != 1 {
            return Err(ElfError::WrongFormat);
        }
        if u16_at(file, 18) != EM_X86_64 {
            return Err(ElfError::WrongMachine);
        }
        if u16_at(file, 16) != ET_EXEC {
            return Err(ElfError::NotExecutable);
        }
        let entry = u64_at(file, 24);
        let table = u64_at(file, 32);
        let entry_size = usize::from(u16_at(file, 54));
        let count = usize::from(u16_at(file, 56));
        if count > 0 && entry_size != PROGRAM_HEADER_SIZE {
            return Err(ElfError::BadProgramHeaders);
        }
        let table = usize::try_from(table).map_err(|_| ElfError::BadProgramHeaders)?;
        let end = table
            .checked_add(count * PROGRAM_HEADER_SIZE)
            .ok_or(ElfError::BadProgramHeaders)?;
        if end > file.len() {
            return Err(ElfError::BadProgramHeaders);
        }
        let executable = Executable {
            file,
            entry,
            table,
            count,
        };
        let mut entry_ok = false;
        for index in 0..count {
            if let Some(segment) = executable.segment(index)? {
                entry_ok |=
                    segment.executable && (segment.virtual_address..segment.end()).contains(&entry);
            }
        }
        if !entry_ok {
            return Err(ElfError::BadEntry(entry));
        }
        Ok(executable)
    }

    fn segment(&self, index: usize) -> Result<Option<Segment>, ElfError> {
        let at = self.table + index * PROGRAM_HEADER_SIZE;
        let header = &self.file[at..at + PROGRAM_HEADER_SIZE];
        if u32_at(header, 0) != PT_LOAD {
            return Ok(None);
        }
        let flags = u32_at(header, 4);
        let bad = ElfError::BadSegment { index };
        let offset = usize::try_from(u64_at(header, 8)).map_err(|_| bad)?;
        let virtual_address = u64_at(header, 16);
        let file_size = usize::try_from(u64_at(header, 32)).map_err(|_| bad)?;
        let memory_size = u64_at(header, 40);
        let file_end = offset.checked_add(file_size).ok_or(bad)?;
        if file_end > self.file.len() || file_size as u64 > memory_size {
            return Err(bad);
        }
        virtual_address.checked_add(memory_size).ok_or(bad)?;
        Ok(Some(Segment {
            virtual_address,
            memory_size,
            file_offset: offset,
            file_size,
            readable: flags & 4 != 0,
            writable: flags & 2 != 0,
            executable: flags & 1 != 0,
        }))
    }

    /// The entry point.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// The loadable segments with something in memory, in file order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        (0..self.count)
            .filter_map(|index| self.segment(index).ok().flatten())
            .filter(|segment| segment.memory_size > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal executable: header, one PT_LOAD (R+X) covering the file.
    fn sample() -> Vec<u8> {
        let mut file = vec![0u8; 0x200];
        file[..4].copy_from_slice(b"\x7fELF");
        file[4] = 2;
        file[5] = 1;
        file[6] = 1;
        file[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        file[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        file[24..32].copy_from_slice(&0x40_0100u64.to_le_bytes());
        file[32..40].copy_from_slice(&64u64.to_le_bytes());
        file[54..56].copy_from_slice(&56u16.to_le_bytes());
        file[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        file[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        file[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
        file[ph + 8..ph + 16].copy_from_slice(&0u64.to_le_bytes());
        file[ph + 16..ph + 24].copy_from_slice(&0x40_0000u64.to_le_bytes());
        file[ph + 32..ph + 40].copy_from_slice(&0x200u64.to_le_bytes());
        file[ph + 40..ph + 48].copy_from_slice(&0x1000u64.to_le_bytes());
        file
    }

    #[test]
    fn a_good_executable() {
        let file = sample();
        let elf = Executable::parse(&file).unwrap();
        assert_eq!(elf.entry(), 0x40_0100);
        let segments: Vec<_> = elf.segments().collect();
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].end(), 0x40_1000);
        assert!(segments[0].executable && !segments[0].writable);
        assert_eq!(segments[0].data(&file).len(), 0x200);
    }

    #[test]
    fn each_rule_has_its_error() {
        let good = sample();
        let with = |at: usize, bytes: &[u8]| {
            let mut file = good.clone();
            file[at..at + bytes.len()].copy_from_slice(bytes);
            Executable::parse(&file).map(|_| ()).unwrap_err()
        };
        assert_eq!(
            Executable::parse(&good[..10]).unwrap_err(),
            ElfError::NotElf
        );
        assert_eq!(with(4, &[1]), ElfError::WrongFormat);
        assert_eq!(with(18, &[3, 0]), ElfError::WrongMachine);
        assert_eq!(with(16, &[3, 0]), ElfError::NotExecutable);
        assert_eq!(
            with(32, &0x1000u64.to_le_bytes()),
            ElfError::BadProgramHeaders
        );
        assert_eq!(
            with(64 + 32, &0x1000u64.to_le_bytes()),
            ElfError::BadSegment { index: 0 }
        );
        assert_eq!(
            with(64 + 40, &0x10u64.to_le_bytes()),
            ElfError::BadSegment { index: 0 }
        );
        assert_eq!(
            with(64 + 16, &u64::MAX.to_le_bytes()),
            ElfError::BadSegment { index: 0 }
        );
        assert_eq!(
            with(24, &0x50_0000u64.to_le_bytes()),
            ElfError::BadEntry(0x50_0000)
        );
        assert_eq!(
            with(64 + 4, &6u32.to_le_bytes()),
            ElfError::BadEntry(0x40_0100)
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(elf) = Executable::parse(&bytes) {
                for segment in elf.segments() {
                    prop_assert!(segment.file_offset + segment.file_size <= bytes.len());
                }
            }
        }

        #[test]
        fn mutated_executables_never_panic(changes in proptest::collection::vec((0usize..0x200, any::<u8>()), 1..8)) {
            let mut file = sample();
            for (at, value) in changes {
                file[at] = value;
            }
            if let Ok(elf) = Executable::parse(&file) {
                for segment in elf.segments() {
                    prop_assert!(segment.file_size as u64 <= segment.memory_size);
                    prop_assert!(segment.data(&file).len() == segment.file_size);
                }
            }
        }
    }
}
