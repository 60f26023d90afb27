//! Turns tokens into a [`Program`]: rc(1)'s grammar, cut to this subset.
//!
//! ```text
//! program    := { separator | pipeline separator }
//! pipeline   := simple { '|' newline* simple }
//! simple     := { assignment } { word | redirection }     (not empty)
//! assignment := NAME '=' word                              (rc(1))
//! word       := atom { atom-without-blank-before | '^' atom }
//! atom       := text | '$'name | '$#'name | '=' | '(' { word } ')'
//! ```
//!
//! An `=` is an assignment only right after an unquoted name at the start
//! of a command; elsewhere it is ordinary text (rc(1) makes it an error).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::ast::{Assignment, Part, Pipeline, Program, RedirectTarget, Redirection, Simple, Word};
use crate::lexer::{is_name_char, tokenize, Dup, Spanned, Token};

/// A syntax error, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub line: usize,
    /// The text ended too soon (an open quote, a trailing `|`): more input
    /// could complete it.
    pub incomplete: bool,
}

impl ParseError {
    pub(crate) fn new(message: String, line: usize) -> Self {
        Self {
            message,
            line,
            incomplete: false,
        }
    }

    pub(crate) fn incomplete(message: &str, line: usize) -> Self {
        Self {
            message: String::from(message),
            line,
            incomplete: true,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "syntax error on line {}: {}", self.line, self.message)
    }
}

impl core::error::Error for ParseError {}

/// Parses a whole script.
pub fn parse(source: &str) -> Result<Program, ParseError> {
    let tokens = tokenize(source)?;
    let mut parser = Parser { tokens, at: 0 };
    parser.program()
}

struct Parser {
    tokens: Vec<Spanned>,
    at: usize,
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_name_char)
}

fn describe(token: &Token) -> String {
    let text = match token {
        Token::Text { text, .. } => return alloc::format!("'{text}'"),
        Token::Var(name) => return alloc::format!("'${name}'"),
        Token::Count(name) => return alloc::format!("'$#{name}'"),
        Token::Caret => "'^'",
        Token::Equals => "'='",
        Token::LeftParen => "'('",
        Token::RightParen => "')'",
        Token::Pipe { .. } => "'|'",
        Token::Redirect(_) => "a redirection",
        Token::Semicolon => "';'",
        Token::Newline => "a newline",
    };
    String::from(text)
}

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.at)
    }

    fn peek_token(&self) -> Option<&Token> {
        self.peek().map(|s| &s.token)
    }

    fn next(&mut self) -> Option<Spanned> {
        let token = self.tokens.get(self.at).cloned();
        self.at += usize::from(token.is_some());
        token
    }

    fn line(&self) -> usize {
        self.peek()
            .or_else(|| self.tokens.last())
            .map_or(1, |s| s.line)
    }

    fn unexpected(&self) -> ParseError {
        match self.peek() {
            Some(s) => ParseError::new(alloc::format!("unexpected {}", describe(&s.token)), s.line),
            None => ParseError::incomplete("unexpected end of input", self.line()),
        }
    }

    fn program(&mut self) -> Result<Program, ParseError> {
        let mut program = Program::default();
        while let Some(token) = self.peek_token() {
            if matches!(token, Token::Semicolon | Token::Newline) {
                self.at += 1;
                continue;
            }
            program.pipelines.push(self.pipeline()?);
            match self.peek_token() {
                None | Some(Token::Semicolon | Token::Newline) => {}
                Some(_) => return Err(self.unexpected()),
            }
        }
        Ok(program)
    }

    fn pipeline(&mut self) -> Result<Pipeline, ParseError> {
        let line = self.line();
        let mut commands = alloc::vec![self.simple()?];
        let mut pipe_fds = Vec::new();
        while let Some(Token::Pipe { fd }) = self.peek_token() {
            pipe_fds.push(*fd);
            self.at += 1;
            // rc(1) lets a pipeline go on after a newline that follows '|'.
            while self.peek_token() == Some(&Token::Newline) {
                self.at += 1;
            }
            commands.push(self.simple()?);
        }
        Ok(Pipeline {
            commands,
            pipe_fds,
            line,
        })
    }

    fn simple(&mut self) -> Result<Simple, ParseError> {
        let mut simple = Simple::default();
        // Assignments come first (rc(1)).
        while let Some(name) = self.assignment_name() {
            self.at += 2;
            if !self.at_atom() {
                let message = alloc::format!("missing value in assignment to {name}");
                return Err(match self.peek() {
                    None => ParseError::incomplete(&message, self.line()),
                    Some(_) => ParseError::new(message, self.line()),
                });
            }
            let value = self.word()?;
            simple.assignments.push(Assignment { name, value });
        }
        loop {
            if self.at_atom() {
                simple.words.push(self.word()?);
                continue;
            }
            if let Some(Token::Redirect(redirect)) = self.peek_token() {
                let redirect = *redirect;
                self.at += 1;
                let target = match redirect.dup {
                    Some(Dup::Copy(to)) => RedirectTarget::Dup(to),
                    Some(Dup::Close) => RedirectTarget::Close,
                    None if self.at_atom() => RedirectTarget::File(redirect.kind, self.word()?),
                    None => {
                        return Err(match self.peek() {
                            None => ParseError::incomplete(
                                "missing file after redirection",
                                self.line(),
                            ),
                            Some(_) => ParseError::new(
                                "missing file after redirection".into(),
                                self.line(),
                            ),
                        })
                    }
                };
                simple.redirections.push(Redirection {
                    fd: redirect.fd,
                    target,
                });
                continue;
            }
            break;
        }
        if simple.assignments.is_empty()
            && simple.words.is_empty()
            && simple.redirections.is_empty()
        {
            return Err(self.unexpected());
        }
        Ok(simple)
    }

    /// `NAME =` at the start of a command: the name, if so.
    fn assignment_name(&self) -> Option<String> {
        let first = self.tokens.get(self.at)?;
        let second = self.tokens.get(self.at + 1)?;
        match (&first.token, &second.token) {
            (
                Token::Text {
                    text,
                    quoted: false,
                },
                Token::Equals,
            ) if is_name(text) => Some(text.clone()),
            _ => None,
        }
    }

    fn at_atom(&self) -> bool {
        matches!(
            self.peek_token(),
            Some(
                Token::Text { .. }
                    | Token::Var(_)
                    | Token::Count(_)
                    | Token::Equals
                    | Token::LeftParen
                    | Token::Caret
            )
        )
    }

    fn word(&mut self) -> Result<Word, ParseError> {
        if self.peek_token() == Some(&Token::Caret) {
            return Err(ParseError::new(
                "'^' with nothing before it".into(),
                self.line(),
            ));
        }
        let mut parts = alloc::vec![self.atom()?];
        loop {
            match self.peek() {
                Some(s) if s.token == Token::Caret => {
                    self.at += 1;
                    if !self.at_atom() || self.peek_token() == Some(&Token::Caret) {
                        return Err(match self.peek() {
                            None => {
                                ParseError::incomplete("'^' with nothing after it", self.line())
                            }
                            Some(_) => {
                                ParseError::new("'^' with nothing after it".into(), self.line())
                            }
                        });
                    }
                    parts.push(self.atom()?);
                }
                Some(s) if s.joined && self.at_atom() => parts.push(self.atom()?),
                _ => break,
            }
        }
        Ok(Word { parts })
    }

    fn atom(&mut self) -> Result<Part, ParseError> {
        let Some(spanned) = self.next() else {
            return Err(self.unexpected());
        };
        Ok(match spanned.token {
            Token::Text { text, .. } => Part::Literal(text),
            Token::Var(name) => Part::Var(name),
            Token::Count(name) => Part::Count(name),
            Token::Equals => Part::Literal(String::from("=")),
            Token::LeftParen => {
                let mut words = Vec::new();
                loop {
                    match self.peek_token() {
                        Some(Token::RightParen) => {
                            self.at += 1;
                            break;
                        }
                        _ if self.at_atom() => words.push(self.word()?),
                        _ => return Err(self.unexpected()),
                    }
                }
                Part::List(words)
            }
            _ => {
                self.at -= 1;
                return Err(self.unexpected());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::RedirectKind;
    use alloc::vec;

    fn lit(s: &str) -> Word {
        Word::literal(s)
    }

    fn only(source: &str) -> Simple {
        let program = parse(source).unwrap();
        assert_eq!(program.pipelines.len(), 1);
        assert_eq!(program.pipelines[0].commands.len(), 1);
        program.pipelines[0].commands[0].clone()
    }

    #[test]
    fn words_quotes_and_comments() {
        let s = only("echo 'it''s' a#b # comment\n");
        assert_eq!(s.words, vec![lit("echo"), lit("it's"), lit("a")]);
        let s = only("echo ''");
        assert_eq!(s.words, vec![lit("echo"), lit("")]);
        let s = only("bind '#c' /dev");
        assert_eq!(s.words, vec![lit("bind"), lit("#c"), lit("/dev")]);
    }

    #[test]
    fn separators_and_pipelines() {
        let p = parse("a; b\n\nc | d |[2]\n e").unwrap();
        assert_eq!(p.pipelines.len(), 3);
        assert_eq!(p.pipelines[2].commands.len(), 3);
        assert_eq!(p.pipelines[2].pipe_fds, vec![1, 2]);
        assert_eq!(p.pipelines[2].line, 3);
        assert_eq!(parse("# nothing\n;;\n").unwrap().pipelines.len(), 0);
        assert_eq!(
            parse("a \\\n b").unwrap().pipelines[0].commands[0]
                .words
                .len(),
            2
        );
    }

    #[test]
    fn variables_and_concatenation() {
        let s = only("echo $x.c a^$y $#z");
        assert_eq!(
            s.words[1].parts,
            vec![Part::Var("x".into()), Part::Literal(".c".into())]
        );
        assert_eq!(
            s.words[2].parts,
            vec![Part::Literal("a".into()), Part::Var("y".into())]
        );
        assert_eq!(s.words[3].parts, vec![Part::Count("z".into())]);
        let s = only("echo a ^ b");
        assert_eq!(s.words.len(), 2);
    }

    #[test]
    fn assignments_only_at_the_start() {
        let s = only("x=1 y=(a b) echo x=1 =");
        assert_eq!(s.assignments.len(), 2);
        assert_eq!(s.assignments[0].name, "x");
        assert_eq!(
            s.assignments[1].value.parts,
            vec![Part::List(vec![lit("a"), lit("b")])]
        );
        assert_eq!(s.words[1].parts.len(), 3);
        assert_eq!(
            s.words[2],
            Word {
                parts: vec![Part::Literal("=".into())]
            }
        );
        let s = only("'x'=1");
        assert!(s.assignments.is_empty());
    }

    #[test]
    fn redirections() {
        let s = only(">out echo hi >>[2] log <in >[2=1] >[3=]");
        assert_eq!(s.words, vec![lit("echo"), lit("hi")]);
        assert_eq!(
            s.redirections,
            vec![
                Redirection {
                    fd: 1,
                    target: RedirectTarget::File(RedirectKind::Write, lit("out"))
                },
                Redirection {
                    fd: 2,
                    target: RedirectTarget::File(RedirectKind::Append, lit("log"))
                },
                Redirection {
                    fd: 0,
                    target: RedirectTarget::File(RedirectKind::Read, lit("in"))
                },
                Redirection {
                    fd: 2,
                    target: RedirectTarget::Dup(1)
                },
                Redirection {
                    fd: 3,
                    target: RedirectTarget::Close
                },
            ]
        );
    }

    #[test]
    fn errors() {
        let e = parse("echo 'open").unwrap_err();
        assert!(e.incomplete);
        assert!(parse("echo a |").unwrap_err().incomplete);
        assert!(parse("echo >").unwrap_err().incomplete);
        let e = parse("| echo").unwrap_err();
        assert!(!e.incomplete);
        assert_eq!(e.to_string(), "syntax error on line 1: unexpected '|'");
        assert!(parse("a && b").is_err());
        assert!(parse("a & b").is_err());
        assert!(parse("echo $").is_err());
        assert!(parse("echo )").is_err());
        assert!(parse("x=").unwrap_err().incomplete);
        assert!(parse("echo >[x] f").is_err());
        assert_eq!(parse("a\nb )").unwrap_err().line, 2);
    }
}
