//! Turns tokens into a [`Program`]: rc(1)'s grammar (Duff's rc).
//!
//! ```text
//! program  := { separator | command (separator | '&') }  separator: ; newline
//! command  := not { ('&&' | '||') newline* not }     (left to right)
//! not      := '!' not | pipeline
//! pipeline := unit { '|' newline* unit }
//! unit     := { assignment | redirection } form
//! form     := '{' program '}' { redirection }
//!           | 'if' '(' program ')' newline* command | 'if' 'not' command
//!           | 'for' '(' NAME [ 'in' { word } ] ')' newline* command
//!           | 'while' '(' program ')' newline* command
//!           | 'switch' word newline* '{' program '}'
//!           | 'fn' { word } [ '{' program '}' ]
//!           | '~' word { word }
//!           | simple
//! simple   := { word | redirection }      redirection: > >> < <<tag, [n], [n=m]
//! word     := atom { atom-without-blank-before | '^' atom }
//! atom     := text | '$'name [ '(' { word } ')' ] | '$#'name | '$"'name
//!           | '=' | '(' { word } ')' | '`' '{' program '}'
//! ```
//!
//! As in rc, the keywords are keywords only where a command starts and
//! only unquoted; `if(...) a && b` puts `a && b` under the `if`, and
//! `! a | b` negates the whole pipeline. An `=` is an assignment only
//! right after an unquoted name at the start of a command; elsewhere it
//! is ordinary text (rc(1) makes it an error).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::ast::{
    Assignment, Command, Kind, Part, Program, RedirectTarget, Redirection, Simple, Word,
};
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
    let mut parser = Parser {
        tokens,
        at: 0,
        source,
    };
    let program = parser.program(None)?;
    match parser.peek() {
        None => Ok(program),
        Some(_) => Err(parser.unexpected()),
    }
}

struct Parser<'a> {
    tokens: Vec<Spanned>,
    at: usize,
    source: &'a str,
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_name_char)
}

fn describe(token: &Token) -> String {
    let text = match token {
        Token::Text { text, .. } => return format!("'{text}'"),
        Token::Var(name) => return format!("'${name}'"),
        Token::Count(name) => return format!("'$#{name}'"),
        Token::Join(name) => return format!("'$\"{name}'"),
        Token::Caret => "'^'",
        Token::Equals => "'='",
        Token::LeftParen => "'('",
        Token::RightParen => "')'",
        Token::LeftBrace => "'{'",
        Token::RightBrace => "'}'",
        Token::Backquote => "'`'",
        Token::AndAnd => "'&&'",
        Token::OrOr => "'||'",
        Token::Amp => "'&'",
        Token::Pipe { .. } => "'|'",
        Token::Redirect(_) | Token::HereDoc { .. } => "a redirection",
        Token::Semicolon => "';'",
        Token::Newline => "a newline",
    };
    String::from(text)
}

/// The closing token of a nested program.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    Paren,
    Brace,
}

impl Parser<'_> {
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
            Some(s) => ParseError::new(format!("unexpected {}", describe(&s.token)), s.line),
            None => ParseError::incomplete("unexpected end of input", self.line()),
        }
    }

    /// An error about `construct`: incomplete if the text ran out.
    fn expected(&self, message: &str) -> ParseError {
        match self.peek() {
            None => ParseError::incomplete(message, self.line()),
            Some(s) => ParseError::new(format!("{message}, not {}", describe(&s.token)), s.line),
        }
    }

    /// The unquoted word at the cursor, if it is `word`.
    fn at_keyword(&self, word: &str) -> bool {
        matches!(
            self.peek_token(),
            Some(Token::Text { text, quoted: false }) if text == word
        )
    }

    fn skip_newlines(&mut self) {
        while self.peek_token() == Some(&Token::Newline) {
            self.at += 1;
        }
    }

    /// Commands up to the end, or up to (not past) `close`.
    fn program(&mut self, close: Option<Close>) -> Result<Program, ParseError> {
        let mut program = Program::default();
        loop {
            match self.peek_token() {
                None => break,
                Some(Token::Semicolon | Token::Newline) => {
                    self.at += 1;
                    continue;
                }
                Some(Token::RightParen) if close == Some(Close::Paren) => break,
                Some(Token::RightBrace) if close == Some(Close::Brace) => break,
                Some(_) => {}
            }
            let mut command = self.command()?;
            if self.peek_token() == Some(&Token::Amp) {
                // rc(1): `cmd &` ends a command as `;` does.
                self.at += 1;
                let line = command.line;
                command = Command {
                    kind: Kind::Background(Box::new(command)),
                    line,
                };
                program.commands.push(command);
                continue;
            }
            program.commands.push(command);
            match self.peek_token() {
                None | Some(Token::Semicolon | Token::Newline) => {}
                Some(Token::RightParen) if close == Some(Close::Paren) => {}
                Some(Token::RightBrace) if close == Some(Close::Brace) => {}
                Some(_) => return Err(self.unexpected()),
            }
        }
        Ok(program)
    }

    /// `{ program }` after the `{`; `what` names the construct.
    fn brace_body(&mut self, what: &str) -> Result<(Program, String), ParseError> {
        let open = self.tokens[self.at - 1].start;
        let line = self.tokens[self.at - 1].line;
        let body = self.program(Some(Close::Brace))?;
        match self.next() {
            Some(Spanned {
                token: Token::RightBrace,
                end,
                ..
            }) => Ok((body, String::from(&self.source[open..end]))),
            _ => Err(ParseError::incomplete(
                &format!("{what} from line {line} has no closing '}}'"),
                self.line(),
            )),
        }
    }

    /// `( program )` for `if` and `while`.
    fn condition(&mut self, what: &str) -> Result<Program, ParseError> {
        if self.peek_token() != Some(&Token::LeftParen) {
            return Err(self.expected(&format!("'{what}' needs a condition in '(...)'")));
        }
        self.at += 1;
        let body = self.program(Some(Close::Paren))?;
        if self.next().map(|s| s.token) != Some(Token::RightParen) {
            return Err(ParseError::incomplete(
                &format!("'{what}' condition has no closing ')'"),
                self.line(),
            ));
        }
        Ok(body)
    }

    /// The command a construct controls, after optional newlines.
    fn body(&mut self, what: &str) -> Result<Command, ParseError> {
        self.skip_newlines();
        match self.peek_token() {
            None | Some(Token::Semicolon | Token::RightBrace | Token::RightParen) => {
                Err(self.expected(&format!("'{what}' needs a command")))
            }
            _ => self.command(),
        }
    }

    fn command(&mut self) -> Result<Command, ParseError> {
        let mut left = self.not()?;
        loop {
            let and = match self.peek_token() {
                Some(Token::AndAnd) => true,
                Some(Token::OrOr) => false,
                _ => return Ok(left),
            };
            let what = if and { "&&" } else { "||" };
            self.at += 1;
            self.skip_newlines();
            if !self.at_command_start() {
                return Err(self.expected(&format!("'{what}' needs a command after it")));
            }
            let right = Box::new(self.not()?);
            let line = left.line;
            let kind = if and {
                Kind::And(Box::new(left), right)
            } else {
                Kind::Or(Box::new(left), right)
            };
            left = Command { kind, line };
        }
    }

    fn at_command_start(&self) -> bool {
        self.at_atom()
            || matches!(
                self.peek_token(),
                Some(Token::LeftBrace | Token::Redirect(_) | Token::HereDoc { .. })
            )
    }

    fn not(&mut self) -> Result<Command, ParseError> {
        if self.at_keyword("!") {
            let line = self.line();
            self.at += 1;
            if !self.at_command_start() {
                return Err(self.expected("'!' needs a command"));
            }
            let inner = self.not()?;
            return Ok(Command {
                kind: Kind::Not(Box::new(inner)),
                line,
            });
        }
        self.pipeline()
    }

    fn pipeline(&mut self) -> Result<Command, ParseError> {
        let line = self.line();
        let first = self.unit()?;
        let mut commands = alloc::vec![first];
        let mut pipe_fds = Vec::new();
        while let Some(Token::Pipe { fd }) = self.peek_token() {
            pipe_fds.push(*fd);
            self.at += 1;
            // rc(1) lets a pipeline go on after a newline that follows '|'.
            self.skip_newlines();
            if !self.at_command_start() {
                return Err(self.expected("'|' needs a command after it"));
            }
            commands.push(self.unit()?);
        }
        if commands.len() == 1 {
            return Ok(commands.remove(0));
        }
        Ok(Command {
            kind: Kind::Pipeline { commands, pipe_fds },
            line,
        })
    }

    fn at_redirection(&self) -> bool {
        matches!(
            self.peek_token(),
            Some(Token::Redirect(_) | Token::HereDoc { .. })
        )
    }

    /// One redirection at the cursor (which is a redirect token).
    fn redirection(&mut self) -> Result<Redirection, ParseError> {
        let redirect = match self.next().map(|s| s.token) {
            Some(Token::Redirect(redirect)) => redirect,
            Some(Token::HereDoc { fd, text, quoted }) => {
                return Ok(Redirection {
                    fd,
                    target: RedirectTarget::Here {
                        text,
                        substitute: !quoted,
                    },
                })
            }
            _ => return Err(self.unexpected()),
        };
        let target = match redirect.dup {
            Some(Dup::Copy(to)) => RedirectTarget::Dup(to),
            Some(Dup::Close) => RedirectTarget::Close,
            None if self.at_atom() => RedirectTarget::File(redirect.kind, self.word()?),
            None => return Err(self.expected("missing file after redirection")),
        };
        Ok(Redirection {
            fd: redirect.fd,
            target,
        })
    }

    fn unit(&mut self) -> Result<Command, ParseError> {
        let line = self.line();
        let mut assignments = Vec::new();
        let mut redirections = Vec::new();
        loop {
            if let Some(name) = self.assignment_name() {
                self.at += 2;
                if !self.at_atom() {
                    return Err(self.expected(&format!("missing value in assignment to {name}")));
                }
                let value = self.word()?;
                assignments.push(Assignment { name, value });
            } else if self.at_redirection() {
                redirections.push(self.redirection()?);
            } else {
                break;
            }
        }
        let compound = self.compound()?;
        let Some(mut command) = compound else {
            return self.simple(assignments, redirections, line);
        };
        if matches!(command.kind, Kind::Block(_)) {
            while self.at_redirection() {
                redirections.push(self.redirection()?);
            }
        }
        if !redirections.is_empty() {
            command = Command {
                kind: Kind::Redirected(Box::new(command), redirections),
                line,
            };
        }
        if !assignments.is_empty() {
            command = Command {
                kind: Kind::Assigned(assignments, Box::new(command)),
                line,
            };
        }
        Ok(command)
    }

    /// A block or a keyword form at the cursor, if there is one.
    fn compound(&mut self) -> Result<Option<Command>, ParseError> {
        let line = self.line();
        let kind = if self.peek_token() == Some(&Token::LeftBrace) {
            self.at += 1;
            Kind::Block(self.brace_body("'{'")?.0)
        } else if self.at_keyword("if") {
            self.at += 1;
            if self.at_keyword("not") {
                self.at += 1;
                Kind::IfNot(Box::new(self.body("if not")?))
            } else {
                let condition = self.condition("if")?;
                Kind::If(condition, Box::new(self.body("if")?))
            }
        } else if self.at_keyword("while") {
            self.at += 1;
            let condition = self.condition("while")?;
            Kind::While(condition, Box::new(self.body("while")?))
        } else if self.at_keyword("for") {
            self.at += 1;
            self.for_loop()?
        } else if self.at_keyword("switch") {
            self.at += 1;
            if !self.at_atom() {
                return Err(self.expected("'switch' needs a subject"));
            }
            let subject = self.word()?;
            self.skip_newlines();
            if self.peek_token() != Some(&Token::LeftBrace) {
                return Err(self.expected("'switch' needs a body in '{...}'"));
            }
            self.at += 1;
            Kind::Switch(subject, self.brace_body("'switch'")?.0)
        } else if self.at_keyword("fn") {
            self.at += 1;
            let mut names = Vec::new();
            while self.at_atom() {
                names.push(self.word()?);
            }
            if names.is_empty() {
                return Err(self.expected("'fn' needs a name"));
            }
            let body = if self.peek_token() == Some(&Token::LeftBrace) {
                self.at += 1;
                Some(self.brace_body("'fn'")?)
            } else {
                None
            };
            Kind::Fn(names, body)
        } else if self.at_keyword("~") {
            self.at += 1;
            if !self.at_atom() {
                return Err(self.expected("'~' needs a subject"));
            }
            let subject = self.word()?;
            let mut patterns = Vec::new();
            while self.at_atom() {
                patterns.push(self.word()?);
            }
            Kind::Match(subject, patterns)
        } else {
            return Ok(None);
        };
        Ok(Some(Command { kind, line }))
    }

    /// `for` after the keyword: `(name in words) cmd` or `(name) cmd`.
    fn for_loop(&mut self) -> Result<Kind, ParseError> {
        const FORM: &str = "'for' needs '(name in list)' or '(name)'";
        if self.peek_token() != Some(&Token::LeftParen) {
            return Err(self.expected(FORM));
        }
        self.at += 1;
        let name = match self.peek_token() {
            Some(Token::Text {
                text,
                quoted: false,
            }) if is_name(text) => text.clone(),
            _ => return Err(self.expected(FORM)),
        };
        self.at += 1;
        let list = if self.at_keyword("in") {
            self.at += 1;
            let mut words = Vec::new();
            while self.at_atom() {
                words.push(self.word()?);
            }
            Some(words)
        } else {
            None
        };
        if self.peek_token() != Some(&Token::RightParen) {
            return Err(self.expected(FORM));
        }
        self.at += 1;
        let body = Box::new(self.body("for")?);
        Ok(Kind::For { name, list, body })
    }

    fn simple(
        &mut self,
        assignments: Vec<Assignment>,
        mut redirections: Vec<Redirection>,
        line: usize,
    ) -> Result<Command, ParseError> {
        let mut words = Vec::new();
        loop {
            if self.at_atom() {
                words.push(self.word()?);
            } else if self.at_redirection() {
                redirections.push(self.redirection()?);
            } else {
                break;
            }
        }
        if assignments.is_empty() && words.is_empty() && redirections.is_empty() {
            return Err(self.unexpected());
        }
        Ok(Command {
            kind: Kind::Simple(Simple {
                assignments,
                words,
                redirections,
            }),
            line,
        })
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
                    | Token::Join(_)
                    | Token::Equals
                    | Token::LeftParen
                    | Token::Caret
                    | Token::Backquote
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
                        return Err(self.expected("'^' with nothing after it"));
                    }
                    parts.push(self.atom()?);
                }
                Some(s) if s.joined && self.at_atom() => parts.push(self.atom()?),
                _ => break,
            }
        }
        Ok(Word { parts })
    }

    /// `( words )` after the `(`.
    fn list(&mut self) -> Result<Vec<Word>, ParseError> {
        let mut words = Vec::new();
        loop {
            match self.peek_token() {
                Some(Token::RightParen) => {
                    self.at += 1;
                    return Ok(words);
                }
                _ if self.at_atom() => words.push(self.word()?),
                None => return Err(ParseError::incomplete("'(' without ')'", self.line())),
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn atom(&mut self) -> Result<Part, ParseError> {
        let Some(spanned) = self.next() else {
            return Err(self.unexpected());
        };
        Ok(match spanned.token {
            Token::Text {
                text,
                quoted: false,
            } => Part::Literal(text),
            Token::Text { text, quoted: true } => Part::Quoted(text),
            Token::Var(name) => match self.peek() {
                // rc(1): `$name(` with no blank is a subscript.
                Some(s) if s.joined && s.token == Token::LeftParen => {
                    self.at += 1;
                    Part::Sub(name, self.list()?)
                }
                _ => Part::Var(name),
            },
            Token::Count(name) => Part::Count(name),
            Token::Join(name) => Part::Join(name),
            Token::Equals => Part::Literal(String::from("=")),
            Token::LeftParen => Part::List(self.list()?),
            Token::Backquote => {
                if self.peek_token() != Some(&Token::LeftBrace) {
                    return Err(self.expected("'`' needs a command in '{...}'"));
                }
                self.at += 1;
                Part::Subst(self.brace_body("'`{'")?.0)
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

    fn one(source: &str) -> Kind {
        let program = parse(source).unwrap();
        assert_eq!(program.commands.len(), 1, "{source}");
        program.commands[0].kind.clone()
    }

    fn only(source: &str) -> Simple {
        match one(source) {
            Kind::Simple(simple) => simple,
            other => panic!("not simple: {other:?}"),
        }
    }

    #[test]
    fn words_quotes_and_comments() {
        let quoted = |s: &str| Word {
            parts: vec![Part::Quoted(s.into())],
        };
        let s = only("echo 'it''s' a#b # comment\n");
        assert_eq!(s.words, vec![lit("echo"), quoted("it's"), lit("a")]);
        let s = only("echo ''");
        assert_eq!(s.words, vec![lit("echo"), quoted("")]);
        let s = only("bind '#c' /dev");
        assert_eq!(s.words, vec![lit("bind"), quoted("#c"), lit("/dev")]);
    }

    #[test]
    fn separators_and_pipelines() {
        let p = parse("a; b\n\nc | d |[2]\n e").unwrap();
        assert_eq!(p.commands.len(), 3);
        assert_eq!(p.commands[2].line, 3);
        let Kind::Pipeline { commands, pipe_fds } = &p.commands[2].kind else {
            panic!("not a pipeline");
        };
        assert_eq!(commands.len(), 3);
        assert_eq!(pipe_fds, &vec![1, 2]);
        assert_eq!(parse("# nothing\n;;\n").unwrap().commands.len(), 0);
        assert_eq!(only("a \\\n b").words.len(), 2);
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
        assert!(parse("a &&").unwrap_err().incomplete);
        assert!(matches!(
            parse("a & b").unwrap().commands[0].kind,
            Kind::Background(_)
        ));
        assert_eq!(
            parse("& b").unwrap_err().to_string(),
            "syntax error on line 1: unexpected '&'"
        );
        assert!(parse("echo $").is_err());
        assert!(parse("echo )").is_err());
        assert!(parse("x=").unwrap_err().incomplete);
        assert!(parse("echo >[x] f").is_err());
        assert_eq!(parse("a\nb )").unwrap_err().line, 2);
    }

    fn simple_kind(words: &[&str]) -> Kind {
        Kind::Simple(Simple {
            assignments: vec![],
            words: words.iter().map(|w| lit(w)).collect(),
            redirections: vec![],
        })
    }

    #[test]
    fn subscripts_joins_and_quoted_text() {
        let s = only("echo $x(2 3-) $\"y $x (a) 'q*'");
        assert_eq!(
            s.words[1].parts,
            vec![Part::Sub("x".into(), vec![lit("2"), lit("3-")])]
        );
        assert_eq!(s.words[2].parts, vec![Part::Join("y".into())]);
        assert_eq!(s.words[3].parts, vec![Part::Var("x".into())]);
        assert_eq!(s.words[4].parts, vec![Part::List(vec![lit("a")])]);
        assert_eq!(s.words[5].parts, vec![Part::Quoted("q*".into())]);
    }

    #[test]
    fn blocks_and_redirections_on_them() {
        let Kind::Redirected(inner, redirections) = one("{ a; b\n c } >f") else {
            panic!("no redirection");
        };
        assert_eq!(redirections.len(), 1);
        let Kind::Block(body) = inner.kind else {
            panic!("no block")
        };
        assert_eq!(body.commands.len(), 3);
        let e = parse("{ a\n").unwrap_err();
        assert!(e.incomplete);
        assert_eq!(e.message, "'{' from line 1 has no closing '}'");
        assert_eq!(
            parse("a }").unwrap_err().to_string(),
            "syntax error on line 1: unexpected '}'"
        );
    }

    #[test]
    fn if_and_if_not() {
        let Kind::If(condition, body) = one("if(~ $x a) echo yes && echo and") else {
            panic!("not an if");
        };
        assert!(matches!(condition.commands[0].kind, Kind::Match(..)));
        assert!(matches!(body.kind, Kind::And(..)));
        assert!(matches!(one("if not echo no"), Kind::IfNot(_)));
        // A newline may follow the condition.
        assert!(matches!(one("if(a)\n b"), Kind::If(..)));
        assert_eq!(
            parse("if x").unwrap_err().to_string(),
            "syntax error on line 1: 'if' needs a condition in '(...)', not 'x'"
        );
        assert!(parse("if(a").unwrap_err().incomplete);
        assert!(parse("if(a)").unwrap_err().incomplete);
        assert_eq!(
            parse("\nif(a);").unwrap_err().to_string(),
            "syntax error on line 2: 'if' needs a command, not ';'"
        );
        // Quoted, or not first, `if` is a word.
        assert_eq!(only("echo if").words[1], lit("if"));
        assert!(matches!(one("'if' x"), Kind::Simple(_)));
    }

    #[test]
    fn loops_and_switch() {
        let Kind::For { name, list, .. } = one("for(i in a b) echo $i") else {
            panic!("not a for");
        };
        assert_eq!((name.as_str(), list.map(|l| l.len())), ("i", Some(2)));
        let Kind::For { list, .. } = one("for(i) echo $i") else {
            panic!("not a for");
        };
        assert_eq!(list, None);
        assert!(matches!(one("while(a) b"), Kind::While(..)));
        let Kind::Switch(_, body) = one("switch($x){\ncase a\n echo a\ncase *\n echo b\n}") else {
            panic!("not a switch");
        };
        assert_eq!(body.commands.len(), 4);
        assert_eq!(body.commands[0].kind, simple_kind(&["case", "a"]));
        assert_eq!(
            parse("for i in a").unwrap_err().message,
            "'for' needs '(name in list)' or '(name)', not 'i'"
        );
        assert_eq!(
            parse("switch x echo").unwrap_err().message,
            "'switch' needs a body in '{...}', not 'echo'"
        );
        assert!(parse("while(a)").unwrap_err().incomplete);
    }

    #[test]
    fn and_or_not_and_pipelines_nest_as_in_rc() {
        let Kind::Or(left, _) = one("a && b || c") else {
            panic!("not ||");
        };
        assert!(matches!(left.kind, Kind::And(..)));
        let Kind::Not(inner) = one("! a | b") else {
            panic!("not !");
        };
        assert!(matches!(inner.kind, Kind::Pipeline { .. }));
        let Kind::And(left, _) = one("! a && b") else {
            panic!("not &&");
        };
        assert!(matches!(left.kind, Kind::Not(_)));
        assert!(matches!(one("a &&\n b"), Kind::And(..)));
        assert_eq!(
            parse("a || ;").unwrap_err().message,
            "'||' needs a command after it, not ';'"
        );
        assert!(parse("!").unwrap_err().incomplete);
    }

    #[test]
    fn functions_and_substitution() {
        let Kind::Fn(names, Some((body, source))) = one("fn f g { echo $1 }") else {
            panic!("not a fn");
        };
        assert_eq!(names, vec![lit("f"), lit("g")]);
        assert_eq!(body.commands.len(), 1);
        assert_eq!(source, "{ echo $1 }");
        assert!(matches!(one("fn f"), Kind::Fn(_, None)));
        assert_eq!(parse("fn").unwrap_err().message, "'fn' needs a name");
        let s = only("echo `{ls /}x");
        assert!(matches!(s.words[1].parts[0], Part::Subst(_)));
        assert_eq!(
            parse("echo `ls").unwrap_err().message,
            "'`' needs a command in '{...}', not 'ls'"
        );
    }

    #[test]
    fn local_assignments_and_redirections_before_a_compound() {
        let Kind::Assigned(assignments, inner) = one("x=1 >f { a }") else {
            panic!("not assigned");
        };
        assert_eq!(assignments[0].name, "x");
        assert!(matches!(inner.kind, Kind::Redirected(..)));
        let s = only(">f x=1 cmd");
        assert_eq!(s.assignments.len(), 1);
        assert_eq!(s.redirections.len(), 1);
    }
}
