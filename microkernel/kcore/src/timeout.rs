//! A queue of deadlines: insert, cancel, and expire everything due.
//!
//! The kernel keeps one entry per thread blocked with a finite timeout and
//! programs the local APIC timer for [`TimeoutQueue::next_deadline`].
//!
//! Invariants:
//! - A key has at most one deadline; inserting it again replaces the old.
//! - `expire` yields keys in deadline order, and keys with equal deadlines
//!   in insertion order, so equal timeouts fire first-come first-served.
//! - Both maps always hold the same entries.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Deadlines in microseconds on the kernel's clock, keyed by `K`.
pub struct TimeoutQueue<K> {
    by_deadline: BTreeMap<(u64, u64), K>,
    by_key: BTreeMap<K, (u64, u64)>,
    sequence: u64,
}

impl<K: Ord + Copy> Default for TimeoutQueue<K> {
    fn default() -> Self {
        TimeoutQueue::new()
    }
}

impl<K: Ord + Copy> TimeoutQueue<K> {
    /// An empty queue.
    pub fn new() -> Self {
        TimeoutQueue {
            by_deadline: BTreeMap::new(),
            by_key: BTreeMap::new(),
            sequence: 0,
        }
    }

    /// Sets `key`'s deadline, replacing any earlier one.
    pub fn insert(&mut self, key: K, deadline: u64) {
        self.cancel(key);
        let slot = (deadline, self.sequence);
        self.sequence += 1;
        self.by_deadline.insert(slot, key);
        self.by_key.insert(key, slot);
    }

    /// Removes `key`'s deadline; returns whether it had one.
    pub fn cancel(&mut self, key: K) -> bool {
        // The IPC fast path cancels on every rendezvous; most threads have
        // no deadline, so skip the tree walk when nothing is queued.
        if self.by_key.is_empty() {
            return false;
        }
        match self.by_key.remove(&key) {
            Some(slot) => {
                self.by_deadline.remove(&slot);
                true
            }
            None => false,
        }
    }

    /// `key`'s deadline.
    pub fn deadline(&self, key: K) -> Option<u64> {
        self.by_key.get(&key).map(|&(deadline, _)| deadline)
    }

    /// The earliest deadline: when the timer must fire next.
    pub fn next_deadline(&self) -> Option<u64> {
        self.by_deadline
            .keys()
            .next()
            .map(|&(deadline, _)| deadline)
    }

    /// Removes and returns every key whose deadline is at or before `now`,
    /// earliest first.
    pub fn expire(&mut self, now: u64) -> Vec<K> {
        let mut due = Vec::new();
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.by_key.remove(&key);
            due.push(key);
        }
        due
    }

    /// Entries in the queue.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expires_in_deadline_then_insertion_order() {
        let mut queue = TimeoutQueue::new();
        queue.insert('c', 30);
        queue.insert('a', 10);
        queue.insert('b', 10);
        queue.insert('d', 40);
        assert_eq!(queue.next_deadline(), Some(10));
        assert_eq!(queue.expire(9), []);
        assert_eq!(queue.expire(30), ['a', 'b', 'c']);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.next_deadline(), Some(40));
    }

    #[test]
    fn cancel_and_replace() {
        let mut queue = TimeoutQueue::new();
        queue.insert(1u32, 50);
        queue.insert(2u32, 60);
        assert!(queue.cancel(1));
        assert!(!queue.cancel(1));
        queue.insert(2, 5);
        assert_eq!(queue.deadline(2), Some(5));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.expire(100), [2]);
        assert!(queue.is_empty());
        assert_eq!(queue.next_deadline(), None);
    }

    proptest! {
        #[test]
        fn expire_returns_exactly_the_due_keys_in_order(
            deadlines in proptest::collection::vec(0u64..100, 0..50),
            cancelled in proptest::collection::vec(any::<usize>(), 0..10),
            now in 0u64..120,
        ) {
            let mut queue = TimeoutQueue::new();
            for (key, &deadline) in deadlines.iter().enumerate() {
                queue.insert(key, deadline);
            }
            let mut gone = std::collections::BTreeSet::new();
            for pick in cancelled {
                if !deadlines.is_empty() {
                    let key = pick % deadlines.len();
                    prop_assert_eq!(queue.cancel(key), gone.insert(key));
                }
            }
            let due = queue.expire(now);
            let mut expected: Vec<(u64, usize)> = deadlines
                .iter()
                .enumerate()
                .filter(|(key, deadline)| **deadline <= now && !gone.contains(key))
                .map(|(key, deadline)| (*deadline, key))
                .collect();
            expected.sort();
            prop_assert_eq!(due, expected.into_iter().map(|(_, key)| key).collect::<Vec<_>>());
            prop_assert!(queue.next_deadline().is_none_or(|next| next > now));
        }
    }
}
