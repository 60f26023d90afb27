//! A queue of deadlines: insert, cancel, and expire everything due.
//!
//! The kernel keeps one entry per thread blocked with a finite timeout and
//! programs the local APIC timer for [`TimeoutQueue::next_deadline`].
//!
//! Invariants:
//! - A key has at most one deadline; inserting it again replaces the old.
//! - `expire` yields keys in deadline order, and keys with equal deadlines
//!   in insertion order, so equal timeouts fire first-come first-served.
//! - Insertion numbers are unique, so the order is total.

use alloc::vec::Vec;

/// Deadlines in microseconds on the kernel's clock, keyed by `K`.
///
/// A flat, unsorted vector of (deadline, insertion number, key): the queue
/// holds one entry per thread blocked with a finite timeout, which is few,
/// and a rendezvous cancels an entry on every call made with a timeout
/// (core's calls to its servers). Once grown, the vector allocates
/// nothing on insert or cancel, where a pair of B-trees allocated a node
/// whenever they went from empty to one entry and freed it again: 558
/// Bochs cycles of each 4 KB read from a task server
/// (docs/performance.md). Cancel and expire scan the entries.
pub struct TimeoutQueue<K> {
    entries: Vec<(u64, u64, K)>,
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
            entries: Vec::new(),
            sequence: 0,
        }
    }

    /// Sets `key`'s deadline, replacing any earlier one.
    pub fn insert(&mut self, key: K, deadline: u64) {
        self.cancel(key);
        self.entries.push((deadline, self.sequence, key));
        self.sequence += 1;
    }

    /// Removes `key`'s deadline; returns whether it had one.
    pub fn cancel(&mut self, key: K) -> bool {
        match self.entries.iter().position(|entry| entry.2 == key) {
            Some(at) => {
                self.entries.swap_remove(at);
                true
            }
            None => false,
        }
    }

    /// `key`'s deadline.
    pub fn deadline(&self, key: K) -> Option<u64> {
        self.entries
            .iter()
            .find(|entry| entry.2 == key)
            .map(|&(deadline, _, _)| deadline)
    }

    /// The earliest deadline: when the timer must fire next.
    pub fn next_deadline(&self) -> Option<u64> {
        self.entries.iter().map(|&(deadline, _, _)| deadline).min()
    }

    /// Removes and returns every key whose deadline is at or before `now`,
    /// earliest first.
    pub fn expire(&mut self, now: u64) -> Vec<K> {
        if self.entries.iter().all(|&(deadline, _, _)| deadline > now) {
            return Vec::new();
        }
        let mut due: Vec<(u64, u64, K)> = Vec::new();
        self.entries.retain(|&entry| {
            let keep = entry.0 > now;
            if !keep {
                due.push(entry);
            }
            keep
        });
        due.sort_unstable_by_key(|&(deadline, sequence, _)| (deadline, sequence));
        due.into_iter().map(|(_, _, key)| key).collect()
    }

    /// Entries in the queue.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
