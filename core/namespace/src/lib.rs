//! Plan 9 namespaces for Kasane's core: mount table, unions, walks, ns.
//!
//! Everything here is host-testable logic (STYLE.md 1): the caller owns the
//! chans and the servants, and lends them through two traits, [`Chans`]
//! (identity, directory or not, reference counting) and [`Walker`] (one
//! step of a walk, a device's `..`, `#x` roots, directory entries).
//!
//! - [`Namespace`]: a root and a mount table (Plan 9's Pgrp). bind(2),
//!   mount(2) and unmount(2) with MREPL, MBEFORE, MAFTER and MCREATE
//!   ([`MountFlags`]); [`Namespace::fork`] is `rfork(RFNAMEG)`.
//! - [`Location`]: where a walk stands and how it got there, so `..` is
//!   right across mount points ([`Namespace::resolve`]).
//! - Unions: lookups in member order, directory reads of every member
//!   ([`Namespace::read_dir`]), creates to the first MCREATE member
//!   ([`Namespace::create_target`]).
//! - [`Namespace::ns_text`]: /proc/N/ns, the commands that rebuild it.
//! - [`cleanname`], Plan 9's cleanname(2).
//!
//! Errors are Plan 9 strings ([`Error`]); `docs/core.md` lists them.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod chans;
mod clean;
mod flags;
mod ns;
mod table;
mod walk;

pub use chans::{ChanId, Chans, DirEntry, Walker};
pub use clean::{cleanname, join};
pub use flags::{MountFlags, Order};
/// Plan 9 error strings: the one table, `ninep`'s.
pub use ninep::Error;
pub use ns::{quote, quote_always};
pub use table::{Member, MountLink, MountPoint, Namespace, Source};
pub use walk::Location;
