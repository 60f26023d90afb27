//! The incremental decoder: feed it bytes as they arrive, take frames out.
//!
//! Invariants:
//! - Memory is one fixed buffer of `MAX_FRAME_LEN` bytes; nothing grows.
//! - Every byte is either part of a returned frame or counted as skipped;
//!   after a rejected frame start the decoder moves on by one byte and scans
//!   again, so a good frame hidden behind a false start is still found.
//! - No input makes it panic; each rejection is a `DecodeError`.

use crate::frame::{trailer_check, Frame, Header};
use crate::message::{Message, MessageType, PayloadError};
use crate::{HEADER_LEN, MAGIC, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, TRAILER_LEN, VERSION};

/// Why bytes from the stream were rejected. Every variant means the decoder
/// has already skipped the offending bytes and is ready for more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Bytes that could not begin a frame were skipped.
    Garbage { skipped: usize },
    /// A frame start named a protocol version this decoder does not speak.
    UnsupportedVersion { version: u8 },
    /// A frame start announced a payload longer than `MAX_PAYLOAD_LEN`.
    PayloadTooLong { length: u16 },
    /// The trailer CRC did not match: the frame was damaged in transit.
    ChecksumMismatch { request_id: u32 },
    /// A sound frame of a type this version does not define.
    UnknownMessageType { message_type: u8, request_id: u32 },
    /// A sound frame of a known type whose payload did not decode.
    BadPayload {
        message_type: MessageType,
        request_id: u32,
        reason: PayloadError,
    },
}

impl DecodeError {
    /// The request id to answer with an `Error`, when the header that carried
    /// it passed its check (a damaged frame's id is still the sender's best
    /// guess at what failed; 0 means none is known).
    pub fn request_id(&self) -> u32 {
        match *self {
            DecodeError::ChecksumMismatch { request_id }
            | DecodeError::UnknownMessageType { request_id, .. }
            | DecodeError::BadPayload { request_id, .. } => request_id,
            _ => 0,
        }
    }
}

/// Skipped bytes are reported at least this often even within one long
/// input, so that a flood of garbage is seen while it lasts.
const GARBAGE_REPORT_THRESHOLD: usize = MAX_FRAME_LEN;

/// The incremental decoder. See the module documentation.
pub struct Decoder {
    buffer: [u8; MAX_FRAME_LEN],
    /// Unprocessed bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
    /// Bytes skipped since the last `Garbage` report.
    skipped: usize,
}

impl core::fmt::Debug for Decoder {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("Decoder")
            .field("buffered", &self.buffered_len())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// What one scan of the buffer found.
enum Step {
    /// A complete, sound frame at `buffer[offset..offset + length]`.
    Frame {
        offset: usize,
        length: usize,
    },
    Error(DecodeError),
    NeedMore,
}

impl Decoder {
    pub const fn new() -> Decoder {
        Decoder {
            buffer: [0; MAX_FRAME_LEN],
            start: 0,
            end: 0,
            skipped: 0,
        }
    }

    /// Forgets everything buffered, e.g. when the link reconnects.
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.skipped = 0;
    }

    /// Bytes held that do not yet form a frame.
    pub fn buffered_len(&self) -> usize {
        self.end - self.start
    }

    /// Takes bytes from `input` and returns how many it took, with the next
    /// frame or error if one is ready.
    ///
    /// `None` means all of `input` was taken and more is needed. After
    /// `Some`, call again with the rest of the input (possibly empty): the
    /// buffer may hold further frames.
    pub fn feed<'d>(&'d mut self, input: &[u8]) -> (usize, Option<Result<Frame<'d>, DecodeError>>) {
        let mut taken = 0;
        loop {
            taken += self.fill(&input[taken..]);
            match self.step() {
                Step::Frame { offset, length } => {
                    // `step` only reports spans that lie inside the buffer.
                    let frame = decode_sound_frame(&self.buffer[offset..offset + length]);
                    return (taken, Some(frame));
                }
                Step::Error(error) => return (taken, Some(Err(error))),
                Step::NeedMore if taken == input.len() => {
                    // Report skipped bytes now rather than when (or if) the
                    // next frame arrives: a damaged frame on a quiet link
                    // must still be answered.
                    let report = self.take_garbage_report().map(Err);
                    return (taken, report);
                }
                Step::NeedMore => {}
            }
        }
    }

    /// Copies as much of `input` as fits, compacting first if needed.
    fn fill(&mut self, input: &[u8]) -> usize {
        if self.end == MAX_FRAME_LEN && self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let count = input.len().min(MAX_FRAME_LEN - self.end);
        self.buffer[self.end..self.end + count].copy_from_slice(&input[..count]);
        self.end += count;
        count
    }

    fn skip(&mut self, count: usize) {
        self.start += count;
        self.skipped += count;
    }

    fn take_garbage_report(&mut self) -> Option<DecodeError> {
        let skipped = core::mem::take(&mut self.skipped);
        (skipped > 0).then_some(DecodeError::Garbage { skipped })
    }

    fn step(&mut self) -> Step {
        loop {
            let window = &self.buffer[self.start..self.end];
            match find_frame_start(window) {
                Some(offset) => self.skip(offset),
                None => {
                    let length = window.len();
                    self.skip(length);
                }
            }
            if self.end - self.start < HEADER_LEN {
                if self.skipped >= GARBAGE_REPORT_THRESHOLD {
                    if let Some(report) = self.take_garbage_report() {
                        return Step::Error(report);
                    }
                }
                return Step::NeedMore;
            }
            let Some(header) = Header::parse(&self.buffer[self.start..self.end]) else {
                // A magic without a matching header check: not a frame start.
                self.skip(1);
                continue;
            };
            // A believable frame start: first account for what came before.
            if let Some(report) = self.take_garbage_report() {
                return Step::Error(report);
            }
            if header.version != VERSION {
                self.skip(1);
                self.skipped = 0;
                return Step::Error(DecodeError::UnsupportedVersion {
                    version: header.version,
                });
            }
            let payload_len = usize::from(header.payload_len);
            if payload_len > MAX_PAYLOAD_LEN {
                self.skip(1);
                self.skipped = 0;
                return Step::Error(DecodeError::PayloadTooLong {
                    length: header.payload_len,
                });
            }
            let frame_len = HEADER_LEN + payload_len + TRAILER_LEN;
            if self.end - self.start < frame_len {
                return Step::NeedMore;
            }
            let frame = &self.buffer[self.start..self.start + frame_len];
            let body_len = HEADER_LEN + payload_len;
            let mut trailer = [0u8; TRAILER_LEN];
            trailer.copy_from_slice(&frame[body_len..]);
            if u32::from_le_bytes(trailer) != trailer_check(&frame[..body_len]) {
                self.skip(1);
                self.skipped = 0;
                return Step::Error(DecodeError::ChecksumMismatch {
                    request_id: header.request_id,
                });
            }
            let offset = self.start;
            self.start += frame_len;
            return Step::Frame {
                offset,
                length: frame_len,
            };
        }
    }
}

/// The offset of the first byte that could begin a frame: a full magic, or
/// the first magic byte at the very end of `window`.
fn find_frame_start(window: &[u8]) -> Option<usize> {
    window.iter().enumerate().position(|(index, &byte)| {
        byte == MAGIC[0] && window.get(index + 1).is_none_or(|&next| next == MAGIC[1])
    })
}

/// Decodes a frame whose header and trailer have been checked.
fn decode_sound_frame(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let request_id = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let type_byte = frame[3];
    let payload = &frame[HEADER_LEN..frame.len() - TRAILER_LEN];
    let message_type =
        MessageType::from_byte(type_byte).ok_or(DecodeError::UnknownMessageType {
            message_type: type_byte,
            request_id,
        })?;
    let message = Message::decode_payload(message_type, payload).map_err(|reason| {
        DecodeError::BadPayload {
            message_type,
            request_id,
            reason,
        }
    })?;
    Ok(Frame {
        request_id,
        message,
    })
}
