//! Untrusted user addresses, checked once at the system-call boundary.
//!
//! A value of these types has been checked to lie in the user part of the
//! address space, `[0, USER_ADDRESS_END)`. Every address there is canonical
//! (below 2^47), so a checked address can be given to `sysret` as a return
//! address or dereferenced through the user's page tables without ever
//! reaching kernel memory. Whether the page is mapped is not checked: the
//! kernel's copy routine handles that fault.
//!
//! Invariants:
//! - [`UserAddress`]: `address < USER_ADDRESS_END`.
//! - [`UserRange`]: `start + length` does not overflow and is at most
//!   `USER_ADDRESS_END`; an empty range still has a user start address.
//! - [`UserPage`]: a page-aligned [`UserAddress`].
//! - Construction is the only place these checks happen; the types have no
//!   public constructor that skips them.

use microkernel_abi::{Error, PAGE_SIZE, USER_ADDRESS_END};

/// A user address that is safe to return to or dereference (if mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserAddress(u64);

impl UserAddress {
    /// Checks an address from user space; [`Error::BadAddress`] unless it
    /// lies below `USER_ADDRESS_END` (which also makes it canonical).
    pub const fn new(address: u64) -> Result<UserAddress, Error> {
        if address < USER_ADDRESS_END {
            Ok(UserAddress(address))
        } else {
            Err(Error::BadAddress)
        }
    }

    /// The address.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A page-aligned user address (a UTCB location, a mapping target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserPage(u64);

impl UserPage {
    /// Checks a page address: [`Error::BadAddress`] unless it is aligned
    /// and in user space.
    pub const fn new(address: u64) -> Result<UserPage, Error> {
        if address % PAGE_SIZE != 0 || address >= USER_ADDRESS_END {
            return Err(Error::BadAddress);
        }
        Ok(UserPage(address))
    }

    /// The address.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A byte range in user space, e.g. a buffer passed to a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserRange {
    start: u64,
    length: u64,
}

impl UserRange {
    /// Checks `length` bytes at `start`: [`Error::BadAddress`] if the range
    /// wraps around or reaches past `USER_ADDRESS_END`.
    pub const fn new(start: u64, length: u64) -> Result<UserRange, Error> {
        if start >= USER_ADDRESS_END {
            return Err(Error::BadAddress);
        }
        match start.checked_add(length) {
            Some(end) if end <= USER_ADDRESS_END => Ok(UserRange { start, length }),
            _ => Err(Error::BadAddress),
        }
    }

    /// Like [`UserRange::new`], and also [`Error::BadAddress`] unless
    /// `start` is a multiple of `alignment` (a power of two), as for an
    /// array of words the kernel reads.
    pub const fn new_aligned(start: u64, length: u64, alignment: u64) -> Result<UserRange, Error> {
        if !alignment.is_power_of_two() || start & (alignment - 1) != 0 {
            return Err(Error::BadAddress);
        }
        UserRange::new(start, length)
    }

    /// The first byte.
    pub const fn start(self) -> u64 {
        self.start
    }

    /// The byte count.
    pub const fn length(self) -> u64 {
        self.length
    }

    /// One past the last byte; at most `USER_ADDRESS_END`.
    pub const fn end(self) -> u64 {
        self.start + self.length
    }

    /// Whether the range is empty.
    pub const fn is_empty(self) -> bool {
        self.length == 0
    }

    /// Whether `address` is inside.
    pub const fn contains(self, address: u64) -> bool {
        address >= self.start && address < self.end()
    }

    /// The first `length` bytes (or all, if shorter).
    pub const fn prefix(self, length: u64) -> UserRange {
        UserRange {
            start: self.start,
            length: if length < self.length {
                length
            } else {
                self.length
            },
        }
    }

    /// The range without its first `count` bytes (empty if shorter).
    pub const fn skip(self, count: u64) -> UserRange {
        let count = if count < self.length {
            count
        } else {
            self.length
        };
        UserRange {
            start: self.start + count,
            length: self.length - count,
        }
    }

    /// The pieces of the range that lie in one page each, in order: what a
    /// copy loop walks, translating one page at a time.
    pub fn page_pieces(self) -> PagePieces {
        PagePieces { rest: self }
    }
}

/// Iterator over the single-page pieces of a [`UserRange`].
#[derive(Clone, Debug)]
pub struct PagePieces {
    rest: UserRange,
}

impl Iterator for PagePieces {
    type Item = UserRange;

    fn next(&mut self) -> Option<UserRange> {
        if self.rest.is_empty() {
            return None;
        }
        let to_page_end = PAGE_SIZE - self.rest.start % PAGE_SIZE;
        let piece = self.rest.prefix(to_page_end);
        self.rest = self.rest.skip(piece.length);
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses() {
        assert_eq!(UserAddress::new(0).map(UserAddress::get), Ok(0));
        assert!(UserAddress::new(USER_ADDRESS_END - 1).is_ok());
        assert_eq!(UserAddress::new(USER_ADDRESS_END), Err(Error::BadAddress));
        // Non-canonical and kernel-half addresses.
        assert_eq!(
            UserAddress::new(0x0000_8000_0000_0000),
            Err(Error::BadAddress)
        );
        assert_eq!(
            UserAddress::new(0xFFFF_8000_0000_0000),
            Err(Error::BadAddress)
        );
        assert_eq!(UserPage::new(0x1000).map(UserPage::get), Ok(0x1000));
        assert_eq!(UserPage::new(0x1008), Err(Error::BadAddress));
        assert_eq!(UserPage::new(USER_ADDRESS_END), Err(Error::BadAddress));
    }

    #[test]
    fn ranges() {
        let range = UserRange::new(0x1000, 0x20).unwrap();
        assert_eq!(
            (range.start(), range.length(), range.end()),
            (0x1000, 0x20, 0x1020)
        );
        assert!(range.contains(0x101F) && !range.contains(0x1020));
        assert!(UserRange::new(USER_ADDRESS_END - 8, 8).is_ok());
        assert_eq!(
            UserRange::new(USER_ADDRESS_END - 8, 9),
            Err(Error::BadAddress)
        );
        assert_eq!(UserRange::new(u64::MAX, 2), Err(Error::BadAddress));
        assert_eq!(UserRange::new(1, u64::MAX), Err(Error::BadAddress));
        assert_eq!(UserRange::new(USER_ADDRESS_END, 0), Err(Error::BadAddress));
        assert!(UserRange::new(0x5000, 0).unwrap().is_empty());
        assert!(UserRange::new_aligned(0x1008, 16, 8).is_ok());
        assert_eq!(
            UserRange::new_aligned(0x1004, 16, 8),
            Err(Error::BadAddress)
        );
        assert_eq!(
            UserRange::new_aligned(0x1000, 16, 3),
            Err(Error::BadAddress)
        );
        assert_eq!(range.prefix(4).length(), 4);
        assert_eq!(range.prefix(400), range);
        assert_eq!(range.skip(0x10).start(), 0x1010);
        assert!(range.skip(0x100).is_empty());
    }

    #[test]
    fn page_pieces() {
        let range = UserRange::new(0x1FF0, 0x1020).unwrap();
        let pieces: Vec<_> = range
            .page_pieces()
            .map(|p| (p.start(), p.length()))
            .collect();
        assert_eq!(pieces, [(0x1FF0, 0x10), (0x2000, 0x1000), (0x3000, 0x10)]);
        assert_eq!(UserRange::new(0x1000, 0).unwrap().page_pieces().count(), 0);
    }

    proptest! {
        #[test]
        fn accepted_ranges_stay_in_user_space(start in any::<u64>(), length in any::<u64>()) {
            if let Ok(range) = UserRange::new(start, length) {
                prop_assert!(range.end() <= USER_ADDRESS_END);
                prop_assert!(range.start() < USER_ADDRESS_END);
                prop_assert_eq!(range.end() - range.start(), length);
            } else {
                prop_assert!(start >= USER_ADDRESS_END || start.checked_add(length).is_none_or(|end| end > USER_ADDRESS_END));
            }
        }

        #[test]
        fn pieces_cover_the_range_within_pages(start in 0u64..0x10_0000, length in 0u64..0x5000) {
            let range = UserRange::new(start, length).unwrap();
            let mut next = start;
            for piece in range.page_pieces() {
                prop_assert_eq!(piece.start(), next);
                prop_assert!(!piece.is_empty());
                prop_assert_eq!(piece.start() / PAGE_SIZE, (piece.end() - 1) / PAGE_SIZE);
                next = piece.end();
            }
            prop_assert_eq!(next, range.end());
        }
    }
}
