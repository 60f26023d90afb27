//! The console's line discipline: cons(3)'s cooked input, without hardware.
//!
//! Core feeds it the bytes that arrive on the console, one at a time, and
//! writes back what it asks to echo (a UART does not echo). A reader of
//! `/dev/cons` takes at most one line per read. The rules:
//!
//! - A byte that is not special goes into the line being typed and is
//!   echoed as it is.
//! - `\n` and `\r` end the line; the reader sees `\n`, and `\n` is echoed.
//!   A `\n` right after a `\r` is the second half of one line end and is
//!   dropped, so a terminal that sends CR LF does not make empty lines.
//! - Backspace (0x08) and DEL (0x7f) erase the last character (a whole
//!   UTF-8 sequence) and echo `\b \b`; on an empty line they do nothing.
//! - ^U (0x15) erases the whole line, echoing `\b \b` per character.
//! - ^D (0x04) ends the line without adding anything and is not echoed:
//!   on an empty line the next read returns no bytes (end of file),
//!   otherwise it returns what was typed, without a newline.
//! - A line holds at most [`LINE_MAX`] bytes with its newline; bytes past
//!   that are dropped unechoed until the line is ended or erased.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// The longest line, its `\n` included.
pub const LINE_MAX: usize = 4096;

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const KILL: u8 = 0x15;
const EOF: u8 = 0x04;

/// What erasing one character echoes.
const RUBOUT: &[u8] = b"\x08 \x08";

/// Typed input, cooked into lines.
#[derive(Debug, Default, Clone)]
pub struct LineDiscipline {
    /// Lines a reader may take, oldest first: each ends in `\n`, or was
    /// ended by ^D (possibly empty: end of file). The first may have been
    /// read in part.
    ready: VecDeque<Vec<u8>>,
    /// The line being typed.
    line: Vec<u8>,
    /// The last byte was `\r`.
    after_cr: bool,
}

impl LineDiscipline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one typed byte, and appends to `echo` what the console should
    /// show for it.
    pub fn input(&mut self, byte: u8, echo: &mut Vec<u8>) {
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => {}
            b'\n' | b'\r' => {
                self.line.push(b'\n');
                echo.push(b'\n');
                self.end_line();
            }
            BACKSPACE | DELETE => {
                if self.erase_char() {
                    echo.extend_from_slice(RUBOUT);
                }
            }
            KILL => {
                while self.erase_char() {
                    echo.extend_from_slice(RUBOUT);
                }
            }
            EOF => self.end_line(),
            // Room is kept for the newline.
            _ if self.line.len() >= LINE_MAX - 1 => {}
            _ => {
                self.line.push(byte);
                echo.push(byte);
            }
        }
    }

    /// Whether a read would be answered now.
    pub fn has_line(&self) -> bool {
        !self.ready.is_empty()
    }

    /// A read of at most `count` bytes: `None` while no line is complete;
    /// otherwise the next line or the part of it that fits (empty at end
    /// of file). A read of 0 bytes takes nothing.
    pub fn read(&mut self, count: usize) -> Option<Vec<u8>> {
        let first = self.ready.front_mut()?;
        if count == 0 {
            return Some(Vec::new());
        }
        if first.len() > count {
            let rest = first.split_off(count);
            return Some(core::mem::replace(first, rest));
        }
        self.ready.pop_front()
    }

    /// The line being typed (not yet readable).
    pub fn typed(&self) -> &[u8] {
        &self.line
    }

    fn end_line(&mut self) {
        self.ready.push_back(core::mem::take(&mut self.line));
    }

    /// Removes the last character of the line being typed, if any.
    fn erase_char(&mut self) -> bool {
        // UTF-8 continuation bytes are 10xxxxxx: drop them with their lead.
        while let Some(&last) = self.line.last() {
            self.line.pop();
            if last & 0xC0 != 0x80 {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Types `bytes`; returns the echo.
    fn feed(discipline: &mut LineDiscipline, bytes: &[u8]) -> Vec<u8> {
        let mut echo = Vec::new();
        for &byte in bytes {
            discipline.input(byte, &mut echo);
        }
        echo
    }

    #[test]
    fn a_line_is_echoed_and_read_whole() {
        let mut d = LineDiscipline::new();
        assert_eq!(feed(&mut d, b"ls /tmp"), b"ls /tmp");
        assert!(!d.has_line());
        assert_eq!(d.read(100), None);
        assert_eq!(feed(&mut d, b"\n"), b"\n");
        assert_eq!(d.read(100).unwrap(), b"ls /tmp\n");
        assert_eq!(d.read(100), None);
    }

    #[test]
    fn one_line_per_read() {
        let mut d = LineDiscipline::new();
        feed(&mut d, b"a\nbc\nde");
        assert_eq!(d.read(100).unwrap(), b"a\n");
        assert_eq!(d.read(100).unwrap(), b"bc\n");
        assert_eq!(d.read(100), None);
        assert_eq!(d.typed(), b"de");
    }

    #[test]
    fn a_short_read_leaves_the_rest_of_the_line() {
        let mut d = LineDiscipline::new();
        feed(&mut d, b"abcdef\n");
        assert_eq!(d.read(0).unwrap(), b"");
        assert_eq!(d.read(4).unwrap(), b"abcd");
        assert_eq!(d.read(4).unwrap(), b"ef\n");
        assert!(!d.has_line());
    }

    #[test]
    fn carriage_return_ends_a_line_and_cr_lf_is_one_end() {
        let mut d = LineDiscipline::new();
        assert_eq!(feed(&mut d, b"x\ry\r\nz\n\n"), b"x\ny\nz\n\n");
        assert_eq!(d.read(9).unwrap(), b"x\n");
        assert_eq!(d.read(9).unwrap(), b"y\n");
        assert_eq!(d.read(9).unwrap(), b"z\n");
        // A second \n after a \n (not after \r) is an empty line.
        assert_eq!(d.read(9).unwrap(), b"\n");
        assert_eq!(d.read(9), None);
    }

    #[test]
    fn backspace_and_delete_erase_one_character() {
        let mut d = LineDiscipline::new();
        assert_eq!(
            feed(&mut d, b"lx\x08s\x7f\x7fls"),
            b"lx\x08 \x08s\x08 \x08\x08 \x08ls"
        );
        assert_eq!(d.typed(), b"ls");
        // Nothing to erase: nothing echoed.
        let mut empty = LineDiscipline::new();
        assert_eq!(feed(&mut empty, b"\x08\x7f"), b"");
        // A multi-byte character goes as one.
        let mut utf8 = LineDiscipline::new();
        let echo = feed(&mut utf8, "aé\x7f".as_bytes());
        assert_eq!(utf8.typed(), b"a");
        assert!(echo.ends_with(RUBOUT));
    }

    #[test]
    fn kill_erases_the_line() {
        let mut d = LineDiscipline::new();
        let echo = feed(&mut d, b"rm -r /\x15");
        assert_eq!(d.typed(), b"");
        assert_eq!(echo, [b"rm -r /".as_slice(), &RUBOUT.repeat(7)].concat());
        feed(&mut d, b"ls\n");
        assert_eq!(d.read(10).unwrap(), b"ls\n");
    }

    #[test]
    fn control_d_is_end_of_file_on_an_empty_line() {
        let mut d = LineDiscipline::new();
        assert_eq!(feed(&mut d, b"\x04"), b"");
        assert!(d.has_line());
        assert_eq!(d.read(10).unwrap(), b"");
        assert_eq!(d.read(10), None);
    }

    #[test]
    fn control_d_delivers_a_partial_line() {
        let mut d = LineDiscipline::new();
        assert_eq!(feed(&mut d, b"abc\x04\x04"), b"abc");
        assert_eq!(d.read(10).unwrap(), b"abc");
        assert_eq!(d.read(10).unwrap(), b"");
        assert_eq!(d.read(10), None);
    }

    #[test]
    fn an_overlong_line_is_cut_but_still_ends() {
        let mut d = LineDiscipline::new();
        let long = alloc::vec![b'a'; LINE_MAX + 10];
        let echo = feed(&mut d, &long);
        assert_eq!(echo.len(), LINE_MAX - 1);
        feed(&mut d, b"\n");
        let line = d.read(2 * LINE_MAX).unwrap();
        assert_eq!(line.len(), LINE_MAX);
        assert_eq!(line.last(), Some(&b'\n'));
    }
}
