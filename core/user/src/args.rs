//! Command-line flags the Plan 9 way: `ARGBEGIN` as a function.
//!
//! As Plan 9's `ARGBEGIN`/`ARGEND` (arg(2)): flags come first, each
//! argument that starts with `-` and is not `-` alone is a word of flag
//! letters (`-lw` is `-l -w`); `--` ends the flags and is dropped; the
//! first other argument ends them too and is kept. A letter that takes a
//! value (`ARGF`) takes the rest of its word, or else the next argument.
//! A letter the program does not know is an error, on which a program
//! prints its usage line ([`crate::usage`]) and exits with `usage`.

use alloc::vec::Vec;

/// Why the flags could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFlag {
    /// A letter the program does not take.
    Unknown(char),
    /// A letter that takes a value, with none after it.
    MissingValue(char),
}

/// The flags given: the letters, and the values of those that take one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags<'a> {
    letters: Vec<char>,
    values: Vec<(char, &'a str)>,
}

impl<'a> Flags<'a> {
    /// Whether `letter` was given.
    pub fn has(&self, letter: char) -> bool {
        self.letters.contains(&letter)
    }

    /// The value of `letter`'s last use, if it takes one and was given.
    pub fn value(&self, letter: char) -> Option<&'a str> {
        self.values
            .iter()
            .rev()
            .find(|(given, _)| *given == letter)
            .map(|(_, value)| *value)
    }

    /// Whether no flag was given.
    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }
}

/// Reads the flags at the front of `args` (argv without argv\[0\]).
/// `spec` lists the letters the program takes; a letter followed by `:`
/// takes a value. Returns the flags and the arguments after them.
pub fn parse<'a, S: AsRef<str>>(
    args: &'a [S],
    spec: &str,
) -> Result<(Flags<'a>, &'a [S]), BadFlag> {
    let mut flags = Flags::default();
    let mut rest = args;
    while let Some((word, after)) = rest.split_first() {
        let word = word.as_ref();
        if word == "--" {
            rest = after;
            break;
        }
        let Some(letters) = word.strip_prefix('-').filter(|l| !l.is_empty()) else {
            break;
        };
        rest = after;
        for (at, letter) in letters.char_indices() {
            match takes(spec, letter) {
                None => return Err(BadFlag::Unknown(letter)),
                Some(false) => flags.letters.push(letter),
                Some(true) => {
                    flags.letters.push(letter);
                    // `get`, not indexing: no slicing panic (and its
                    // formatting code) in every program.
                    let inline = letters.get(at + letter.len_utf8()..).unwrap_or_default();
                    let value = if !inline.is_empty() {
                        inline
                    } else if let Some((next, after)) = rest.split_first() {
                        rest = after;
                        next.as_ref()
                    } else {
                        return Err(BadFlag::MissingValue(letter));
                    };
                    flags.values.push((letter, value));
                    break;
                }
            }
        }
    }
    Ok((flags, rest))
}

/// Whether `spec` names `letter` (`Some`), and whether it takes a value.
fn takes(spec: &str, letter: char) -> Option<bool> {
    if letter == ':' {
        return None;
    }
    let mut letters = spec.chars();
    letters.find(|given| *given == letter)?;
    Some(letters.next() == Some(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    #[test]
    fn combined_and_separate_letters() {
        let args = words("-lw -c a b");
        let (flags, rest) = parse(&args, "lwrbc").unwrap();
        assert!(flags.has('l') && flags.has('w') && flags.has('c'));
        assert!(!flags.has('r') && !flags.has('b'));
        assert_eq!(rest, ["a", "b"]);
    }

    #[test]
    fn flags_end_at_the_first_other_argument_or_a_double_dash() {
        let args = words("-l file -w");
        let (flags, rest) = parse(&args, "lw").unwrap();
        assert!(flags.has('l') && !flags.has('w'));
        assert_eq!(rest, ["file", "-w"]);
        let args = words("-l -- -w");
        let (flags, rest) = parse(&args, "lw").unwrap();
        assert!(!flags.has('w'));
        assert_eq!(rest, ["-w"]);
    }

    #[test]
    fn a_lone_dash_is_an_argument() {
        let args = words("- -l");
        let (flags, rest) = parse(&args, "l").unwrap();
        assert!(flags.is_empty());
        assert_eq!(rest, ["-", "-l"]);
    }

    #[test]
    fn no_arguments_at_all() {
        let args: [&str; 0] = [];
        let (flags, rest) = parse(&args, "l").unwrap();
        assert!(flags.is_empty());
        assert!(rest.is_empty());
    }

    #[test]
    fn an_unknown_letter_is_named() {
        let args = words("-lx a");
        assert_eq!(parse(&args, "lw"), Err(BadFlag::Unknown('x')));
        let args = words("-:");
        assert_eq!(parse(&args, "m:"), Err(BadFlag::Unknown(':')));
    }

    #[test]
    fn values_come_from_the_word_or_the_next_argument() {
        let args = words("-pm755 a");
        let (flags, rest) = parse(&args, "pm:").unwrap();
        assert!(flags.has('p'));
        assert_eq!(flags.value('m'), Some("755"));
        assert_eq!(rest, ["a"]);
        let args = words("-m 700 -p b");
        let (flags, rest) = parse(&args, "pm:").unwrap();
        assert_eq!(flags.value('m'), Some("700"));
        assert!(flags.has('p'));
        assert_eq!(rest, ["b"]);
        let args = words("-m");
        assert_eq!(parse(&args, "m:"), Err(BadFlag::MissingValue('m')));
    }
}
