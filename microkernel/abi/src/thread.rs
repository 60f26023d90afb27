//! Global thread and task ids: a table index plus a version.
//!
//! Layout (L4 X.2, "ThreadId": thread number above version), one 64-bit word:
//! bits 63..32 hold the index, bits 31..0 the version.
//!
//! Invariants:
//! - Version 0 never names a live thread or task, so the all-zero word is
//!   the nil id and a zero-filled register can never name anyone.
//! - The kernel gives a slot a new version each time it is reused and never
//!   reuses a version for a slot, so a stale id is rejected instead of
//!   reaching the slot's newer occupant.
//! - Thread indices at and above [`ThreadId::INTERRUPT_INDEX_BASE`] are
//!   reserved: they name interrupt sources, never threads; `ANY` (all ones)
//!   lies in that range too.

use core::fmt;

const VERSION_MASK: u64 = 0xFFFF_FFFF;

/// A global thread id. Copyable and comparable; it proves nothing about the
/// thread's existence, which the kernel checks on every use.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct ThreadId(u64);

impl ThreadId {
    /// No thread: as an IPC destination, "no send phase"; as a source,
    /// "no receive phase".
    pub const NIL: ThreadId = ThreadId(0);

    /// Any thread: as an IPC source, "receive from whoever sends first".
    pub const ANY: ThreadId = ThreadId(u64::MAX);

    /// The largest index a real thread can have.
    pub const MAX_INDEX: u32 = Self::INTERRUPT_INDEX_BASE - 1;

    /// Index of interrupt 0's pseudo-thread; interrupt `n` is this plus `n`.
    pub const INTERRUPT_INDEX_BASE: u32 = 0xFFFF_0000;

    /// The version every interrupt pseudo-thread id carries.
    pub const INTERRUPT_VERSION: u32 = 1;

    /// Builds the id of a real thread, or `None` if the version is 0 or the
    /// index is in the reserved range.
    pub const fn new(index: u32, version: u32) -> Option<ThreadId> {
        if version == 0 || index > Self::MAX_INDEX {
            return None;
        }
        Some(ThreadId(((index as u64) << 32) | version as u64))
    }

    /// The pseudo-thread that interrupt `irq` messages come from
    /// (L4 X.2, "Interrupts": interrupts are threads that send IPC).
    pub const fn interrupt(irq: u8) -> ThreadId {
        ThreadId(
            ((Self::INTERRUPT_INDEX_BASE as u64 + irq as u64) << 32)
                | Self::INTERRUPT_VERSION as u64,
        )
    }

    /// Reinterprets a register value. Any word is accepted; what it names is
    /// checked by whoever uses it.
    pub const fn from_raw(raw: u64) -> ThreadId {
        ThreadId(raw)
    }

    /// The word that goes into a register.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The thread-table index.
    pub const fn index(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The version of the slot at [`index`](Self::index).
    pub const fn version(self) -> u32 {
        (self.0 & VERSION_MASK) as u32
    }

    /// Whether this is [`ThreadId::NIL`].
    pub const fn is_nil(self) -> bool {
        self.0 == Self::NIL.0
    }

    /// Whether this is [`ThreadId::ANY`].
    pub const fn is_any(self) -> bool {
        self.0 == Self::ANY.0
    }

    /// Whether this could name a real thread: nonzero version and an index
    /// outside the reserved range. It may still be stale.
    pub const fn is_thread(self) -> bool {
        self.version() != 0 && self.index() <= Self::MAX_INDEX
    }

    /// The interrupt number, if this is an interrupt pseudo-thread id.
    pub const fn interrupt_number(self) -> Option<u8> {
        let index = self.index();
        if self.version() == Self::INTERRUPT_VERSION
            && index >= Self::INTERRUPT_INDEX_BASE
            && index - Self::INTERRUPT_INDEX_BASE <= u8::MAX as u32
        {
            Some((index - Self::INTERRUPT_INDEX_BASE) as u8)
        } else {
            None
        }
    }
}

impl fmt::Debug for ThreadId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_nil() {
            formatter.write_str("ThreadId::NIL")
        } else if self.is_any() {
            formatter.write_str("ThreadId::ANY")
        } else if let Some(irq) = self.interrupt_number() {
            write!(formatter, "ThreadId::interrupt({irq})")
        } else {
            write!(formatter, "ThreadId({}.v{})", self.index(), self.version())
        }
    }
}

/// A task (address space) id, laid out like [`ThreadId`]: index in bits
/// 63..32, version in bits 31..0, version 0 never live.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct TaskId(u64);

impl TaskId {
    /// No task.
    pub const NIL: TaskId = TaskId(0);

    /// Builds a task id, or `None` if the version is 0.
    pub const fn new(index: u32, version: u32) -> Option<TaskId> {
        if version == 0 {
            return None;
        }
        Some(TaskId(((index as u64) << 32) | version as u64))
    }

    /// Reinterprets a register value; checked by whoever uses it.
    pub const fn from_raw(raw: u64) -> TaskId {
        TaskId(raw)
    }

    /// The word that goes into a register.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The task-table index.
    pub const fn index(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The version of the slot at [`index`](Self::index).
    pub const fn version(self) -> u32 {
        (self.0 & VERSION_MASK) as u32
    }

    /// Whether this is [`TaskId::NIL`].
    pub const fn is_nil(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_nil() {
            formatter.write_str("TaskId::NIL")
        } else {
            write!(formatter, "TaskId({}.v{})", self.index(), self.version())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_index_above_version() {
        let id = ThreadId::new(5, 9).unwrap();
        assert_eq!(id.raw(), (5 << 32) | 9);
        assert_eq!((id.index(), id.version()), (5, 9));
        assert!(id.is_thread());
        assert_eq!(ThreadId::from_raw(id.raw()), id);
    }

    #[test]
    fn nil_and_any_are_not_threads() {
        assert!(ThreadId::NIL.is_nil() && !ThreadId::NIL.is_thread());
        assert!(ThreadId::ANY.is_any() && !ThreadId::ANY.is_thread());
        assert_eq!(ThreadId::new(0, 0), None);
        assert_eq!(ThreadId::new(ThreadId::INTERRUPT_INDEX_BASE, 1), None);
        assert_eq!(ThreadId::ANY.interrupt_number(), None);
    }

    #[test]
    fn interrupt_ids_round_trip() {
        for irq in [0u8, 1, 77, 255] {
            let id = ThreadId::interrupt(irq);
            assert_eq!(id.interrupt_number(), Some(irq));
            assert!(!id.is_thread());
        }
        assert_eq!(ThreadId::new(3, 1).unwrap().interrupt_number(), None);
    }

    #[test]
    fn task_ids() {
        let task = TaskId::new(2, 7).unwrap();
        assert_eq!((task.index(), task.version()), (2, 7));
        assert_eq!(TaskId::new(1, 0), None);
        assert!(TaskId::NIL.is_nil());
    }
}
