//! Typed errors for decoding and encoding 9P2000 frames.
//!
//! Each variant names the field or rule that failed, so a log line says what
//! the peer sent wrong without a hex dump.

use core::fmt;

/// Why a frame could not be decoded. No variant is ever a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than the 7 header bytes `size[4] type[1] tag[2]`.
    ShortHeader { have: usize },
    /// The size field is below the 7-byte minimum of any message.
    SizeTooSmall { size: u32 },
    /// The size field exceeds the maximum the caller allows (the msize).
    TooLarge { size: u32, max: u32 },
    /// The size field disagrees with the bytes handed over as one frame.
    SizeMismatch { size: u32, have: usize },
    /// The type byte is not a 9P2000 message type.
    UnknownType { kind: u8 },
    /// Type 106, Terror, which intro(5) declares illegal.
    Terror,
    /// The frame ended inside a field.
    Truncated { field: &'static str },
    /// Bytes left over after the last field of the message.
    TrailingBytes { message: &'static str, extra: usize },
    /// A string is not UTF-8.
    InvalidUtf8 { field: &'static str },
    /// A string holds a NUL byte, which intro(5) forbids.
    NulInString { field: &'static str },
    /// A Twalk or Rwalk count above MAXWELEM (16).
    TooManyWalkElements { count: u16 },
    /// A stat's own size disagrees with the bytes around it.
    StatSizeMismatch { outer: u16, inner: u16 },
    /// A stat is shorter than its fixed fields.
    StatTooShort { size: u16 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortHeader { have } => {
                write!(f, "frame of {have} bytes is shorter than the 7-byte header")
            }
            Self::SizeTooSmall { size } => {
                write!(f, "size field {size} is below the 7-byte minimum")
            }
            Self::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the msize of {max}")
            }
            Self::SizeMismatch { size, have } => {
                write!(f, "size field says {size} bytes but the frame has {have}")
            }
            Self::UnknownType { kind } => write!(f, "unknown message type {kind}"),
            Self::Terror => write!(f, "message type 106 (Terror) is illegal"),
            Self::Truncated { field } => write!(f, "frame ends inside field {field}"),
            Self::TrailingBytes { message, extra } => {
                write!(f, "{extra} unexpected bytes after the end of {message}")
            }
            Self::InvalidUtf8 { field } => write!(f, "string {field} is not UTF-8"),
            Self::NulInString { field } => write!(f, "string {field} contains a NUL byte"),
            Self::TooManyWalkElements { count } => {
                write!(f, "walk of {count} elements exceeds MAXWELEM (16)")
            }
            Self::StatSizeMismatch { outer, inner } => write!(
                f,
                "stat count {outer} disagrees with the stat's own size {inner} (+2)"
            ),
            Self::StatTooShort { size } => {
                write!(f, "stat of {size} bytes is shorter than its fixed fields")
            }
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A string longer than the 65535 bytes its `n[2]` prefix can count.
    StringTooLong { field: &'static str, len: usize },
    /// A string holds a NUL byte (intro(5)).
    NulInString { field: &'static str },
    /// More than MAXWELEM names or qids in a walk.
    TooManyWalkElements { count: usize },
    /// Data longer than a `count[4]` can say.
    DataTooLong { len: usize },
    /// A stat longer than its `size[2]` can say.
    StatTooLong { len: usize },
    /// The whole frame is longer than its `size[4]` can say.
    FrameTooLong { len: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StringTooLong { field, len } => {
                write!(f, "string {field} of {len} bytes exceeds 65535")
            }
            Self::NulInString { field } => write!(f, "string {field} contains a NUL byte"),
            Self::TooManyWalkElements { count } => {
                write!(f, "walk of {count} elements exceeds MAXWELEM (16)")
            }
            Self::DataTooLong { len } => write!(f, "data of {len} bytes is too long"),
            Self::StatTooLong { len } => write!(f, "stat of {len} bytes exceeds 65535"),
            Self::FrameTooLong { len } => write!(f, "frame of {len} bytes is too long"),
        }
    }
}

impl core::error::Error for DecodeError {}
impl core::error::Error for EncodeError {}
