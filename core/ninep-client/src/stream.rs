//! Cuts whole 9P frames out of a byte stream (a virtio console, TCP).
//!
//! Frames are delimited by their own `size[4]` (intro(5)). A size below the
//! header or above the msize means the stream is out of step; the reader
//! says so and the link must be hung up, since nothing after it can be
//! trusted.

use alloc::vec::Vec;

use ninep::{frame_length, DecodeError};

/// Bytes received but not yet handed out as frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as they arrived from the link.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived. `max_size` is the
    /// negotiated msize ([`Client::msize`](crate::Client::msize)).
    pub fn next_frame(&mut self, max_size: u32) -> Result<Option<Vec<u8>>, DecodeError> {
        match frame_length(&self.buffer, max_size)? {
            Some(size) if size <= self.buffer.len() => {
                let rest = self.buffer.split_off(size);
                Ok(Some(core::mem::replace(&mut self.buffer, rest)))
            }
            _ => Ok(None),
        }
    }

    /// Bytes held that do not yet make a frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::FrameReader;
    use ninep::{Frame, Message};

    #[test]
    fn splits_a_stream_at_frame_boundaries() {
        let mut bytes = Frame::new(1, Message::Rclunk).to_bytes().unwrap();
        Frame::new(2, Message::Rwrite { count: 5 })
            .encode(&mut bytes)
            .unwrap();
        let mut reader = FrameReader::new();
        for chunk in bytes.chunks(3) {
            reader.push(chunk);
        }
        let first = reader.next_frame(8192).unwrap().unwrap();
        assert_eq!(Frame::decode(&first, 8192).unwrap().tag, 1);
        let second = reader.next_frame(8192).unwrap().unwrap();
        assert_eq!(Frame::decode(&second, 8192).unwrap().tag, 2);
        assert_eq!(reader.next_frame(8192).unwrap(), None);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn an_impossible_size_is_an_error() {
        let mut reader = FrameReader::new();
        reader.push(&[3, 0, 0, 0, 107, 0, 0]);
        assert!(reader.next_frame(8192).is_err());
        let mut reader = FrameReader::new();
        reader.push(&[0, 0, 1, 0, 107, 0, 0]);
        assert!(reader.next_frame(8192).is_err());
    }
}
