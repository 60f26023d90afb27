//! The message tag (MR0), message-register counts and kernel message labels.
//!
//! A message is MR0, the tag, followed by `untyped` words and then `typed`
//! words of typed items (L4 X.2, "Messages and Message Registers"). There
//! are [`MESSAGE_REGISTER_COUNT`] message registers; MR0..MR6 travel in CPU
//! registers and MR7..MR63 in the UTCB.
//!
//! Tag layout, one 64-bit word (L4 X.2, "MsgTag", widened for 64 bits):
//!
//! | bits   | field                                      |
//! |--------|--------------------------------------------|
//! | 5..0   | `untyped`: untyped words, MR1 onward       |
//! | 11..6  | `typed`: typed-item words after them       |
//! | 15..12 | flags ([`TagFlags`])                       |
//! | 63..16 | label: 48 bits the protocol defines        |
//!
//! Invariants:
//! - A sendable tag has `untyped + typed <= 63` and an even `typed` (items
//!   are two words each); [`MessageTag::validate`] checks both.
//! - The kernel clears the flags of every message a thread sends and sets
//!   [`TagFlags::KERNEL`] only on messages it makes itself (page faults,
//!   exceptions, interrupts), so a receiver can trust the flag.

use crate::error::Error;
use crate::thread::ThreadId;

/// Message registers per thread, MR0 (the tag) included.
pub const MESSAGE_REGISTER_COUNT: usize = 64;

/// Message registers passed in CPU registers by `ipc`: MR0..MR6.
pub const REGISTER_MESSAGE_REGISTERS: usize = 7;

/// Largest `untyped + typed`: every register but MR0.
pub const MAX_MESSAGE_WORDS: usize = MESSAGE_REGISTER_COUNT - 1;

/// Label of an interrupt message (L4 X.2 uses -1 too). MR1 holds the
/// interrupt number; the sender is [`ThreadId::interrupt`].
pub const INTERRUPT_LABEL: u64 = 0xFFFF_FFFF_FFFF;

/// Label of a page-fault message (L4 X.2, "Page fault protocol", uses -2).
/// MR1 = faulting address, MR2 = faulting instruction pointer, MR3 = the
/// access attempted as [`Rights`](crate::Rights) bits. The pager answers
/// with a map or grant item covering the address (or with an empty message
/// to make the thread retry); the whole address space is the receive window.
pub const PAGE_FAULT_LABEL: u64 = 0xFFFF_FFFF_FFFE;

/// Label of a CPU-exception message sent to the faulting thread's pager
/// (L4 X.2, "Exception protocol"). MR1 = vector, MR2 = error code,
/// MR3 = instruction pointer, MR4 = stack pointer. An empty reply resumes
/// the thread at the same instruction; the pager may instead set new
/// registers with `exchange_registers` or delete the thread.
pub const EXCEPTION_LABEL: u64 = 0xFFFF_FFFF_FFFD;

const UNTYPED_SHIFT: u32 = 0;
const TYPED_SHIFT: u32 = 6;
const COUNT_MASK: u64 = 0x3F;
const FLAGS_MASK: u64 = 0xF << 12;
const LABEL_SHIFT: u32 = 16;

/// The largest label, 48 bits.
pub const MAX_LABEL: u64 = (1 << 48) - 1;

bitflags::bitflags! {
    /// Flag bits of the message tag, in place (bits 15..12).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct TagFlags: u64 {
        /// The kernel made this message; set on receive only.
        const KERNEL = 1 << 12;
    }
}

/// MR0: label, counts and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct MessageTag(u64);

impl MessageTag {
    /// The empty message: label 0, no words. A reply that only says "done".
    pub const EMPTY: MessageTag = MessageTag(0);

    /// A tag for a message this thread sends; checks every limit.
    pub const fn new(label: u64, untyped: usize, typed: usize) -> Result<MessageTag, Error> {
        if label > MAX_LABEL {
            return Err(Error::InvalidArgument);
        }
        if untyped > MAX_MESSAGE_WORDS || typed > MAX_MESSAGE_WORDS {
            return Err(Error::MessageTooLong);
        }
        let tag = MessageTag(
            (label << LABEL_SHIFT)
                | ((typed as u64) << TYPED_SHIFT)
                | ((untyped as u64) << UNTYPED_SHIFT),
        );
        match tag.validate() {
            Ok(()) => Ok(tag),
            Err(error) => Err(error),
        }
    }

    /// Reinterprets a register value; use [`validate`](Self::validate)
    /// before trusting the counts.
    pub const fn from_raw(raw: u64) -> MessageTag {
        MessageTag(raw)
    }

    /// The word that goes into MR0.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The protocol label.
    pub const fn label(self) -> u64 {
        self.0 >> LABEL_SHIFT
    }

    /// Untyped words, MR1..=MR`untyped`.
    pub const fn untyped(self) -> usize {
        ((self.0 >> UNTYPED_SHIFT) & COUNT_MASK) as usize
    }

    /// Typed-item words after the untyped ones.
    pub const fn typed(self) -> usize {
        ((self.0 >> TYPED_SHIFT) & COUNT_MASK) as usize
    }

    /// Typed items (each two words).
    pub const fn item_count(self) -> usize {
        self.typed() / 2
    }

    /// All message words after MR0.
    pub const fn words(self) -> usize {
        self.untyped() + self.typed()
    }

    /// The flag bits.
    pub const fn flags(self) -> TagFlags {
        TagFlags::from_bits_retain(self.0 & FLAGS_MASK)
    }

    /// This tag with its flags replaced; the kernel uses it to clear or set
    /// [`TagFlags::KERNEL`].
    pub const fn with_flags(self, flags: TagFlags) -> MessageTag {
        MessageTag((self.0 & !FLAGS_MASK) | (flags.bits() & FLAGS_MASK))
    }

    /// Whether the kernel made this message.
    pub const fn is_from_kernel(self) -> bool {
        self.0 & TagFlags::KERNEL.bits() != 0
    }

    /// Checks the limits of a message to be sent: at most 63 words after
    /// MR0, and whole two-word typed items.
    pub const fn validate(self) -> Result<(), Error> {
        if self.words() > MAX_MESSAGE_WORDS {
            return Err(Error::MessageTooLong);
        }
        if self.typed() % 2 != 0 {
            return Err(Error::InvalidItem);
        }
        Ok(())
    }
}

/// Whom the receive phase of `ipc` accepts a message from; encoded as a
/// [`ThreadId`] in the `from` register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FromSpecifier {
    /// No receive phase ([`ThreadId::NIL`]).
    Nobody,
    /// Open receive: the first sender, or a pending interrupt
    /// ([`ThreadId::ANY`]).
    Any,
    /// Closed receive: only this thread or interrupt pseudo-thread.
    Thread(ThreadId),
}

impl FromSpecifier {
    /// Decodes the `from` register.
    pub const fn from_thread_id(id: ThreadId) -> FromSpecifier {
        if id.is_nil() {
            FromSpecifier::Nobody
        } else if id.is_any() {
            FromSpecifier::Any
        } else {
            FromSpecifier::Thread(id)
        }
    }

    /// The `from` register value.
    pub const fn to_thread_id(self) -> ThreadId {
        match self {
            FromSpecifier::Nobody => ThreadId::NIL,
            FromSpecifier::Any => ThreadId::ANY,
            FromSpecifier::Thread(id) => id,
        }
    }

    /// Whether a message from `sender` satisfies this specifier.
    pub fn accepts(self, sender: ThreadId) -> bool {
        match self {
            FromSpecifier::Nobody => false,
            FromSpecifier::Any => true,
            FromSpecifier::Thread(id) => id == sender,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_fields() {
        let tag = MessageTag::new(0xABCD, 3, 4).unwrap();
        assert_eq!(tag.raw(), (0xABCD << 16) | (4 << 6) | 3);
        assert_eq!((tag.label(), tag.untyped(), tag.typed()), (0xABCD, 3, 4));
        assert_eq!(tag.item_count(), 2);
        assert_eq!(tag.words(), 7);
        assert!(tag.flags().is_empty());
    }

    #[test]
    fn tag_limits() {
        assert_eq!(MessageTag::new(1, 63, 0).map(|t| t.words()), Ok(63));
        assert_eq!(MessageTag::new(1, 62, 2), Err(Error::MessageTooLong));
        assert_eq!(MessageTag::new(1, 64, 0), Err(Error::MessageTooLong));
        assert_eq!(MessageTag::new(1, 2, 3), Err(Error::InvalidItem));
        assert_eq!(
            MessageTag::new(MAX_LABEL + 1, 0, 0),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            MessageTag::from_raw((40 << 6) | 40).validate(),
            Err(Error::MessageTooLong)
        );
    }

    #[test]
    fn kernel_flag() {
        let tag = MessageTag::new(PAGE_FAULT_LABEL, 3, 0).unwrap();
        assert!(!tag.is_from_kernel());
        let marked = tag.with_flags(TagFlags::KERNEL);
        assert!(marked.is_from_kernel());
        assert_eq!(marked.label(), PAGE_FAULT_LABEL);
        assert_eq!(marked.untyped(), 3);
        assert_eq!(marked.with_flags(TagFlags::empty()), tag);
    }

    #[test]
    fn from_specifier_round_trips() {
        let thread = ThreadId::new(4, 2).unwrap();
        for specifier in [
            FromSpecifier::Nobody,
            FromSpecifier::Any,
            FromSpecifier::Thread(thread),
        ] {
            assert_eq!(
                FromSpecifier::from_thread_id(specifier.to_thread_id()),
                specifier
            );
        }
        assert!(FromSpecifier::Any.accepts(thread));
        assert!(FromSpecifier::Thread(thread).accepts(thread));
        assert!(!FromSpecifier::Thread(ThreadId::new(4, 3).unwrap()).accepts(thread));
        assert!(!FromSpecifier::Nobody.accepts(thread));
    }
}
