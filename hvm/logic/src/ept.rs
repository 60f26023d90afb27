//! Builders for EPT and for x86-64 4-level page tables.
//!
//! Both walk the same 4-level radix tree and differ only in entry formats, so
//! one walker serves both. Tables live in memory the caller provides through
//! [`TableMemory`]; on the host that is a vector, in hvm it is physical
//! frames. Ranges are mapped with 2 MiB pages where alignment allows.

/// Where page tables live: frames addressed by physical address.
pub trait TableMemory {
    /// A zeroed 4 KiB frame, or `None` when memory is exhausted.
    fn allocate(&mut self) -> Option<u64>;
    /// The 512 entries of the table at `phys` (a frame from `allocate`).
    fn table(&mut self, phys: u64) -> &mut [u64; 512];
}

/// Access rights of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Access {
    /// Read, write and execute.
    pub const ALL: Self = Self {
        read: true,
        write: true,
        execute: true,
    };
}

/// Errors from building tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Addresses or length not 4 KiB aligned.
    Unaligned,
    /// The range wraps or exceeds 48-bit addresses.
    OutOfRange,
    /// Part of the range is already mapped.
    AlreadyMapped(u64),
    /// No frame left for a table.
    OutOfMemory,
}

const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const SIZE_4K: u64 = 1 << 12;
const SIZE_2M: u64 = 1 << 21;
const LIMIT: u64 = 1 << 48;

/// Entry formats of the two kinds of table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Extended page tables (SDM Vol. 3 29.3.2, Tables 29-1 to 29-6).
    Ept,
    /// Ordinary IA-32e paging (SDM Vol. 3 4.5, Tables 4-14 to 4-20).
    X86 {
        /// Set the U/S bit (user-accessible).
        user: bool,
        /// Set the G bit on leaves.
        global: bool,
    },
}

impl Format {
    fn present(self, entry: u64) -> bool {
        match self {
            Format::Ept => entry & 0b111 != 0,
            Format::X86 { .. } => entry & 1 != 0,
        }
    }

    fn table_entry(self, phys: u64) -> u64 {
        match self {
            // Non-leaf EPT entries grant everything; leaves restrict.
            Format::Ept => phys | 0b111,
            Format::X86 { user, .. } => phys | 0b11 | if user { 0b100 } else { 0 },
        }
    }

    fn leaf(self, phys: u64, access: Access, large: bool) -> u64 {
        match self {
            Format::Ept => {
                let mut entry = phys;
                entry |= u64::from(access.read)
                    | u64::from(access.write) << 1
                    | u64::from(access.execute) << 2;
                entry |= 6 << 3; // memory type WB (SDM 29.3.7)
                if large {
                    entry |= 1 << 7;
                }
                entry
            }
            Format::X86 { user, global } => {
                let mut entry = phys | 1;
                if access.write {
                    entry |= 1 << 1;
                }
                if user {
                    entry |= 1 << 2;
                }
                if large {
                    entry |= 1 << 7;
                }
                if global {
                    entry |= 1 << 8;
                }
                if !access.execute {
                    entry |= 1 << 63;
                }
                entry
            }
        }
    }

    fn access(self, entry: u64) -> Access {
        match self {
            Format::Ept => Access {
                read: entry & 1 != 0,
                write: entry & 2 != 0,
                execute: entry & 4 != 0,
            },
            Format::X86 { .. } => Access {
                read: true,
                write: entry & 2 != 0,
                execute: entry & (1 << 63) == 0,
            },
        }
    }
}

fn index(address: u64, level: u32) -> usize {
    ((address >> (12 + 9 * level)) & 0x1FF) as usize
}

/// A 4-level table tree under construction.
#[derive(Clone, Copy, Debug)]
pub struct PageTables {
    /// Physical address of the top-level table.
    pub root: u64,
    format: Format,
    large_pages: bool,
}

impl PageTables {
    /// Allocates an empty top-level table. `large_pages` allows 2 MiB leaves.
    pub fn new(
        memory: &mut impl TableMemory,
        format: Format,
        large_pages: bool,
    ) -> Result<Self, MapError> {
        let root = memory.allocate().ok_or(MapError::OutOfMemory)?;
        Ok(Self {
            root,
            format,
            large_pages,
        })
    }

    /// Maps `[virt, virt + len)` to `[phys, phys + len)`.
    pub fn map(
        &self,
        memory: &mut impl TableMemory,
        virt: u64,
        phys: u64,
        len: u64,
        access: Access,
    ) -> Result<(), MapError> {
        if (virt | phys | len) & (SIZE_4K - 1) != 0 {
            return Err(MapError::Unaligned);
        }
        let virt_end = virt.checked_add(len).ok_or(MapError::OutOfRange)?;
        phys.checked_add(len)
            .filter(|&end| end <= LIMIT)
            .ok_or(MapError::OutOfRange)?;
        // Accept canonical upper-half addresses for x86 tables: only the low
        // 48 bits select entries.
        let span_ok = match self.format {
            Format::Ept => virt_end <= LIMIT,
            Format::X86 { .. } => (virt_end - 1) >> 47 == virt >> 47,
        };
        if !span_ok {
            return Err(MapError::OutOfRange);
        }
        let mut offset = 0;
        while offset < len {
            let (v, p) = (virt + offset, phys + offset);
            let large = self.large_pages && (v | p) & (SIZE_2M - 1) == 0 && len - offset >= SIZE_2M;
            self.map_one(memory, v, p, large, access)?;
            offset += if large { SIZE_2M } else { SIZE_4K };
        }
        Ok(())
    }

    fn map_one(
        &self,
        memory: &mut impl TableMemory,
        virt: u64,
        phys: u64,
        large: bool,
        access: Access,
    ) -> Result<(), MapError> {
        let leaf_level = if large { 1 } else { 0 };
        let mut table = self.root;
        for level in (leaf_level + 1..=3).rev() {
            let slot = index(virt, level);
            let entry = memory.table(table)[slot];
            table = if self.format.present(entry) {
                if entry & (1 << 7) != 0 {
                    return Err(MapError::AlreadyMapped(virt));
                }
                entry & ADDRESS_MASK
            } else {
                let next = memory.allocate().ok_or(MapError::OutOfMemory)?;
                memory.table(table)[slot] = self.format.table_entry(next);
                next
            };
        }
        let slot = index(virt, leaf_level);
        let entries = memory.table(table);
        if self.format.present(entries[slot]) {
            return Err(MapError::AlreadyMapped(virt));
        }
        entries[slot] = self.format.leaf(phys, access, large);
        Ok(())
    }

    /// Walks the tables: the physical address and rights `virt` maps to.
    pub fn translate(&self, memory: &mut impl TableMemory, virt: u64) -> Option<(u64, Access)> {
        let mut table = self.root;
        for level in (0..=3).rev() {
            let entry = memory.table(table)[index(virt, level)];
            if !self.format.present(entry) {
                return None;
            }
            let is_leaf = level == 0 || (level <= 2 && entry & (1 << 7) != 0);
            if is_leaf {
                let page = 1u64 << (12 + 9 * level);
                let base = entry & ADDRESS_MASK & !(page - 1);
                return Some((base | (virt & (page - 1)), self.format.access(entry)));
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    /// The EPT pointer for this tree (SDM Vol. 3 25.6.11): WB paging-structure
    /// memory type, 4-level walk.
    pub fn eptp(&self) -> u64 {
        self.root | (3 << 3) | 6
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Tables in host memory, addressed by fake physical addresses.
    #[derive(Default)]
    pub struct VecMemory {
        tables: BTreeMap<u64, Box<[u64; 512]>>,
        next: u64,
        pub limit: Option<usize>,
    }

    impl TableMemory for VecMemory {
        fn allocate(&mut self) -> Option<u64> {
            if self.limit.is_some_and(|l| self.tables.len() >= l) {
                return None;
            }
            self.next += SIZE_4K;
            let phys = 0x1000_0000 + self.next;
            self.tables.insert(phys, Box::new([0; 512]));
            Some(phys)
        }
        fn table(&mut self, phys: u64) -> &mut [u64; 512] {
            self.tables.get_mut(&phys).expect("a table we allocated")
        }
    }

    #[test]
    fn ept_maps_cell_memory_with_large_pages() {
        let mut memory = VecMemory::default();
        let ept = PageTables::new(&mut memory, Format::Ept, true).unwrap();
        ept.map(&mut memory, 0, 0x400_0000, 64 << 20, Access::ALL)
            .unwrap();
        // root + PDPT + PD only: 32 large pages, no 4K tables.
        assert_eq!(memory.tables.len(), 3);
        assert_eq!(
            ept.translate(&mut memory, 0x123_4567).map(|t| t.0),
            Some(0x400_0000 + 0x123_4567)
        );
        assert_eq!(ept.translate(&mut memory, 64 << 20), None);
        let (_, access) = ept.translate(&mut memory, 0).unwrap();
        assert_eq!(access, Access::ALL);
        assert_eq!(ept.eptp() & 0xFFF, 0x1E);
    }

    #[test]
    fn unaligned_tail_uses_small_pages() {
        let mut memory = VecMemory::default();
        let ept = PageTables::new(&mut memory, Format::Ept, true).unwrap();
        ept.map(
            &mut memory,
            0,
            0x20_0000,
            SIZE_2M + 3 * SIZE_4K,
            Access::ALL,
        )
        .unwrap();
        assert_eq!(
            ept.translate(&mut memory, SIZE_2M + 0x2fff).map(|t| t.0),
            Some(0x40_2fff)
        );
        assert_eq!(ept.translate(&mut memory, SIZE_2M + 0x3000), None);
    }

    #[test]
    fn overlapping_and_bad_ranges_are_refused() {
        let mut memory = VecMemory::default();
        let ept = PageTables::new(&mut memory, Format::Ept, true).unwrap();
        ept.map(&mut memory, 0, 0, SIZE_2M, Access::ALL).unwrap();
        assert_eq!(
            ept.map(&mut memory, 0x1000, 0, SIZE_4K, Access::ALL),
            Err(MapError::AlreadyMapped(0x1000))
        );
        assert_eq!(
            ept.map(&mut memory, 0x10, 0, SIZE_4K, Access::ALL),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            ept.map(&mut memory, !0xFFF, 0, SIZE_4K * 2, Access::ALL),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            ept.map(&mut memory, LIMIT, 0, SIZE_4K, Access::ALL),
            Err(MapError::OutOfRange)
        );
    }

    #[test]
    fn out_of_memory_is_reported() {
        let mut memory = VecMemory {
            limit: Some(2),
            ..Default::default()
        };
        let ept = PageTables::new(&mut memory, Format::Ept, false).unwrap();
        assert_eq!(
            ept.map(&mut memory, 0, 0, SIZE_4K, Access::ALL),
            Err(MapError::OutOfMemory)
        );
    }

    #[test]
    fn x86_tables_map_the_higher_half() {
        let mut memory = VecMemory::default();
        let format = Format::X86 {
            user: false,
            global: true,
        };
        let tables = PageTables::new(&mut memory, format, true).unwrap();
        let kernel = 0xFFFF_FFFF_8000_0000;
        tables
            .map(&mut memory, kernel, 0x20_0000, 4 * SIZE_2M, Access::ALL)
            .unwrap();
        assert_eq!(
            tables.translate(&mut memory, kernel + 0x1234).map(|t| t.0),
            Some(0x20_1234)
        );
        let read_only = Access {
            read: true,
            write: false,
            execute: false,
        };
        tables
            .map(&mut memory, 0x1000, 0x5000, SIZE_4K, read_only)
            .unwrap();
        assert_eq!(tables.translate(&mut memory, 0x1000).unwrap().1, read_only);
        // A range crossing from the lower into the upper half is refused.
        assert_eq!(
            tables.map(&mut memory, 0x7FFF_FFFF_F000, 0, 2 * SIZE_4K, Access::ALL),
            Err(MapError::OutOfRange)
        );
    }
}
