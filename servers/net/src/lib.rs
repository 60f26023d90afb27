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

/// A MAC address as the boot lines write it: `52:54:00:12:34:56`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

pub use fs::{
    ConvFile, IfcFile, NetFs, Node, MAX_CONTROL, MAX_CONVERSATIONS, NUMBERS_PER_START, RESET,
    STARTS, UDP_HEADER,
};
