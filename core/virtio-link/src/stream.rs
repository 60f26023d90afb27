//! 9P over a link: a byte stream cut into messages by their size[4].
//!
//! On a server link (hvm's contract 1) 9P messages travel as a plain
//! stream; each starts with its size[4], little-endian, counting itself
//! (intro(5)), which frames it. A size below the smallest message (7:
//! size, type, tag) or above the link's message size is a broken peer,
//! never a reason to wait for more bytes.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

/// The smallest 9P message: size[4] type[1] tag[2].
pub const SMALLEST_MESSAGE: u32 = 7;

/// Why the stream is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// A size[4] below [`SMALLEST_MESSAGE`].
    TooShort(u32),
    /// A size[4] above the limit.
    TooLong(u32),
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StreamError::TooShort(size) => write!(f, "a 9P size of {size} bytes is too short"),
            StreamError::TooLong(size) => write!(f, "a 9P size of {size} bytes is over msize"),
        }
    }
}

/// Bytes received so far, and the messages they hold.
#[derive(Debug)]
pub struct MessageStream {
    pending: Vec<u8>,
    limit: u32,
    broken: Option<StreamError>,
}

impl MessageStream {
    /// A stream whose messages are at most `limit` bytes (the msize).
    pub fn new(limit: u32) -> MessageStream {
        MessageStream {
            pending: Vec::new(),
            limit,
            broken: None,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.broken.is_none() {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// The next whole message, if one has arrived. Once broken, the stream
    /// stays broken (the link must be reset).
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        if let Some(error) = self.broken {
            return Err(error);
        }
        let Some(header) = self.pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let size = u32::from_le_bytes(*header);
        let error = if size < SMALLEST_MESSAGE {
            Some(StreamError::TooShort(size))
        } else if size > self.limit {
            Some(StreamError::TooLong(size))
        } else {
            None
        };
        if let Some(error) = error {
            self.broken = Some(error);
            self.pending.clear();
            return Err(error);
        }
        let size = size as usize;
        if self.pending.len() < size {
            return Ok(None);
        }
        let rest = self.pending.split_off(size);
        Ok(Some(core::mem::replace(&mut self.pending, rest)))
    }

    /// Forgets everything: the peer is new (the link was reset).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.broken = None;
    }

    /// Bytes of a message still to be completed.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let size = (7 + body.len()) as u32;
        let mut m = size.to_le_bytes().to_vec();
        m.push(kind);
        m.extend_from_slice(&[1, 0]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn messages_come_out_whole_however_the_bytes_are_cut() {
        let a = message(101, b"9P2000");
        let b = message(105, &[]);
        let c = message(117, &[7; 300]);
        let all: Vec<u8> = [a.clone(), b.clone(), c.clone()].concat();
        for cut in 1..all.len() {
            let mut stream = MessageStream::new(8216);
            let mut out = Vec::new();
            for piece in all.chunks(cut) {
                stream.push(piece);
                while let Some(m) = stream.next_message().unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(out, [a.clone(), b.clone(), c.clone()], "pieces of {cut}");
            assert_eq!(stream.buffered(), 0);
        }
    }

    #[test]
    fn a_bad_size_breaks_the_stream_until_reset() {
        let mut stream = MessageStream::new(8216);
        stream.push(&[3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(stream.next_message(), Err(StreamError::TooShort(3)));
        stream.push(&message(100, &[]));
        assert_eq!(stream.next_message(), Err(StreamError::TooShort(3)));
        stream.reset();
        stream.push(&message(100, &[]));
        assert_eq!(stream.next_message(), Ok(Some(message(100, &[]))));

        let mut stream = MessageStream::new(100);
        stream.push(&101u32.to_le_bytes());
        assert_eq!(stream.next_message(), Err(StreamError::TooLong(101)));
        // Garbage such as a shell's text is refused at once, never waited on.
        let mut stream = MessageStream::new(8216);
        stream.push(b"hello, world\n");
        assert!(stream.next_message().is_err());
    }
}
