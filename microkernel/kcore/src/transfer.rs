//! Planning a message's typed items: what to copy and map, checked first.
//!
//! When the IPC engine says a message moves, the kernel copies the untyped
//! words itself and asks [`plan`] what the typed items mean: for each, the
//! byte range to copy or the pages to map, and the item words the receiver
//! will see. Everything that can be checked without touching memory is
//! checked here, before anything moves, so that a malformed message fails
//! whole (L4 X.2, "Typed items" and "String items", simplified to one
//! receive buffer per string item).
//!
//! Invariants:
//! - A plan holds only user ranges that passed [`UserRange::new`], and a
//!   string never needs more than its receive buffer holds.
//! - The n-th string item goes to receive buffer n; a string item without a
//!   buffer, or longer than its buffer, fails the IPC with
//!   [`Error::MessageTooLong`], as does a map or grant item sent to a
//!   receiver with a nil receive window.
//! - What a plan cannot know (pages not mapped) is found while copying;
//!   the kernel then fails the IPC with [`Error::StringFault`].

use alloc::vec::Vec;

use microkernel_abi::utcb::RECEIVE_BUFFER_COUNT;
use microkernel_abi::{Error, Fpage, MapItem, MessageTag, ReceiveBuffer, StringItem, TypedItem};

use crate::fpage::{place, Placement};
use crate::user_address::UserRange;

/// What the receiver accepts, read once from its UTCB (or, for the reply
/// to a page fault, the whole address space and no buffers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveTargets {
    /// Where mappings may land; nil refuses map and grant items.
    pub window: Fpage,
    /// Where string items land, in order.
    pub buffers: [ReceiveBuffer; RECEIVE_BUFFER_COUNT],
}

impl ReceiveTargets {
    /// Accepts nothing but untyped words.
    pub const NONE: ReceiveTargets = ReceiveTargets {
        window: Fpage::NIL,
        buffers: [ReceiveBuffer {
            address: 0,
            length: 0,
        }; RECEIVE_BUFFER_COUNT],
    };

    /// Decodes the raw receive window word read from the UTCB.
    pub fn new(window: u64, buffers: [ReceiveBuffer; RECEIVE_BUFFER_COUNT]) -> Result<Self, Error> {
        Ok(ReceiveTargets {
            window: Fpage::from_raw(window)?,
            buffers,
        })
    }
}

/// One thing the kernel must do for a typed item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Copy `source` (sender's space) to the start of `destination`
    /// (receiver's space); both have the same length.
    Copy {
        /// Bytes in the sender.
        source: UserRange,
        /// Where they go in the receiver.
        destination: UserRange,
    },
    /// Map or grant: `MappingDatabase::map_fpage(sender, placement.source,
    /// receiver, placement.destination_base, grant)`.
    Map {
        /// Which pages go where.
        placement: Placement,
        /// Grant instead of map.
        grant: bool,
    },
    /// Nothing moves (a nil flexpage).
    Nothing,
}

/// One typed item, planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedItem {
    /// What to do.
    pub action: Action,
    /// The two words to put in the receiver's message registers instead of
    /// the sender's.
    pub received: [u64; 2],
}

/// Plans the typed items of a message whose tag is `tag` and whose typed
/// words (after the untyped ones) are `typed_words`.
pub fn plan(
    tag: MessageTag,
    typed_words: &[u64],
    targets: &ReceiveTargets,
) -> Result<Vec<PlannedItem>, Error> {
    tag.validate()?;
    if typed_words.len() != tag.typed() {
        return Err(Error::InvalidArgument);
    }
    let mut planned = Vec::with_capacity(tag.item_count());
    let mut strings = 0;
    for words in typed_words.chunks_exact(2) {
        let item = TypedItem::decode([words[0], words[1]])?;
        planned.push(match item {
            TypedItem::String(item) => {
                let buffer = targets
                    .buffers
                    .get(strings)
                    .copied()
                    .filter(|buffer| buffer.length != 0)
                    .ok_or(Error::MessageTooLong)?;
                strings += 1;
                if item.length > buffer.length {
                    return Err(Error::MessageTooLong);
                }
                let source = UserRange::new(item.address, item.length)?;
                let destination =
                    UserRange::new(buffer.address, buffer.length)?.prefix(item.length);
                PlannedItem {
                    action: Action::Copy {
                        source,
                        destination,
                    },
                    received: TypedItem::String(StringItem {
                        address: buffer.address,
                        length: item.length,
                    })
                    .encode(),
                }
            }
            TypedItem::Map(item) => {
                if item.fpage.is_nil() {
                    PlannedItem {
                        action: Action::Nothing,
                        received: TypedItem::Map(item).encode(),
                    }
                } else {
                    let placement = place(item.fpage, item.send_base, targets.window)
                        .ok_or(Error::MessageTooLong)?;
                    PlannedItem {
                        action: Action::Map {
                            placement,
                            grant: item.grant,
                        },
                        received: TypedItem::Map(MapItem {
                            fpage: placement.destination(),
                            ..item
                        })
                        .encode(),
                    }
                }
            }
        });
    }
    Ok(planned)
}

/// The IPC fast path's plan for a message whose one typed item is a string
/// item (`words`) going into the receiver's first buffer: the source, the
/// destination and the item the receiver sees, as [`plan`] gives them.
/// `None` for anything else (a map item, no buffer, a string too long, a bad
/// range), which the general path handles and reports.
pub fn plan_one_string(
    words: [u64; 2],
    buffer: ReceiveBuffer,
) -> Option<(UserRange, UserRange, [u64; 2])> {
    let TypedItem::String(item) = TypedItem::decode(words).ok()? else {
        return None;
    };
    if buffer.length == 0 || item.length > buffer.length {
        return None;
    }
    let source = UserRange::new(item.address, item.length).ok()?;
    let destination = UserRange::new(buffer.address, buffer.length)
        .ok()?
        .prefix(item.length);
    let received = TypedItem::String(StringItem {
        address: buffer.address,
        length: item.length,
    });
    Some((source, destination, received.encode()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use microkernel_abi::{Rights, USER_ADDRESS_END};

    #[test]
    fn the_fast_plan_of_one_string_agrees_with_plan() {
        let targets = targets_with_buffers(&[64]);
        let item = TypedItem::String(StringItem {
            address: 0x4000,
            length: 40,
        })
        .encode();
        let tag = MessageTag::new(7, 0, 2).unwrap();
        let planned = plan(tag, &item, &targets).unwrap();
        let Action::Copy {
            source,
            destination,
        } = planned[0].action
        else {
            panic!("a copy");
        };
        assert_eq!(
            plan_one_string(item, targets.buffers[0]),
            Some((source, destination, planned[0].received))
        );
        // What the general path refuses, the fast path leaves to it.
        let long = TypedItem::String(StringItem {
            address: 0x4000,
            length: 65,
        })
        .encode();
        assert_eq!(plan_one_string(long, targets.buffers[0]), None);
        assert_eq!(plan_one_string(item, ReceiveBuffer::default()), None);
        let map = TypedItem::Map(MapItem {
            send_base: 0,
            fpage: Fpage::complete(Rights::READ),
            grant: false,
        })
        .encode();
        assert_eq!(plan_one_string(map, targets.buffers[0]), None);
        let wild = TypedItem::String(StringItem {
            address: u64::MAX - 4,
            length: 8,
        })
        .encode();
        assert_eq!(plan_one_string(wild, targets.buffers[0]), None);
    }

    fn targets_with_buffers(lengths: &[u64]) -> ReceiveTargets {
        let mut targets = ReceiveTargets::NONE;
        for (slot, &length) in lengths.iter().enumerate() {
            targets.buffers[slot] = ReceiveBuffer {
                address: 0x10_0000 * (slot as u64 + 1),
                length,
            };
        }
        targets
    }

    fn string(address: u64, length: u64) -> [u64; 2] {
        TypedItem::String(StringItem { address, length }).encode()
    }

    #[test]
    fn strings_go_to_buffers_in_order() {
        let targets = targets_with_buffers(&[16, 64]);
        let words = [string(0x5000, 10), string(0x6000, 64)].concat();
        let tag = MessageTag::new(1, 0, 4).unwrap();
        let planned = plan(tag, &words, &targets).unwrap();
        assert_eq!(
            planned[0].action,
            Action::Copy {
                source: UserRange::new(0x5000, 10).unwrap(),
                destination: UserRange::new(0x10_0000, 10).unwrap(),
            }
        );
        assert_eq!(planned[1].received, string(0x20_0000, 64));
    }

    #[test]
    fn strings_that_do_not_fit_fail_the_message() {
        let tag = MessageTag::new(1, 0, 2).unwrap();
        assert_eq!(
            plan(tag, &string(0x5000, 17), &targets_with_buffers(&[16])),
            Err(Error::MessageTooLong)
        );
        assert_eq!(
            plan(tag, &string(0x5000, 1), &ReceiveTargets::NONE),
            Err(Error::MessageTooLong)
        );
        assert_eq!(
            plan(
                tag,
                &string(USER_ADDRESS_END, 1),
                &targets_with_buffers(&[16])
            ),
            Err(Error::BadAddress)
        );
        let mut bad_buffer = targets_with_buffers(&[16]);
        bad_buffer.buffers[0].address = u64::MAX - 4;
        assert_eq!(
            plan(tag, &string(0x5000, 1), &bad_buffer),
            Err(Error::BadAddress)
        );
    }

    #[test]
    fn map_items_are_placed_in_the_window() {
        let window = Fpage::new(0x4000_0000, 30, Rights::FULL).unwrap();
        let targets = ReceiveTargets {
            window,
            ..ReceiveTargets::NONE
        };
        let sent = Fpage::new(0x20_0000, 21, Rights::READ).unwrap();
        let item = TypedItem::Map(MapItem {
            send_base: 0x60_0000,
            fpage: sent,
            grant: true,
        });
        let tag = MessageTag::new(1, 0, 2).unwrap();
        let planned = plan(tag, &item.encode(), &targets).unwrap();
        let Action::Map { placement, grant } = planned[0].action else {
            panic!("expected a map action");
        };
        assert!(grant);
        assert_eq!(placement.source, sent);
        assert_eq!(placement.destination_base, 0x4060_0000);
        assert_eq!(
            TypedItem::decode(planned[0].received),
            Ok(TypedItem::Map(MapItem {
                send_base: 0x60_0000,
                fpage: Fpage::new(0x4060_0000, 21, Rights::READ).unwrap(),
                grant: true,
            }))
        );
        assert_eq!(
            plan(tag, &item.encode(), &ReceiveTargets::NONE),
            Err(Error::MessageTooLong)
        );
    }

    #[test]
    fn malformed_messages_fail_before_anything_moves() {
        let tag = MessageTag::new(1, 0, 2).unwrap();
        assert_eq!(
            plan(tag, &[0, 0], &ReceiveTargets::NONE),
            Err(Error::InvalidItem)
        );
        assert_eq!(
            plan(tag, &[0], &ReceiveTargets::NONE),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            plan(
                MessageTag::from_raw(3 << 6),
                &[0, 0, 0],
                &ReceiveTargets::NONE
            ),
            Err(Error::InvalidItem)
        );
        let nil_map = TypedItem::Map(MapItem {
            send_base: 0,
            fpage: Fpage::NIL,
            grant: false,
        });
        assert_eq!(
            plan(tag, &nil_map.encode(), &ReceiveTargets::NONE).unwrap()[0].action,
            Action::Nothing
        );
        assert_eq!(
            ReceiveTargets::new(0x1001, ReceiveTargets::NONE.buffers),
            Err(Error::InvalidItem)
        );
    }
}
