//! What Kasane's programs compute, apart from their I/O: host-tested.
//!
//! - [`Counter`]: wc(1)'s counts of lines, words, runes, broken UTF-8
//!   codes and bytes, fed a buffer at a time, and [`Counts::line`], its
//!   output line;
//! - [`parents`]: the directories `mkdir -p` makes, outermost first;
//! - [`ls_suffix`]: the mark `ls -F` adds after a name;
//! - [`mount_flags`]: mount(2)'s flags for `-b`, `-a`, `-c`;
//! - [`relay_spawn`]: how `srv` and `import` start `srv`'s relay;
//! - [`exportfs`]: exportfs's file server over a process namespace.
//! - [`relay`]: what `srv`'s relay remembers of a 9P session, to dial again.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod exportfs;
pub mod relay;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// What wc counts in one input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Newlines.
    pub lines: u64,
    /// Maximal runs of bytes other than blanks (space, tab, newline, CR,
    /// form feed).
    pub words: u64,
    /// Runes: every character, a broken code counting as one.
    pub runes: u64,
    /// Broken UTF-8 codes: each maximal ill-formed part (as a decoder
    /// that replaces it with U+FFFD sees it) counts once.
    pub broken: u64,
    /// Bytes ("characters" in wc(1), which counts bytes).
    pub bytes: u64,
}

/// Which counts wc prints (its flags `-l -w -r -b -c`); it prints them
/// in this order whatever the order of the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    /// `-l`.
    pub lines: bool,
    /// `-w`.
    pub words: bool,
    /// `-r`.
    pub runes: bool,
    /// `-b`.
    pub broken: bool,
    /// `-c`.
    pub bytes: bool,
}

impl Shown {
    /// Without flags wc prints lines, words and bytes (`-lwc`).
    pub const DEFAULT: Shown = Shown {
        lines: true,
        words: true,
        runes: false,
        broken: false,
        bytes: true,
    };
}

impl Counts {
    /// wc's line: each count shown, seven wide, blank-separated, then the
    /// name if there is one (wc(1)).
    pub fn line(&self, shown: &Shown, name: Option<&str>) -> String {
        let fields = [
            (shown.lines, self.lines),
            (shown.words, self.words),
            (shown.runes, self.runes),
            (shown.broken, self.broken),
            (shown.bytes, self.bytes),
        ];
        let mut line = String::new();
        for (_, count) in fields.iter().filter(|(show, _)| *show) {
            let _ = write!(line, " {count:7}");
        }
        if let Some(name) = name {
            let _ = write!(line, " {name}");
        }
        line.split_off(1.min(line.len()))
    }

    /// Adds `other` to these counts (wc's `total` line).
    pub fn add(&mut self, other: &Counts) {
        self.lines += other.lines;
        self.words += other.words;
        self.runes += other.runes;
        self.broken += other.broken;
        self.bytes += other.bytes;
    }
}

/// Counts an input given in pieces; a UTF-8 sequence may be split
/// between two pieces.
#[derive(Clone, Debug, Default)]
pub struct Counter {
    counts: Counts,
    in_word: bool,
    /// The start of a sequence the last piece ended in (at most 3 bytes).
    pending: Vec<u8>,
}

impl Counter {
    /// A counter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the next piece of the input.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.counts.bytes += 1;
            if byte == b'\n' {
                self.counts.lines += 1;
            }
            let blank = byte.is_ascii_whitespace();
            if !blank && !self.in_word {
                self.counts.words += 1;
            }
            self.in_word = !blank;
        }
        if self.pending.is_empty() {
            self.decode(bytes);
        } else {
            let mut joined = core::mem::take(&mut self.pending);
            joined.extend_from_slice(bytes);
            self.decode(&joined);
        }
    }

    /// The counts of the whole input; an unfinished sequence at its end
    /// is one broken code.
    pub fn finish(mut self) -> Counts {
        if !self.pending.is_empty() {
            self.counts.runes += 1;
            self.counts.broken += 1;
        }
        self.counts
    }

    fn decode(&mut self, mut bytes: &[u8]) {
        loop {
            match core::str::from_utf8(bytes) {
                Ok(text) => {
                    self.counts.runes += text.chars().count() as u64;
                    return;
                }
                Err(error) => {
                    let (good, bad) = bytes.split_at(error.valid_up_to());
                    // The prefix is valid UTF-8 by `valid_up_to`.
                    let text = core::str::from_utf8(good).unwrap_or_default();
                    self.counts.runes += text.chars().count() as u64;
                    match error.error_len() {
                        Some(length) => {
                            self.counts.runes += 1;
                            self.counts.broken += 1;
                            bytes = &bad[length..];
                        }
                        None => {
                            self.pending.extend_from_slice(bad);
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The directories `mkdir -p path` makes, outermost first: every prefix
/// of `path` that ends before a `/`, then `path` (`a/b/c` gives `a`,
/// `a/b`, `a/b/c`; `/x/y` gives `/x`, `/x/y`).
pub fn parents(path: &str) -> Vec<&str> {
    let path = path.trim_end_matches('/');
    let mut out = Vec::new();
    for (at, _) in path.match_indices('/') {
        let prefix = &path[..at];
        if !prefix.is_empty() && !prefix.ends_with('/') {
            out.push(prefix);
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
    out
}

/// mount(2)'s flags for mount(1)'s `-b`, `-a` and `-c` (bind(2):
/// MBEFORE, MAFTER, MCREATE; `-b` wins over `-a`), as `srv` and `import`
/// take them.
pub fn mount_flags(before: bool, after: bool, create: bool) -> u32 {
    use kasane_rc::MountFlags;
    let order = if before {
        MountFlags::BEFORE
    } else if after {
        MountFlags::AFTER
    } else {
        MountFlags::REPLACE
    };
    let create = if create {
        MountFlags::CREATE
    } else {
        MountFlags::REPLACE
    };
    order.union(create).bits()
}

/// The relay `srv` leaves behind, `/bin/srv -R ADDRESS NAME` (`import`
/// names it `-`): fd 0 the pipe's served end `served`, fd 1 the
/// connection's data file `data`, fd 2 the caller's.
pub fn relay_spawn(address: &str, name: &str, served: u32, data: u32) -> core_abi::SpawnRequest {
    core_abi::SpawnRequest {
        path: String::from("/bin/srv"),
        argv: alloc::vec![
            String::from("srv"),
            String::from("-R"),
            String::from(address),
            String::from(name),
        ],
        fds: alloc::vec![(0, served), (1, data), (2, 2)],
        flags: 0,
    }
}

/// What `ls -F` adds after a name (ls(1)): `/` after a directory, `*`
/// after an executable file, nothing otherwise.
pub fn ls_suffix(is_dir: bool, mode: u32) -> &'static str {
    if is_dir {
        "/"
    } else if mode & 0o111 != 0 {
        "*"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(pieces: &[&[u8]]) -> Counts {
        let mut counter = Counter::new();
        for piece in pieces {
            counter.feed(piece);
        }
        counter.finish()
    }

    #[test]
    fn lines_words_and_bytes() {
        let counts = count(&[b"one two  three\n", b"four\n"]);
        assert_eq!(
            counts,
            Counts {
                lines: 2,
                words: 4,
                runes: 20,
                broken: 0,
                bytes: 20
            }
        );
    }

    #[test]
    fn a_word_split_between_pieces_counts_once() {
        let counts = count(&[b"hel", b"lo wor", b"ld"]);
        assert_eq!((counts.words, counts.lines), (2, 0));
    }

    #[test]
    fn runes_are_characters_even_across_pieces() {
        let text = "重ねé\n".as_bytes();
        assert_eq!(text.len(), 9);
        let whole = count(&[text]);
        assert_eq!((whole.runes, whole.broken, whole.bytes), (4, 0, 9));
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(count(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn broken_codes_count_once_each() {
        // A stray continuation byte, an unfinished sequence before ASCII,
        // and an unfinished one at the end.
        let counts = count(&[b"a\x80b", b"\xe9\x87c", b"\xe9"]);
        assert_eq!(counts.broken, 3);
        assert_eq!(counts.runes, 6);
        assert_eq!(counts.bytes, 7);
    }

    #[test]
    fn the_line_keeps_wc_order_and_width() {
        let counts = count(&[b"one two three\n"]);
        assert_eq!(
            counts.line(&Shown::DEFAULT, None),
            "      1       3      14"
        );
        let only = Shown {
            lines: true,
            words: false,
            runes: false,
            broken: false,
            bytes: false,
        };
        assert_eq!(counts.line(&only, Some("f")), "      1 f");
        let all = Shown {
            lines: true,
            words: true,
            runes: true,
            broken: true,
            bytes: true,
        };
        assert_eq!(
            counts.line(&all, Some("f")),
            "      1       3      14       0      14 f"
        );
    }

    #[test]
    fn totals_add_up() {
        let mut total = Counts::default();
        total.add(&count(&[b"a b\n"]));
        total.add(&count(&[b"c\n"]));
        assert_eq!((total.lines, total.words, total.bytes), (2, 3, 6));
    }

    #[test]
    fn parents_outermost_first() {
        assert_eq!(parents("a/b/c"), ["a", "a/b", "a/b/c"]);
        assert_eq!(parents("/x/y/"), ["/x", "/x/y"]);
        assert_eq!(parents("a//b"), ["a", "a//b"]);
        assert_eq!(parents("d"), ["d"]);
        assert!(parents("/").is_empty());
    }

    #[test]
    fn mount_flags_as_bind_has_them() {
        assert_eq!(mount_flags(false, false, false), 0);
        assert_eq!(mount_flags(true, true, false), 1);
        assert_eq!(mount_flags(false, true, true), 6);
        assert_eq!(mount_flags(false, false, true), 4);
    }

    #[test]
    fn ls_marks() {
        assert_eq!(ls_suffix(true, 0o755), "/");
        assert_eq!(ls_suffix(false, 0o755), "*");
        assert_eq!(ls_suffix(false, 0o644), "");
    }
}
