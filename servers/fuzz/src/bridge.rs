//! Fuzz target body: the Linux bridge protocol's stream decoder.
//!
//! A plain function, included by path both by the cargo-fuzz binary
//! (`fuzz_targets/bridge.rs`) and by the stable test
//! `guest-linux-bridge/protocol/tests/fuzz.rs`. It asserts: no panic on
//! any bytes fed in any chunks; the decoder takes no more than it is given
//! and buffers at most one frame; and every frame it yields round-trips:
//! decode, encode, decode gives the same frame from the encoded bytes alone.

use bridge_protocol::{Decoder, Frame, MAX_FRAME_LEN};

/// Feeds `data` to a decoder in chunks whose sizes come from the data's
/// first byte, and checks every frame that comes out.
pub fn bridge(data: &[u8]) {
    let (chunk, stream) = match data.split_first() {
        Some((&first, rest)) => (usize::from(first) * 17 + 1, rest),
        None => return,
    };
    let mut decoder = Decoder::new();
    for mut piece in stream.chunks(chunk) {
        // Every event uses up bytes (the piece's or those buffered, at most
        // a frame's worth), a garbage report at most once per run of them:
        // so the events of one piece are bounded, and the feeding ends.
        let bound = 2 * (piece.len() + MAX_FRAME_LEN) + 2;
        let mut events = 0;
        loop {
            let (taken, event) = decoder.feed(piece);
            assert!(
                taken <= piece.len(),
                "took {taken} of {} bytes",
                piece.len()
            );
            piece = &piece[taken..];
            match event {
                Some(Ok(frame)) => round_trip(&frame),
                Some(Err(_)) => {}
                None => break,
            }
            events += 1;
            assert!(events <= bound, "the decoder keeps yielding events");
        }
        assert!(piece.is_empty(), "`None` means all the input was taken");
        assert!(decoder.buffered_len() <= MAX_FRAME_LEN);
    }
}

/// Encodes `frame` and decodes the bytes with a fresh decoder: the same
/// frame must come out, and nothing else.
fn round_trip(frame: &Frame<'_>) {
    let (buffer, length) = frame.to_buffer().expect("a decoded frame encodes");
    let mut fresh = Decoder::new();
    let (taken, event) = fresh.feed(&buffer[..length]);
    assert_eq!(taken, length);
    match event {
        Some(Ok(again)) => assert_eq!(&again, frame, "decode/encode/decode must round-trip"),
        other => panic!("an encoded frame decodes, got {other:?}"),
    }
    assert_eq!(fresh.buffered_len(), 0);
}
