//! A stable-Rust fuzz loop over the decoder: random and mutated streams.
//!
//! cargo-fuzz needs nightly, so this drives the same idea with a seeded
//! generator: random bytes, and valid streams with random bytes changed,
//! dropped and inserted. The decoder must never panic, must stay within its
//! fixed buffer, and must keep finding frames afterwards. The cargo-fuzz
//! target's body (`servers/fuzz/src/bridge.rs`, which also checks that
//! every decoded frame round-trips through the encoder) runs here on the
//! same kinds of input.

#[path = "../../../servers/fuzz/src/bridge.rs"]
mod target;

use bridge_protocol::{Decoder, Frame, Message, MAX_FRAME_LEN, VERSION};

/// xorshift64*: small, fast, and reproducible from its seed.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Feeds `bytes` in random chunks; returns how many frames came out.
fn drive(decoder: &mut Decoder, bytes: &[u8], generator: &mut Generator) -> usize {
    let mut frames = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let chunk = 1 + generator.below(rest.len().min(600));
        let mut piece = &rest[..chunk];
        rest = &rest[chunk..];
        loop {
            let (taken, event) = decoder.feed(piece);
            assert!(taken <= piece.len());
            piece = &piece[taken..];
            match event {
                Some(Ok(_)) => frames += 1,
                Some(Err(_)) => {}
                None => break,
            }
        }
        assert!(decoder.buffered_len() <= MAX_FRAME_LEN);
    }
    frames
}

fn valid_stream(generator: &mut Generator) -> Vec<u8> {
    let mut stream = Vec::new();
    for index in 0..1 + generator.below(6) {
        let nonce = generator.next();
        let message = match generator.below(4) {
            0 => Message::Ping { nonce },
            1 => Message::UnameReply {
                release: "6.1.0-56-cloud-amd64",
                machine: "x86_64",
            },
            2 => Message::Hello {
                protocol_version: VERSION,
                kernel_release: "x",
            },
            _ => Message::HeartbeatAck {
                sequence: nonce,
                uptime_milliseconds: 1,
            },
        };
        let (buffer, length) = Frame {
            request_id: index as u32,
            message,
        }
        .to_buffer()
        .expect("encodes");
        stream.extend_from_slice(&buffer[..length]);
    }
    stream
}

#[test]
fn random_streams() {
    let mut generator = Generator(0x9E37_79B9_7F4A_7C15);
    let mut decoder = Decoder::new();
    for _ in 0..2_000 {
        let length = generator.below(2 * MAX_FRAME_LEN);
        let bytes: Vec<u8> = (0..length).map(|_| generator.next() as u8).collect();
        drive(&mut decoder, &bytes, &mut generator);
    }
}

#[test]
fn mutated_streams_then_recovery() {
    let mut generator = Generator(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..5_000 {
        let mut stream = valid_stream(&mut generator);
        for _ in 0..1 + generator.below(8) {
            let position = generator.below(stream.len() + 1);
            match generator.below(3) {
                0 if position < stream.len() => stream[position] = generator.next() as u8,
                1 if position < stream.len() => {
                    stream.remove(position);
                }
                _ => stream.insert(position, generator.next() as u8),
            }
        }
        let mut decoder = Decoder::new();
        drive(&mut decoder, &stream, &mut generator);
        // Whatever came before, a clean frame after enough bytes to flush a
        // false start must decode: at most one frame's worth of bytes can be
        // held hostage by a header that happened to pass its check.
        let mut tail = vec![0u8; MAX_FRAME_LEN];
        tail.extend(valid_stream(&mut Generator(7)));
        let expected = drive(
            &mut Decoder::new(),
            &valid_stream(&mut Generator(7)),
            &mut generator,
        );
        assert_eq!(drive(&mut decoder, &tail, &mut generator), expected);
    }
}

#[test]
fn the_fuzz_target_body_on_random_valid_and_mutated_streams() {
    let mut generator = Generator(0x0123_4567_89AB_CDEF);
    target::bridge(&[]);
    for _ in 0..1_000 {
        // The first byte chooses the chunk size the body feeds.
        let length = generator.below(2 * MAX_FRAME_LEN);
        let bytes: Vec<u8> = (0..length).map(|_| generator.next() as u8).collect();
        target::bridge(&bytes);
        let mut stream = vec![generator.next() as u8];
        stream.extend(valid_stream(&mut generator));
        target::bridge(&stream);
        for _ in 0..1 + generator.below(4) {
            let position = 1 + generator.below(stream.len() - 1);
            stream[position] = generator.next() as u8;
        }
        target::bridge(&stream);
    }
}
