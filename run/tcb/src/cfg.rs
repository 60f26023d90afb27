//! Evaluates `#[cfg(...)]` predicates the way the bare-metal build sees them.
//!
//! The TCB is what is compiled for `x86_64-unknown-none` in a release build:
//! `test` is off, `target_os` is `"none"`, `target_arch` is `"x86_64"`,
//! `debug_assertions` is off (the images use the `image` profile), and a
//! feature is on when cargo enables it for that crate in that build. A
//! predicate the counter does not know counts as true, so unknown code is
//! counted rather than hidden.

use crate::lex::{Kind, Token};
use std::collections::BTreeSet;

/// The build a predicate is evaluated for.
#[derive(Clone, Debug, Default)]
pub struct Build {
    /// The crate's features enabled in the bare-metal build.
    pub features: BTreeSet<String>,
}

impl Build {
    /// Evaluates the predicate in `tokens` (what is inside `cfg( ... )`).
    pub fn eval(&self, tokens: &[Token]) -> bool {
        let mut parser = Parser { tokens, at: 0 };
        parser.predicate(self)
    }

    fn option(&self, name: &str, value: Option<&str>) -> bool {
        match (name, value) {
            ("test" | "doc" | "miri" | "debug_assertions" | "unix" | "windows", None) => false,
            ("feature", Some(feature)) => self.features.contains(feature),
            ("target_os", Some(os)) => os == "none",
            ("target_arch", Some(arch)) => arch == "x86_64",
            ("target_pointer_width", Some(width)) => width == "64",
            ("target_endian", Some(endian)) => endian == "little",
            ("target_family", Some(_)) => false,
            ("panic", Some(strategy)) => strategy == "abort",
            _ => true,
        }
    }
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn predicate(&mut self, build: &Build) -> bool {
        let Some(Kind::Ident(name)) = self.peek().map(|t| t.kind.clone()) else {
            return true;
        };
        self.at += 1;
        if self.peek().is_some_and(|t| t.is_punct('(')) {
            self.at += 1;
            let mut values = Vec::new();
            while self.peek().is_some_and(|t| !t.is_punct(')')) {
                values.push(self.predicate(build));
                if self.peek().is_some_and(|t| t.is_punct(',')) {
                    self.at += 1;
                }
            }
            self.at += 1;
            return match name.as_str() {
                "all" => values.iter().all(|&v| v),
                "any" => values.iter().any(|&v| v),
                "not" => !values.first().copied().unwrap_or(false),
                _ => true,
            };
        }
        if self.peek().is_some_and(|t| t.is_punct('=')) {
            self.at += 1;
            let value = match self.peek().map(|t| &t.kind) {
                Some(Kind::Str(value)) => value.clone(),
                _ => return true,
            };
            self.at += 1;
            return build.option(&name, Some(&value));
        }
        build.option(&name, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::tokenize;

    fn eval(features: &[&str], predicate: &str) -> bool {
        let build = Build {
            features: features.iter().map(|f| f.to_string()).collect(),
        };
        build.eval(&tokenize(predicate))
    }

    #[test]
    fn bare_metal_release_build() {
        assert!(!eval(&[], "test"));
        assert!(eval(&[], "target_os = \"none\""));
        assert!(!eval(&[], "not(target_os = \"none\")"));
        assert!(!eval(&[], "debug_assertions"));
        assert!(eval(&[], "all(target_arch = \"x86_64\", not(test))"));
        assert!(!eval(&[], "any(test, feature = \"std\")"));
    }

    #[test]
    fn features_come_from_the_build() {
        assert!(eval(&["std"], "feature = \"std\""));
        assert!(!eval(&["alloc"], "feature = \"std\""));
    }

    #[test]
    fn unknown_predicates_count() {
        assert!(eval(&[], "kasane_unknown"));
        assert!(eval(&[], "something(else)"));
    }
}
