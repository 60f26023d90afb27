//! What the namespace needs from the caller's chans, and from its servants.
//!
//! The namespace never looks inside a chan. It holds the caller's handles
//! (`C`) and asks the caller, through [`Chans`], for a chan's identity, for
//! whether it is a directory, and to take or drop a reference. Walking asks
//! more, through [`Walker`]: one step of a walk, a device's own `..`, the
//! root of a `#x` device, and a directory's entries.
//!
//! Reference discipline, which every method of this crate keeps: a `C`
//! passed *by value* hands one reference over; a `C` returned by value hands
//! one back; the namespace takes a reference of its own with
//! [`Chans::dup`] before it keeps a chan it was lent (`&C`), and gives every
//! reference it drops to [`Chans::close`]. With handles that count in
//! `Clone` and `Drop` (an `Arc`), the defaults do the right thing.

use alloc::vec::Vec;
use core::fmt::Debug;

use crate::Error;

/// A chan's identity in the mount table: which servant (Plan 9's
/// `c->type`), which instance of it (`c->dev`) and which file
/// (`qid.path`). Plan 9's findmount compares exactly these (eqchan with
/// `skipvers`), so a file stays a mount point as its version changes.
/// `K` names the servant, e.g. its `#` letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChanId<K> {
    pub kind: K,
    pub dev: u32,
    pub path: u64,
}

/// Identity and reference counting of the caller's chan handles.
pub trait Chans<C: Clone> {
    /// What the mount table keys on; usually [`ChanId`].
    type Id: Ord + Clone + Debug;

    /// The chan's identity.
    fn id(&self, chan: &C) -> Self::Id;

    /// Whether the chan is a directory (its qid type has QTDIR).
    fn is_dir(&self, chan: &C) -> bool;

    /// A new reference to the same chan (Plan 9's incref).
    fn dup(&mut self, chan: &C) -> C {
        chan.clone()
    }

    /// Drops one reference (Plan 9's cclose); the last one releases the
    /// chan.
    fn close(&mut self, chan: C) {
        drop(chan);
    }
}

/// A directory entry as a union read sees it: it needs only the name, to
/// let the first member that has a name win.
pub trait DirEntry {
    fn name(&self) -> &str;
}

impl DirEntry for ninep::Stat {
    fn name(&self) -> &str {
        &self.name
    }
}

/// The servant side of a walk: what a path walk asks of the chans it
/// passes through. Mount crossing, unions and `..` are the namespace's;
/// each method here is about one chan of one servant.
pub trait Walker<C: Clone>: Chans<C> {
    type Entry: DirEntry;

    /// The root of the device named by `#letter spec` (intro(3)). The
    /// default knows no device.
    fn attach(&mut self, letter: char, spec: &str) -> Result<C, Error> {
        let _ = (letter, spec);
        Err(Error::BAD_SHARP)
    }

    /// One step of a walk: the file `name` in the directory `dir`, as a new
    /// chan. `name` is never `.`, `..`, empty, or holds a `/`.
    fn walk(&mut self, dir: &C, name: &str) -> Result<C, Error>;

    /// The servant's own `..` of `chan` (the root's is the root). Used only
    /// where the walk has no record of how it got somewhere: above the
    /// start of a walk that began at a device root or at a bare chan.
    fn parent(&mut self, chan: &C) -> Result<C, Error>;

    /// Every entry of the directory `dir`.
    fn read_dir(&mut self, dir: &C) -> Result<Vec<Self::Entry>, Error> {
        let _ = dir;
        Err(Error::PERMISSION_DENIED)
    }
}
