//! The messages a frame carries and their payload encodings.
//!
//! Every payload is a fixed sequence of little-endian fields. A string is a
//! `u16` byte count followed by that many bytes of UTF-8. A payload must be
//! consumed exactly: trailing bytes are an error, so two encodings of one
//! message never both decode.

use crate::MAX_PAYLOAD_LEN;

/// The type byte of a frame (offset 3 of the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Protocol version and kernel release. With request id 0 an
    /// announcement (agent → peer when a peer connects); with any other id
    /// a request for the receiver's own Hello, answered with that id.
    Hello = 0x01,
    /// Either way: asks for a `Pong` echoing the nonce.
    Ping = 0x02,
    /// The answer to `Ping`.
    Pong = 0x03,
    /// Peer → agent: asks for the kernel release and machine.
    UnameRequest = 0x04,
    /// The answer to `UnameRequest`.
    UnameReply = 0x05,
    /// Peer → agent: a liveness probe with a sequence number.
    Heartbeat = 0x06,
    /// The answer to `Heartbeat`: the sequence and the guest's uptime.
    HeartbeatAck = 0x07,
    /// Peer → agent: panic the guest kernel on purpose (fault-handling tests).
    CrashRequest = 0x08,
    /// Agent → peer, sent just before the agent triggers the panic.
    CrashAccepted = 0x09,
    /// The answer to a request that could not be served.
    Error = 0x7F,
}

impl MessageType {
    /// Every type, in wire order; handy for tests and exhaustive tables.
    pub const ALL: [MessageType; 10] = [
        MessageType::Hello,
        MessageType::Ping,
        MessageType::Pong,
        MessageType::UnameRequest,
        MessageType::UnameReply,
        MessageType::Heartbeat,
        MessageType::HeartbeatAck,
        MessageType::CrashRequest,
        MessageType::CrashAccepted,
        MessageType::Error,
    ];

    /// The type for a wire byte, or `None` for a byte this version does not
    /// define.
    pub fn from_byte(byte: u8) -> Option<MessageType> {
        MessageType::ALL
            .iter()
            .copied()
            .find(|message_type| message_type.as_byte() == byte)
    }

    /// The wire byte.
    pub fn as_byte(self) -> u8 {
        self as u8
    }
}

/// Why an `Error` reply was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Bytes that did not form a valid frame (bad check, version, length).
    BadFrame,
    /// A well-formed frame with a message type the receiver does not know.
    UnknownMessageType,
    /// A known message type whose payload did not decode.
    BadPayload,
    /// A valid message the receiver does not serve (e.g. a reply type).
    Unsupported,
    /// The receiver failed while serving a valid request.
    Internal,
    /// A code this version does not define, kept so that it can be shown.
    Other(u16),
}

impl ErrorCode {
    /// The wire value.
    pub fn as_u16(self) -> u16 {
        match self {
            ErrorCode::BadFrame => 1,
            ErrorCode::UnknownMessageType => 2,
            ErrorCode::BadPayload => 3,
            ErrorCode::Unsupported => 4,
            ErrorCode::Internal => 5,
            ErrorCode::Other(value) => value,
        }
    }

    /// The code for a wire value; unknown values become `Other`.
    pub fn from_u16(value: u16) -> ErrorCode {
        match value {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::UnknownMessageType,
            3 => ErrorCode::BadPayload,
            4 => ErrorCode::Unsupported,
            5 => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }
}

/// One message. Strings borrow from the frame they were decoded from, so
/// decoding never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Payload: version `u8`, kernel release string.
    Hello {
        protocol_version: u8,
        kernel_release: &'a str,
    },
    /// Payload: nonce `u64`.
    Ping { nonce: u64 },
    /// Payload: nonce `u64`, the one from the `Ping`.
    Pong { nonce: u64 },
    /// Payload: empty.
    UnameRequest,
    /// Payload: release string (`uname -r`), machine string (`uname -m`).
    UnameReply { release: &'a str, machine: &'a str },
    /// Payload: sequence `u64`.
    Heartbeat { sequence: u64 },
    /// Payload: sequence `u64`, uptime in milliseconds `u64`.
    HeartbeatAck {
        sequence: u64,
        uptime_milliseconds: u64,
    },
    /// Payload: empty.
    CrashRequest,
    /// Payload: empty.
    CrashAccepted,
    /// Payload: code `u16`, detail string for a person to read.
    Error { code: ErrorCode, detail: &'a str },
}

/// Why a payload did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// The payload ended inside a field.
    Truncated,
    /// Bytes were left over after the last field.
    TrailingBytes,
    /// A string field was not UTF-8.
    InvalidUtf8,
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload would exceed `MAX_PAYLOAD_LEN` (e.g. a very long string).
    PayloadTooLong,
    /// The output buffer cannot hold the frame; `MAX_FRAME_LEN` always can.
    BufferTooSmall,
}

impl<'a> Message<'a> {
    /// The type byte this message travels under.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello { .. } => MessageType::Hello,
            Message::Ping { .. } => MessageType::Ping,
            Message::Pong { .. } => MessageType::Pong,
            Message::UnameRequest => MessageType::UnameRequest,
            Message::UnameReply { .. } => MessageType::UnameReply,
            Message::Heartbeat { .. } => MessageType::Heartbeat,
            Message::HeartbeatAck { .. } => MessageType::HeartbeatAck,
            Message::CrashRequest => MessageType::CrashRequest,
            Message::CrashAccepted => MessageType::CrashAccepted,
            Message::Error { .. } => MessageType::Error,
        }
    }

    /// Writes the payload into `out` and returns its length.
    pub fn encode_payload(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let limit = out.len().min(MAX_PAYLOAD_LEN);
        let mut writer = PayloadWriter {
            out: &mut out[..limit],
            position: 0,
            capped: limit == MAX_PAYLOAD_LEN,
        };
        match *self {
            Message::Hello {
                protocol_version,
                kernel_release,
            } => {
                writer.put(&[protocol_version])?;
                writer.put_str(kernel_release)?;
            }
            Message::Ping { nonce } | Message::Pong { nonce } => writer.put_u64(nonce)?,
            Message::UnameRequest | Message::CrashRequest | Message::CrashAccepted => {}
            Message::UnameReply { release, machine } => {
                writer.put_str(release)?;
                writer.put_str(machine)?;
            }
            Message::Heartbeat { sequence } => writer.put_u64(sequence)?,
            Message::HeartbeatAck {
                sequence,
                uptime_milliseconds,
            } => {
                writer.put_u64(sequence)?;
                writer.put_u64(uptime_milliseconds)?;
            }
            Message::Error { code, detail } => {
                writer.put(&code.as_u16().to_le_bytes())?;
                writer.put_str(detail)?;
            }
        }
        Ok(writer.position)
    }

    /// Decodes the payload of a frame of type `message_type`.
    pub fn decode_payload(
        message_type: MessageType,
        payload: &'a [u8],
    ) -> Result<Message<'a>, PayloadError> {
        let mut reader = PayloadReader {
            payload,
            position: 0,
        };
        let message = match message_type {
            MessageType::Hello => Message::Hello {
                protocol_version: reader.take_u8()?,
                kernel_release: reader.take_str()?,
            },
            MessageType::Ping => Message::Ping {
                nonce: reader.take_u64()?,
            },
            MessageType::Pong => Message::Pong {
                nonce: reader.take_u64()?,
            },
            MessageType::UnameRequest => Message::UnameRequest,
            MessageType::UnameReply => Message::UnameReply {
                release: reader.take_str()?,
                machine: reader.take_str()?,
            },
            MessageType::Heartbeat => Message::Heartbeat {
                sequence: reader.take_u64()?,
            },
            MessageType::HeartbeatAck => Message::HeartbeatAck {
                sequence: reader.take_u64()?,
                uptime_milliseconds: reader.take_u64()?,
            },
            MessageType::CrashRequest => Message::CrashRequest,
            MessageType::CrashAccepted => Message::CrashAccepted,
            MessageType::Error => Message::Error {
                code: ErrorCode::from_u16(reader.take_u16()?),
                detail: reader.take_str()?,
            },
        };
        if reader.position != payload.len() {
            return Err(PayloadError::TrailingBytes);
        }
        Ok(message)
    }
}

struct PayloadWriter<'o> {
    out: &'o mut [u8],
    position: usize,
    /// Whether running out of room means the protocol limit (rather than the
    /// caller's buffer) was hit.
    capped: bool,
}

impl PayloadWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self
            .position
            .checked_add(bytes.len())
            .filter(|&end| end <= self.out.len());
        let Some(end) = end else {
            return Err(if self.capped {
                EncodeError::PayloadTooLong
            } else {
                EncodeError::BufferTooSmall
            });
        };
        self.out[self.position..end].copy_from_slice(bytes);
        self.position = end;
        Ok(())
    }

    fn put_u64(&mut self, value: u64) -> Result<(), EncodeError> {
        self.put(&value.to_le_bytes())
    }

    fn put_str(&mut self, text: &str) -> Result<(), EncodeError> {
        let length = u16::try_from(text.len()).map_err(|_| EncodeError::PayloadTooLong)?;
        if usize::from(length) > MAX_PAYLOAD_LEN {
            return Err(EncodeError::PayloadTooLong);
        }
        self.put(&length.to_le_bytes())?;
        self.put(text.as_bytes())
    }
}

struct PayloadReader<'a> {
    payload: &'a [u8],
    position: usize,
}

impl<'a> PayloadReader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], PayloadError> {
        let bytes = self
            .payload
            .get(self.position..)
            .and_then(|rest| rest.get(..count))
            .ok_or(PayloadError::Truncated)?;
        self.position += count;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PayloadError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn take_u8(&mut self) -> Result<u8, PayloadError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn take_u16(&mut self) -> Result<u16, PayloadError> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }

    fn take_u64(&mut self) -> Result<u64, PayloadError> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    fn take_str(&mut self) -> Result<&'a str, PayloadError> {
        let length = usize::from(self.take_u16()?);
        let bytes = self.take(length)?;
        core::str::from_utf8(bytes).map_err(|_| PayloadError::InvalidUtf8)
    }
}
