//! The syntax tree of the rc subset: pipelines of simple commands.

use alloc::string::String;
use alloc::vec::Vec;

/// A whole script or line: pipelines run one after another.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    pub pipelines: Vec<Pipeline>,
}

/// `a | b | c`: at least one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub commands: Vec<Simple>,
    /// For each `|`, the fd of the command on its left that feeds the
    /// pipe (`|[2]` is 2); `commands.len() - 1` of them.
    pub pipe_fds: Vec<u32>,
    /// Line where the pipeline starts, for messages.
    pub line: usize,
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
    /// Text, quoted or not: it expands to itself.
    Literal(String),
    /// `$name`: the variable's list, empty if unset.
    Var(String),
    /// `$#name`: the number of elements of the variable.
    Count(String),
    /// `(a b c)`: the elements of each word, in order.
    List(Vec<Word>),
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
}
