//! A table of kernel objects named by versioned ids (threads, tasks).
//!
//! Each slot carries a version. Inserting hands out `(index, version)`;
//! removing bumps the slot's version, so every id that named the removed
//! object stops resolving (L4 X.2, "ThreadId": the version field exists so
//! that a stale id does not reach a new thread).
//!
//! Invariants:
//! - Version 0 is never handed out, so nil ids never resolve.
//! - A slot is never given the same version twice: when its version would
//!   wrap around it is retired for good instead of reused. A stale id
//!   therefore can never resolve to a later occupant, at the price of one
//!   slot per 2^32 − 1 reuses.
//! - Free slots are reused oldest-first, which spreads reuse over all slots.
//! - No operation panics on any id, valid or not.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use microkernel_abi::{Error, TaskId, ThreadId};

/// An id made of a table index and a slot version.
pub trait VersionedId: Copy + Eq + core::fmt::Debug {
    /// The largest index such ids can carry.
    const MAX_INDEX: u32;
    /// Builds the id; `version` is never 0 here.
    fn from_parts(index: u32, version: u32) -> Self;
    /// The table index.
    fn index(self) -> u32;
    /// The version.
    fn version(self) -> u32;
}

impl VersionedId for ThreadId {
    const MAX_INDEX: u32 = ThreadId::MAX_INDEX;

    fn from_parts(index: u32, version: u32) -> Self {
        ThreadId::new(index, version).unwrap_or(ThreadId::NIL)
    }

    fn index(self) -> u32 {
        ThreadId::index(self)
    }

    fn version(self) -> u32 {
        ThreadId::version(self)
    }
}

impl VersionedId for TaskId {
    const MAX_INDEX: u32 = u32::MAX;

    fn from_parts(index: u32, version: u32) -> Self {
        TaskId::new(index, version).unwrap_or(TaskId::NIL)
    }

    fn index(self) -> u32 {
        TaskId::index(self)
    }

    fn version(self) -> u32 {
        TaskId::version(self)
    }
}

struct Slot<T> {
    /// The version of the current (or, when free, the next) occupant.
    version: u32,
    value: Option<T>,
}

/// Objects of type `T` named by ids of type `I`.
pub struct VersionedTable<I, T> {
    slots: Vec<Slot<T>>,
    free: VecDeque<u32>,
    capacity: u32,
    live: usize,
    marker: core::marker::PhantomData<I>,
}

impl<I: VersionedId, T> VersionedTable<I, T> {
    /// A table of at most `capacity` slots (clamped to what ids can carry).
    /// Slots are allocated as they are first used.
    pub fn new(capacity: u32) -> Self {
        VersionedTable {
            slots: Vec::new(),
            free: VecDeque::new(),
            capacity: capacity.min(I::MAX_INDEX.saturating_add(1)),
            live: 0,
            marker: core::marker::PhantomData,
        }
    }

    /// Stores `value` and returns its new id, or
    /// [`Error::OutOfResources`] when every slot is taken or retired.
    pub fn insert(&mut self, value: T) -> Result<I, Error> {
        let index = match self.free.pop_front() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| Error::OutOfResources)?;
                if index >= self.capacity {
                    return Err(Error::OutOfResources);
                }
                self.slots
                    .try_reserve(1)
                    .map_err(|_| Error::OutOfResources)?;
                self.slots.push(Slot {
                    version: 1,
                    value: None,
                });
                index
            }
        };
        let slot = self
            .slots
            .get_mut(index as usize)
            .ok_or(Error::OutOfResources)?;
        slot.value = Some(value);
        self.live += 1;
        Ok(I::from_parts(index, slot.version))
    }

    fn slot(&self, id: I) -> Option<&Slot<T>> {
        self.slots
            .get(id.index() as usize)
            .filter(|slot| slot.version == id.version() && slot.value.is_some())
    }

    /// The object `id` names, or `None` for a stale, nil or unknown id.
    pub fn get(&self, id: I) -> Option<&T> {
        self.slot(id).and_then(|slot| slot.value.as_ref())
    }

    /// Mutable access to the object `id` names.
    pub fn get_mut(&mut self, id: I) -> Option<&mut T> {
        self.slots
            .get_mut(id.index() as usize)
            .filter(|slot| slot.version == id.version())
            .and_then(|slot| slot.value.as_mut())
    }

    /// Whether `id` names a live object.
    pub fn contains(&self, id: I) -> bool {
        self.slot(id).is_some()
    }

    /// The id of whatever lives at `index` now.
    pub fn id_at(&self, index: u32) -> Option<I> {
        let slot = self.slots.get(index as usize)?;
        slot.value.as_ref()?;
        Some(I::from_parts(index, slot.version))
    }

    /// Removes and returns the object `id` names; every id for it goes
    /// stale.
    pub fn remove(&mut self, id: I) -> Option<T> {
        let slot = self
            .slots
            .get_mut(id.index() as usize)
            .filter(|slot| slot.version == id.version())?;
        let value = slot.value.take()?;
        self.live -= 1;
        if let Some(next) = slot.version.checked_add(1) {
            slot.version = next;
            self.free.push_back(id.index());
        }
        Some(value)
    }

    /// Live objects.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no object is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Every live object with its id, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (I, &T)> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let value = slot.value.as_ref()?;
            let index = u32::try_from(index).ok()?;
            Some((I::from_parts(index, slot.version), value))
        })
    }

    /// Every live object, mutably, in index order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.slots.iter_mut().filter_map(|slot| slot.value.as_mut())
    }

    #[cfg(test)]
    fn force_version(&mut self, index: u32, version: u32) {
        if let Some(slot) = self.slots.get_mut(index as usize) {
            slot.version = version;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn insert_get_remove() {
        let mut table: VersionedTable<ThreadId, &str> = VersionedTable::new(4);
        let a = table.insert("a").unwrap();
        let b = table.insert("b").unwrap();
        assert_eq!((a.index(), a.version()), (0, 1));
        assert_eq!((b.index(), b.version()), (1, 1));
        assert_eq!(table.get(a), Some(&"a"));
        assert_eq!(table.len(), 2);
        assert_eq!(table.remove(a), Some("a"));
        assert_eq!(table.get(a), None);
        assert_eq!(table.remove(a), None);
        assert!(table.contains(b));
        assert_eq!(table.id_at(1), Some(b));
        assert_eq!(table.id_at(0), None);
    }

    #[test]
    fn stale_ids_do_not_reach_the_new_occupant() {
        let mut table: VersionedTable<ThreadId, u32> = VersionedTable::new(1);
        let old = table.insert(1).unwrap();
        table.remove(old);
        let new = table.insert(2).unwrap();
        assert_eq!(new.index(), old.index());
        assert_ne!(new.version(), old.version());
        assert_eq!(table.get(old), None);
        assert_eq!(table.get_mut(old), None);
        assert_eq!(table.remove(old), None);
        assert_eq!(table.get(new), Some(&2));
    }

    #[test]
    fn nil_and_unknown_ids_never_resolve() {
        let mut table: VersionedTable<ThreadId, u32> = VersionedTable::new(2);
        table.insert(7).unwrap();
        assert_eq!(table.get(ThreadId::NIL), None);
        assert_eq!(table.get(ThreadId::ANY), None);
        assert_eq!(table.get(ThreadId::new(1, 1).unwrap()), None);
        assert_eq!(table.get(ThreadId::new(0, 2).unwrap()), None);
    }

    #[test]
    fn capacity_is_enforced() {
        let mut table: VersionedTable<TaskId, ()> = VersionedTable::new(2);
        let first = table.insert(()).unwrap();
        table.insert(()).unwrap();
        assert_eq!(table.insert(()), Err(Error::OutOfResources));
        table.remove(first);
        assert!(table.insert(()).is_ok());
    }

    #[test]
    fn a_slot_whose_version_would_wrap_is_retired() {
        let mut table: VersionedTable<ThreadId, u32> = VersionedTable::new(1);
        let first = table.insert(1).unwrap();
        table.remove(first);
        table.force_version(0, u32::MAX);
        let last = table.insert(2).unwrap();
        assert_eq!(last.version(), u32::MAX);
        table.remove(last);
        assert_eq!(table.insert(3), Err(Error::OutOfResources));
        assert!(table.is_empty());
    }

    #[test]
    fn free_slots_are_reused_oldest_first() {
        let mut table: VersionedTable<ThreadId, u32> = VersionedTable::new(3);
        let ids: Vec<_> = (0..3).map(|value| table.insert(value).unwrap()).collect();
        table.remove(ids[2]);
        table.remove(ids[0]);
        assert_eq!(table.insert(9).unwrap().index(), 2);
        assert_eq!(table.insert(9).unwrap().index(), 0);
        let listed: Vec<_> = table.iter().map(|(id, _)| id.index()).collect();
        assert_eq!(listed, [0, 1, 2]);
    }

    proptest! {
        /// Against a model: every id ever removed stays dead, every live id
        /// resolves to its own value.
        #[test]
        fn stale_ids_never_resolve(operations in proptest::collection::vec(any::<(bool, u8)>(), 1..200)) {
            let mut table: VersionedTable<ThreadId, u32> = VersionedTable::new(8);
            let mut live: Vec<(ThreadId, u32)> = Vec::new();
            let mut dead: Vec<ThreadId> = Vec::new();
            for (counter, (insert, pick)) in operations.into_iter().enumerate() {
                let counter = counter as u32;
                if insert || live.is_empty() {
                    match table.insert(counter) {
                        Ok(id) => live.push((id, counter)),
                        Err(error) => {
                            prop_assert_eq!(error, Error::OutOfResources);
                            prop_assert_eq!(live.len(), 8);
                        }
                    }
                } else {
                    let (id, value) = live.remove(pick as usize % live.len());
                    prop_assert_eq!(table.remove(id), Some(value));
                    dead.push(id);
                }
                for id in &dead {
                    prop_assert!(table.get(*id).is_none());
                }
                for (id, value) in &live {
                    prop_assert_eq!(table.get(*id), Some(value));
                }
                prop_assert_eq!(table.len(), live.len());
            }
        }
    }
}
