//! 9P over a byte stream: cutting the link's bytes into whole frames.
//!
//! On a server link the messages travel as a plain byte stream; each one
//! starts with its size[4] (little-endian, counting itself), which frames
//! it (intro(5)). Receive buffers end wherever the switch filled them, so
//! a frame can arrive in pieces or several in one buffer. A size below the
//! smallest message or above msize is not 9P: the stream is broken and
//! the reader says so instead of guessing where the next frame starts.

use alloc::vec::Vec;

/// Smallest 9P message: size[4] type[1] tag[2].
pub const MIN_FRAME: usize = 7;

/// Why the stream cannot be read on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// A size field outside `MIN_FRAME..=msize`.
    BadSize(u32),
}

/// Bytes received so far, cut into frames.
#[derive(Debug, Default)]
pub struct Reassembler {
    buffer: Vec<u8>,
    start: usize,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes from the link.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// Forgets everything (the peer is new, or the stream broke).
    pub fn clear(&mut self) {
        self.buffer.clear();
        self.start = 0;
    }

    /// The next whole frame, if one has arrived; frames larger than
    /// `msize` or smaller than a header are an error.
    pub fn next_frame(&mut self, msize: u32) -> Result<Option<&[u8]>, StreamError> {
        let rest = &self.buffer[self.start..];
        let Some(header) = rest.get(..4) else {
            return Ok(None);
        };
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if (size as usize) < MIN_FRAME || size > msize {
            return Err(StreamError::BadSize(size));
        }
        let size = size as usize;
        if rest.len() < size {
            return Ok(None);
        }
        let frame = self.start..self.start + size;
        self.start += size;
        if self.start > 64 * 1024 {
            // Keep the buffer from growing: drop what was consumed. The
            // frame is copied down with the rest.
            self.buffer.drain(..frame.start);
            self.start -= frame.start;
            let size = frame.len();
            return Ok(Some(&self.buffer[self.start - size..self.start]));
        }
        Ok(Some(&self.buffer[frame]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, tag: u16, body: &[u8]) -> Vec<u8> {
        let size = (7 + body.len()) as u32;
        let mut out = size.to_le_bytes().to_vec();
        out.push(kind);
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn frames_cut_across_buffers_and_several_in_one() {
        let a = frame(100, 0xFFFF, b"\x00\x20\x00\x00\x06\x009P2000");
        let b = frame(120, 1, &[1, 2, 3]);
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        let mut r = Reassembler::new();
        // One byte at a time, then the rest.
        for &byte in &stream[..3] {
            r.push(&[byte]);
            assert_eq!(r.next_frame(8192), Ok(None));
        }
        r.push(&stream[3..]);
        assert_eq!(r.next_frame(8192).unwrap(), Some(&a[..]));
        assert_eq!(r.next_frame(8192).unwrap(), Some(&b[..]));
        assert_eq!(r.next_frame(8192), Ok(None));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn sizes_that_are_not_9p_break_the_stream() {
        let mut r = Reassembler::new();
        r.push(b"garbage!");
        assert!(matches!(r.next_frame(8192), Err(StreamError::BadSize(_))));
        r.clear();
        r.push(&3u32.to_le_bytes());
        assert_eq!(r.next_frame(8192), Err(StreamError::BadSize(3)));
        r.clear();
        r.push(&9000u32.to_le_bytes());
        assert_eq!(r.next_frame(8192), Err(StreamError::BadSize(9000)));
    }

    #[test]
    fn a_long_stream_does_not_grow_the_buffer_without_bound() {
        let f = frame(120, 7, &[0u8; 1000]);
        let mut r = Reassembler::new();
        for _ in 0..500 {
            r.push(&f);
            r.push(&f[..10]);
            assert_eq!(r.next_frame(8192).unwrap(), Some(&f[..]));
            r.push(&f[10..]);
            assert_eq!(r.next_frame(8192).unwrap(), Some(&f[..]));
        }
        assert!(r.buffer.capacity() < 200 * 1024);
    }
}
