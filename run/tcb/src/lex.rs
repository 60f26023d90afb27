//! A Rust tokenizer just precise enough to find items and skip comments.
//!
//! It knows every form that can hide a brace or a `#` from a naive scan:
//! line and (nested) block comments, strings with escapes, raw strings with
//! any number of `#`, byte and C strings, character literals (including
//! `'{'` and `'\''`) as against lifetimes, and raw identifiers. Everything
//! else is an identifier, a number or one punctuation character. Comments
//! produce no tokens, so a line holding only a comment holds no token.

/// What a token is, as far as the counter cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword (`r#` stripped from raw identifiers).
    Ident(String),
    /// A string literal of any kind, with its contents (escapes kept raw).
    Str(String),
    /// Any other literal: a number, a character, a byte.
    Literal,
    /// A lifetime or loop label.
    Lifetime,
    /// One punctuation character.
    Punct(char),
}

/// One token and the lines (1-based, inclusive) it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub first_line: usize,
    pub last_line: usize,
}

impl Token {
    /// Whether this is the punctuation character `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }

    /// Whether this is the identifier or keyword `word`.
    pub fn is_ident(&self, word: &str) -> bool {
        matches!(&self.kind, Kind::Ident(name) if name == word)
    }
}

/// Splits `text` into tokens, dropping whitespace and comments. An
/// unterminated comment or literal runs to the end of the text (the file
/// would not compile, so the count does not matter).
pub fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        at: 0,
        line: 1,
    };
    let mut tokens = Vec::new();
    while let Some(token) = lexer.next_token() {
        tokens.push(token);
    }
    tokens
}

struct Lexer<'a> {
    chars: &'a [char],
    at: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn next_token(&mut self) -> Option<Token> {
        loop {
            let c = self.peek(0)?;
            if c.is_whitespace() {
                self.bump();
            } else if c == '/' && self.peek(1) == Some('/') {
                while self.peek(0).is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if c == '/' && self.peek(1) == Some('*') {
                self.block_comment();
            } else {
                break;
            }
        }
        let first_line = self.line;
        let kind = self.token_kind();
        Some(Token {
            kind,
            first_line,
            last_line: self.line,
        })
    }

    /// Block comments nest in Rust (reference, "Comments").
    fn block_comment(&mut self) {
        self.at += 2;
        let mut depth = 1;
        while depth > 0 {
            match (self.peek(0), self.peek(1)) {
                (None, _) => return,
                (Some('/'), Some('*')) => {
                    self.at += 2;
                    depth += 1;
                }
                (Some('*'), Some('/')) => {
                    self.at += 2;
                    depth -= 1;
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn token_kind(&mut self) -> Kind {
        let c = self.peek(0).unwrap_or(' ');
        // Literal prefixes: b"", br"", c"", cr"", r"", b'x'.
        if let Some(kind) = self.prefixed_literal() {
            return kind;
        }
        if c == 'r' && self.peek(1) == Some('#') && self.peek(2).is_some_and(is_ident_start) {
            self.at += 2;
            return Kind::Ident(self.ident());
        }
        if is_ident_start(c) {
            return Kind::Ident(self.ident());
        }
        if c.is_ascii_digit() {
            self.number();
            return Kind::Literal;
        }
        if c == '"' {
            self.bump();
            return Kind::Str(self.quoted('"'));
        }
        if c == '\'' {
            return self.quote();
        }
        self.bump();
        Kind::Punct(c)
    }

    /// A literal starting with a letter prefix, if one starts here.
    fn prefixed_literal(&mut self) -> Option<Kind> {
        let c0 = self.peek(0)?;
        let (prefix_len, raw) = match (c0, self.peek(1), self.peek(2)) {
            ('b' | 'c', Some('r'), Some('"' | '#')) => (2, true),
            ('r', Some('"'), _) => (1, true),
            ('r', Some('#'), _) => {
                // `r#"` or `r##"` is a raw string; `r#name` is an identifier.
                let mut n = 1;
                while self.peek(n) == Some('#') {
                    n += 1;
                }
                if self.peek(n) != Some('"') {
                    return None;
                }
                (1, true)
            }
            ('b' | 'c', Some('"'), _) => (1, false),
            ('b', Some('\''), _) => {
                self.at += 1;
                return Some(self.quote());
            }
            _ => return None,
        };
        self.at += prefix_len;
        if raw {
            Some(Kind::Str(self.raw_string()))
        } else {
            self.bump();
            Some(Kind::Str(self.quoted('"')))
        }
    }

    fn raw_string(&mut self) -> String {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            self.bump();
            hashes += 1;
        }
        self.bump(); // the opening quote
        let mut text = String::new();
        while let Some(c) = self.bump() {
            if c == '"' && (0..hashes).all(|i| self.peek(i) == Some('#')) {
                self.at += hashes;
                return text;
            }
            text.push(c);
        }
        text
    }

    /// The rest of a literal closed by `end`, after its opening quote.
    fn quoted(&mut self, end: char) -> String {
        let mut text = String::new();
        while let Some(c) = self.bump() {
            if c == end {
                break;
            }
            text.push(c);
            if c == '\\' {
                if let Some(escaped) = self.bump() {
                    text.push(escaped);
                }
            }
        }
        text
    }

    /// `'x'`, `'\n'`, `'{'` are characters; `'a` and `'static` are lifetimes.
    fn quote(&mut self) -> Kind {
        self.bump();
        match (self.peek(0), self.peek(1)) {
            (Some('\\'), _) => {
                self.quoted('\'');
                Kind::Literal
            }
            (Some(_), Some('\'')) => {
                self.at += 2;
                Kind::Literal
            }
            (Some(c), _) if is_ident_start(c) => {
                self.ident();
                Kind::Lifetime
            }
            _ => Kind::Punct('\''),
        }
    }

    fn ident(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek(0).filter(|&c| is_ident_continue(c)) {
            name.push(c);
            self.bump();
        }
        name
    }

    /// Digits, letters, `_` and a `.` followed by a digit (`1.5`, `0x1F_u8`,
    /// `1e9`); `1..2` and `x.0.1` stay apart.
    fn number(&mut self) {
        while let Some(c) = self.peek(0) {
            let fraction = c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit());
            if is_ident_continue(c) || fraction {
                self.bump();
            } else {
                break;
            }
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        tokenize(text).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn comments_leave_no_tokens() {
        assert!(tokenize("// a { \n /// b\n //! c\n /* d /* e */ { */").is_empty());
    }

    #[test]
    fn braces_in_literals_are_not_punctuation() {
        let kinds = kinds(r####"x("{", '{', b'}', r#"}"#, br"{", "\"}")"####);
        let braces = kinds
            .iter()
            .filter(|k| matches!(k, Kind::Punct('{' | '}')))
            .count();
        assert_eq!(braces, 0, "{kinds:?}");
    }

    #[test]
    fn lifetimes_and_characters() {
        assert_eq!(
            kinds("'a 'x' '\\'' 'static"),
            vec![Kind::Lifetime, Kind::Literal, Kind::Literal, Kind::Lifetime]
        );
    }

    #[test]
    fn raw_identifier_is_an_identifier() {
        assert_eq!(kinds("r#type"), vec![Kind::Ident("type".into())]);
    }

    #[test]
    fn tokens_know_their_lines() {
        let tokens = tokenize("a\n\"b\nc\"\n d");
        let lines: Vec<_> = tokens.iter().map(|t| (t.first_line, t.last_line)).collect();
        assert_eq!(lines, vec![(1, 1), (2, 3), (4, 4)]);
    }
}
