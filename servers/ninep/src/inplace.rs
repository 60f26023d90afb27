//! Tread and Rread in place: the commonest request and reply, without a copy.
//!
//! A read is what a 9P link carries most, so both ends take these two
//! messages off the wire without building a [`Message`](crate::Message):
//! a server reads a [`Tread`]'s fields where the frame lies and writes an
//! Rread's header around the data its file server appends
//! ([`RreadStart`]); a client writes a Tread directly and takes an
//! [`Rread`]'s data as a slice of the frame. Each function agrees byte for
//! byte with [`Frame`](crate::Frame)'s encode and decode; the tests in
//! `tests/codec.rs` hold them to it. What a function does not accept
//! (anything but a whole, consistent frame of its type) is `None`, for the
//! caller's general path to answer as it answers any frame.
//!
//! The functions are `#[inline]`: they stand for code that was written in
//! place on the callers' hot paths, and across crates LLVM kept them
//! calls without the hint (a 4 KB read from the ramfs task cost 9 474
//! cycles instead of 9 449; docs/performance.md).

use alloc::vec::Vec;

use crate::message::MessageType;
use crate::wire::{Reader, Writer};

/// Bytes of a Tread: size[4] Tread tag[2] fid[4] offset[8] count[4]
/// (read(5)).
pub const TREAD_SIZE: usize = 23;

/// Bytes of an Rread before its data: size[4] Rread tag[2] count[4]
/// (read(5)).
pub const RREAD_HEADER: usize = 11;

/// A Tread with its tag (read(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tread {
    pub tag: u16,
    pub fid: u32,
    pub offset: u64,
    pub count: u32,
}

impl Tread {
    /// The Tread `frame` holds, read where it lies: `None` unless the
    /// frame is exactly one Tread whose size field says so.
    #[inline]
    pub fn decode(frame: &[u8]) -> Option<Self> {
        // A fixed size, so the reader's bounds checks fold away.
        let frame: &[u8; TREAD_SIZE] = frame.try_into().ok()?;
        // read(5): size[4] Tread tag[2] fid[4] offset[8] count[4]
        let mut r = Reader::new(frame);
        let size = r.u32("size").ok()?;
        let kind = r.u8("type").ok()?;
        if size as usize != TREAD_SIZE || kind != MessageType::Tread as u8 {
            return None;
        }
        Some(Self {
            tag: r.u16("tag").ok()?,
            fid: r.u32("fid").ok()?,
            offset: r.u64("offset").ok()?,
            count: r.u32("count").ok()?,
        })
    }

    /// Appends the frame: always [`TREAD_SIZE`] bytes, below any msize.
    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(TREAD_SIZE);
        let mut w = Writer { out };
        // read(5): size[4] Tread tag[2] fid[4] offset[8] count[4]
        w.u32(TREAD_SIZE as u32);
        w.u8(MessageType::Tread as u8);
        w.u16(self.tag);
        w.u32(self.fid);
        w.u64(self.offset);
        w.u32(self.count);
    }
}

/// An Rread's tag and data, the data still in the frame (read(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rread<'a> {
    pub tag: u16,
    pub data: &'a [u8],
}

impl<'a> Rread<'a> {
    /// The Rread `frame` holds: `None` unless the frame is exactly one
    /// Rread of at most `max_size` bytes (the msize) whose count is the
    /// rest of the frame.
    #[inline]
    pub fn decode(frame: &'a [u8], max_size: u32) -> Option<Self> {
        // read(5): size[4] Rread tag[2] count[4] data[count]; the header
        // taken at its fixed size, so the reader's bounds checks fold away.
        let mut r = Reader::new(frame.get(..RREAD_HEADER)?);
        let size = r.u32("size").ok()? as usize;
        let kind = r.u8("type").ok()?;
        let tag = r.u16("tag").ok()?;
        let count = r.u32("count").ok()? as usize;
        // The frame has the header, so `size` is at least RREAD_HEADER
        // once it equals the frame's length.
        if kind != MessageType::Rread as u8
            || size != frame.len()
            || size > max_size as usize
            || count != size - RREAD_HEADER
        {
            return None;
        }
        Some(Self {
            tag,
            data: &frame[RREAD_HEADER..],
        })
    }

    /// Starts an Rread at the end of `out`: room for its header, after
    /// which the caller appends the data itself, once. Then
    /// [`RreadStart::finish`] writes the header, or
    /// [`RreadStart::cancel`] takes it all back.
    #[inline]
    pub fn begin(out: &mut Vec<u8>) -> RreadStart {
        let at = out.len();
        out.extend_from_slice(&[0; RREAD_HEADER]);
        RreadStart { at }
    }
}

/// An Rread begun in a buffer, whose data the caller is appending.
#[derive(Debug)]
#[must_use = "an Rread begun must be finished or cancelled"]
pub struct RreadStart {
    at: usize,
}

impl RreadStart {
    /// Ends the Rread: keeps at most `limit` bytes of what was appended
    /// since [`Rread::begin`] and writes the header before them. Returns
    /// how many bytes the Rread carries.
    #[inline]
    pub fn finish(self, out: &mut Vec<u8>, tag: u16, limit: u32) -> u32 {
        let data = self.at + RREAD_HEADER;
        let n = (out.len() - data).min(limit as usize);
        out.truncate(data + n);
        // `limit` is a u32, so `n` fits one.
        let count = n as u32;
        let size = RREAD_HEADER as u32 + count;
        // read(5): size[4] Rread tag[2] count[4] data[count]
        let header = &mut out[self.at..data];
        header[..4].copy_from_slice(&size.to_le_bytes());
        header[4] = MessageType::Rread as u8;
        header[5..7].copy_from_slice(&tag.to_le_bytes());
        header[7..].copy_from_slice(&count.to_le_bytes());
        count
    }

    /// Takes back the Rread and anything appended after it.
    #[inline]
    pub fn cancel(self, out: &mut Vec<u8>) {
        out.truncate(self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frame, Message};

    #[test]
    fn a_tread_is_read_where_it_lies() {
        let message = Message::Tread {
            fid: 7,
            offset: 1 << 40,
            count: 4096,
        };
        let bytes = Frame::new(3, message).to_bytes().unwrap();
        let tread = Tread {
            tag: 3,
            fid: 7,
            offset: 1 << 40,
            count: 4096,
        };
        assert_eq!(Tread::decode(&bytes), Some(tread));
        let mut out = b"x".to_vec();
        tread.encode(&mut out);
        assert_eq!(&out[1..], bytes);
        // A Twrite of the same size, or a frame whose size lies, is not.
        let mut other = bytes.clone();
        other[4] = MessageType::Twrite as u8;
        assert_eq!(Tread::decode(&other), None);
        let mut lying = bytes;
        lying[0] = 24;
        assert_eq!(Tread::decode(&lying), None);
    }

    #[test]
    fn an_rread_is_written_around_its_data() {
        let mut out = b"before".to_vec();
        let start = Rread::begin(&mut out);
        out.extend_from_slice(b"hello, world");
        assert_eq!(start.finish(&mut out, 9, 5), 5);
        let expected = Frame::new(
            9,
            Message::Rread {
                data: b"hello".to_vec(),
            },
        );
        assert_eq!(&out[6..], expected.to_bytes().unwrap());
        let read = Rread::decode(&out[6..], 64).unwrap();
        assert_eq!((read.tag, read.data), (9, &b"hello"[..]));
        // Above the msize, or cut short: the general path's.
        assert_eq!(Rread::decode(&out[6..], 15), None);
        assert_eq!(Rread::decode(&out[6..out.len() - 1], 64), None);
        let start = Rread::begin(&mut out);
        out.extend_from_slice(b"gone");
        start.cancel(&mut out);
        assert_eq!(&out[6..], expected.to_bytes().unwrap());
    }
}
