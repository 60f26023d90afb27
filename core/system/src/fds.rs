//! A process's descriptor table: slots of chans, the lowest free first.

use alloc::vec::Vec;

use kasane_servant::{ChanHandle, Error};

/// The highest descriptor `dup` may name.
pub const MAX_FD: usize = 1024;

/// An open descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fd {
    pub chan: ChanHandle,
    /// A directory's entries, packed as `FileInfo`s at open.
    pub listing: Option<Vec<u8>>,
}

/// A process's descriptors, by number. The table holds one reference to
/// each chan; whoever takes an `Fd` out closes its chan.
#[derive(Debug, Default)]
pub struct Fds {
    slots: Vec<Option<Fd>>,
}

impl Fds {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `fd` in the lowest free slot; its number.
    pub fn insert(&mut self, fd: Fd) -> u64 {
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[slot] = Some(fd);
        slot as u64
    }

    /// The descriptor `fd`, if open.
    pub fn get(&self, fd: u64) -> Option<&Fd> {
        self.slots.get(usize::try_from(fd).ok()?)?.as_ref()
    }

    /// Closes `fd`: the descriptor, for the caller to close its chan.
    pub fn take(&mut self, fd: u64) -> Result<Fd, Error> {
        usize::try_from(fd)
            .ok()
            .and_then(|fd| self.slots.get_mut(fd))
            .and_then(Option::take)
            .ok_or(Error::BAD_FD)
    }

    /// Puts `fd` at number `number` (dup(2) with a target, or a child's
    /// descriptor at spawn); the descriptor that was there, to close.
    pub fn put(&mut self, number: u64, fd: Fd) -> Result<Option<Fd>, Error> {
        let slot = usize::try_from(number).map_err(|_| Error::BAD_FD)?;
        if slot > MAX_FD {
            return Err(Error::BAD_FD);
        }
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        Ok(self.slots[slot].replace(fd))
    }

    /// Every open descriptor, emptying the table (the process ends).
    pub fn drain(&mut self) -> impl Iterator<Item = Fd> + '_ {
        self.slots.drain(..).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kasane_servant::{Chan, ChanTable, File};
    use ninep::{Qid, QidType};

    fn handles(n: usize) -> Vec<ChanHandle> {
        let mut table = ChanTable::new();
        let file = File {
            dev: 0,
            qid: Qid {
                kind: QidType::FILE,
                version: 0,
                path: 1,
            },
        };
        (0..n)
            .map(|i| table.insert(Chan::new('c', file, alloc::format!("{i}"))))
            .collect()
    }

    fn fd(chan: ChanHandle) -> Fd {
        Fd {
            chan,
            listing: None,
        }
    }

    #[test]
    fn the_lowest_free_slot_is_taken() {
        let h = handles(4);
        let mut fds = Fds::new();
        assert_eq!(fds.insert(fd(h[0])), 0);
        assert_eq!(fds.insert(fd(h[1])), 1);
        assert_eq!(fds.insert(fd(h[2])), 2);
        assert_eq!(fds.take(1).map(|f| f.chan), Ok(h[1]));
        assert_eq!(fds.insert(fd(h[3])), 1);
        assert_eq!(fds.get(1).map(|f| f.chan), Some(h[3]));
    }

    #[test]
    fn closed_and_wild_descriptors_are_refused() {
        let h = handles(1);
        let mut fds = Fds::new();
        fds.insert(fd(h[0]));
        assert_eq!(fds.take(0).map(|f| f.chan), Ok(h[0]));
        assert_eq!(fds.take(0), Err(Error::BAD_FD));
        assert_eq!(fds.take(u64::MAX), Err(Error::BAD_FD));
        assert!(fds.get(7).is_none());
        assert!(fds.get(u64::MAX).is_none());
    }

    #[test]
    fn put_replaces_and_is_bounded() {
        let h = handles(2);
        let mut fds = Fds::new();
        assert_eq!(fds.put(5, fd(h[0])), Ok(None));
        assert_eq!(fds.get(5).map(|f| f.chan), Some(h[0]));
        // The slots below stay free for insert.
        assert_eq!(fds.insert(fd(h[1])), 0);
        assert_eq!(
            fds.put(5, fd(h[1])).map(|o| o.map(|f| f.chan)),
            Ok(Some(h[0]))
        );
        assert_eq!(fds.put(MAX_FD as u64 + 1, fd(h[0])), Err(Error::BAD_FD));
        assert_eq!(fds.put(u64::MAX, fd(h[0])), Err(Error::BAD_FD));
        let left: Vec<ChanHandle> = fds.drain().map(|f| f.chan).collect();
        assert_eq!(left, [h[1], h[1]]);
        assert!(fds.get(0).is_none());
    }
}
