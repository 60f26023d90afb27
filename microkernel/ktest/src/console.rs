//! Console output one line at a time, and the text of a failed case.
//!
//! Every thread of ktest, and of the tasks it creates, prints through the
//! kernel's `debug_write`. A line is formatted into a fixed buffer on the
//! stack and written with one call, so lines of different threads never
//! interleave and printing takes no lock: a lock shared by threads of
//! different priorities would let a high-priority thread spin forever on a
//! lock that a preempted low-priority thread holds.
//!
//! Invariants:
//! - A [`Text`] never grows past its capacity: what does not fit is cut and
//!   the text ends in "..." (formatting never fails).
//! - The bytes are always valid UTF-8: a cut never splits a character.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use core::fmt;

/// A bounded piece of text, built with `write!`.
#[derive(Clone)]
pub struct Text<const CAPACITY: usize> {
    bytes: [u8; CAPACITY],
    length: usize,
    truncated: bool,
}

impl<const CAPACITY: usize> Text<CAPACITY> {
    const ELLIPSIS: &'static str = "...";

    /// Empty text.
    pub const fn new() -> Self {
        Text {
            bytes: [0; CAPACITY],
            length: 0,
            truncated: false,
        }
    }

    /// The text formatted from `arguments`, cut to the capacity.
    pub fn from_arguments(arguments: fmt::Arguments<'_>) -> Self {
        let mut text = Self::new();
        let _ = fmt::write(&mut text, arguments);
        text
    }

    /// The text so far, "..." included if it was cut.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s and whole characters are ever copied in.
        core::str::from_utf8(&self.bytes[..self.length]).unwrap_or("?")
    }

    /// Room left before the ellipsis reserve.
    fn room(&self) -> usize {
        CAPACITY
            .saturating_sub(Self::ELLIPSIS.len())
            .saturating_sub(self.length)
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        self.bytes[self.length..self.length + bytes.len()].copy_from_slice(bytes);
        self.length += bytes.len();
    }
}

impl<const CAPACITY: usize> Default for Text<CAPACITY> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAPACITY: usize> fmt::Write for Text<CAPACITY> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        if text.len() <= self.room() {
            self.push_bytes(text.as_bytes());
            return Ok(());
        }
        let mut cut = self.room();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.push_bytes(&text.as_bytes()[..cut]);
        if CAPACITY >= Self::ELLIPSIS.len() {
            self.push_bytes(Self::ELLIPSIS.as_bytes());
        }
        self.truncated = true;
        Ok(())
    }
}

impl<const CAPACITY: usize> fmt::Display for Text<CAPACITY> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl<const CAPACITY: usize> fmt::Debug for Text<CAPACITY> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), formatter)
    }
}

/// Bytes of one console line without its newline.
pub const LINE_CAPACITY: usize = 319;

/// Writes one line (a newline is added) to the kernel console.
#[cfg(target_os = "none")]
pub fn print_line(arguments: fmt::Arguments<'_>) {
    let body = Text::<LINE_CAPACITY>::from_arguments(arguments);
    // One more byte than the body can hold, so the newline always fits.
    let line = Text::<{ LINE_CAPACITY + 1 }>::from_arguments(format_args!("{body}\n"));
    // A console that refuses output leaves nothing better to do.
    let _ = microkernel_rt::user::debug_print(line.as_str());
}

/// Prints one formatted line on the kernel console.
#[cfg(target_os = "none")]
macro_rules! say {
    ($($argument:tt)*) => {
        $crate::console::print_line(format_args!($($argument)*))
    };
}

/// Why a case failed: one line of text for `ktest: FAIL NAME: why`.
pub type Failure = Text<240>;

/// Returns from the enclosing case (or helper) with a formatted [`Failure`].
#[cfg_attr(not(target_os = "none"), allow(unused_macros))]
macro_rules! fail {
    ($($argument:tt)*) => {
        return Err($crate::console::Failure::from_arguments(format_args!($($argument)*)))
    };
}

/// Fails the enclosing case with a formatted [`Failure`] unless `condition`.
#[cfg_attr(not(target_os = "none"), allow(unused_macros))]
macro_rules! ensure {
    ($condition:expr, $($argument:tt)*) => {
        if !$condition {
            fail!($($argument)*);
        }
    };
}

/// Turns any error into a [`Failure`] that says what was being done.
pub trait OrFail<T> {
    /// `Ok` stays; `Err(error)` becomes "`what`: error".
    fn or_fail(self, what: &str) -> Result<T, Failure>;
}

impl<T, E: fmt::Debug> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, Failure> {
        self.map_err(|error| Failure::from_arguments(format_args!("{what}: {error:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    fn failing(value: u32) -> Result<u32, Failure> {
        ensure!(value < 10, "value {value} is too big");
        Ok(value)
    }

    #[test]
    fn ensure_and_or_fail() {
        assert_eq!(failing(3).unwrap(), 3);
        assert_eq!(failing(12).unwrap_err().as_str(), "value 12 is too big");
        let error: Result<(), &str> = Err("boom");
        assert_eq!(
            error.or_fail("doing it").unwrap_err().as_str(),
            "doing it: \"boom\""
        );
    }

    #[test]
    fn fits() {
        let text = Text::<16>::from_arguments(format_args!("a{}c", 'b'));
        assert_eq!(text.as_str(), "abc");
    }

    #[test]
    fn cuts_with_ellipsis() {
        let text = Text::<8>::from_arguments(format_args!("{}", "0123456789"));
        assert_eq!(text.as_str(), "01234...");
        let mut more = text.clone();
        more.write_str("x").unwrap();
        assert_eq!(more.as_str(), "01234...");
    }

    #[test]
    fn never_splits_a_character() {
        let text = Text::<7>::from_arguments(format_args!("ab\u{e9}\u{e9}\u{e9}"));
        assert_eq!(text.as_str(), "ab\u{e9}...");
        assert!(text.as_str().len() <= 7);
    }
}
