//! A transport-agnostic 9P2000 file-server framework: bytes in, bytes out.
//!
//! A server implements [`FileServer`], whose every method defaults to a
//! denial, so it writes only what it serves. A [`Session`] per connection
//! does the protocol work once and right: version and msize negotiation,
//! the fid table, tags and flush, the walk, open and create rules,
//! permission checks and masking, directory reads as whole stat entries, and
//! the wstat "don't touch" rules. It never panics on what a peer sends.
//!
//! Error strings are those Plan 9 servers write and the Linux v9fs client
//! maps to errno values (see [`Error`]); `docs/9p.md` lists them.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod access;
mod server;
mod session;

/// Plan 9 error strings: the one table, `ninep`'s.
pub use ninep::Error;
pub use server::{Caller, Completion, FileServer, Reply, RequestId, StatChanges};
pub use session::{Session, SessionError, MIN_MSIZE};
