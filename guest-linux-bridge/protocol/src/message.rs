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
    /// Agent → peer: a request was served and has nothing to return
    /// (`ProcessExited`, `NinepHangup`, `Kill`).
    Done = 0x0A,
    /// Either way: bytes of the 9P2000 stream of the channel named by the
    /// request id. Peer → agent carries T-messages, agent → peer R-messages.
    Ninep = 0x10,
    /// Peer → agent: the 9P channel named by the request id is closed;
    /// every fid on it is clunked. Answered with `Done`.
    NinepHangup = 0x11,
    /// Peer → agent: run one Linux system call for a Kasane process.
    Syscall = 0x20,
    /// The answer to `Syscall`: the return value and the output buffers.
    SyscallResult = 0x21,
    /// Peer → agent: a Kasane process exited; its proxy ends. `Done`.
    ProcessExited = 0x22,
    /// Peer → agent: start a program; the request id names the run.
    Exec = 0x30,
    /// The answer to `Exec`: the program's Linux process id.
    ExecStarted = 0x31,
    /// Peer → agent: bytes for the run's standard input; empty closes it.
    Stdin = 0x32,
    /// Agent → peer: bytes the run wrote to standard output; empty: ended.
    Stdout = 0x33,
    /// Agent → peer: bytes the run wrote to standard error; empty: ended.
    Stderr = 0x34,
    /// Agent → peer: the run ended, after its last output.
    Exited = 0x35,
    /// Peer → agent: send a signal to the run. Answered with `Done`.
    Kill = 0x36,
    /// The answer to a request that could not be served.
    Error = 0x7F,
}

impl MessageType {
    /// Every type, in wire order; handy for tests and exhaustive tables.
    pub const ALL: [MessageType; 23] = [
        MessageType::Hello,
        MessageType::Ping,
        MessageType::Pong,
        MessageType::UnameRequest,
        MessageType::UnameReply,
        MessageType::Heartbeat,
        MessageType::HeartbeatAck,
        MessageType::CrashRequest,
        MessageType::CrashAccepted,
        MessageType::Done,
        MessageType::Ninep,
        MessageType::NinepHangup,
        MessageType::Syscall,
        MessageType::SyscallResult,
        MessageType::ProcessExited,
        MessageType::Exec,
        MessageType::ExecStarted,
        MessageType::Stdin,
        MessageType::Stdout,
        MessageType::Stderr,
        MessageType::Exited,
        MessageType::Kill,
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
    /// Payload: empty.
    Done,
    /// Payload: bytes (`u16` count, then the bytes): any piece of the 9P
    /// stream; 9P messages may span frames and frames may hold several.
    Ninep { data: &'a [u8] },
    /// Payload: empty.
    NinepHangup,
    /// Payload: process `u64`, number `u32`, six argument `u64`s, input
    /// bytes. The input is the pointer arguments' contents in the order of
    /// the agent's call table, each a `u32` length and the bytes.
    Syscall {
        process: u64,
        number: u32,
        arguments: [u64; 6],
        input: &'a [u8],
    },
    /// Payload: result `i64` (the kernel's: negative is `-errno`), output
    /// bytes laid out as `Syscall`'s input, for the output arguments.
    SyscallResult { result: i64, output: &'a [u8] },
    /// Payload: process `u64`.
    ProcessExited { process: u64 },
    /// Payload: path string, arguments and environment (bytes, each a list
    /// of NUL-terminated strings; the arguments start with `argv[0]`),
    /// working directory string (empty: `/`).
    Exec {
        path: &'a str,
        arguments: &'a [u8],
        environment: &'a [u8],
        directory: &'a str,
    },
    /// Payload: Linux process id `u32`.
    ExecStarted { pid: u32 },
    /// Payload: bytes.
    Stdin { data: &'a [u8] },
    /// Payload: bytes.
    Stdout { data: &'a [u8] },
    /// Payload: bytes.
    Stderr { data: &'a [u8] },
    /// Payload: exit code `i32` (meaningful when the signal is 0), signal
    /// `u8` that ended the run (0: it exited).
    Exited { code: i32, signal: u8 },
    /// Payload: signal `u8`.
    Kill { signal: u8 },
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
    /// A list of NUL-terminated strings did not end with a NUL.
    UnterminatedString,
}

/// The strings of a list of NUL-terminated strings (`Exec`'s arguments and
/// environment), without their NULs. A decoded list always ends in a NUL,
/// so every string is whole.
pub fn string_list(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = list.strip_suffix(&[0]).unwrap_or(list);
    body.split(|&byte| byte == 0)
        .filter(move |_| !list.is_empty())
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
            Message::Done => MessageType::Done,
            Message::Ninep { .. } => MessageType::Ninep,
            Message::NinepHangup => MessageType::NinepHangup,
            Message::Syscall { .. } => MessageType::Syscall,
            Message::SyscallResult { .. } => MessageType::SyscallResult,
            Message::ProcessExited { .. } => MessageType::ProcessExited,
            Message::Exec { .. } => MessageType::Exec,
            Message::ExecStarted { .. } => MessageType::ExecStarted,
            Message::Stdin { .. } => MessageType::Stdin,
            Message::Stdout { .. } => MessageType::Stdout,
            Message::Stderr { .. } => MessageType::Stderr,
            Message::Exited { .. } => MessageType::Exited,
            Message::Kill { .. } => MessageType::Kill,
            Message::Error { .. } => MessageType::Error,
        }
    }

    /// Writes the payload into `out` and returns its length.
    pub fn encode_payload(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let limit = out.len().min(MAX_PAYLOAD_LEN);
        self.write_payload(PayloadWriter {
            out: &mut out[..limit],
            position: 0,
            capped: limit == MAX_PAYLOAD_LEN,
            counting: false,
        })
    }

    /// The length of the payload [`encode_payload`](Self::encode_payload)
    /// writes, or its error, without writing it: so that a caller can
    /// size a buffer exactly.
    pub fn payload_len(&self) -> Result<usize, EncodeError> {
        self.write_payload(PayloadWriter {
            out: &mut [],
            position: 0,
            capped: true,
            counting: true,
        })
    }

    fn write_payload(&self, mut writer: PayloadWriter<'_>) -> Result<usize, EncodeError> {
        match *self {
            Message::Hello {
                protocol_version,
                kernel_release,
            } => {
                writer.put(&[protocol_version])?;
                writer.put_str(kernel_release)?;
            }
            Message::Ping { nonce } | Message::Pong { nonce } => writer.put_u64(nonce)?,
            Message::UnameRequest
            | Message::CrashRequest
            | Message::CrashAccepted
            | Message::Done
            | Message::NinepHangup => {}
            Message::Ninep { data }
            | Message::Stdin { data }
            | Message::Stdout { data }
            | Message::Stderr { data } => writer.put_bytes(data)?,
            Message::Syscall {
                process,
                number,
                arguments,
                input,
            } => {
                writer.put_u64(process)?;
                writer.put(&number.to_le_bytes())?;
                for argument in arguments {
                    writer.put_u64(argument)?;
                }
                writer.put_bytes(input)?;
            }
            Message::SyscallResult { result, output } => {
                writer.put(&result.to_le_bytes())?;
                writer.put_bytes(output)?;
            }
            Message::ProcessExited { process } => writer.put_u64(process)?,
            Message::Exec {
                path,
                arguments,
                environment,
                directory,
            } => {
                writer.put_str(path)?;
                writer.put_bytes(arguments)?;
                writer.put_bytes(environment)?;
                writer.put_str(directory)?;
            }
            Message::ExecStarted { pid } => writer.put(&pid.to_le_bytes())?,
            Message::Exited { code, signal } => {
                writer.put(&code.to_le_bytes())?;
                writer.put(&[signal])?;
            }
            Message::Kill { signal } => writer.put(&[signal])?,
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
            MessageType::Done => Message::Done,
            MessageType::Ninep => Message::Ninep {
                data: reader.take_bytes()?,
            },
            MessageType::NinepHangup => Message::NinepHangup,
            MessageType::Syscall => Message::Syscall {
                process: reader.take_u64()?,
                number: u32::from_le_bytes(reader.take_array()?),
                arguments: [
                    reader.take_u64()?,
                    reader.take_u64()?,
                    reader.take_u64()?,
                    reader.take_u64()?,
                    reader.take_u64()?,
                    reader.take_u64()?,
                ],
                input: reader.take_bytes()?,
            },
            MessageType::SyscallResult => Message::SyscallResult {
                result: i64::from_le_bytes(reader.take_array()?),
                output: reader.take_bytes()?,
            },
            MessageType::ProcessExited => Message::ProcessExited {
                process: reader.take_u64()?,
            },
            MessageType::Exec => Message::Exec {
                path: reader.take_str()?,
                arguments: reader.take_string_list()?,
                environment: reader.take_string_list()?,
                directory: reader.take_str()?,
            },
            MessageType::ExecStarted => Message::ExecStarted {
                pid: u32::from_le_bytes(reader.take_array()?),
            },
            MessageType::Stdin => Message::Stdin {
                data: reader.take_bytes()?,
            },
            MessageType::Stdout => Message::Stdout {
                data: reader.take_bytes()?,
            },
            MessageType::Stderr => Message::Stderr {
                data: reader.take_bytes()?,
            },
            MessageType::Exited => Message::Exited {
                code: i32::from_le_bytes(reader.take_array()?),
                signal: reader.take_u8()?,
            },
            MessageType::Kill => Message::Kill {
                signal: reader.take_u8()?,
            },
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
    /// Only counts: `out` is empty and the room is `MAX_PAYLOAD_LEN`.
    counting: bool,
}

impl PayloadWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let room = if self.counting {
            MAX_PAYLOAD_LEN
        } else {
            self.out.len()
        };
        let end = self
            .position
            .checked_add(bytes.len())
            .filter(|&end| end <= room);
        let Some(end) = end else {
            return Err(if self.capped {
                EncodeError::PayloadTooLong
            } else {
                EncodeError::BufferTooSmall
            });
        };
        if !self.counting {
            self.out[self.position..end].copy_from_slice(bytes);
        }
        self.position = end;
        Ok(())
    }

    fn put_u64(&mut self, value: u64) -> Result<(), EncodeError> {
        self.put(&value.to_le_bytes())
    }

    fn put_str(&mut self, text: &str) -> Result<(), EncodeError> {
        self.put_bytes(text.as_bytes())
    }

    fn put_bytes(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let length = u16::try_from(bytes.len()).map_err(|_| EncodeError::PayloadTooLong)?;
        if usize::from(length) > MAX_PAYLOAD_LEN {
            return Err(EncodeError::PayloadTooLong);
        }
        self.put(&length.to_le_bytes())?;
        self.put(bytes)
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
        core::str::from_utf8(self.take_bytes()?).map_err(|_| PayloadError::InvalidUtf8)
    }

    fn take_bytes(&mut self) -> Result<&'a [u8], PayloadError> {
        let length = usize::from(self.take_u16()?);
        self.take(length)
    }

    fn take_string_list(&mut self) -> Result<&'a [u8], PayloadError> {
        let list = self.take_bytes()?;
        match list.last() {
            None | Some(0) => Ok(list),
            Some(_) => Err(PayloadError::UnterminatedString),
        }
    }
}
