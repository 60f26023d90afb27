//! The Chan table: every open object core holds, with reference counts.
//!
//! A [`Chan`] is Plan 9's Chan (LP49's object handle): which servant, which
//! instance and file, the offset, the open mode, and for a mounted object
//! the link it is reached through. Chans are named by [`ChanHandle`], an
//! index with a generation so that a stale handle is refused rather than
//! taken for the chan that reused the slot. Invariants:
//! - a live chan has at least one reference; the release of the last one
//!   removes it and hands it to a [`Clunk`] (Plan 9's cclose calling the
//!   device's close);
//! - a handle names a chan only while its generation matches its slot.

use alloc::string::String;
use alloc::vec::Vec;

use ninep::{OpenMode, Qid};

use crate::servant::{File, LinkId};
use crate::Error;

/// An open object (Plan 9's Chan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chan {
    /// The servant's `#` letter; `M` for a mounted object.
    pub letter: char,
    pub dev: u32,
    pub qid: Qid,
    pub offset: u64,
    /// The open mode, once opened.
    pub mode: Option<OpenMode>,
    /// For a mounted object (`#M`), the link its 9P goes over.
    pub link: Option<LinkId>,
    /// The name the chan was reached by (Plan 9's `c->path`), for
    /// /proc/N/fd and error messages.
    pub name: String,
}

impl Chan {
    /// A chan on a servant's file, not yet opened.
    pub fn new(letter: char, file: File, name: impl Into<String>) -> Self {
        Self {
            letter,
            dev: file.dev,
            qid: file.qid,
            offset: 0,
            mode: None,
            link: None,
            name: name.into(),
        }
    }

    /// The servant's view of the chan.
    pub fn file(&self) -> File {
        File {
            dev: self.dev,
            qid: self.qid,
        }
    }
}

/// Names a chan in a [`ChanTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChanHandle {
    index: u32,
    generation: u32,
}

/// What happens to a chan when its last reference goes.
pub trait Clunk {
    fn clunk(&mut self, chan: Chan);
}

/// A clunk that only drops the chan, for tests and for chans of servants
/// that keep no per-chan state.
#[derive(Debug, Default)]
pub struct DropClunk;

impl Clunk for DropClunk {
    fn clunk(&mut self, chan: Chan) {
        drop(chan);
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    live: Option<(Chan, u32)>,
}

/// Every chan core holds, reference counted.
#[derive(Debug, Default)]
pub struct ChanTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl ChanTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a chan with one reference.
    pub fn insert(&mut self, chan: Chan) -> ChanHandle {
        self.live += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.live = Some((chan, 1));
            return ChanHandle {
                index,
                generation: slot.generation,
            };
        }
        // More than 2^32 live chans would exhaust memory long before.
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            live: Some((chan, 1)),
        });
        ChanHandle {
            index,
            generation: 0,
        }
    }

    fn slot(&self, handle: ChanHandle) -> Result<&(Chan, u32), Error> {
        match self.slots.get(handle.index as usize) {
            Some(Slot {
                generation,
                live: Some(live),
            }) if *generation == handle.generation => Ok(live),
            _ => Err(Error::BAD_FD),
        }
    }

    fn slot_mut(&mut self, handle: ChanHandle) -> Result<&mut (Chan, u32), Error> {
        match self.slots.get_mut(handle.index as usize) {
            Some(Slot {
                generation,
                live: Some(live),
            }) if *generation == handle.generation => Ok(live),
            _ => Err(Error::BAD_FD),
        }
    }

    pub fn get(&self, handle: ChanHandle) -> Result<&Chan, Error> {
        self.slot(handle).map(|(chan, _)| chan)
    }

    pub fn get_mut(&mut self, handle: ChanHandle) -> Result<&mut Chan, Error> {
        self.slot_mut(handle).map(|(chan, _)| chan)
    }

    /// How many references the chan has.
    pub fn refs(&self, handle: ChanHandle) -> Result<u32, Error> {
        self.slot(handle).map(|(_, refs)| *refs)
    }

    /// How many chans are live.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Takes one more reference (Plan 9's incref).
    pub fn incref(&mut self, handle: ChanHandle) -> Result<ChanHandle, Error> {
        let (_, refs) = self.slot_mut(handle)?;
        *refs += 1;
        Ok(handle)
    }

    /// Drops one reference; the last one removes the chan and hands it to
    /// `clunk` (Plan 9's cclose).
    pub fn decref(&mut self, handle: ChanHandle, clunk: &mut impl Clunk) -> Result<(), Error> {
        let (_, refs) = self.slot_mut(handle)?;
        *refs -= 1;
        if *refs > 0 {
            return Ok(());
        }
        let slot = &mut self.slots[handle.index as usize];
        let released = slot.live.take();
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(handle.index);
        self.live -= 1;
        if let Some((chan, _)) = released {
            clunk.clunk(chan);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ninep::QidType;

    struct Record(Vec<String>);

    impl Clunk for Record {
        fn clunk(&mut self, chan: Chan) {
            self.0.push(chan.name);
        }
    }

    fn chan(name: &str) -> Chan {
        let file = File {
            dev: 0,
            qid: Qid {
                kind: QidType::FILE,
                version: 0,
                path: 7,
            },
        };
        Chan::new('c', file, name)
    }

    #[test]
    fn the_last_reference_clunks() {
        let mut table = ChanTable::new();
        let mut record = Record(Vec::new());
        let handle = table.insert(chan("/dev/null"));
        table.incref(handle).unwrap();
        assert_eq!(table.refs(handle), Ok(2));
        table.decref(handle, &mut record).unwrap();
        assert!(record.0.is_empty());
        table.decref(handle, &mut record).unwrap();
        assert_eq!(record.0, ["/dev/null"]);
        assert!(table.is_empty());
    }

    #[test]
    fn stale_handles_are_refused() {
        let mut table = ChanTable::new();
        let old = table.insert(chan("a"));
        table.decref(old, &mut DropClunk).unwrap();
        let new = table.insert(chan("b"));
        assert_ne!(old, new);
        assert_eq!(table.get(old), Err(Error::BAD_FD));
        assert_eq!(table.incref(old), Err(Error::BAD_FD));
        assert_eq!(table.decref(old, &mut DropClunk), Err(Error::BAD_FD));
        assert_eq!(table.get(new).unwrap().name, "b");
    }

    #[test]
    fn chans_keep_offset_mode_and_link() {
        let mut table = ChanTable::new();
        let handle = table.insert(chan("x"));
        let entry = table.get_mut(handle).unwrap();
        entry.offset = 42;
        entry.mode = Some(OpenMode::ORDWR);
        entry.link = Some(LinkId(3));
        let entry = table.get(handle).unwrap();
        assert_eq!(
            (entry.offset, entry.mode, entry.link),
            (42, Some(OpenMode::ORDWR), Some(LinkId(3)))
        );
        assert_eq!(entry.file().qid.path, 7);
    }
}
