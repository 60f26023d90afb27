//! A RAM file server: files and directories held in memory, served over 9P.
//!
//! It keeps Plan 9 semantics: owner/group/other permissions against the
//! attaching uname, append-only (DMAPPEND) and exclusive-use (DMEXCL) files,
//! atime/mtime/muid, and a qid version bumped by every change of contents.
//! Time comes from a [`Clock`] the runtime supplies, so the crate stays
//! `no_std`. Limits on file size and total bytes keep a client from taking
//! all memory ("file too big", "file system is full").
//!
//! The protocol rules (fids, walks, open modes, permission masks, wstat
//! checks) are the framework's; this crate only keeps the tree.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod image;
mod tree;

pub use image::ImageError;
pub use tree::{Clock, Limits, RamFs};
