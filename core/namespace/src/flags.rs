//! Bind and mount flags, with the numeric values of Plan 9's bind(2).
//!
//! The low two bits are an order, not flags: MREPL (0) replaces what the
//! mount point shows, MBEFORE (1) puts the new member first, MAFTER (2)
//! last. MCREATE (4) marks the member that takes creates, and MCACHE (16)
//! is carried and printed as Plan 9 does, though core caches nothing yet.

use core::fmt;

use crate::Error;

/// Where a bind puts the new member in the union (bind(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    Replace,
    Before,
    After,
}

/// The `flag` argument of bind(2) and mount(2), checked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MountFlags(u32);

impl MountFlags {
    /// bind(2): replace the old file by the new one.
    pub const MREPL: u32 = 0x0000;
    /// bind(2): add the new directory to the front of the union.
    pub const MBEFORE: u32 = 0x0001;
    /// bind(2): add the new directory to the end of the union.
    pub const MAFTER: u32 = 0x0002;
    /// The two order bits.
    pub const MORDER: u32 = 0x0003;
    /// bind(2): creates in the union go to this member.
    pub const MCREATE: u32 = 0x0004;
    /// bind(2): cache the mounted server's data.
    pub const MCACHE: u32 = 0x0010;
    /// Every bit bind(2) defines.
    pub const MMASK: u32 = 0x0017;

    /// Plain MREPL: what a bind without flags is.
    pub const REPLACE: Self = Self(Self::MREPL);
    pub const BEFORE: Self = Self(Self::MBEFORE);
    pub const AFTER: Self = Self(Self::MAFTER);

    /// Checks the bits as Plan 9's sysbind does: unknown bits, or MBEFORE
    /// and MAFTER together, are "bad arg in system call".
    pub fn new(bits: u32) -> Result<Self, Error> {
        if bits & !Self::MMASK != 0 || bits & Self::MORDER == Self::MORDER {
            return Err(Error::BAD_ARG);
        }
        Ok(Self(bits))
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn order(self) -> Order {
        match self.0 & Self::MORDER {
            Self::MBEFORE => Order::Before,
            Self::MAFTER => Order::After,
            _ => Order::Replace,
        }
    }

    pub fn create(self) -> bool {
        self.0 & Self::MCREATE != 0
    }

    pub fn cache(self) -> bool {
        self.0 & Self::MCACHE != 0
    }

    /// The same flags with MCREATE set.
    pub fn with_create(self) -> Self {
        Self(self.0 | Self::MCREATE)
    }

    /// The same flags with another order.
    pub fn with_order(self, order: Order) -> Self {
        let bits = match order {
            Order::Replace => Self::MREPL,
            Order::Before => Self::MBEFORE,
            Order::After => Self::MAFTER,
        };
        Self((self.0 & !Self::MORDER) | bits)
    }

    /// The option letters of bind(1) and mount(1) for these flags, e.g.
    /// `-bc`; empty for plain MREPL. The letter order is that of Plan 9's
    /// /proc/N/ns (a, b, c, C).
    pub fn option(self) -> &'static str {
        // Seven combinations; a table keeps this allocation-free.
        match (self.order(), self.create(), self.cache()) {
            (Order::Replace, false, false) => "",
            (Order::Replace, true, false) => "-c",
            (Order::Replace, false, true) => "-C",
            (Order::Replace, true, true) => "-cC",
            (Order::Before, false, false) => "-b",
            (Order::Before, true, false) => "-bc",
            (Order::Before, false, true) => "-bC",
            (Order::Before, true, true) => "-bcC",
            (Order::After, false, false) => "-a",
            (Order::After, true, false) => "-ac",
            (Order::After, false, true) => "-aC",
            (Order::After, true, true) => "-acC",
        }
    }
}

impl fmt::Debug for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MountFlags({:#x} {:?}", self.0, self.order())?;
        if self.create() {
            f.write_str(" MCREATE")?;
        }
        if self.cache() {
            f.write_str(" MCACHE")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_plan9s() {
        assert_eq!(MountFlags::MREPL, 0);
        assert_eq!(MountFlags::MBEFORE, 1);
        assert_eq!(MountFlags::MAFTER, 2);
        assert_eq!(MountFlags::MCREATE, 4);
        assert_eq!(MountFlags::MCACHE, 16);
    }

    #[test]
    fn both_orders_or_unknown_bits_are_bad_args() {
        assert_eq!(MountFlags::new(3), Err(Error::BAD_ARG));
        assert_eq!(MountFlags::new(0x8), Err(Error::BAD_ARG));
        assert_eq!(MountFlags::new(0x100), Err(Error::BAD_ARG));
        assert!(MountFlags::new(MountFlags::MAFTER | MountFlags::MCREATE).is_ok());
    }

    #[test]
    fn options_read_like_bind1() {
        let f = |bits| MountFlags::new(bits).unwrap().option();
        assert_eq!(f(0), "");
        assert_eq!(f(4), "-c");
        assert_eq!(f(1), "-b");
        assert_eq!(f(2 | 4), "-ac");
        assert_eq!(f(1 | 4 | 16), "-bcC");
    }

    #[test]
    fn order_and_create_read_back() {
        let flags = MountFlags::new(MountFlags::MBEFORE | MountFlags::MCREATE).unwrap();
        assert_eq!(flags.order(), Order::Before);
        assert!(flags.create());
        assert_eq!(flags.with_order(Order::After).order(), Order::After);
        assert!(flags.with_order(Order::After).create());
        assert!(MountFlags::REPLACE.with_create().create());
    }
}
