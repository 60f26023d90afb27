//! Formatted output to the kernel console, one bounded line buffer at a time.
//!
//! [`LineBuffer`] collects formatted text in a fixed array (text past its
//! capacity is dropped, never an allocation); [`print`] formats into one
//! and hands it to `debug_write` in pieces of at most `MAX_DEBUG_WRITE`.

use core::fmt::Write;

/// Bytes one [`print`] call can emit.
pub const LINE_CAPACITY: usize = 512;

/// A fixed-size text buffer that implements `fmt::Write`.
pub struct LineBuffer {
    bytes: [u8; LINE_CAPACITY],
    length: usize,
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        LineBuffer {
            bytes: [0; LINE_CAPACITY],
            length: 0,
        }
    }

    /// What was written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineBuffer {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let room = LINE_CAPACITY - self.length;
        let taken = text.len().min(room);
        self.bytes[self.length..self.length + taken].copy_from_slice(&text.as_bytes()[..taken]);
        self.length += taken;
        Ok(())
    }
}

/// Formats `arguments` and writes them to the kernel console.
#[cfg(target_os = "none")]
pub fn print(arguments: core::fmt::Arguments<'_>) {
    let mut line = LineBuffer::new();
    let _ = line.write_fmt(arguments);
    write_bytes(line.as_bytes());
}

/// Writes raw bytes to the kernel console (in pieces the kernel accepts).
#[cfg(target_os = "none")]
pub fn write_bytes(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match crate::user::debug_write(rest) {
            Ok(0) | Err(_) => return,
            Ok(written) => rest = rest.get(written..).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_instead_of_growing() {
        let mut line = LineBuffer::new();
        for _ in 0..LINE_CAPACITY {
            write!(line, "ab").unwrap();
        }
        assert_eq!(line.as_bytes().len(), LINE_CAPACITY);
    }
}
