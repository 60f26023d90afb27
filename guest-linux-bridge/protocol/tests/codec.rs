//! Encode/decode round trips and the decoder's handling of damaged input.
//!
//! Hand-written cases pin the wire layout; proptest properties cover every
//! message, every way of splitting the stream, and garbage between frames.

use bridge_protocol::{
    crc32, string_list, DecodeError, Decoder, EncodeError, ErrorCode, Frame, Message, MessageType,
    PayloadError, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, VERSION,
};
use proptest::prelude::*;

/// Decodes every frame in `bytes`, fed in chunks of `chunk` bytes, into
/// owned values (request id, debug text of the message) plus the errors.
fn decode_all(bytes: &[u8], chunk: usize) -> (Vec<(u32, String)>, Vec<DecodeError>) {
    let mut decoder = Decoder::new();
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        let mut rest = piece;
        loop {
            let (taken, event) = decoder.feed(rest);
            rest = &rest[taken..];
            match event {
                Some(Ok(frame)) => frames.push((frame.request_id, format!("{:?}", frame.message))),
                Some(Err(error)) => errors.push(error),
                None => break,
            }
        }
        assert!(rest.is_empty());
        assert!(decoder.buffered_len() <= MAX_FRAME_LEN);
    }
    (frames, errors)
}

/// Encodes through `to_buffer`, and checks that `encoded_len` predicts
/// the length and that a buffer of exactly that length takes the frame.
fn encode(request_id: u32, message: Message<'_>) -> Vec<u8> {
    let frame = Frame {
        request_id,
        message,
    };
    let (buffer, length) = frame.to_buffer().expect("encodes");
    assert_eq!(frame.encoded_len(), Ok(length));
    let mut exact = vec![0u8; length];
    assert_eq!(frame.encode(&mut exact), Ok(length));
    assert_eq!(exact, buffer[..length]);
    buffer[..length].to_vec()
}

#[test]
fn to_vec_is_the_encoded_frame() {
    let frame = Frame {
        request_id: 9,
        message: Message::Syscall {
            process: 3,
            number: 39,
            arguments: [0; 6],
            input: b"",
        },
    };
    let (buffer, length) = frame.to_buffer().unwrap();
    assert_eq!(frame.to_vec().unwrap(), buffer[..length]);
}

#[test]
fn ping_has_the_documented_layout() {
    let bytes = encode(
        0x0102_0304,
        Message::Ping {
            nonce: 0x1122_3344_5566_7788,
        },
    );
    assert_eq!(&bytes[0..2], b"KB");
    assert_eq!(bytes[2], VERSION);
    assert_eq!(bytes[3], 0x02);
    assert_eq!(&bytes[4..8], &[0x04, 0x03, 0x02, 0x01]);
    assert_eq!(&bytes[8..10], &[8, 0]);
    let header_check = (crc32(&bytes[..10]) & 0xFFFF) as u16;
    assert_eq!(&bytes[10..12], &header_check.to_le_bytes());
    assert_eq!(&bytes[12..20], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(&bytes[20..24], &crc32(&bytes[..20]).to_le_bytes());
    assert_eq!(bytes.len(), 24);
}

#[test]
fn every_message_type_round_trips() {
    let messages = [
        Message::Hello {
            protocol_version: VERSION,
            kernel_release: "6.1.0-56-cloud-amd64",
        },
        Message::Ping { nonce: 7 },
        Message::Pong { nonce: u64::MAX },
        Message::UnameRequest,
        Message::UnameReply {
            release: "6.1.0-56-cloud-amd64",
            machine: "x86_64",
        },
        Message::Heartbeat { sequence: 3 },
        Message::HeartbeatAck {
            sequence: 3,
            uptime_milliseconds: 12_345,
        },
        Message::CrashRequest,
        Message::CrashAccepted,
        Message::Done,
        Message::Ninep {
            data: &[19, 0, 0, 0, 100, 0xFF, 0xFF],
        },
        Message::NinepHangup,
        Message::Syscall {
            process: 12,
            number: 39,
            arguments: [1, 2, 3, 4, 5, u64::MAX],
            input: &[4, 0, 0, 0, b'a', b'b', b'c', 0],
        },
        Message::SyscallResult {
            result: -2,
            output: &[],
        },
        Message::ProcessExited { process: 12 },
        Message::Exec {
            path: "/bin/sh",
            arguments: b"sh\0-c\0echo $((6*7))\0",
            environment: b"PATH=/bin\0",
            directory: "/tmp",
        },
        Message::ExecStarted { pid: 77 },
        Message::Stdin { data: b"hello" },
        Message::Stdout { data: b"42\n" },
        Message::Stderr { data: b"" },
        Message::Exited {
            code: -1,
            signal: 9,
        },
        Message::Kill { signal: 15 },
        Message::Error {
            code: ErrorCode::Other(999),
            detail: "no such thing",
        },
    ];
    assert_eq!(messages.len(), MessageType::ALL.len());
    for (index, message) in messages.iter().enumerate() {
        let request_id = index as u32 + 1;
        let bytes = encode(request_id, *message);
        let mut decoder = Decoder::new();
        let (taken, event) = decoder.feed(&bytes);
        assert_eq!(taken, bytes.len());
        let frame = event.expect("a frame").expect("no error");
        assert_eq!(frame.request_id, request_id);
        assert_eq!(frame.message, *message);
        assert_eq!(frame.message.message_type(), MessageType::ALL[index]);
        assert_eq!(decoder.buffered_len(), 0);
    }
}

#[test]
fn string_lists_must_end_with_a_nul() {
    let list = b"sh\0-c\0\0";
    let strings: Vec<&[u8]> = string_list(list).collect();
    assert_eq!(strings, [&b"sh"[..], b"-c", b""]);
    assert_eq!(string_list(b"").count(), 0);
    let mut payload = Vec::new();
    for field in [&b"/bin/sh"[..], b"sh\0", b"", b""] {
        payload.extend_from_slice(&(field.len() as u16).to_le_bytes());
        payload.extend_from_slice(field);
    }
    assert!(Message::decode_payload(MessageType::Exec, &payload).is_ok());
    payload[13] = b'x';
    assert_eq!(
        Message::decode_payload(MessageType::Exec, &payload),
        Err(PayloadError::UnterminatedString)
    );
}

#[test]
fn type_bytes_and_error_codes_round_trip() {
    for message_type in MessageType::ALL {
        assert_eq!(
            MessageType::from_byte(message_type.as_byte()),
            Some(message_type)
        );
    }
    assert_eq!(MessageType::from_byte(0), None);
    assert_eq!(MessageType::from_byte(0xFF), None);
    for value in 0..=u16::MAX {
        assert_eq!(ErrorCode::from_u16(value).as_u16(), value);
    }
}

#[test]
fn oversized_strings_are_refused_when_encoding() {
    let long = "x".repeat(MAX_PAYLOAD_LEN);
    let frame = Frame {
        request_id: 1,
        message: Message::Hello {
            protocol_version: VERSION,
            kernel_release: &long,
        },
    };
    assert_eq!(frame.to_buffer().unwrap_err(), EncodeError::PayloadTooLong);
    assert_eq!(frame.encoded_len(), Err(EncodeError::PayloadTooLong));
    let mut small = [0u8; 20];
    assert_eq!(
        frame.encode(&mut small).unwrap_err(),
        EncodeError::BufferTooSmall
    );
    let fits = "y".repeat(MAX_PAYLOAD_LEN - 2);
    let error = Frame {
        request_id: 2,
        message: Message::Error {
            code: ErrorCode::Internal,
            detail: &fits,
        },
    };
    // Two bytes of code plus two of length leave room for 4092 only.
    assert_eq!(error.to_buffer().unwrap_err(), EncodeError::PayloadTooLong);
    assert_eq!(error.encoded_len(), Err(EncodeError::PayloadTooLong));
    let exact = "z".repeat(MAX_PAYLOAD_LEN - 4);
    let bytes = encode(
        3,
        Message::Error {
            code: ErrorCode::Internal,
            detail: &exact,
        },
    );
    assert_eq!(bytes.len(), MAX_FRAME_LEN);
    let (frames, errors) = decode_all(&bytes, 1000);
    assert_eq!((frames.len(), errors.len()), (1, 0));
}

/// Builds a frame whose header is sound but whose payload is `payload`,
/// bypassing the message encoder.
fn raw_frame(message_type: u8, request_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = b"KB".to_vec();
    bytes.push(VERSION);
    bytes.push(message_type);
    bytes.extend_from_slice(&request_id.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    let check = (crc32(&bytes) & 0xFFFF) as u16;
    bytes.extend_from_slice(&check.to_le_bytes());
    bytes.extend_from_slice(payload);
    let trailer = crc32(&bytes);
    bytes.extend_from_slice(&trailer.to_le_bytes());
    bytes
}

#[test]
fn sound_frames_with_bad_contents_name_the_request() {
    let cases: [(Vec<u8>, DecodeError); 4] = [
        (
            raw_frame(0x55, 9, b""),
            DecodeError::UnknownMessageType {
                message_type: 0x55,
                request_id: 9,
            },
        ),
        (
            raw_frame(0x02, 10, &[1, 2, 3]),
            DecodeError::BadPayload {
                message_type: MessageType::Ping,
                request_id: 10,
                reason: PayloadError::Truncated,
            },
        ),
        (
            raw_frame(0x04, 11, &[0]),
            DecodeError::BadPayload {
                message_type: MessageType::UnameRequest,
                request_id: 11,
                reason: PayloadError::TrailingBytes,
            },
        ),
        (
            raw_frame(0x01, 12, &[1, 2, 0, 0xFF, 0xFE]),
            DecodeError::BadPayload {
                message_type: MessageType::Hello,
                request_id: 12,
                reason: PayloadError::InvalidUtf8,
            },
        ),
    ];
    for (bytes, expected) in cases {
        let (frames, errors) = decode_all(&bytes, 64);
        assert!(frames.is_empty());
        assert_eq!(errors, vec![expected]);
        assert_eq!(
            expected.request_id(),
            u32::from_le_bytes(bytes[4..8].try_into().unwrap())
        );
    }
}

#[test]
fn damaged_trailer_is_reported_and_the_next_frame_survives() {
    let mut bytes = encode(5, Message::Ping { nonce: 1 });
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    bytes.extend(encode(6, Message::Ping { nonce: 2 }));
    let (frames, errors) = decode_all(&bytes, 3);
    assert_eq!(frames, vec![(6, "Ping { nonce: 2 }".to_string())]);
    assert_eq!(errors[0], DecodeError::ChecksumMismatch { request_id: 5 });
    // The rest of the damaged frame (23 bytes) is skipped as garbage.
    assert_eq!(skipped(&errors[1..]), 23);
}

#[test]
fn bad_version_and_length_are_rejected_at_the_header() {
    let mut header = b"KB".to_vec();
    header.extend_from_slice(&[VERSION + 1, 2, 0, 0, 0, 0, 8, 0]);
    let check = (crc32(&header) & 0xFFFF) as u16;
    header.extend_from_slice(&check.to_le_bytes());
    let (_, errors) = decode_all(&header, 100);
    assert_eq!(
        errors[0],
        DecodeError::UnsupportedVersion {
            version: VERSION + 1
        }
    );
    // The decoder moves on by one byte; the other eleven are skipped.
    assert_eq!(skipped(&errors[1..]), HEADER_LEN - 1);

    let mut header = b"KB".to_vec();
    header.extend_from_slice(&[VERSION, 2, 0, 0, 0, 0, 0x01, 0x10]);
    let check = (crc32(&header) & 0xFFFF) as u16;
    header.extend_from_slice(&check.to_le_bytes());
    assert_eq!(header.len(), HEADER_LEN);
    let (_, errors) = decode_all(&header, 100);
    assert_eq!(errors[0], DecodeError::PayloadTooLong { length: 0x1001 });
    assert_eq!(skipped(&errors[1..]), HEADER_LEN - 1);
}

#[test]
fn a_false_start_does_not_swallow_the_frame_behind_it() {
    // "KB" followed by a header that fails its check, then a real frame.
    let mut bytes = b"KB\x01\x02\xff\xff\xff\xff\x00\x10\x00\x00".to_vec();
    bytes.extend(encode(1, Message::Heartbeat { sequence: 4 }));
    let (frames, errors) = decode_all(&bytes, 1);
    assert_eq!(frames, vec![(1, "Heartbeat { sequence: 4 }".to_string())]);
    assert_eq!(skipped(&errors), 12);
    // Fed at once, the skipped bytes are reported once, before the frame.
    let (frames, errors) = decode_all(&bytes, bytes.len());
    assert_eq!(frames.len(), 1);
    assert_eq!(errors, vec![DecodeError::Garbage { skipped: 12 }]);
}

#[test]
fn endless_garbage_is_reported_without_growing() {
    let bytes = vec![0x00u8; 3 * MAX_FRAME_LEN];
    let (frames, errors) = decode_all(&bytes, 997);
    assert!(frames.is_empty());
    assert_eq!(skipped(&errors), 3 * MAX_FRAME_LEN);
}

/// The total of `Garbage` reports; any other error fails the test.
fn skipped(errors: &[DecodeError]) -> usize {
    errors
        .iter()
        .map(|error| match error {
            DecodeError::Garbage { skipped } => *skipped,
            other => panic!("unexpected {other:?}"),
        })
        .sum()
}

fn any_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("\\PC{0,40}").expect("valid regex")
}

/// An owned message, so that proptest can generate and shrink it.
#[derive(Clone, Debug)]
enum Owned {
    Hello(u8, String),
    Ping(u64),
    Pong(u64),
    UnameRequest,
    UnameReply(String, String),
    Heartbeat(u64),
    HeartbeatAck(u64, u64),
    CrashRequest,
    CrashAccepted,
    Error(u16, String),
}

impl Owned {
    fn message(&self) -> Message<'_> {
        match self {
            Owned::Hello(version, release) => Message::Hello {
                protocol_version: *version,
                kernel_release: release,
            },
            Owned::Ping(nonce) => Message::Ping { nonce: *nonce },
            Owned::Pong(nonce) => Message::Pong { nonce: *nonce },
            Owned::UnameRequest => Message::UnameRequest,
            Owned::UnameReply(release, machine) => Message::UnameReply { release, machine },
            Owned::Heartbeat(sequence) => Message::Heartbeat {
                sequence: *sequence,
            },
            Owned::HeartbeatAck(sequence, uptime) => Message::HeartbeatAck {
                sequence: *sequence,
                uptime_milliseconds: *uptime,
            },
            Owned::CrashRequest => Message::CrashRequest,
            Owned::CrashAccepted => Message::CrashAccepted,
            Owned::Error(code, detail) => Message::Error {
                code: ErrorCode::from_u16(*code),
                detail,
            },
        }
    }
}

fn any_message() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (any::<u8>(), any_text()).prop_map(|(version, text)| Owned::Hello(version, text)),
        any::<u64>().prop_map(Owned::Ping),
        any::<u64>().prop_map(Owned::Pong),
        Just(Owned::UnameRequest),
        (any_text(), any_text()).prop_map(|(release, machine)| Owned::UnameReply(release, machine)),
        any::<u64>().prop_map(Owned::Heartbeat),
        (any::<u64>(), any::<u64>())
            .prop_map(|(sequence, uptime)| Owned::HeartbeatAck(sequence, uptime)),
        Just(Owned::CrashRequest),
        Just(Owned::CrashAccepted),
        (any::<u16>(), any_text()).prop_map(|(code, detail)| Owned::Error(code, detail)),
    ]
}

proptest! {
    #[test]
    fn any_message_round_trips_through_any_split(
        messages in proptest::collection::vec((any::<u32>(), any_message()), 1..8),
        chunk in 1usize..64,
    ) {
        let mut stream = Vec::new();
        for (request_id, owned) in &messages {
            stream.extend(encode(*request_id, owned.message()));
        }
        let expected: Vec<(u32, String)> = messages
            .iter()
            .map(|(request_id, owned)| (*request_id, format!("{:?}", owned.message())))
            .collect();
        let (frames, errors) = decode_all(&stream, chunk);
        prop_assert_eq!(frames, expected);
        prop_assert!(errors.is_empty());
    }

    #[test]
    fn frames_survive_garbage_between_them(
        pieces in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..40), any::<u32>(), any_message()),
            1..6,
        ),
        chunk in 1usize..80,
    ) {
        let mut stream = Vec::new();
        for (garbage, request_id, owned) in &pieces {
            stream.extend_from_slice(garbage);
            stream.extend(encode(*request_id, owned.message()));
        }
        let expected: Vec<(u32, String)> = pieces
            .iter()
            .map(|(_, request_id, owned)| (*request_id, format!("{:?}", owned.message())))
            .collect();
        let (frames, _) = decode_all(&stream, chunk);
        // Garbage could, with odds of about 2^-48, hold a sound frame of its
        // own; the real frames must still all arrive, in order.
        let mut found = frames.iter();
        for wanted in &expected {
            prop_assert!(found.any(|frame| frame == wanted), "lost {:?}", wanted);
        }
    }

    #[test]
    fn single_flipped_bits_never_yield_a_wrong_frame(
        request_id in any::<u32>(),
        owned in any_message(),
        bit in any::<usize>(),
    ) {
        let mut stream = encode(request_id, owned.message());
        let index = bit % (stream.len() * 8);
        stream[index / 8] ^= 1 << (index % 8);
        let (frames, errors) = decode_all(&stream, 7);
        // CRC-32 detects every single-bit error.
        prop_assert!(frames.is_empty(), "{:?}", frames);
        prop_assert!(!errors.is_empty());
    }

    #[test]
    fn random_bytes_never_panic_or_overflow(
        bytes in proptest::collection::vec(any::<u8>(), 0..3 * MAX_FRAME_LEN),
        chunk in 1usize..5000,
    ) {
        let (frames, errors) = decode_all(&bytes, chunk);
        // Every byte is accounted for by a frame or an error; nothing loops.
        prop_assert!(frames.len() + errors.len() <= bytes.len());
    }
}
