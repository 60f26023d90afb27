//! Core's end of hvm's virtio links, driven from user space.
//!
//! hvm gives cell 0 one modern virtio-pci console per link (link i at PCI
//! 00:(1+i).0, its BAR at 0xE000_0000 + i * 0x10000; docs/hypercalls.md,
//! "Links"). Core, the root task, drives them itself with the mechanisms
//! the microkernel lends a user-level driver: the PCI configuration ports,
//! a device window mapped uncached, DMA from core's own memory (whose
//! physical base it knows) and link interrupts as IPC.
//!
//! - [`pci`]: finding the link functions on bus 0 (any
//!   `ConfigurationAccess`).
//! - [`console`]: one link's console through `virtio-drivers` (its PCI
//!   transport and split virtqueues) over a [`Hal`](virtio_drivers::Hal)
//!   the caller supplies.
//! - [`stream`]: 9P over a link: a byte stream cut into messages by their
//!   size[4], and one synchronous exchange over any `StreamLink`
//!   (host-tested).
//! - [`bridged`]: 9P to the Linux agent, one channel in bridge `Ninep`
//!   frames, waiting for the agent's Hello first (host-tested).
//! - [`bridge`]: the Linux link's session with the bridge agent (Hello,
//!   Ping, Uname, the crash and the restarted agent), as a state machine
//!   over a [`bridge::Port`] (host-tested against a fake agent).
//!
//! Invariants: everything that arrives on a link is hostile (a frame is
//! decoded and checked before use, a 9P size is bounded by the message
//! size); the hardware is reached only through the caller's `Hal` and
//! configuration access.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod bridge;
pub mod bridged;
pub mod console;
pub mod pci;
pub mod stream;
