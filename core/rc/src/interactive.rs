//! The interactive shell without its I/O: prompts, lines and continuations.
//!
//! An interactive rc (`rc -i`, or `rc` with no file) prints a prompt,
//! reads one line, runs it, and starts again; at end of input it exits
//! with `$status`. The shell binary does the reading and writing; this
//! module decides what to print and when a command is complete:
//!
//! - [`Lines`] turns what reads return (a console gives one line per read,
//!   a file or a pipe any number of bytes) into lines.
//! - [`Interactive`] takes one line at a time. A line that completes a
//!   command runs at once. A line that leaves it unfinished (an open
//!   quote, a trailing `|` or `>`, a `\` before the newline) is kept, and
//!   the next line is read after the continuation prompt.
//! - The prompts are `$prompt`'s two words, `'; '` and a tab by default,
//!   as in rc(1).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::host::Host;
use crate::interp::{Flow, Shell};
use crate::parser::parse;

/// rc's prompt for a new command.
pub const PROMPT: &str = "; ";
/// rc's prompt for the rest of an unfinished command.
pub const CONTINUATION: &str = "\t";

/// Bytes as read, cut into lines.
#[derive(Debug, Default, Clone)]
pub struct Lines {
    buffer: Vec<u8>,
}

impl Lines {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds what a read returned.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole line with its `\n`, if one is buffered.
    pub fn next_line(&mut self) -> Option<String> {
        let end = self.buffer.iter().position(|&b| b == b'\n')? + 1;
        let rest = self.buffer.split_off(end);
        let line = core::mem::replace(&mut self.buffer, rest);
        Some(String::from_utf8_lossy(&line).into_owned())
    }

    /// At end of input: the last line, which has no `\n`, if there is one.
    pub fn rest(&mut self) -> Option<String> {
        if self.buffer.is_empty() {
            return None;
        }
        let line = core::mem::take(&mut self.buffer);
        Some(String::from_utf8_lossy(&line).into_owned())
    }
}

/// An interactive session of a [`Shell`]: the text of an unfinished
/// command between lines.
#[derive(Debug, Default, Clone)]
pub struct Interactive {
    pending: String,
}

impl Interactive {
    /// Starts a session, giving `$prompt` rc's default `('; ' '\t')`
    /// unless it is set already.
    pub fn new(shell: &mut Shell) -> Self {
        if shell.var("prompt").is_none() {
            shell.set_var("prompt", vec![PROMPT.into(), CONTINUATION.into()]);
        }
        Self::default()
    }

    /// Whether the lines so far leave a command unfinished.
    pub fn is_continuing(&self) -> bool {
        !self.pending.is_empty()
    }

    /// What to print before the next line: `$prompt`'s first word, or its
    /// second while a command is unfinished (nothing if it is unset).
    pub fn prompt(&self, shell: &Shell) -> String {
        let index = usize::from(self.is_continuing());
        shell
            .var("prompt")
            .and_then(|words| words.get(index))
            .cloned()
            .unwrap_or_default()
    }

    /// Takes one line as it was read (with its `\n`, or without one at end
    /// of input) and runs the command it completes, if it does. A syntax
    /// error is reported as in a script (`rc: syntax error ...`, and
    /// `$status`), and the session goes on.
    pub fn line<H: Host>(&mut self, shell: &mut Shell, host: &mut H, line: &str) -> Flow {
        self.pending.push_str(line);
        let unfinished = self.pending.ends_with("\\\n")
            || matches!(parse(&self.pending), Err(e) if e.incomplete);
        if unfinished && self.pending.ends_with('\n') {
            return Flow::Continue;
        }
        let source = core::mem::take(&mut self.pending);
        shell.run(host, &source)
    }

    /// End of input: an unfinished command is run for its syntax error,
    /// and the result is the status the shell ends with (`$status`, or
    /// what `exit` said).
    pub fn end<H: Host>(&mut self, shell: &mut Shell, host: &mut H) -> String {
        if self.is_continuing() {
            let source = core::mem::take(&mut self.pending);
            if let Flow::Exit(status) = shell.run(host, &source) {
                return status;
            }
        }
        shell.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_newlines_whatever_the_reads() {
        let mut lines = Lines::new();
        assert_eq!(lines.next_line(), None);
        lines.push(b"echo a\necho");
        assert_eq!(lines.next_line().as_deref(), Some("echo a\n"));
        assert_eq!(lines.next_line(), None);
        lines.push(b" b\n\nls");
        assert_eq!(lines.next_line().as_deref(), Some("echo b\n"));
        assert_eq!(lines.next_line().as_deref(), Some("\n"));
        assert_eq!(lines.next_line(), None);
        assert_eq!(lines.rest().as_deref(), Some("ls"));
        assert_eq!(lines.rest(), None);
    }

    #[test]
    fn prompts_come_from_the_prompt_variable() {
        let mut shell = Shell::new();
        let session = Interactive::new(&mut shell);
        assert_eq!(session.prompt(&shell), "; ");
        shell.set_var("prompt", vec!["% ".into()]);
        assert_eq!(session.prompt(&shell), "% ");
        let continuing = Interactive {
            pending: "echo 'a\n".into(),
        };
        // No second word: no continuation prompt.
        assert_eq!(continuing.prompt(&shell), "");
        // A prompt set before the session is kept.
        let mut shell = Shell::new();
        shell.set_var("prompt", vec!["> ".into()]);
        let session = Interactive::new(&mut shell);
        assert_eq!(session.prompt(&shell), "> ");
    }
}
