//! Fuzz target bodies: frame decoding, and a whole ramfs server session.
//!
//! Plain functions so that a stable `cargo test` (servers/ramfs/tests/
//! fuzz_targets.rs) runs them too; the libFuzzer binaries only call them.
//! Each asserts the invariants the crates promise: no panic, and every
//! reply a server sends is one well-formed frame within the msize.

use ninep::{frame_length, Frame, Message, NOFID};
use ninep_server::Session;
use ramfs::{Clock, Limits, RamFs};

/// Decodes `data` as one frame under a few msizes; a frame that decodes
/// must re-encode to the same bytes.
pub fn frame_decode(data: &[u8]) {
    for max in [0u32, 64, 8192, u32::MAX] {
        let _ = frame_length(data, max);
        if let Ok(frame) = Frame::decode(data, max) {
            let again = frame.to_bytes().expect("a decoded frame re-encodes");
            assert_eq!(again, data, "decode/encode must round-trip");
        }
    }
    let _ = ninep::Stat::decode_directory(data);
}

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> u32 {
        1_000_000
    }
}

const MSIZE: u32 = 4096;

/// Feeds `data` as a stream of frames to a session over a small ramfs,
/// after a Tversion and a Tattach of fid 0 so inputs reach the deep code.
pub fn session(data: &[u8]) {
    let limits = Limits {
        max_file_size: 1 << 16,
        max_total_bytes: 1 << 18,
    };
    let mut fs = RamFs::new(FixedClock, "glenda", "glenda", 0o775).with_limits(limits);
    let mut session: Session<RamFs<FixedClock>> = Session::new(MSIZE);
    let mut out = Vec::new();
    let prologue = [
        Frame::new(
            0xFFFF,
            Message::Tversion {
                msize: MSIZE,
                version: "9P2000".into(),
            },
        ),
        Frame::new(
            1,
            Message::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "glenda".into(),
                aname: String::new(),
            },
        ),
    ];
    for frame in prologue {
        let bytes = frame.to_bytes().expect("prologue encodes");
        session
            .handle(&mut fs, &bytes, &mut out)
            .expect("prologue is valid");
    }
    let mut rest = data;
    loop {
        let len = match frame_length(rest, session.msize()) {
            Ok(Some(len)) if len <= rest.len() => len,
            _ => break,
        };
        out.clear();
        if session.handle(&mut fs, &rest[..len], &mut out).is_err() {
            break;
        }
        if !out.is_empty() {
            let reply = Frame::decode(&out, session.msize()).expect("replies are well formed");
            assert!(!reply.message.message_type().is_request());
        }
        rest = &rest[len..];
    }
    session.close(&mut fs);
}
