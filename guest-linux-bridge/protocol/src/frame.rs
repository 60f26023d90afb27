//! The frame header and trailer, and encoding a whole frame.
//!
//! A frame is a 12-byte header, the payload, and a CRC-32 trailer. The
//! header carries its own 16-bit check so that a receiver resynchronising
//! after garbage rejects a false start at once, instead of waiting for up
//! to `MAX_PAYLOAD_LEN` bytes of a length field that was never sent.

use crate::checksum::crc32;
use crate::message::{EncodeError, Message};
use crate::{HEADER_LEN, MAGIC, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, TRAILER_LEN, VERSION};

/// One decoded frame: the request id and the message.
///
/// Request ids are chosen by the side that sends a request; every reply
/// carries the id of the request it answers. Unsolicited messages (`Hello`)
/// use id 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub request_id: u32,
    pub message: Message<'a>,
}

/// The fixed fields of a header, before any checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u8,
    pub message_type: u8,
    pub request_id: u32,
    pub payload_len: u16,
}

impl Header {
    /// Parses the first `HEADER_LEN` bytes of `bytes`, or `None` if the magic
    /// or the header check does not match (the bytes are not a frame start).
    pub(crate) fn parse(bytes: &[u8]) -> Option<Header> {
        let header: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        if header[0..2] != MAGIC {
            return None;
        }
        let check = u16::from_le_bytes([header[10], header[11]]);
        if check != header_check(&header[..10]) {
            return None;
        }
        Some(Header {
            version: header[2],
            message_type: header[3],
            request_id: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
            payload_len: u16::from_le_bytes([header[8], header[9]]),
        })
    }
}

/// The low 16 bits of the CRC-32 over the first ten header bytes.
fn header_check(first_ten: &[u8]) -> u16 {
    (crc32(first_ten) & 0xFFFF) as u16
}

/// The CRC-32 that must follow `header_and_payload`.
pub(crate) fn trailer_check(header_and_payload: &[u8]) -> u32 {
    crc32(header_and_payload)
}

impl Frame<'_> {
    /// Encodes the frame into `out` and returns the number of bytes written.
    /// A buffer of `MAX_FRAME_LEN` bytes always suffices.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        if out.len() < HEADER_LEN + TRAILER_LEN {
            return Err(EncodeError::BufferTooSmall);
        }
        let payload_room = (out.len() - HEADER_LEN - TRAILER_LEN).min(MAX_PAYLOAD_LEN);
        let payload_len = self
            .message
            .encode_payload(&mut out[HEADER_LEN..HEADER_LEN + payload_room])?;
        let wire_len = u16::try_from(payload_len).map_err(|_| EncodeError::PayloadTooLong)?;
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = VERSION;
        out[3] = self.message.message_type().as_byte();
        out[4..8].copy_from_slice(&self.request_id.to_le_bytes());
        out[8..10].copy_from_slice(&wire_len.to_le_bytes());
        let check = header_check(&out[..10]);
        out[10..12].copy_from_slice(&check.to_le_bytes());
        let body_end = HEADER_LEN + payload_len;
        let trailer = trailer_check(&out[..body_end]);
        out[body_end..body_end + TRAILER_LEN].copy_from_slice(&trailer.to_le_bytes());
        Ok(body_end + TRAILER_LEN)
    }

    /// The frame's length on the wire: what [`encode`](Self::encode)
    /// writes, or its error. A buffer of exactly this length suffices,
    /// so a caller need not clear a whole `MAX_FRAME_LEN` one.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(HEADER_LEN + self.message.payload_len()? + TRAILER_LEN)
    }

    /// Encodes the frame into a vector of exactly its length.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, EncodeError> {
        let mut bytes = alloc::vec![0u8; self.encoded_len()?];
        self.encode(&mut bytes)?;
        Ok(bytes)
    }

    /// Encodes the frame into a fresh `MAX_FRAME_LEN` buffer; the frame is
    /// `buffer[..length]`.
    pub fn to_buffer(&self) -> Result<([u8; MAX_FRAME_LEN], usize), EncodeError> {
        let mut buffer = [0u8; MAX_FRAME_LEN];
        let length = self.encode(&mut buffer)?;
        Ok((buffer, length))
    }
}
