//! Typed message items (strings, map and grant items) and flexpages.
//!
//! A typed item is two message words. The low four bits of the first word
//! say which kind it is:
//!
//! | kind | word 0                                        | word 1      |
//! |------|-----------------------------------------------|-------------|
//! | 1 string | length in bits 63..16, bits 15..4 zero    | address     |
//! | 2 map    | send base (page aligned), bits 11..4 zero | flexpage    |
//! | 3 grant  | as map                                     | flexpage    |
//!
//! A flexpage (L4 X.2, "Fpage") is one word: the base address in bits 63..12,
//! log2 of the size in bits 9..4 and the access rights in bits 2..0 (read 4,
//! write 2, execute 1); bits 11..10 and 3 are zero. The all-zero word is the
//! nil flexpage.
//!
//! Invariants:
//! - A decoded [`Fpage`] other than nil has a size of 2^12..=2^47 bytes, a
//!   base aligned to its size and an end at or below 2^47: it lies in the
//!   lower canonical half, so arithmetic on it cannot overflow.
//! - Word 0 kind 0 is never an item, so zeroed memory decodes to an error.
//! - Reserved bits must be zero; decoding rejects them so that they can get
//!   a meaning later.

use crate::error::Error;
use crate::{ADDRESS_SPACE_SHIFT, PAGE_SHIFT};

bitflags::bitflags! {
    /// Access rights of a flexpage or mapping (L4 X.2, "Fpage": rwx).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Rights: u64 {
        /// Instructions may be fetched.
        const EXECUTE = 1;
        /// Data may be written.
        const WRITE = 2;
        /// Data may be read.
        const READ = 4;
        /// Read, write and execute.
        const FULL = 7;
    }
}

/// The longest string item the kernel copies, in bytes. Bounded so that one
/// IPC cannot keep the kernel copying without a preemption point for long.
pub const MAX_STRING_LENGTH: u64 = 4 << 20;

const KIND_MASK: u64 = 0xF;
const STRING_KIND: u64 = 1;
const MAP_KIND: u64 = 2;
const GRANT_KIND: u64 = 3;

const FPAGE_RIGHTS_MASK: u64 = 0x7;
const FPAGE_SIZE_SHIFT: u32 = 4;
const FPAGE_SIZE_MASK: u64 = 0x3F;
const FPAGE_RESERVED_MASK: u64 = 0b1100_0000_1000;
const PAGE_MASK: u64 = (1 << PAGE_SHIFT) - 1;

/// A flexpage: a naturally aligned, power-of-two sized region with rights.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Fpage(u64);

impl Fpage {
    /// The empty region.
    pub const NIL: Fpage = Fpage(0);

    /// The smallest size, log2: one page.
    pub const MIN_SIZE_LOG2: u32 = PAGE_SHIFT;

    /// The largest size, log2: the whole lower canonical half.
    pub const MAX_SIZE_LOG2: u32 = ADDRESS_SPACE_SHIFT;

    /// A region of `2^size_log2` bytes at `base`. Fails with
    /// [`Error::InvalidItem`] unless the size is in range, the base is
    /// aligned to it and the region ends at or below 2^47.
    pub const fn new(base: u64, size_log2: u32, rights: Rights) -> Result<Fpage, Error> {
        if size_log2 < Self::MIN_SIZE_LOG2 || size_log2 > Self::MAX_SIZE_LOG2 {
            return Err(Error::InvalidItem);
        }
        let size = 1u64 << size_log2;
        if base & (size - 1) != 0 || base > (1u64 << Self::MAX_SIZE_LOG2) - size {
            return Err(Error::InvalidItem);
        }
        Ok(Fpage(
            base | ((size_log2 as u64) << FPAGE_SIZE_SHIFT) | (rights.bits() & FPAGE_RIGHTS_MASK),
        ))
    }

    /// The whole user-addressable half with the given rights (L4 X.2,
    /// "CompleteAddressSpace").
    pub const fn complete(rights: Rights) -> Fpage {
        Fpage(
            ((Self::MAX_SIZE_LOG2 as u64) << FPAGE_SIZE_SHIFT)
                | (rights.bits() & FPAGE_RIGHTS_MASK),
        )
    }

    /// Decodes a word from the other side, checking every rule of
    /// [`Fpage::new`] and that reserved bits are zero.
    pub const fn from_raw(raw: u64) -> Result<Fpage, Error> {
        if raw == 0 {
            return Ok(Fpage::NIL);
        }
        if raw & FPAGE_RESERVED_MASK != 0 {
            return Err(Error::InvalidItem);
        }
        let size_log2 = ((raw >> FPAGE_SIZE_SHIFT) & FPAGE_SIZE_MASK) as u32;
        Fpage::new(
            raw & !PAGE_MASK,
            size_log2,
            Rights::from_bits_truncate(raw & FPAGE_RIGHTS_MASK),
        )
    }

    /// The encoded word.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether this is the nil flexpage.
    pub const fn is_nil(self) -> bool {
        self.0 == 0
    }

    /// The first address; 0 for nil.
    pub const fn base(self) -> u64 {
        self.0 & !PAGE_MASK
    }

    /// log2 of the size; 0 for nil.
    pub const fn size_log2(self) -> u32 {
        ((self.0 >> FPAGE_SIZE_SHIFT) & FPAGE_SIZE_MASK) as u32
    }

    /// The size in bytes; 0 for nil.
    pub const fn size(self) -> u64 {
        if self.is_nil() {
            0
        } else {
            1 << self.size_log2()
        }
    }

    /// The first address after the region.
    pub const fn end(self) -> u64 {
        self.base() + self.size()
    }

    /// The access rights.
    pub const fn rights(self) -> Rights {
        Rights::from_bits_truncate(self.0 & FPAGE_RIGHTS_MASK)
    }

    /// The same region with other rights; nil stays nil.
    pub const fn with_rights(self, rights: Rights) -> Fpage {
        if self.is_nil() {
            return self;
        }
        Fpage((self.0 & !FPAGE_RIGHTS_MASK) | (rights.bits() & FPAGE_RIGHTS_MASK))
    }

    /// Whether `address` lies inside the region.
    pub const fn contains(self, address: u64) -> bool {
        address >= self.base() && address < self.end()
    }
}

impl core::fmt::Debug for Fpage {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_nil() {
            return formatter.write_str("Fpage::NIL");
        }
        write!(
            formatter,
            "Fpage({:#x}+2^{} {:?})",
            self.base(),
            self.size_log2(),
            self.rights()
        )
    }
}

/// A string item: the kernel copies `length` bytes at `address` in the
/// sender into the receiver's next receive buffer. In a received message it
/// says where the bytes landed and how many arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StringItem {
    /// User address of the bytes (checked by the kernel at use).
    pub address: u64,
    /// Byte count, at most [`MAX_STRING_LENGTH`].
    pub length: u64,
}

/// A map or grant item (L4 X.2, "MapItem" and "GrantItem"). Map gives the
/// receiver a derived mapping; grant moves the sender's mapping to the
/// receiver. The send base picks the part of the larger of flexpage and
/// receive window that the smaller one corresponds to. In a received
/// message `fpage` is the region that was mapped in the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapItem {
    /// The send base ("SndBase"), page aligned.
    pub send_base: u64,
    /// The sender's region and the rights to give.
    pub fpage: Fpage,
    /// Grant (move) instead of map (share).
    pub grant: bool,
}

/// One decoded typed item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypedItem {
    /// Copy bytes.
    String(StringItem),
    /// Map or grant pages.
    Map(MapItem),
}

impl TypedItem {
    /// The two message words.
    pub const fn encode(self) -> [u64; 2] {
        match self {
            TypedItem::String(item) => [STRING_KIND | (item.length << 16), item.address],
            TypedItem::Map(item) => [
                (if item.grant { GRANT_KIND } else { MAP_KIND }) | (item.send_base & !PAGE_MASK),
                item.fpage.raw(),
            ],
        }
    }

    /// Decodes two message words from the other side.
    pub const fn decode(words: [u64; 2]) -> Result<TypedItem, Error> {
        let [first, second] = words;
        match first & KIND_MASK {
            STRING_KIND => {
                if first & 0xFFF0 != 0 {
                    return Err(Error::InvalidItem);
                }
                let length = first >> 16;
                if length > MAX_STRING_LENGTH {
                    return Err(Error::MessageTooLong);
                }
                Ok(TypedItem::String(StringItem {
                    address: second,
                    length,
                }))
            }
            kind @ (MAP_KIND | GRANT_KIND) => {
                if first & PAGE_MASK & !KIND_MASK != 0 {
                    return Err(Error::InvalidItem);
                }
                match Fpage::from_raw(second) {
                    Ok(fpage) => Ok(TypedItem::Map(MapItem {
                        send_base: first & !PAGE_MASK,
                        fpage,
                        grant: kind == GRANT_KIND,
                    })),
                    Err(error) => Err(error),
                }
            }
            _ => Err(Error::InvalidItem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fpage_layout() {
        let fpage = Fpage::new(0x20_0000, 21, Rights::READ | Rights::WRITE).unwrap();
        assert_eq!(fpage.raw(), 0x20_0000 | (21 << 4) | 6);
        assert_eq!(fpage.base(), 0x20_0000);
        assert_eq!(fpage.size(), 0x20_0000);
        assert_eq!(fpage.end(), 0x40_0000);
        assert_eq!(fpage.rights(), Rights::READ | Rights::WRITE);
        assert_eq!(Fpage::from_raw(fpage.raw()), Ok(fpage));
        assert!(fpage.contains(0x3F_FFFF) && !fpage.contains(0x40_0000));
    }

    #[test]
    fn fpage_rejects_bad_shapes() {
        assert_eq!(
            Fpage::new(0x1000, 11, Rights::READ),
            Err(Error::InvalidItem)
        );
        assert_eq!(
            Fpage::new(0x1000, 48, Rights::READ),
            Err(Error::InvalidItem)
        );
        assert_eq!(
            Fpage::new(0x1000, 13, Rights::READ),
            Err(Error::InvalidItem)
        );
        assert_eq!(
            Fpage::new(1 << 47, 12, Rights::READ),
            Err(Error::InvalidItem)
        );
        assert!(Fpage::new((1 << 47) - 0x1000, 12, Rights::READ).is_ok());
        // Reserved bits 3, 10 and 11.
        for bit in [3, 10, 11] {
            assert_eq!(
                Fpage::from_raw(0x1000 | (12 << 4) | (1 << bit)),
                Err(Error::InvalidItem)
            );
        }
        // Size field 0 with a nonzero base is not nil.
        assert_eq!(Fpage::from_raw(0x1000), Err(Error::InvalidItem));
    }

    #[test]
    fn nil_and_complete() {
        assert_eq!(Fpage::from_raw(0), Ok(Fpage::NIL));
        assert!(Fpage::NIL.is_nil());
        assert_eq!(Fpage::NIL.size(), 0);
        assert!(!Fpage::NIL.contains(0));
        let all = Fpage::complete(Rights::FULL);
        assert_eq!((all.base(), all.end()), (0, 1 << 47));
        assert_eq!(Fpage::from_raw(all.raw()), Ok(all));
        assert_eq!(Fpage::NIL.with_rights(Rights::FULL), Fpage::NIL);
    }

    #[test]
    fn items_round_trip() {
        let items = [
            TypedItem::String(StringItem {
                address: 0x1234,
                length: 17,
            }),
            TypedItem::Map(MapItem {
                send_base: 0x5000,
                fpage: Fpage::new(0x8000, 15, Rights::READ).unwrap(),
                grant: false,
            }),
            TypedItem::Map(MapItem {
                send_base: 0,
                fpage: Fpage::new(0x1000, 12, Rights::FULL).unwrap(),
                grant: true,
            }),
        ];
        for item in items {
            assert_eq!(TypedItem::decode(item.encode()), Ok(item));
        }
    }

    #[test]
    fn items_reject_garbage() {
        assert_eq!(TypedItem::decode([0, 0]), Err(Error::InvalidItem));
        assert_eq!(TypedItem::decode([4, 0]), Err(Error::InvalidItem));
        assert_eq!(
            TypedItem::decode([1 | (1 << 4), 0]),
            Err(Error::InvalidItem)
        );
        assert_eq!(
            TypedItem::decode([1 | ((MAX_STRING_LENGTH + 1) << 16), 0]),
            Err(Error::MessageTooLong)
        );
        assert_eq!(TypedItem::decode([2 | 0x100, 0]), Err(Error::InvalidItem));
        assert_eq!(TypedItem::decode([2, 0x1000]), Err(Error::InvalidItem));
    }
}
