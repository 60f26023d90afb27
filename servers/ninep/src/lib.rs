//! 9P2000 as Plan 9's manual section 5 defines it: messages and wire codec.
//!
//! This crate knows the protocol and nothing else: the message enum
//! ([`Message`], framed with its tag as [`Frame`]), the qid and stat
//! structures, the mode bit sets, a strict decoder, and the Plan 9 error
//! strings ([`Error`]) that Rerror carries and core answers with. The
//! commonest messages, Tread and Rread, also have in-place forms
//! ([`Tread`], [`Rread`]) that both ends of a link use on their fast paths.
//!
//! Invariants the codec keeps:
//! - Decoding never panics and never allocates more than the bytes it was
//!   given justify: every count field is checked against the bytes that remain
//!   before anything is allocated, and every frame is checked against the
//!   maximum size the caller passes (the negotiated msize).
//! - A frame that is short, oversized, truncated, carries trailing bytes or
//!   contradicts itself is a typed [`DecodeError`].
//! - `decode(encode(m)) == m` for every message that encodes.
//!
//! The crate is `no_std` with `alloc` so core, task servers and unikernel
//! server VMs can use it unchanged.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
mod errstr;
mod inplace;
mod message;
mod types;
mod wire;

pub use error::{DecodeError, EncodeError};
pub use errstr::{Error, LINUX_MAPPED};
pub use inplace::{Rread, RreadStart, Tread, RREAD_HEADER, TREAD_SIZE};
pub use message::{frame_length, Frame, Message, MessageType};
pub use types::{Access, FileMode, OpenMode, Qid, QidType, Stat};

/// The one protocol version this crate speaks (version(5)).
pub const VERSION: &str = "9P2000";
/// The version string a server answers when it does not know the client's
/// (version(5)).
pub const VERSION_UNKNOWN: &str = "unknown";
/// The tag of a Tversion, which is outside tag management (version(5)).
pub const NOTAG: u16 = 0xFFFF;
/// "No fid", used as the afid of an unauthenticated Tattach (attach(5)).
pub const NOFID: u32 = 0xFFFF_FFFF;
/// Most path elements one Twalk may carry (walk(5)).
pub const MAXWELEM: usize = 16;
/// Bytes of `size[4] type[1] tag[2]` that open every message (intro(5)).
pub const HEADER_SIZE: usize = 7;
/// Bytes of overhead around the data of an Rread or Twrite, as Plan 9's
/// `IOHDRSZ`: an iounit of `msize - IOHDRSZ` always fits in one message.
pub const IOHDRSZ: u32 = 24;
/// Bytes of a qid on the wire: `type[1] vers[4] path[8]` (intro(5)).
pub const QID_SIZE: usize = 13;
