//! Splits shell text into tokens, as rc(1)'s lexical rules say.
//!
//! A word is cut into atoms (literal text, quoted text, `$var`, `$#var`,
//! `=`, `^`, parentheses); each token records whether blank space came
//! before it, so the parser can join adjacent atoms into one word (rc's
//! "free carets") and can tell `x=1` from `echo x=1`.
//!
//! Rules taken from rc(1): `#` starts a comment wherever a word could not
//! go on (so `'#c'` must be quoted, as in Plan 9); quoted text is literal
//! and `''` inside quotes is one quote; a backslash before a newline joins
//! two lines; `;` and newline end a command.

use alloc::string::String;
use alloc::vec::Vec;

use crate::ast::RedirectKind;
use crate::parser::ParseError;

/// One token of shell text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Literal text; `quoted` if it came from quotes (never a name then).
    Text {
        text: String,
        quoted: bool,
    },
    /// `$name`.
    Var(String),
    /// `$#name`.
    Count(String),
    /// `$"name`: the variable's elements joined by spaces, one word.
    Join(String),
    /// `{`.
    LeftBrace,
    /// `}`.
    RightBrace,
    /// `` ` ``, before the `{` of a command substitution.
    Backquote,
    /// `&&`.
    AndAnd,
    /// `||`.
    OrOr,
    /// `&`: a background job.
    Amp,
    /// `^`, explicit concatenation.
    Caret,
    /// `=`, an assignment at the start of a command, else literal text.
    Equals,
    LeftParen,
    RightParen,
    /// `|` or `|[n]`: the left command's fd n (default 1) feeds the right.
    Pipe {
        fd: u32,
    },
    /// `>`, `>>`, `<`, each with an optional `[n]`, `[n=m]` or `[n=]`.
    Redirect(RedirectToken),
    /// `<<tag` (fd 0, or `<<[n]tag`) and the text of the lines after the
    /// command's line, up to the line that is `tag`.
    HereDoc {
        fd: u32,
        text: String,
        quoted: bool,
    },
    Semicolon,
    Newline,
}

/// A redirection operator before its target is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectToken {
    pub fd: u32,
    pub kind: RedirectKind,
    /// `[n=m]` or `[n=]`.
    pub dup: Option<Dup>,
}

/// The right side of `[n=m]` (copy m) or `[n=]` (close n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dup {
    Copy(u32),
    Close,
}

/// `[n]`, `[n=m]` or `[n=]` after an operator.
struct Bracket {
    fd: u32,
    dup: Option<Dup>,
}

/// A token and where it stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    pub token: Token,
    /// No blank space between this token and the one before.
    pub joined: bool,
    /// 1-based line number.
    pub line: usize,
    /// Byte offsets of the token in the source, start and end.
    pub start: usize,
    pub end: usize,
}

/// Characters that end an unquoted word (rc(1): "special characters").
fn is_special(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t'
            | '\r'
            | '\n'
            | '#'
            | ';'
            | '&'
            | '|'
            | '^'
            | '$'
            | '='
            | '\''
            | '`'
            | '{'
            | '}'
            | '('
            | ')'
            | '<'
            | '>'
    )
}

/// rc(1): a variable name is letters, digits, underscore, or `*`.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '*'
}

struct Lexer<'a> {
    source: &'a str,
    /// Byte offset of the next character.
    at: usize,
    /// Byte offset where the token being read started.
    start: usize,
    line: usize,
    tokens: Vec<Spanned>,
    joined: bool,
    /// Here documents whose text starts after the next newline: the
    /// token's index and the tag.
    pending: Vec<(usize, String)>,
}

/// A cursor over the source with the few operations of `Peekable`.
impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.source[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn bump_if(&mut self, test: impl Fn(&char) -> bool) -> Option<char> {
        let c = self.peek().filter(|c| test(c))?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn bump_if_eq(&mut self, want: char) -> Option<char> {
        self.bump_if(|&c| c == want)
    }
}

/// Tokenizes `source`. An unterminated quote is an incomplete error, so an
/// interactive caller can read another line and try again.
pub fn tokenize(source: &str) -> Result<Vec<Spanned>, ParseError> {
    let mut lexer = Lexer {
        source,
        at: 0,
        start: 0,
        line: 1,
        tokens: Vec::new(),
        joined: false,
        pending: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

impl Lexer<'_> {
    fn push(&mut self, token: Token) {
        self.tokens.push(Spanned {
            token,
            joined: self.joined,
            line: self.line,
            start: self.start,
            end: self.at,
        });
        self.joined = true;
    }

    fn error(&self, message: String) -> ParseError {
        ParseError::new(message, self.line)
    }

    fn run(&mut self) -> Result<(), ParseError> {
        loop {
            self.start = self.at;
            let Some(c) = self.bump() else { break };
            match c {
                ' ' | '\t' | '\r' => self.joined = false,
                '\\' if self.peek() == Some('\n') => {
                    // rc(1): backslash-newline is a blank.
                    self.bump();
                    self.line += 1;
                    self.joined = false;
                }
                '#' => {
                    while self.bump_if(|&c| c != '\n').is_some() {}
                    self.joined = false;
                }
                '\n' => {
                    self.push(Token::Newline);
                    self.line += 1;
                    self.joined = false;
                    self.here_documents()?;
                }
                ';' => {
                    self.push(Token::Semicolon);
                    self.joined = false;
                }
                '^' => self.push(Token::Caret),
                '=' => self.push(Token::Equals),
                '(' => self.push(Token::LeftParen),
                ')' => self.push(Token::RightParen),
                '|' if self.bump_if_eq('|').is_some() => {
                    self.push(Token::OrOr);
                    self.joined = false;
                }
                '&' => {
                    let token = if self.bump_if_eq('&').is_some() {
                        Token::AndAnd
                    } else {
                        Token::Amp
                    };
                    self.push(token);
                    self.joined = false;
                }
                '{' => self.push(Token::LeftBrace),
                '}' => self.push(Token::RightBrace),
                '`' => self.push(Token::Backquote),
                '|' => {
                    let fd = match self.bracket()? {
                        None => 1,
                        Some(Bracket { fd, dup: None }) => fd,
                        Some(_) => return Err(self.error("'|[n=m]' is not supported".into())),
                    };
                    self.push(Token::Pipe { fd });
                    self.joined = false;
                }
                '>' | '<' => {
                    let kind = match (c, self.bump_if_eq(c)) {
                        ('>', Some(_)) => RedirectKind::Append,
                        ('>', None) => RedirectKind::Write,
                        ('<', None) => RedirectKind::Read,
                        _ => {
                            self.here_tag()?;
                            continue;
                        }
                    };
                    let default = if kind == RedirectKind::Read { 0 } else { 1 };
                    let (fd, dup) = match self.bracket()? {
                        None => (default, None),
                        Some(Bracket { fd, dup }) => (fd, dup),
                    };
                    self.push(Token::Redirect(RedirectToken { fd, kind, dup }));
                    self.joined = false;
                }
                '\'' => {
                    let text = self.quoted()?;
                    self.push(Token::Text { text, quoted: true });
                }
                '$' => self.variable()?,
                c => {
                    let mut text = String::from(c);
                    while let Some(c) = self.bump_if(|&c| !is_special(c)) {
                        text.push(c);
                    }
                    self.push(Token::Text {
                        text,
                        quoted: false,
                    });
                }
            }
        }
        if let Some((_, tag)) = self.pending.first() {
            let message = alloc::format!("here document has no line '{tag}'");
            return Err(ParseError::incomplete(&message, self.line));
        }
        Ok(())
    }

    /// `<<tag` after the `<<`: the token, its text to come.
    fn here_tag(&mut self) -> Result<(), ParseError> {
        let fd = match self.bracket()? {
            None => 0,
            Some(Bracket { fd, dup: None }) => fd,
            Some(_) => return Err(self.error("'<<[n=m]' is not a here document".into())),
        };
        while self.bump_if(|&c| c == ' ' || c == '\t').is_some() {}
        let quoted = self.bump_if_eq('\'').is_some();
        let tag = if quoted {
            self.quoted()?
        } else {
            let mut tag = String::new();
            while let Some(c) = self.bump_if(|&c| !is_special(c)) {
                tag.push(c);
            }
            tag
        };
        if tag.is_empty() {
            return Err(self.error("'<<' needs a tag word".into()));
        }
        self.push(Token::HereDoc {
            fd,
            text: String::new(),
            quoted,
        });
        self.joined = false;
        self.pending.push((self.tokens.len() - 1, tag));
        Ok(())
    }

    /// After a newline: the text of each pending here document, line by
    /// line up to its tag.
    fn here_documents(&mut self) -> Result<(), ParseError> {
        for (index, tag) in core::mem::take(&mut self.pending) {
            let mut text = String::new();
            loop {
                let rest = &self.source[self.at..];
                let Some(end) = rest.find('\n') else {
                    if rest == tag {
                        self.at = self.source.len();
                        break;
                    }
                    let message = alloc::format!("here document has no line '{tag}'");
                    return Err(ParseError::incomplete(&message, self.line));
                };
                let line = &rest[..end];
                self.at += end + 1;
                self.line += 1;
                if line == tag {
                    break;
                }
                text.push_str(line);
                text.push('\n');
            }
            if let Token::HereDoc { text: slot, .. } = &mut self.tokens[index].token {
                *slot = text;
            }
        }
        Ok(())
    }

    /// `'...'` after the opening quote; `''` is a quote (rc(1)).
    fn quoted(&mut self) -> Result<String, ParseError> {
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(ParseError::incomplete("unterminated quote", self.line)),
                Some('\'') => {
                    if self.bump_if_eq('\'').is_none() {
                        return Ok(text);
                    }
                    text.push('\'');
                }
                Some(c) => {
                    if c == '\n' {
                        self.line += 1;
                    }
                    text.push(c);
                }
            }
        }
    }

    /// `$name`, `$#name` or `$"name`, after the `$`.
    fn variable(&mut self) -> Result<(), ParseError> {
        let count = self.bump_if_eq('#').is_some();
        let join = !count && self.bump_if_eq('"').is_some();
        let mut name = String::new();
        while let Some(c) = self.bump_if(|&c| is_name_char(c)) {
            name.push(c);
        }
        if name.is_empty() {
            return Err(self.error("'$' without a variable name".into()));
        }
        self.push(if count {
            Token::Count(name)
        } else if join {
            Token::Join(name)
        } else {
            Token::Var(name)
        });
        Ok(())
    }

    /// An optional `[n]`, `[n=m]` or `[n=]` right after an operator.
    fn bracket(&mut self) -> Result<Option<Bracket>, ParseError> {
        if self.bump_if_eq('[').is_none() {
            return Ok(None);
        }
        let fd = self
            .number()
            .ok_or_else(|| self.error("bad file descriptor in '[...]'".into()))?;
        let dup = if self.bump_if_eq('=').is_some() {
            Some(self.number().map_or(Dup::Close, Dup::Copy))
        } else {
            None
        };
        if self.bump_if_eq(']').is_none() {
            return Err(self.error("missing ']' after file descriptor".into()));
        }
        Ok(Some(Bracket { fd, dup }))
    }

    fn number(&mut self) -> Option<u32> {
        let mut digits = String::new();
        while let Some(c) = self.bump_if(char::is_ascii_digit) {
            digits.push(c);
        }
        digits.parse().ok()
    }
}
