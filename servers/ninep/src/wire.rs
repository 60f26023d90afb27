//! Little-endian primitives: a bounds-checked reader and an appending writer.
//!
//! The reader checks the bytes remaining before it reads or allocates
//! anything, which is what keeps decoding free of panics and of allocations
//! driven by a peer's count fields.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{DecodeError, EncodeError};
use crate::types::{Qid, QidType};

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// `s[n]`: `n[2]` then n bytes of UTF-8 without NUL (intro(5)).
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        let bytes = self.take(len, field)?;
        if bytes.contains(&0) {
            return Err(DecodeError::NulInString { field });
        }
        core::str::from_utf8(bytes)
            .map(String::from)
            .map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    /// `qid[13]`: `type[1] vers[4] path[8]` (intro(5)).
    pub(crate) fn qid(&mut self, field: &'static str) -> Result<Qid, DecodeError> {
        let kind = QidType::from_bits_retain(self.u8(field)?);
        let version = self.u32(field)?;
        let path = self.u64(field)?;
        Ok(Qid {
            kind,
            version,
            path,
        })
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self, message: &'static str) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { message, extra }),
        }
    }
}

pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn string(&mut self, s: &str, field: &'static str) -> Result<(), EncodeError> {
        let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong {
            field,
            len: s.len(),
        })?;
        if s.as_bytes().contains(&0) {
            return Err(EncodeError::NulInString { field });
        }
        self.u16(len);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    pub(crate) fn qid(&mut self, q: &Qid) {
        self.u8(q.kind.bits());
        self.u32(q.version);
        self.u64(q.path);
    }

    /// `count[4] data[count]`.
    pub(crate) fn data(&mut self, d: &[u8]) -> Result<(), EncodeError> {
        let len = u32::try_from(d.len()).map_err(|_| EncodeError::DataTooLong { len: d.len() })?;
        self.u32(len);
        self.out.extend_from_slice(d);
        Ok(())
    }
}
