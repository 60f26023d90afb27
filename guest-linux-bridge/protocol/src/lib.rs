//! The Linux bridge protocol: framed messages over a byte stream.
//!
//! The Linux guest's agent and its peer (cell 0, or a host tool in tests)
//! talk over a virtio console port, which is a plain byte stream. This crate
//! cuts that stream into frames and frames into messages, and back.
//!
//! Frame layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `"KB"` (0x4B 0x42) |
//! | 2 | 1 | protocol version, `VERSION` |
//! | 3 | 1 | message type (`MessageType`) |
//! | 4 | 4 | request id |
//! | 8 | 2 | payload length, at most `MAX_PAYLOAD_LEN` |
//! | 10 | 2 | header check: low 16 bits of CRC-32 over bytes 0..10 |
//! | 12 | n | payload (`Message`) |
//! | 12+n | 4 | CRC-32 over bytes 0..12+n |
//!
//! The crate has no unsafe code, allocates nothing (but `Frame::to_vec`,
//! with the `alloc` feature), and treats every input byte as hostile:
//! `Decoder` never panics and holds at most one frame.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod checksum;
mod decoder;
mod frame;
mod message;

pub use checksum::crc32;
pub use decoder::{DecodeError, Decoder};
pub use frame::Frame;
pub use message::{string_list, EncodeError, ErrorCode, Message, MessageType, PayloadError};

/// The two bytes every frame begins with.
pub const MAGIC: [u8; 2] = *b"KB";

/// The protocol version this crate speaks; `Hello` announces it.
pub const VERSION: u8 = 1;

/// Header bytes before the payload.
pub const HEADER_LEN: usize = 12;

/// CRC-32 bytes after the payload.
pub const TRAILER_LEN: usize = 4;

/// The largest payload a frame may carry.
pub const MAX_PAYLOAD_LEN: usize = 4096;

/// The request id of the export channel (Linux mounts Kasane): its
/// `Ninep` frames carry a 9P2000 stream with the roles reversed, the
/// agent sending T-messages and the peer answering R-messages
/// (docs/linux-bridge.md, "The export channel"). `"EX"` and 1.
pub const EXPORT_CHANNEL: u32 = 0x4558_0001;

/// The largest frame, and so the most a `Decoder` ever buffers.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN + TRAILER_LEN;
