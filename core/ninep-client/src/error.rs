//! What can go wrong on the client side of a 9P2000 link.
//!
//! [`Error`] ends one operation; its `Display` is the text a system call
//! returns, and for [`Error::Server`] that is the server's Rerror string
//! unchanged (error(5)). [`ProtocolError`] says what a server sent wrong.

use alloc::string::String;
use core::fmt;

use ninep::{DecodeError, EncodeError, MessageType};

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The server answered Rerror; the string is exactly its `ename`.
    Server(String),
    /// A walk stopped before its last name (walk(5): an Rwalk with fewer
    /// qids than names). `name` is the first name that was not found.
    NotFound { name: String },
    /// The request was flushed and the server confirmed it never ran
    /// (flush(5): Rflush arrived before any reply).
    Interrupted,
    /// The server broke the protocol while answering this operation.
    Protocol(ProtocolError),
    /// The request could not be encoded (a name too long, a NUL byte).
    Encode(EncodeError),
    /// The request would not fit in the negotiated msize.
    TooLarge { size: usize, msize: u32 },
    /// The server does not speak 9P2000 (version(5): it said "unknown").
    VersionRejected { version: String },
    /// No Tversion has been answered yet (version(5): it must come first).
    NotNegotiated,
    /// A Tversion was asked for while requests are outstanding.
    Busy,
    /// The fid is not one this client holds, or it is being clunked.
    UnknownFid(u32),
    /// Every tag is in use.
    TagsExhausted,
    /// Every fid is in use.
    FidsExhausted,
    /// No operation with this id is outstanding.
    UnknownOp,
    /// Version, clunk and remove are not flushed: their outcome decides
    /// whether a fid still exists.
    NotInterruptible,
    /// The link went away before the reply.
    HungUp,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server(ename) => f.write_str(ename),
            // Plan 9's kernel says this for a walk that stops part way.
            Self::NotFound { .. } => f.write_str("file does not exist"),
            Self::Interrupted => f.write_str("interrupted"),
            Self::Protocol(e) => write!(f, "9P protocol botch: {e}"),
            Self::Encode(e) => write!(f, "9P request cannot be encoded: {e}"),
            Self::TooLarge { size, msize } => {
                write!(f, "9P request of {size} bytes exceeds msize {msize}")
            }
            Self::VersionRejected { version } => {
                write!(f, "server does not speak 9P2000 (it said {version:?})")
            }
            Self::NotNegotiated => f.write_str("9P version not negotiated"),
            Self::Busy => f.write_str("9P requests outstanding"),
            Self::UnknownFid(fid) => write!(f, "fid {fid} unknown or being clunked"),
            Self::TagsExhausted => f.write_str("no free 9P tags"),
            Self::FidsExhausted => f.write_str("no free fids"),
            Self::UnknownOp => f.write_str("no such 9P operation outstanding"),
            Self::NotInterruptible => f.write_str("operation cannot be interrupted"),
            Self::HungUp => f.write_str("i/o on hungup channel"),
        }
    }
}

impl core::error::Error for Error {}

/// What a server sent that 9P2000 does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame does not decode.
    Decode(DecodeError),
    /// A reply whose tag no outstanding request holds.
    UnknownTag(u16),
    /// A T-message where a reply belongs.
    NotAReply(MessageType),
    /// A reply of another type than the request's (or Rerror).
    UnexpectedReply {
        expected: MessageType,
        got: MessageType,
    },
    /// More bytes or qids than were asked for.
    TooMuch {
        what: &'static str,
        asked: usize,
        got: usize,
    },
    /// An Rversion msize above the one proposed or too small to carry data.
    BadMsize { proposed: u32, got: u32 },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "malformed reply: {e}"),
            Self::UnknownTag(tag) => write!(f, "reply with unknown tag {tag}"),
            Self::NotAReply(kind) => write!(f, "{} sent as a reply", kind.name()),
            Self::UnexpectedReply { expected, got } => {
                write!(f, "{} answered with {}", expected.name(), got.name())
            }
            Self::TooMuch { what, asked, got } => {
                write!(f, "asked for {asked} {what}, got {got}")
            }
            Self::BadMsize { proposed, got } => {
                write!(
                    f,
                    "Rversion msize {got} does not fit the proposed {proposed}"
                )
            }
        }
    }
}

impl core::error::Error for ProtocolError {}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}
