//! Runs the cargo-fuzz target bodies on stable: seeds and random inputs.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use ninep::{FileMode, Frame, Message, OpenMode, Stat};
use proptest::prelude::*;

fn seed_stream() -> Vec<u8> {
    let messages = [
        Message::Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec![],
        },
        Message::Tcreate {
            fid: 1,
            name: "f".into(),
            perm: FileMode::from_bits_retain(0o644),
            mode: OpenMode::ORDWR,
        },
        Message::Twrite {
            fid: 1,
            offset: 3,
            data: b"data".to_vec(),
        },
        Message::Tread {
            fid: 1,
            offset: 0,
            count: 100,
        },
        Message::Twstat {
            fid: 1,
            stat: Stat::dont_touch(),
        },
        Message::Tflush { oldtag: 3 },
        Message::Tremove { fid: 1 },
        Message::Topen {
            fid: 0,
            mode: OpenMode::OREAD,
        },
        Message::Tread {
            fid: 0,
            offset: 0,
            count: 4000,
        },
    ];
    let mut out = Vec::new();
    for (tag, m) in messages.into_iter().enumerate() {
        Frame::new(tag as u16, m).encode(&mut out).unwrap();
    }
    out
}

#[test]
fn seeds() {
    let stream = seed_stream();
    targets::session(&stream);
    targets::frame_decode(&stream);
    for cut in 0..stream.len() {
        targets::session(&stream[..cut]);
        targets::frame_decode(&stream[..cut]);
    }
}

proptest! {
    #[test]
    fn random_frames(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        targets::frame_decode(&data);
        targets::session(&data);
    }

    #[test]
    fn mutated_seed_streams(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut stream = seed_stream();
        for (at, byte) in flips {
            let i = at.index(stream.len());
            stream[i] = byte;
        }
        targets::session(&stream);
    }
}
