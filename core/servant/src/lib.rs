//! Core's servants: the one file-server interface, the Chan table, devices.
//!
//! Host-testable logic for LP49core's in-core file servers (STYLE.md 1):
//!
//! - [`Servant`]: Plan 9's `Dev` as a default-deny trait over the `ninep`
//!   qid, stat and open-mode types that 9P servers use too. Reads and
//!   writes never block; they answer [`Io::WouldBlock`] with a
//!   [`WaitKey`] the caller parks on.
//! - [`ChanTable`]: open objects (Plan 9's Chan) with reference counts and
//!   a [`Clunk`] on the last release.
//! - The servants that need no hardware, in [`servants`]: `#R` root
//!   skeleton, `#c` null/zero/sysname/time, `#e` environment, `#|` pipes,
//!   `#s` server registry, `#p` processes.
//! - [`dev`]: Plan 9's devgen, devwalk, devstat, devopen and devdirread,
//!   so a flat servant writes only its table ([`Dirtab`], [`Devgen`]).
//! - [`Devices`] and [`Host`]: the servant table and the bridge that lets a
//!   `kasane_namespace::Namespace` walk, bind and read unions over chans.
//!
//! Errors are Plan 9 strings, `ninep::Error` (the one table), re-exported
//! here; `docs/core.md` lists them.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod chan;
pub mod dev;
mod devices;
pub mod dir;
mod servant;
pub mod servants;

pub use chan::{Chan, ChanHandle, ChanTable, Clunk, DropClunk};
pub use dev::{Devgen, Dirtab};
pub use devices::{Devices, Host, ServantTable};
pub use kasane_namespace::Error;
pub use servant::{Caller, FdLinks, File, Io, LinkId, NoFds, Opened, Servant, WaitKey};
