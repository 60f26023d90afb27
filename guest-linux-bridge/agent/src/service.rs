//! What the agent answers to each frame and to each rejected byte run.
//!
//! Requests (Ping, UnameRequest, Heartbeat, CrashRequest, and a Hello with
//! a nonzero request id) get replies with the same request id. The
//! services' requests (9P, system calls, programs) are handed on
//! (`Response::Serve`, served by `dispatch::Services`). Messages
//! that are themselves replies or announcements (id 0) are only logged:
//! answering them could start an endless exchange with a peer that does the
//! same. Every decode error is answered
//! with an `Error`, so the peer learns that its bytes were dropped.

use bridge_protocol::{DecodeError, ErrorCode, Frame, Message, VERSION};

/// Who this kernel is, as `uname` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub release: String,
    pub machine: String,
}

impl Identity {
    /// The announcement sent when a peer connects.
    pub fn hello(&self) -> Frame<'_> {
        Frame {
            request_id: 0,
            message: Message::Hello {
                protocol_version: VERSION,
                kernel_release: &self.release,
            },
        }
    }
}

/// What to do about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// Send this frame.
    Reply(Frame<'a>),
    /// Send this frame, then panic the kernel.
    ReplyThenCrash(Frame<'a>),
    /// Send nothing; log why.
    Ignore(&'static str),
    /// A request for the services (`dispatch::Services`): 9P, system
    /// calls, programs.
    Serve,
}

/// The response to `frame`. `uptime_milliseconds` is read by the caller so
/// that this stays free of clocks.
pub fn respond<'a>(
    identity: &'a Identity,
    uptime_milliseconds: u64,
    frame: &Frame<'_>,
) -> Response<'a> {
    let reply = |message| Frame {
        request_id: frame.request_id,
        message,
    };
    match frame.message {
        Message::Ping { nonce } => Response::Reply(reply(Message::Pong { nonce })),
        Message::UnameRequest => Response::Reply(reply(Message::UnameReply {
            release: &identity.release,
            machine: &identity.machine,
        })),
        Message::Heartbeat { sequence } => Response::Reply(reply(Message::HeartbeatAck {
            sequence,
            uptime_milliseconds,
        })),
        Message::CrashRequest => Response::ReplyThenCrash(reply(Message::CrashAccepted)),
        // A Hello with an id asks for ours: a peer that connects cannot
        // know whether the agent saw the previous peer leave, and so
        // whether an unsolicited Hello is on its way.
        Message::Hello { .. } if frame.request_id != 0 => Response::Reply(Frame {
            request_id: frame.request_id,
            ..identity.hello()
        }),
        Message::Hello { .. } => Response::Ignore("a Hello announcement from the peer"),
        Message::Pong { .. }
        | Message::UnameReply { .. }
        | Message::HeartbeatAck { .. }
        | Message::CrashAccepted => Response::Ignore("a reply to a request never sent"),
        Message::Error { .. } => Response::Ignore("an Error from the peer"),
        Message::Ninep { .. }
        | Message::NinepHangup
        | Message::Syscall { .. }
        | Message::ProcessExited { .. }
        | Message::Exec { .. }
        | Message::Stdin { .. }
        | Message::Kill { .. } => Response::Serve,
        Message::Done
        | Message::SyscallResult { .. }
        | Message::ExecStarted { .. }
        | Message::Stdout { .. }
        | Message::Stderr { .. }
        | Message::Exited { .. } => Response::Ignore("a reply or stream the agent only sends"),
    }
}

/// The `Error` frame that answers a decode error.
pub fn error_reply(error: &DecodeError) -> Frame<'static> {
    let (code, detail) = match error {
        DecodeError::Garbage { .. } => {
            (ErrorCode::BadFrame, "bytes outside any frame were skipped")
        }
        DecodeError::UnsupportedVersion { .. } => {
            (ErrorCode::BadFrame, "unsupported protocol version")
        }
        DecodeError::PayloadTooLong { .. } => {
            (ErrorCode::BadFrame, "payload longer than 4096 bytes")
        }
        DecodeError::ChecksumMismatch { .. } => (ErrorCode::BadFrame, "frame checksum mismatch"),
        DecodeError::UnknownMessageType { .. } => {
            (ErrorCode::UnknownMessageType, "unknown message type")
        }
        DecodeError::BadPayload { .. } => (ErrorCode::BadPayload, "payload does not decode"),
    };
    Frame {
        request_id: error.request_id(),
        message: Message::Error { code, detail },
    }
}

/// The crash request failed; `detail` says at which step.
pub fn crash_failed(request_id: u32, detail: &'static str) -> Frame<'static> {
    Frame {
        request_id,
        message: Message::Error {
            code: ErrorCode::Internal,
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_protocol::{MessageType, PayloadError};

    fn identity() -> Identity {
        Identity {
            release: "6.1.0-56-cloud-amd64".into(),
            machine: "x86_64".into(),
        }
    }

    fn request(request_id: u32, message: Message<'_>) -> Frame<'_> {
        Frame {
            request_id,
            message,
        }
    }

    #[test]
    fn requests_are_answered_with_their_id() {
        let identity = identity();
        assert_eq!(
            respond(&identity, 5, &request(9, Message::Ping { nonce: 77 })),
            Response::Reply(request(9, Message::Pong { nonce: 77 }))
        );
        assert_eq!(
            respond(&identity, 5, &request(10, Message::UnameRequest)),
            Response::Reply(request(
                10,
                Message::UnameReply {
                    release: "6.1.0-56-cloud-amd64",
                    machine: "x86_64"
                }
            ))
        );
        assert_eq!(
            respond(
                &identity,
                1234,
                &request(11, Message::Heartbeat { sequence: 3 })
            ),
            Response::Reply(request(
                11,
                Message::HeartbeatAck {
                    sequence: 3,
                    uptime_milliseconds: 1234
                }
            ))
        );
        assert_eq!(
            respond(&identity, 0, &request(12, Message::CrashRequest)),
            Response::ReplyThenCrash(request(12, Message::CrashAccepted))
        );
    }

    #[test]
    fn a_hello_with_an_id_is_answered_with_ours() {
        let identity = identity();
        let peer = Message::Hello {
            protocol_version: VERSION,
            kernel_release: "cell-0",
        };
        assert_eq!(
            respond(&identity, 0, &request(5, peer)),
            Response::Reply(Frame {
                request_id: 5,
                ..identity.hello()
            })
        );
        assert!(matches!(
            respond(&identity, 0, &request(0, peer)),
            Response::Ignore(_)
        ));
    }

    #[test]
    fn replies_and_announcements_are_not_answered() {
        let identity = identity();
        for message in [
            Message::Pong { nonce: 1 },
            Message::CrashAccepted,
            Message::Error {
                code: ErrorCode::Internal,
                detail: "",
            },
        ] {
            assert!(matches!(
                respond(&identity, 0, &request(1, message)),
                Response::Ignore(_)
            ));
        }
    }

    #[test]
    fn service_requests_go_to_the_services_and_their_replies_are_ignored() {
        let identity = identity();
        for message in [
            Message::Ninep { data: b"" },
            Message::NinepHangup,
            Message::ProcessExited { process: 1 },
            Message::Stdin { data: b"" },
            Message::Kill { signal: 9 },
        ] {
            assert_eq!(respond(&identity, 0, &request(3, message)), Response::Serve);
        }
        for message in [
            Message::Done,
            Message::ExecStarted { pid: 1 },
            Message::Stdout { data: b"" },
            Message::Exited { code: 0, signal: 0 },
        ] {
            assert!(matches!(
                respond(&identity, 0, &request(3, message)),
                Response::Ignore(_)
            ));
        }
    }

    #[test]
    fn decode_errors_become_error_frames_with_the_request_id() {
        let frame = error_reply(&DecodeError::BadPayload {
            message_type: MessageType::Ping,
            request_id: 42,
            reason: PayloadError::Truncated,
        });
        assert_eq!(frame.request_id, 42);
        assert!(matches!(
            frame.message,
            Message::Error {
                code: ErrorCode::BadPayload,
                ..
            }
        ));
        let frame = error_reply(&DecodeError::Garbage { skipped: 3 });
        assert_eq!(frame.request_id, 0);
        assert!(frame.to_buffer().is_ok());
    }
}
