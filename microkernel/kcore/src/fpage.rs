//! Flexpage arithmetic: alignment, intersection, pages, receive windows.
//!
//! [`Fpage`] (the ABI type) guarantees its shape: a size of 2^12..=2^47, a
//! base aligned to it, an end at or below 2^47. The functions here rely on
//! that, which is why none of them can overflow.
//!
//! Invariants:
//! - Two flexpages are either disjoint or one contains the other (both are
//!   naturally aligned powers of two), so an intersection is always one of
//!   the two regions and is itself a flexpage.
//! - The rights of a result are never more than those of its inputs.

use microkernel_abi::{Fpage, Rights, PAGE_SHIFT, PAGE_SIZE};

/// `address` rounded down to a multiple of `2^log2`.
pub const fn align_down(address: u64, log2: u32) -> u64 {
    if log2 >= 64 {
        return 0;
    }
    address & !((1u64 << log2) - 1)
}

/// `address` rounded up to a multiple of `2^log2`, or `None` on overflow.
pub const fn align_up(address: u64, log2: u32) -> Option<u64> {
    if log2 >= 64 {
        return if address == 0 { Some(0) } else { None };
    }
    let mask = (1u64 << log2) - 1;
    match address.checked_add(mask) {
        Some(sum) => Some(sum & !mask),
        None => None,
    }
}

/// Whether `address` is a multiple of `2^log2`.
pub const fn is_aligned(address: u64, log2: u32) -> bool {
    align_down(address, log2) == address
}

/// The region both flexpages cover, with the rights both grant; `None` if
/// they are disjoint or either is nil.
pub fn intersection(first: Fpage, second: Fpage) -> Option<Fpage> {
    if first.is_nil() || second.is_nil() {
        return None;
    }
    let (small, large) = if first.size_log2() <= second.size_log2() {
        (first, second)
    } else {
        (second, first)
    };
    if !large.contains(small.base()) {
        return None;
    }
    Some(small.with_rights(first.rights() & second.rights()))
}

/// Whether `inner` lies entirely inside `outer`.
pub fn contains_fpage(outer: Fpage, inner: Fpage) -> bool {
    !outer.is_nil()
        && !inner.is_nil()
        && inner.size_log2() <= outer.size_log2()
        && outer.contains(inner.base())
}

/// The 4 KiB pages of a flexpage, by base address.
pub fn pages(fpage: Fpage) -> Pages {
    Pages {
        next: fpage.base(),
        end: fpage.end(),
    }
}

/// Iterator over page base addresses; see [`pages`].
#[derive(Clone, Debug)]
pub struct Pages {
    next: u64,
    end: u64,
}

impl Iterator for Pages {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        let page = self.next;
        self.next += PAGE_SIZE;
        Some(page)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let count = usize::try_from((self.end.saturating_sub(self.next)) >> PAGE_SHIFT).ok();
        (count.unwrap_or(usize::MAX), count)
    }
}

/// Where a map or grant item lands: `source` is the part of the sender's
/// flexpage that is transferred, and its page at offset `k` goes to
/// `destination_base + k` in the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The sender's region actually transferred, with the sender's rights.
    pub source: Fpage,
    /// Where its first byte lands in the receiver.
    pub destination_base: u64,
}

impl Placement {
    /// The receiver's region, with the transferred rights.
    pub fn destination(&self) -> Fpage {
        Fpage::new(
            self.destination_base,
            self.source.size_log2(),
            self.source.rights(),
        )
        .unwrap_or(Fpage::NIL)
    }
}

/// Fits a sent flexpage into a receive window (L4 X.2, "MapItem": the
/// send base selects the correspondence when sizes differ).
///
/// - Send flexpage no larger than the window: all of it is transferred,
///   to the place in the window given by `send_base` modulo the window
///   size, rounded down to the flexpage's size.
/// - Larger than the window: only a window-sized part is transferred, the
///   one at `send_base` modulo the flexpage size, rounded down to the
///   window size; it lands at the window's base.
///
/// `None` when either is nil.
pub fn place(send: Fpage, send_base: u64, window: Fpage) -> Option<Placement> {
    if send.is_nil() || window.is_nil() {
        return None;
    }
    if send.size_log2() <= window.size_log2() {
        let offset = align_down(send_base & (window.size() - 1), send.size_log2());
        Some(Placement {
            source: send,
            destination_base: window.base() + offset,
        })
    } else {
        let offset = align_down(send_base & (send.size() - 1), window.size_log2());
        let source = Fpage::new(send.base() + offset, window.size_log2(), send.rights()).ok()?;
        Some(Placement {
            source,
            destination_base: window.base(),
        })
    }
}

/// The rights a derived mapping gets: what was asked for, at most what the
/// source has.
pub fn derive_rights(source: Rights, requested: Rights) -> Rights {
    source & requested
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fpage(base: u64, log2: u32) -> Fpage {
        Fpage::new(base, log2, Rights::FULL).unwrap()
    }

    #[test]
    fn alignment() {
        assert_eq!(align_down(0x1234, 12), 0x1000);
        assert_eq!(align_up(0x1234, 12), Some(0x2000));
        assert_eq!(align_up(0x2000, 12), Some(0x2000));
        assert_eq!(align_up(u64::MAX, 12), None);
        assert!(is_aligned(0x20_0000, 21));
        assert!(!is_aligned(0x20_1000, 21));
        assert_eq!(align_down(5, 64), 0);
        assert_eq!(align_up(0, 64), Some(0));
        assert_eq!(align_up(1, 64), None);
    }

    #[test]
    fn intersections() {
        let big = fpage(0x40_0000, 22);
        let inside = Fpage::new(0x50_0000, 20, Rights::READ).unwrap();
        let outside = fpage(0x80_0000, 20);
        assert_eq!(intersection(big, inside), Some(inside));
        assert_eq!(intersection(inside, big), Some(inside));
        assert_eq!(intersection(big, outside), None);
        assert_eq!(intersection(big, Fpage::NIL), None);
        assert!(contains_fpage(big, inside));
        assert!(!contains_fpage(inside, big));
        assert!(!contains_fpage(big, outside));
    }

    #[test]
    fn page_iteration() {
        let region = fpage(0x10_0000, 14);
        let listed: Vec<_> = pages(region).collect();
        assert_eq!(listed, [0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000]);
        assert_eq!(pages(region).size_hint(), (4, Some(4)));
        assert_eq!(pages(Fpage::NIL).count(), 0);
        assert_eq!(
            pages(Fpage::complete(Rights::READ)).size_hint().1,
            Some(1 << 35)
        );
    }

    #[test]
    fn small_send_into_large_window() {
        let send = fpage(0x7000, 12);
        let window = fpage(0x100_0000, 20);
        let placement = place(send, 0x3_4567, window).unwrap();
        assert_eq!(placement.source, send);
        assert_eq!(placement.destination_base, 0x103_4000);
        assert_eq!(placement.destination(), fpage(0x103_4000, 12));
    }

    #[test]
    fn large_send_into_small_window() {
        let send = fpage(0x40_0000, 22);
        let window = fpage(0x9000, 12);
        let placement = place(send, 0x12_3000, window).unwrap();
        assert_eq!(placement.source, fpage(0x52_3000, 12));
        assert_eq!(placement.destination_base, 0x9000);
    }

    #[test]
    fn equal_sizes_map_base_to_base() {
        let send = fpage(0x20_0000, 21);
        let window = fpage(0x60_0000, 21);
        let placement = place(send, 0xFFFF_F000, window).unwrap();
        assert_eq!(placement.source, send);
        assert_eq!(placement.destination_base, 0x60_0000);
        assert_eq!(place(Fpage::NIL, 0, window), None);
    }

    #[test]
    fn rights_are_only_narrowed() {
        assert_eq!(derive_rights(Rights::READ, Rights::FULL), Rights::READ);
        let read_only = Fpage::new(0x1000, 12, Rights::READ).unwrap();
        let write_only = Fpage::new(0, 16, Rights::WRITE).unwrap();
        assert_eq!(
            intersection(read_only, write_only).unwrap().rights(),
            Rights::empty()
        );
    }

    fn any_fpage() -> impl Strategy<Value = Fpage> {
        (12u32..=30, any::<u64>(), 0u64..8).prop_map(|(log2, base, rights)| {
            let base = align_down(base & ((1 << 31) - 1), log2);
            Fpage::new(base, log2, Rights::from_bits_truncate(rights)).unwrap()
        })
    }

    proptest! {
        #[test]
        fn intersection_is_symmetric_and_inside_both(a in any_fpage(), b in any_fpage()) {
            let forward = intersection(a, b);
            prop_assert_eq!(forward, intersection(b, a));
            match forward {
                Some(both) => {
                    prop_assert!(contains_fpage(a, both) && contains_fpage(b, both));
                    prop_assert_eq!(both.rights(), a.rights() & b.rights());
                }
                None => prop_assert!(a.end() <= b.base() || b.end() <= a.base()),
            }
        }

        #[test]
        fn placement_stays_inside_both(send in any_fpage(), window in any_fpage(), base in any::<u64>()) {
            let placement = place(send, align_down(base, 12), window).unwrap();
            prop_assert!(contains_fpage(send, placement.source));
            prop_assert!(contains_fpage(window, placement.destination()));
            prop_assert_eq!(placement.source.size_log2(), send.size_log2().min(window.size_log2()));
        }
    }
}
