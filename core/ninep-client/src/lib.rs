//! A 9P2000 client as a state machine: request bytes out, reply bytes in.
//!
//! This is the protocol half of core's `#M` mount driver. It owns no link:
//! every operation appends request frames to a caller's buffer and returns
//! an [`OpId`]; the caller moves the bytes over whatever link it has (a
//! microkernel pipe, a virtio link, a test harness), hands each reply frame
//! back to [`Client::receive`], and gets a [`Completion`] when an operation
//! is over. A [`FrameReader`] cuts frames out of a byte stream.
//!
//! What the client keeps right so its callers need not (intro(5)):
//! - Tags: each outstanding request has its own; a tag is reused only after
//!   its reply, or, for a flushed request, after the Rflush (flush(5)).
//! - Fids: allocated for attach and walk, released when a clunk or remove
//!   is answered, whatever the answer (clunk(5), remove(5)).
//! - Splitting: walks longer than MAXWELEM names become several Twalks, and
//!   reads and writes longer than the iounit several Treads or Twrites.
//! - Hostile servers: a malformed frame, an unknown tag or a reply of the
//!   wrong type is an [`Error`] or a [`ProtocolError`], never a panic.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod client;
mod error;
mod stream;

pub use client::{Client, Completion, Fid, OpId, Outcome, MIN_MSIZE};
pub use error::{Error, ProtocolError};
pub use stream::FrameReader;
