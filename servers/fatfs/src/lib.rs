//! A FAT12/16/32 file server over 9P on any block device.
//!
//! The FAT format (long names, FAT chains, directory entries) is the
//! `hadris-fat` crate's; docs/storage.md says why that crate. This crate
//! adds what a Kasane server needs around it: the disk's layout (a whole
//! disk or MBR partitions, picked by the attach name), the mapping of 9P's
//! fids, qids, stats and wstat onto FAT, and the durability rule: a change
//! is acknowledged only once its sectors are on the disk and the disk's
//! cache is flushed. The block device is a trait, so the same server runs
//! on the ATA driver in a VM or a task, and on an image in host tests.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod disk;
mod server;

pub use disk::{Extent, LayoutError, Shared};
/// Re-exported so a runtime can implement the block device and the clock.
pub use hadris_fs::{Clock, DateTime};
pub use hadris_io::{Error as DeviceError, ErrorKind as DeviceErrorKind, ErrorType};
pub use hadris_storage::sync::BlockDevice;
pub use hadris_storage::{BlockIndex, BlockSize, MemDevice};
pub use server::{FatServer, MAX_NODES};
