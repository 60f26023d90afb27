//! Run queues: 256 fixed priorities, round robin within each, timeslices.
//!
//! The thread that should run is always the head of the highest non-empty
//! priority level (L4 X.2, "Schedule": fixed priorities, round robin within
//! a priority). The running thread stays at the head of its level while it
//! runs; expiry of its timeslice or a yield moves it to the tail, and a
//! higher-priority thread becoming ready simply becomes the new head of a
//! higher level, which is preemption. A blocked thread is in no queue, so
//! it costs the scheduler nothing.
//!
//! Invariants:
//! - A thread is in at most one level, the one of its priority, and a bit
//!   of `occupied` is set exactly when its level is non-empty; the highest
//!   ready thread is found with one leading-zero count per 64 levels.
//! - Queues are intrusive doubly linked lists over thread indices, so
//!   ready, block, yield and priority changes are O(1) and never allocate.
//! - No operation panics on an unknown index: it reports `false`/`None`.

use alloc::vec::Vec;

/// Priority levels; 255 is the highest priority.
pub const PRIORITY_LEVELS: usize = 256;

const WORDS: usize = PRIORITY_LEVELS / 64;

#[derive(Clone, Copy, Default)]
struct Entry {
    present: bool,
    queued: bool,
    priority: u8,
    timeslice: u32,
    remaining: u32,
    next: Option<u32>,
    previous: Option<u32>,
}

#[derive(Clone, Copy, Default)]
struct Level {
    head: Option<u32>,
    tail: Option<u32>,
}

/// What [`RunQueues::charge`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Time is left in the timeslice.
    Continue,
    /// The timeslice ran out: it was refilled and the thread moved to the
    /// tail of its level.
    Expired,
}

/// The ready threads of one processor, by thread-table index.
pub struct RunQueues {
    entries: Vec<Entry>,
    levels: [Level; PRIORITY_LEVELS],
    occupied: [u64; WORDS],
}

impl Default for RunQueues {
    fn default() -> Self {
        RunQueues::new()
    }
}

impl RunQueues {
    /// Empty queues.
    pub fn new() -> Self {
        RunQueues {
            entries: Vec::new(),
            levels: [Level::default(); PRIORITY_LEVELS],
            occupied: [0; WORDS],
        }
    }

    /// Registers a thread (not ready yet) with its priority and timeslice
    /// in microseconds. Re-adding a present thread resets it.
    pub fn add(&mut self, thread: u32, priority: u8, timeslice: u32) {
        self.remove(thread);
        let index = thread as usize;
        if self.entries.len() <= index {
            self.entries.resize(index + 1, Entry::default());
        }
        if let Some(entry) = self.entries.get_mut(index) {
            *entry = Entry {
                present: true,
                priority,
                timeslice,
                remaining: timeslice,
                ..Entry::default()
            };
        }
    }

    /// Forgets a thread (it was destroyed), taking it out of its queue.
    pub fn remove(&mut self, thread: u32) {
        self.block(thread);
        if let Some(entry) = self.entries.get_mut(thread as usize) {
            *entry = Entry::default();
        }
    }

    fn entry(&self, thread: u32) -> Option<&Entry> {
        self.entries
            .get(thread as usize)
            .filter(|entry| entry.present)
    }

    fn link_tail(&mut self, thread: u32) {
        let Some(entry) = self.entries.get(thread as usize).copied() else {
            return;
        };
        let priority = entry.priority as usize;
        let old_tail = self.levels[priority].tail;
        if let Some(entry) = self.entries.get_mut(thread as usize) {
            entry.queued = true;
            entry.previous = old_tail;
            entry.next = None;
        }
        match old_tail.and_then(|tail| self.entries.get_mut(tail as usize)) {
            Some(tail) => tail.next = Some(thread),
            None => self.levels[priority].head = Some(thread),
        }
        self.levels[priority].tail = Some(thread);
        self.occupied[priority / 64] |= 1 << (priority % 64);
    }

    fn unlink(&mut self, thread: u32) {
        let Some(entry) = self.entries.get(thread as usize).copied() else {
            return;
        };
        if !entry.queued {
            return;
        }
        let priority = entry.priority as usize;
        match entry
            .previous
            .and_then(|previous| self.entries.get_mut(previous as usize))
        {
            Some(previous) => previous.next = entry.next,
            None => self.levels[priority].head = entry.next,
        }
        match entry
            .next
            .and_then(|next| self.entries.get_mut(next as usize))
        {
            Some(next) => next.previous = entry.previous,
            None => self.levels[priority].tail = entry.previous,
        }
        if let Some(entry) = self.entries.get_mut(thread as usize) {
            entry.queued = false;
            entry.next = None;
            entry.previous = None;
        }
        if self.levels[priority].head.is_none() {
            self.occupied[priority / 64] &= !(1 << (priority % 64));
        }
    }

    /// Makes a thread ready (tail of its level). Returns `false` for an
    /// unknown thread; a thread already ready keeps its place.
    pub fn make_ready(&mut self, thread: u32) -> bool {
        match self.entry(thread) {
            None => false,
            Some(entry) if entry.queued => true,
            Some(_) => {
                self.link_tail(thread);
                true
            }
        }
    }

    /// Takes a thread out of the queues (it blocked, halted or died).
    pub fn block(&mut self, thread: u32) {
        self.unlink(thread);
    }

    /// `block(from)` then `make_ready(to)`, as the IPC fast path does on
    /// every hop; returns whether `to` is then the thread to run
    /// (`current() == Some(to)`). When `from` is alone in its level and
    /// `to`, of the same priority, is in no queue, `to` simply takes its
    /// place: the same outcome without the two list operations, and `to`
    /// runs unless a higher level is occupied (L4's direct process switch).
    pub fn hand_over(&mut self, from: u32, to: u32) -> bool {
        let (from_index, to_index) = (from as usize, to as usize);
        if let (Some(a), Some(b)) = (self.entries.get(from_index), self.entries.get(to_index)) {
            let priority = a.priority as usize;
            let level = self.levels[priority];
            if a.present
                && b.present
                && a.queued
                && !b.queued
                && a.priority == b.priority
                && level.head == Some(from)
                && level.tail == Some(from)
            {
                self.levels[priority] = Level {
                    head: Some(to),
                    tail: Some(to),
                };
                self.entries[from_index].queued = false;
                self.entries[to_index].queued = true;
                return self.nothing_above(priority);
            }
        }
        self.block(from);
        self.make_ready(to);
        self.current() == Some(to)
    }

    /// Whether every level above `priority` is empty.
    fn nothing_above(&self, priority: usize) -> bool {
        let word = priority / 64;
        // The bits above `priority` in its word (a shift by 64 would
        // overflow: bit 63 has none above it).
        let above = self.occupied[word]
            .checked_shr(priority as u32 % 64 + 1)
            .unwrap_or(0);
        above == 0 && self.occupied[word + 1..].iter().all(|&bits| bits == 0)
    }

    /// Whether the thread is in a queue.
    pub fn is_ready(&self, thread: u32) -> bool {
        self.entry(thread).is_some_and(|entry| entry.queued)
    }

    /// The highest ready priority.
    pub fn highest_priority(&self) -> Option<u8> {
        (0..WORDS).rev().find_map(|word| {
            let bits = self.occupied[word];
            (bits != 0).then(|| (word * 64 + 63 - bits.leading_zeros() as usize) as u8)
        })
    }

    /// The thread that should run now: the head of the highest level.
    pub fn current(&self) -> Option<u32> {
        self.levels[self.highest_priority()? as usize].head
    }

    /// Whether a ready thread has a higher priority than `priority`; the
    /// kernel asks this after waking a thread to decide on preemption.
    pub fn has_higher_than(&self, priority: u8) -> bool {
        self.highest_priority()
            .is_some_and(|highest| highest > priority)
    }

    /// Moves a ready thread to the tail of its level with a fresh
    /// timeslice (L4 X.2, "ThreadSwitch" with nil: yield to equals).
    pub fn yield_thread(&mut self, thread: u32) {
        if !self.is_ready(thread) {
            return;
        }
        self.unlink(thread);
        if let Some(entry) = self.entries.get_mut(thread as usize) {
            entry.remaining = entry.timeslice;
        }
        self.link_tail(thread);
    }

    /// Charges `elapsed` microseconds of running to a thread; on expiry
    /// refills its timeslice and, if it is ready, rotates it to the tail.
    pub fn charge(&mut self, thread: u32, elapsed: u32) -> Charge {
        let Some(entry) = self
            .entries
            .get_mut(thread as usize)
            .filter(|entry| entry.present)
        else {
            return Charge::Continue;
        };
        if elapsed < entry.remaining {
            entry.remaining -= elapsed;
            return Charge::Continue;
        }
        entry.remaining = entry.timeslice;
        if entry.queued {
            self.unlink(thread);
            self.link_tail(thread);
        }
        Charge::Expired
    }

    /// Microseconds left in the thread's timeslice: when to program the
    /// timer for.
    pub fn remaining(&self, thread: u32) -> Option<u32> {
        self.entry(thread).map(|entry| entry.remaining)
    }

    /// The thread's priority.
    pub fn priority(&self, thread: u32) -> Option<u8> {
        self.entry(thread).map(|entry| entry.priority)
    }

    /// The thread's timeslice length in microseconds.
    pub fn timeslice(&self, thread: u32) -> Option<u32> {
        self.entry(thread).map(|entry| entry.timeslice)
    }

    /// Changes the priority; a ready thread moves to the tail of its new
    /// level. Returns `false` for an unknown thread.
    pub fn set_priority(&mut self, thread: u32, priority: u8) -> bool {
        let Some(entry) = self.entry(thread).copied() else {
            return false;
        };
        if entry.priority == priority {
            return true;
        }
        self.unlink(thread);
        if let Some(stored) = self.entries.get_mut(thread as usize) {
            stored.priority = priority;
        }
        if entry.queued {
            self.link_tail(thread);
        }
        true
    }

    /// Changes the timeslice length; the current slice is cut to it if
    /// longer. Returns `false` for an unknown thread.
    pub fn set_timeslice(&mut self, thread: u32, timeslice: u32) -> bool {
        match self
            .entries
            .get_mut(thread as usize)
            .filter(|entry| entry.present)
        {
            None => false,
            Some(entry) => {
                entry.timeslice = timeslice;
                entry.remaining = entry.remaining.min(timeslice);
                true
            }
        }
    }

    /// The ready threads of one level, head first (for tests and
    /// debugging output).
    pub fn level(&self, priority: u8) -> Vec<u32> {
        let mut threads = Vec::new();
        let mut cursor = self.levels[priority as usize].head;
        while let Some(thread) = cursor {
            threads.push(thread);
            cursor = self
                .entries
                .get(thread as usize)
                .and_then(|entry| entry.next);
        }
        threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn queues(threads: &[(u32, u8)]) -> RunQueues {
        let mut queues = RunQueues::new();
        for &(thread, priority) in threads {
            queues.add(thread, priority, 1000);
            queues.make_ready(thread);
        }
        queues
    }

    #[test]
    fn highest_priority_runs() {
        let mut queues = queues(&[(0, 10), (1, 200), (2, 64), (3, 63)]);
        assert_eq!(queues.current(), Some(1));
        assert_eq!(queues.highest_priority(), Some(200));
        queues.block(1);
        assert_eq!(queues.current(), Some(2));
        queues.block(2);
        assert_eq!(queues.current(), Some(3));
        queues.block(3);
        queues.block(0);
        assert_eq!(queues.current(), None);
        assert_eq!(queues.highest_priority(), None);
    }

    #[test]
    fn hand_over_is_block_then_make_ready() {
        // Threads with priorities, the ready ones (in order), from, to.
        type Case = (&'static [(u32, u8)], &'static [u32], u32, u32);
        let cases: [Case; 13] = [
            (&[(0, 5), (1, 5)], &[0], 0, 1),
            // Another priority (the general path): below a ready thread,
            // or not, or into an occupied level.
            (&[(0, 9), (1, 5), (2, 7)], &[0, 2], 0, 1),
            (&[(0, 5), (1, 7), (2, 7)], &[0, 2], 0, 1),
            (&[(0, 7), (1, 5), (2, 3)], &[0, 2], 0, 1),
            // Levels at the edges of the occupancy words: a ready thread
            // above, in the next word or the same one, or none above 255.
            (&[(0, 63), (1, 63), (2, 64)], &[0, 2], 0, 1),
            (&[(0, 64), (1, 64), (2, 63)], &[0, 2], 0, 1),
            (&[(0, 62), (1, 62), (2, 63)], &[0, 2], 0, 1),
            (&[(0, 255), (1, 255), (2, 0)], &[0, 2], 0, 1),
            (&[(0, 5), (1, 5), (2, 5)], &[0, 2], 0, 1),
            (&[(0, 5), (1, 7)], &[0], 0, 1),
            (&[(0, 5), (1, 5)], &[0, 1], 0, 1),
            (&[(0, 5), (1, 5), (2, 9)], &[2, 0], 0, 1),
            (&[(0, 5), (1, 5)], &[1], 0, 1),
        ];
        for (threads, ready, from, to) in cases {
            let build = || {
                let mut queues = RunQueues::new();
                for &(thread, priority) in threads {
                    queues.add(thread, priority, 1000);
                }
                for &thread in ready {
                    queues.make_ready(thread);
                }
                queues
            };
            let mut fast = build();
            let runs = fast.hand_over(from, to);
            let mut slow = build();
            slow.block(from);
            slow.make_ready(to);
            assert_eq!(fast.current(), slow.current());
            assert_eq!(runs, slow.current() == Some(to), "{threads:?} {ready:?}");
            assert_eq!(fast.highest_priority(), slow.highest_priority());
            for priority in [0, 3, 5, 7, 9, 62, 63, 64, 255] {
                assert_eq!(fast.level(priority), slow.level(priority));
            }
            for &(thread, _) in threads {
                assert_eq!(fast.is_ready(thread), slow.is_ready(thread));
            }
            // The lists stay well linked: both go on the same way.
            for queues in [&mut fast, &mut slow] {
                queues.block(to);
                queues.make_ready(from);
            }
            for priority in [0, 3, 5, 7, 9, 62, 63, 64, 255] {
                assert_eq!(fast.level(priority), slow.level(priority));
            }
        }
    }

    #[test]
    fn round_robin_within_a_level() {
        let mut queues = queues(&[(0, 5), (1, 5), (2, 5)]);
        assert_eq!(queues.level(5), [0, 1, 2]);
        queues.yield_thread(0);
        assert_eq!(queues.current(), Some(1));
        assert_eq!(queues.level(5), [1, 2, 0]);
        queues.block(2);
        assert_eq!(queues.level(5), [1, 0]);
        queues.make_ready(2);
        assert_eq!(queues.level(5), [1, 0, 2]);
    }

    #[test]
    fn timeslice_expiry_rotates() {
        let mut queues = queues(&[(0, 5), (1, 5)]);
        assert_eq!(queues.charge(0, 400), Charge::Continue);
        assert_eq!(queues.remaining(0), Some(600));
        assert_eq!(queues.current(), Some(0));
        assert_eq!(queues.charge(0, 600), Charge::Expired);
        assert_eq!(queues.remaining(0), Some(1000));
        assert_eq!(queues.current(), Some(1));
    }

    #[test]
    fn preemption_keeps_the_preempted_thread_at_its_head() {
        let mut queues = queues(&[(0, 5), (1, 5)]);
        queues.charge(0, 300);
        queues.add(2, 9, 1000);
        queues.make_ready(2);
        assert!(queues.has_higher_than(5));
        assert_eq!(queues.current(), Some(2));
        queues.block(2);
        assert_eq!(queues.current(), Some(0));
        assert_eq!(queues.remaining(0), Some(700));
    }

    #[test]
    fn priority_and_timeslice_changes() {
        let mut queues = queues(&[(0, 5), (1, 5)]);
        assert!(queues.set_priority(1, 7));
        assert_eq!(queues.current(), Some(1));
        assert_eq!(queues.level(5), [0]);
        assert!(queues.set_timeslice(1, 100));
        assert_eq!(queues.remaining(1), Some(100));
        assert_eq!(queues.timeslice(1), Some(100));
        queues.block(0);
        assert!(queues.set_priority(0, 1));
        assert!(!queues.is_ready(0));
        assert!(queues.make_ready(0));
        assert_eq!(queues.level(1), [0]);
    }

    #[test]
    fn unknown_threads_are_harmless() {
        let mut queues = RunQueues::new();
        assert!(!queues.make_ready(7));
        queues.block(7);
        queues.yield_thread(7);
        assert_eq!(queues.charge(7, 10), Charge::Continue);
        assert!(!queues.set_priority(7, 3));
        assert!(!queues.set_timeslice(7, 3));
        assert_eq!(queues.priority(7), None);
        queues.add(7, 3, 10);
        queues.remove(7);
        assert!(!queues.make_ready(7));
    }

    #[test]
    fn make_ready_twice_keeps_the_place() {
        let mut queues = queues(&[(0, 5), (1, 5)]);
        queues.make_ready(0);
        assert_eq!(queues.level(5), [0, 1]);
    }

    #[derive(Clone, Debug)]
    enum Operation {
        Ready(u32),
        Block(u32),
        Yield(u32),
        Priority(u32, u8),
        Charge(u32, u32),
    }

    fn operation() -> impl Strategy<Value = Operation> {
        let thread = 0u32..12;
        prop_oneof![
            thread.clone().prop_map(Operation::Ready),
            thread.clone().prop_map(Operation::Block),
            thread.clone().prop_map(Operation::Yield),
            (thread.clone(), any::<u8>()).prop_map(|(t, p)| Operation::Priority(t, p)),
            (thread, 0u32..1500).prop_map(|(t, e)| Operation::Charge(t, e)),
        ]
    }

    proptest! {
        /// Against a model of one FIFO per priority: the scheduler always
        /// picks the head of the highest non-empty FIFO.
        #[test]
        fn matches_a_model(operations in proptest::collection::vec(operation(), 1..300)) {
            let mut queues = RunQueues::new();
            let mut priorities = [0u8; 12];
            let mut remaining = [1000u32; 12];
            let mut model: Vec<VecDeque<u32>> = vec![VecDeque::new(); PRIORITY_LEVELS];
            for thread in 0..12u32 {
                queues.add(thread, 0, 1000);
            }
            for operation in operations {
                match operation {
                    Operation::Ready(t) => {
                        queues.make_ready(t);
                        let level = &mut model[priorities[t as usize] as usize];
                        if !level.contains(&t) {
                            level.push_back(t);
                        }
                    }
                    Operation::Block(t) => {
                        queues.block(t);
                        model[priorities[t as usize] as usize].retain(|&x| x != t);
                    }
                    Operation::Yield(t) => {
                        queues.yield_thread(t);
                        let level = &mut model[priorities[t as usize] as usize];
                        if level.contains(&t) {
                            level.retain(|&x| x != t);
                            level.push_back(t);
                            remaining[t as usize] = 1000;
                        }
                    }
                    Operation::Priority(t, p) => {
                        queues.set_priority(t, p);
                        let old = priorities[t as usize];
                        if old != p {
                            let was_ready = model[old as usize].contains(&t);
                            model[old as usize].retain(|&x| x != t);
                            if was_ready {
                                model[p as usize].push_back(t);
                            }
                            priorities[t as usize] = p;
                        }
                    }
                    Operation::Charge(t, elapsed) => {
                        let outcome = queues.charge(t, elapsed);
                        if elapsed < remaining[t as usize] {
                            remaining[t as usize] -= elapsed;
                            prop_assert_eq!(outcome, Charge::Continue);
                        } else {
                            remaining[t as usize] = 1000;
                            prop_assert_eq!(outcome, Charge::Expired);
                            let level = &mut model[priorities[t as usize] as usize];
                            if level.contains(&t) {
                                level.retain(|&x| x != t);
                                level.push_back(t);
                            }
                        }
                    }
                }
                let expected = model.iter().rev().find_map(|level| level.front().copied());
                prop_assert_eq!(queues.current(), expected);
                for (priority, level) in model.iter().enumerate() {
                    prop_assert_eq!(&queues.level(priority as u8), &Vec::from(level.clone()));
                }
            }
        }
    }
}
