//! Plan 9's `/net` (ip(3)) served over 9P from a smoltcp TCP/IP stack.
//!
//! The server is a [`FileServer`](ninep_server::FileServer) generic over a
//! smoltcp [`Device`](smoltcp::phy::Device), so the same code runs as a
//! task or in the network driver VM over whichever NIC driver the runtime
//! gives it, and is tested here over a simulated Ethernet wire between
//! two instances. `docs/net.md` describes the tree, the dial strings and
//! where the server runs.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod dial;
mod fs;

pub use smoltcp;

pub use fs::{
    ConvFile, IfcFile, NetFs, Node, MAX_CONTROL, MAX_CONVERSATIONS, NUMBERS_PER_START, RESET,
    STARTS, UDP_HEADER,
};
