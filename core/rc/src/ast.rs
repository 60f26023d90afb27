//! The syntax tree of the rc language: commands, words, redirections.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// A whole script, line or `{ }` body: commands run one after another.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    pub commands: Vec<Command>,
}

/// One command and the line it starts on, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub kind: Kind,
    pub line: usize,
}

/// The forms of rc(1)'s grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Simple(Simple),
    /// `a | b | c`: at least two commands. For each `|`, the fd of the
    /// command on its left that feeds the pipe (`|[2]` is 2).
    Pipeline {
        commands: Vec<Command>,
        pipe_fds: Vec<u32>,
    },
    /// `{ ... }`.
    Block(Program),
    /// A compound command with redirections (`{ ... } >f`, `>f if(...)`).
    Redirected(Box<Command>, Vec<Redirection>),
    /// A compound command with local assignments (`x=1 { ... }`).
    Assigned(Vec<Assignment>, Box<Command>),
    /// `if(condition) command`.
    If(Program, Box<Command>),
    /// `if not command`: runs if the last `if`'s condition failed.
    IfNot(Box<Command>),
    /// `for(name in words) command`, or `for(name) command` over `$*`.
    For {
        name: String,
        list: Option<Vec<Word>>,
        body: Box<Command>,
    },
    /// `while(condition) command`.
    While(Program, Box<Command>),
    /// `switch(word){ ... }`: the body's `case` commands select.
    Switch(Word, Program),
    /// `a && b`.
    And(Box<Command>, Box<Command>),
    /// `a || b`.
    Or(Box<Command>, Box<Command>),
    /// `! command`.
    Not(Box<Command>),
    /// `~ subject pattern ...`.
    Match(Word, Vec<Word>),
    /// `command &`: started and not waited for (only a program).
    Background(Box<Command>),
    /// `fn name ... { body }`, or `fn name ...` to delete. The body keeps
    /// its source text (braces included) for `whatis`.
    Fn(Vec<Word>, Option<(Program, String)>),
}

/// `name=value ... word ... [redirection ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simple {
    pub assignments: Vec<Assignment>,
    /// The command name and its arguments, before expansion.
    pub words: Vec<Word>,
    /// In the order written; later ones win (rc(1)).
    pub redirections: Vec<Redirection>,
}

/// `name=value`; the value may be a list, as in `path=(/bin .)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: Word,
}

/// Parts written next to one another (or joined by `^`), concatenated
/// when expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub parts: Vec<Part>,
}

impl Word {
    /// A word of one literal part.
    pub fn literal(text: &str) -> Self {
        Self {
            parts: alloc::vec![Part::Literal(String::from(text))],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Unquoted text: it expands to itself (its `*`, `?`, `[` are
    /// pattern characters in a `~` or `case` pattern).
    Literal(String),
    /// Quoted text: it expands to itself, never a pattern.
    Quoted(String),
    /// `$name`: the variable's list, empty if unset.
    Var(String),
    /// `$name(subscripts)`: elements `n`, `n-` or `n-m`, 1-based.
    Sub(String, Vec<Word>),
    /// `$#name`: the number of elements of the variable.
    Count(String),
    /// `$"name`: the elements joined by spaces, one word.
    Join(String),
    /// `(a b c)`: the elements of each word, in order.
    List(Vec<Word>),
    /// `` `{ ... } ``: the command's output, split at `$ifs` characters.
    Subst(Program),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// `<`: open for reading.
    Read,
    /// `>`: create or truncate, for writing.
    Write,
    /// `>>`: append, creating if need be.
    Append,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirection {
    /// The fd of the command that is redirected.
    pub fd: u32,
    pub target: RedirectTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectTarget {
    /// `>file`, `>>file`, `<file`.
    File(RedirectKind, Word),
    /// `>[n=m]`: fd n becomes a copy of fd m.
    Dup(u32),
    /// `>[n=]`: fd n is closed.
    Close,
    /// `<<tag` and the lines up to `tag`: fd n reads this text. With an
    /// unquoted tag, `$name` in it is replaced by the variable (rc(1)).
    Here { text: String, substitute: bool },
}
