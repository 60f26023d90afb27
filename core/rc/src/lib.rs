//! Kasane's shell language: an rc(1) subset, parsed and run over a Host.
//!
//! The crate is the whole language and none of the system: [`parse`]
//! turns text into a [`Program`], and a [`Shell`] runs it against a
//! [`Host`] that starts commands, opens files and changes the namespace.
//! Core's shell binary supplies a host over its system calls; the tests
//! supply a mock that records what it was asked.
//!
//! What is in the subset, and where it departs from Plan 9's rc, is in
//! `docs/shell.md`. In short: words, single quotes, `#` comments, `;` and
//! newlines, `|` pipelines, `<` `>` `>>` with `[n]`, `[n=m]` and `[n=]`,
//! `$var`, `$#var`, `^`, lists in parentheses, `name=value`, and the
//! builtins `cd`, `bind`, `mount`, `unmount`, `echo` and `exit`.
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
pub use host::{Host, HostFd, MountFlags, OpenHow, Spawn, RFCENVG, RFCNAMEG, RFENVG, RFNAMEG};
pub use interactive::{Interactive, Lines, CONTINUATION, PROMPT};
pub use interp::{Flow, Shell, BUILTINS};
pub use parser::{parse, ParseError};
