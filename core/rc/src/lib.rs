//! Kasane's shell language: Plan 9's rc(1), parsed and run over a Host.
//!
//! The crate is the whole language and none of the system: [`parse`]
//! turns text into a [`Program`], and a [`Shell`] runs it against a
//! [`Host`] that starts commands, opens files and changes the namespace.
//! Core's shell binary supplies a host over its system calls; the tests
//! supply a mock that records what it was asked.
//!
//! What the language has, and where it departs from Plan 9's rc, is in
//! `docs/shell.md`. In short: words, quotes, comments, lists, `$x`, `$#x`,
//! `$x(n-m)`, `$"x`, `$*` and `$1`..., `^`, `` `{...} ``, assignments
//! (also local to one command), pipes and redirections, `{ }` blocks,
//! `if`/`if not`, `for`, `while`, `switch`/`case`, `&&`, `||`, `!`, `~`
//! matching, `fn`, and the builtins `cd`, `bind`, `mount`, `unmount`,
//! `echo`, `exit`, `rfork`, `shift`, `eval`, `.`, `whatis`, `wait` and
//! `test`; here documents, `cmd &`, and globbing through the host.
//!
//! [`Interactive`] and [`Lines`] are the interactive shell's logic
//! (prompts, one line at a time, continuation lines), also without I/O.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ast;
mod host;
mod interactive;
mod interp;
mod lexer;
mod parser;

pub use ast::Program;
pub use host::{
    FileStat, Host, HostFd, MountFlags, OpenHow, Spawn, RFCENVG, RFCNAMEG, RFENVG, RFNAMEG,
};
pub use interactive::{Interactive, Lines, CONTINUATION, PROMPT};
pub use interp::{Flow, Shell, BUILTINS};
pub use parser::{parse, ParseError};
