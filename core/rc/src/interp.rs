//! Runs a [`Program`] against a [`Host`]: expansion, control flow, fds,
//! pipes, functions and builtins.
//!
//! Rules and where they come from (rc(1), Plan 9's Duff's rc):
//! - Expansion ("Variables", "Free carets"): an unset variable is the
//!   empty list; `$x(n)`, `$x(n-)` and `$x(n-m)` pick elements, 1-based;
//!   `$"x` joins the elements with spaces; `$1`... are elements of `$*`.
//!   Concatenating two lists pairs them element by element if they are
//!   equally long, distributes a one-element list over the other, and is
//!   an error otherwise or if either is empty.
//! - `` `{cmd} `` ("Command substitution"): cmd's output split at the
//!   characters of `$ifs` (blank, tab, newline unless set).
//! - `$status`: the exit status of the last command, a string, empty for
//!   success. For a pipeline it is the statuses of its commands joined
//!   with `|`, and it counts as success if it holds only `|` and `0`
//!   characters, as rc's own test does. `~` sets it to `no match`, `!`
//!   of a success to `false`.
//! - `if not` runs if the condition of the last `if` failed; `switch`
//!   runs the commands after the first `case` whose pattern matches, up
//!   to the next `case`. Patterns: `*`, `?`, `[...]` (`[~...]` negates),
//!   special only where written unquoted.
//! - Functions ("Functions") are looked up before builtins and `$path`;
//!   in one, `$*` is its arguments (`$0` stays the script's name).
//! - Redirections ("I/O Redirections") apply left to right and override
//!   the pipe; `>` truncates, `>>` appends, `>[n=m]` copies m.
//! - A command is looked up in each directory of `$path` unless its name
//!   starts with `/`, `./`, `../` or `#` ("Simple Commands").
//! - Errors print as `cmd: message` on the command's fd 2, and that text
//!   becomes `$status`; the shell's own errors say `rc:`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::ast::{
    Command, Kind, Part, Program, RedirectKind, RedirectTarget, Redirection, Simple, Word,
};
use crate::host::{Host, HostFd, MountFlags, OpenHow, Spawn};
use crate::parser::parse;

/// Whether the shell goes on after a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `exit` ran; the shell should end with this status.
    Exit(String),
}

/// The commands the interpreter runs itself.
pub const BUILTINS: [&str; 13] = [
    "cd", "bind", "mount", "unmount", "echo", "exit", "rfork", "shift", "eval", "whatis", ".",
    "wait", "test",
];

/// How deep functions, `eval` and `.` may nest.
const MAX_DEPTH: usize = 32;

type FdTable = BTreeMap<u32, HostFd>;

/// A command after expansion and redirection, ready to run.
struct Prepared {
    argv: Vec<String>,
    fds: FdTable,
    /// Fds opened for its redirections; the shell closes them.
    owned: Vec<HostFd>,
    /// Its own `name=value` assignments.
    locals: Vec<(String, Vec<String>)>,
}

enum Ran {
    Status(String),
    Exit(String),
}

enum Slot<P> {
    Done(String),
    Running(P),
    /// A builtin or function, run in the shell after the others started.
    Inline(Prepared),
    /// A compound command, run in the shell with these fds.
    Compound(FdTable),
}

/// Variables as they were before a local assignment.
type Saved = Vec<(String, Option<Vec<String>>)>;

/// Stops a run at `exit`.
macro_rules! go {
    ($flow:expr) => {
        if let Flow::Exit(status) = $flow {
            return Flow::Exit(status);
        }
    };
}

/// The interpreter's state: variables, functions and the fds commands
/// start from.
#[derive(Debug, Clone)]
pub struct Shell {
    vars: BTreeMap<String, Vec<String>>,
    fns: BTreeMap<String, (Program, String)>,
    /// Fds 0, 1, 2 of the shell, or of the block being run.
    io: FdTable,
    /// The condition of the last `if` failed, so `if not` runs.
    if_failed: bool,
    depth: usize,
    /// Pids of commands started with `&`, not yet waited for.
    jobs: Vec<u64>,
}

impl Default for Shell {
    fn default() -> Self {
        Self::new()
    }
}

impl Shell {
    /// A shell on fds 0, 1 and 2 with `$path` set to `/bin`, `$ifs` to
    /// blank, tab and newline, and an empty (successful) `$status`.
    pub fn new() -> Self {
        Self::with_stdio(HostFd(0), HostFd(1), HostFd(2))
    }

    pub fn with_stdio(stdin: HostFd, stdout: HostFd, stderr: HostFd) -> Self {
        let mut vars = BTreeMap::new();
        vars.insert(String::from("path"), vec![String::from("/bin")]);
        vars.insert(String::from("status"), vec![String::new()]);
        vars.insert(String::from("ifs"), vec![String::from(" \t\n")]);
        Self {
            vars,
            fns: BTreeMap::new(),
            io: (0u32..).zip([stdin, stdout, stderr]).collect(),
            if_failed: false,
            depth: 0,
            jobs: Vec::new(),
        }
    }

    /// `$status`, one string.
    pub fn status(&self) -> String {
        self.vars
            .get("status")
            .map(|v| v.join(" "))
            .unwrap_or_default()
    }

    /// rc's truth: a status of only `|` and `0` characters is success.
    pub fn succeeded(&self) -> bool {
        self.status().chars().all(|c| c == '|' || c == '0')
    }

    pub fn var(&self, name: &str) -> Option<&[String]> {
        self.vars.get(name).map(Vec::as_slice)
    }

    pub fn set_var(&mut self, name: &str, value: Vec<String>) {
        self.vars.insert(String::from(name), value);
    }

    fn set_status(&mut self, status: String) {
        self.vars.insert(String::from("status"), vec![status]);
    }

    /// Parses and runs `source`. A syntax error runs nothing: it prints
    /// `rc: syntax error ...` and sets `$status`.
    pub fn run<H: Host>(&mut self, host: &mut H, source: &str) -> Flow {
        match parse(source) {
            Ok(program) => self.run_program(host, &program),
            Err(e) => {
                let status = self.report(host, &self.io, format!("rc: {e}"));
                self.set_status(status);
                Flow::Continue
            }
        }
    }

    pub fn run_program<H: Host>(&mut self, host: &mut H, program: &Program) -> Flow {
        for command in &program.commands {
            go!(self.run_command(host, command));
        }
        Flow::Continue
    }

    /// Writes `text` and a newline on the table's fd 2 (if it is open),
    /// and returns `text` as the status to set.
    fn report<H: Host>(&self, host: &mut H, fds: &FdTable, text: String) -> String {
        if let Some(fd) = fds.get(&2) {
            let mut line = text.clone();
            line.push('\n');
            // Nowhere left to complain if fd 2 fails too.
            let _ = host.write(*fd, line.as_bytes());
        }
        text
    }

    /// Reports a shell error on the current fd 2 and makes it `$status`.
    fn fail<H: Host>(&mut self, host: &mut H, text: String) -> Flow {
        let status = self.report(host, &self.io, text);
        self.set_status(status);
        Flow::Continue
    }

    fn run_command<H: Host>(&mut self, host: &mut H, command: &Command) -> Flow {
        match &command.kind {
            Kind::Simple(simple) => self.run_simple(host, simple),
            Kind::Pipeline { commands, pipe_fds } => self.run_pipeline(host, commands, pipe_fds),
            Kind::Block(program) => self.run_program(host, program),
            Kind::Redirected(inner, redirections) => {
                let (fds, owned) = match self.redirect(host, redirections, self.io.clone()) {
                    Ok(done) => done,
                    Err(status) => {
                        self.set_status(status);
                        return Flow::Continue;
                    }
                };
                let saved = core::mem::replace(&mut self.io, fds);
                let flow = self.run_command(host, inner);
                self.io = saved;
                close_all(host, &owned);
                flow
            }
            Kind::Assigned(assignments, inner) => {
                let mut locals = Vec::new();
                for assignment in assignments {
                    match self.expand(host, &assignment.value) {
                        Ok(value) => locals.push((assignment.name.clone(), value)),
                        Err(e) => return self.fail(host, e),
                    }
                }
                let saved = self.push_locals(&locals);
                let flow = self.run_command(host, inner);
                self.pop_locals(saved);
                flow
            }
            Kind::If(condition, body) => {
                go!(self.run_program(host, condition));
                if self.succeeded() {
                    self.if_failed = false;
                    self.run_command(host, body)
                } else {
                    self.if_failed = true;
                    Flow::Continue
                }
            }
            Kind::IfNot(body) => {
                if self.if_failed {
                    self.if_failed = false;
                    self.run_command(host, body)
                } else {
                    Flow::Continue
                }
            }
            Kind::For { name, list, body } => {
                let values = match list {
                    Some(words) => match self.expand_globbed(host, words) {
                        Ok(values) => values,
                        Err(e) => return self.fail(host, e),
                    },
                    None => self.lookup("*"),
                };
                for value in values {
                    self.vars.insert(name.clone(), vec![value]);
                    go!(self.run_command(host, body));
                }
                Flow::Continue
            }
            Kind::While(condition, body) => loop {
                go!(self.run_program(host, condition));
                if !self.succeeded() {
                    return Flow::Continue;
                }
                go!(self.run_command(host, body));
            },
            Kind::Switch(subject, body) => self.run_switch(host, subject, body),
            Kind::Background(inner) => self.run_background(host, inner),
            Kind::And(left, right) => {
                go!(self.run_command(host, left));
                if self.succeeded() {
                    return self.run_command(host, right);
                }
                Flow::Continue
            }
            Kind::Or(left, right) => {
                go!(self.run_command(host, left));
                if !self.succeeded() {
                    return self.run_command(host, right);
                }
                Flow::Continue
            }
            Kind::Not(inner) => {
                go!(self.run_command(host, inner));
                let status = if self.succeeded() { "false" } else { "" };
                self.set_status(String::from(status));
                Flow::Continue
            }
            Kind::Match(subject, patterns) => {
                let matched = match self.matches(host, subject, patterns) {
                    Ok(matched) => matched,
                    Err(e) => return self.fail(host, e),
                };
                let status = if matched { "" } else { "no match" };
                self.set_status(String::from(status));
                Flow::Continue
            }
            Kind::Fn(names, body) => {
                let names = match self.expand_words(host, names) {
                    Ok(names) => names,
                    Err(e) => return self.fail(host, e),
                };
                for name in names {
                    match body {
                        Some(body) => self.fns.insert(name, body.clone()),
                        None => self.fns.remove(&name),
                    };
                }
                Flow::Continue
            }
        }
    }

    /// Whether `subject`, its elements joined by spaces as Plan 9's rc
    /// does (so `()` is `''`), matches any of `patterns`.
    fn matches<H: Host>(
        &mut self,
        host: &mut H,
        subject: &Word,
        patterns: &[Word],
    ) -> Result<bool, String> {
        let subject = self.expand(host, subject)?.join(" ");
        let text: Vec<char> = subject.chars().collect();
        let mut all = Vec::new();
        for pattern in patterns {
            all.extend(self.expand_as(host, pattern, true)?);
        }
        Ok(all.iter().any(|p| {
            let pattern: Vec<char> = p.chars().collect();
            glob_match(&pattern, &text)
        }))
    }

    // rc(1): switch(argument){list}: the commands after the first `case`
    // that matches run, up to the next `case`.
    fn run_switch<H: Host>(&mut self, host: &mut H, subject: &Word, body: &Program) -> Flow {
        let mut running = false;
        for command in &body.commands {
            if let Some(patterns) = case_patterns(command) {
                if running {
                    break;
                }
                running = match self.matches(host, subject, patterns) {
                    Ok(matched) => matched,
                    Err(e) => return self.fail(host, e),
                };
                continue;
            }
            if running {
                go!(self.run_command(host, command));
            }
        }
        Flow::Continue
    }

    // rc(1): `cmd &` starts cmd without waiting and sets $apid. The
    // interpreter cannot fork, so only a program can be started so.
    fn run_background<H: Host>(&mut self, host: &mut H, command: &Command) -> Flow {
        let Kind::Simple(simple) = &command.kind else {
            return self.fail(
                host,
                String::from("rc: only a program can run in the background"),
            );
        };
        let prepared = match self.prepare(host, simple, self.io.clone()) {
            Ok(prepared) => prepared,
            Err(status) => {
                self.set_status(status);
                return Flow::Continue;
            }
        };
        if prepared.argv.is_empty() || self.is_inline(&prepared.argv[0]) {
            close_all(host, &prepared.owned);
            return self.fail(
                host,
                String::from("rc: only a program can run in the background"),
            );
        }
        let started = self.spawn(host, &prepared);
        close_all(host, &prepared.owned);
        match started {
            Ok(process) => {
                let pid = host.detach(process);
                self.jobs.push(pid);
                self.vars
                    .insert(String::from("apid"), vec![pid.to_string()]);
                self.set_status(String::new());
            }
            Err(status) => self.set_status(status),
        }
        Flow::Continue
    }

    fn push_locals(&mut self, locals: &[(String, Vec<String>)]) -> Saved {
        locals
            .iter()
            .map(|(name, value)| (name.clone(), self.vars.insert(name.clone(), value.clone())))
            .collect()
    }

    fn pop_locals(&mut self, saved: Saved) {
        for (name, old) in saved.into_iter().rev() {
            match old {
                Some(value) => self.vars.insert(name, value),
                None => self.vars.remove(&name),
            };
        }
    }

    fn run_pipeline<H: Host>(
        &mut self,
        host: &mut H,
        commands: &[Command],
        pipe_fds: &[u32],
    ) -> Flow {
        let n = commands.len();
        let mut pipes = Vec::with_capacity(n - 1);
        for _ in 1..n {
            match host.pipe() {
                Ok(pipe) => pipes.push(pipe),
                Err(e) => {
                    for (read, write) in pipes {
                        host.close(read);
                        host.close(write);
                    }
                    return self.fail(host, format!("rc: can't make a pipe: {e}"));
                }
            }
        }
        // Each pipe end belongs to one command: the shell closes it once
        // that command has started (or, for one run inline, finished).
        let close_ends = |host: &mut H, i: usize| {
            if i > 0 {
                host.close(pipes[i - 1].0);
            }
            if i < n - 1 {
                host.close(pipes[i].1);
            }
        };
        // Start every external command first, so a builtin writing into a
        // pipe has a reader.
        let mut slots: Vec<Slot<H::Process>> = Vec::with_capacity(n);
        for (i, command) in commands.iter().enumerate() {
            let mut fds = self.io.clone();
            if i > 0 {
                fds.insert(0, pipes[i - 1].0);
            }
            if i < n - 1 {
                fds.insert(pipe_fds[i], pipes[i].1);
            }
            let slot = match &command.kind {
                Kind::Simple(simple) => match self.prepare(host, simple, fds) {
                    Err(status) => Slot::Done(status),
                    // Assignments alone in a pipeline: rc runs them in a
                    // subshell, so they change nothing.
                    Ok(prepared) if prepared.argv.is_empty() => {
                        close_all(host, &prepared.owned);
                        Slot::Done(String::new())
                    }
                    Ok(prepared) if self.is_inline(&prepared.argv[0]) => Slot::Inline(prepared),
                    Ok(prepared) => {
                        let started = self.spawn(host, &prepared);
                        close_all(host, &prepared.owned);
                        match started {
                            Ok(process) => Slot::Running(process),
                            Err(status) => Slot::Done(status),
                        }
                    }
                },
                _ => Slot::Compound(fds),
            };
            if !matches!(slot, Slot::Inline(_) | Slot::Compound(_)) {
                close_ends(host, i);
            }
            slots.push(slot);
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            // `exit` in a pipeline ends only its own element, as it
            // would in rc's subshell.
            let status = match slot {
                Slot::Inline(prepared) => {
                    let status = match self.run_prepared(host, prepared, false) {
                        Ran::Status(s) | Ran::Exit(s) => s,
                    };
                    close_all(host, &prepared.owned);
                    status
                }
                Slot::Compound(fds) => {
                    let saved = core::mem::replace(&mut self.io, fds.clone());
                    let flow = self.run_command(host, &commands[i]);
                    self.io = saved;
                    match flow {
                        Flow::Exit(status) => status,
                        Flow::Continue => self.status(),
                    }
                }
                _ => continue,
            };
            close_ends(host, i);
            *slot = Slot::Done(status);
        }
        let mut statuses = Vec::with_capacity(n);
        for slot in slots {
            statuses.push(match slot {
                Slot::Done(status) => status,
                Slot::Running(process) => host.wait(process),
                Slot::Inline(_) | Slot::Compound(_) => String::new(),
            });
        }
        self.set_status(statuses.join("|"));
        Flow::Continue
    }

    /// Whether the shell runs this command itself.
    fn is_inline(&self, name: &str) -> bool {
        self.fns.contains_key(name) || is_builtin(name)
    }

    fn run_simple<H: Host>(&mut self, host: &mut H, command: &Simple) -> Flow {
        let prepared = match self.prepare(host, command, self.io.clone()) {
            Ok(prepared) => prepared,
            Err(status) => {
                self.set_status(status);
                return Flow::Continue;
            }
        };
        if prepared.argv.is_empty() {
            // `name=value` alone sets the variable; `>file` alone creates
            // the file (rc(1)). Neither changes $status.
            close_all(host, &prepared.owned);
            for (name, value) in prepared.locals {
                self.vars.insert(name, value);
            }
            return Flow::Continue;
        }
        let ran = self.run_prepared(host, &prepared, true);
        close_all(host, &prepared.owned);
        match ran {
            Ran::Status(status) => {
                self.set_status(status);
                Flow::Continue
            }
            Ran::Exit(status) => Flow::Exit(status),
        }
    }

    /// Runs a function, a builtin or a program; `alone` is false in a
    /// pipeline, where `exit` ends only that element.
    fn run_prepared<H: Host>(&mut self, host: &mut H, prepared: &Prepared, alone: bool) -> Ran {
        let name = &prepared.argv[0];
        if let Some((body, _)) = self.fns.get(name).cloned() {
            let mut locals = prepared.locals.clone();
            // Plan 9's rc sets only $* for a function: $0 stays the
            // script's name.
            locals.push((String::from("*"), prepared.argv[1..].to_vec()));
            let flow = self.nested(host, &prepared.fds, &locals, |this, host| {
                this.run_program(host, &body)
            });
            return match flow {
                Flow::Exit(status) if alone => Ran::Exit(status),
                Flow::Exit(status) => Ran::Status(status),
                Flow::Continue => Ran::Status(self.status()),
            };
        }
        if is_builtin(name) {
            let saved = self.push_locals(&prepared.locals);
            let ran = self.builtin(host, &prepared.argv, &prepared.fds, alone);
            self.pop_locals(saved);
            return ran;
        }
        // The child has its own copies; the shell's go before the wait.
        Ran::Status(match self.spawn(host, prepared) {
            Ok(process) => host.wait(process),
            Err(status) => status,
        })
    }

    /// Runs `body` one level deeper (a function, `eval`, `.`) with `fds`
    /// as its standard fds and `locals` in force.
    fn nested<H: Host>(
        &mut self,
        host: &mut H,
        fds: &FdTable,
        locals: &[(String, Vec<String>)],
        body: impl FnOnce(&mut Self, &mut H) -> Flow,
    ) -> Flow {
        if self.depth >= MAX_DEPTH {
            let text = String::from("rc: too deep: functions, eval or . nested 32 times");
            let status = self.report(host, fds, text);
            self.set_status(status);
            return Flow::Continue;
        }
        self.depth += 1;
        let saved_io = core::mem::replace(&mut self.io, fds.clone());
        let saved = self.push_locals(locals);
        let flow = body(self, host);
        self.pop_locals(saved);
        self.io = saved_io;
        self.depth -= 1;
        flow
    }

    /// Expands a command and applies its redirections to `fds`. On error
    /// the message is printed and returned as the status, and whatever it
    /// had opened is closed.
    fn prepare<H: Host>(
        &mut self,
        host: &mut H,
        command: &Simple,
        fds: FdTable,
    ) -> Result<Prepared, String> {
        let mut locals = Vec::new();
        for assignment in &command.assignments {
            match self.expand(host, &assignment.value) {
                Ok(value) => locals.push((assignment.name.clone(), value)),
                Err(e) => return Err(self.report(host, &fds, e)),
            }
        }
        let argv = match self.expand_globbed(host, &command.words) {
            Ok(argv) => argv,
            Err(e) => return Err(self.report(host, &fds, e)),
        };
        let (fds, owned) = self.redirect(host, &command.redirections, fds)?;
        Ok(Prepared {
            argv,
            fds,
            owned,
            locals,
        })
    }

    /// Applies redirections to `fds`, left to right; returns the table and
    /// the fds opened for it. On error the message is printed on the old
    /// table's fd 2 and returned, and what was opened is closed.
    fn redirect<H: Host>(
        &mut self,
        host: &mut H,
        redirections: &[Redirection],
        mut fds: FdTable,
    ) -> Result<(FdTable, Vec<HostFd>), String> {
        let base = fds.clone();
        let mut owned = Vec::new();
        for redirection in redirections {
            let result = match &redirection.target {
                RedirectTarget::File(kind, word) => self.open_target(host, *kind, word),
                RedirectTarget::Here { text, substitute } => {
                    let text = if *substitute {
                        self.substitute_text(text)
                    } else {
                        text.clone()
                    };
                    here_document(host, &text)
                }
                RedirectTarget::Dup(from) => fds
                    .get(from)
                    .copied()
                    .ok_or_else(|| format!("rc: fd {from} is not open")),
                RedirectTarget::Close => {
                    fds.remove(&redirection.fd);
                    continue;
                }
            };
            match result {
                Ok(fd) => {
                    if matches!(
                        redirection.target,
                        RedirectTarget::File(..) | RedirectTarget::Here { .. }
                    ) {
                        owned.push(fd);
                    }
                    fds.insert(redirection.fd, fd);
                }
                Err(e) => {
                    close_all(host, &owned);
                    return Err(self.report(host, &base, e));
                }
            }
        }
        Ok((fds, owned))
    }

    fn open_target<H: Host>(
        &mut self,
        host: &mut H,
        kind: RedirectKind,
        word: &Word,
    ) -> Result<HostFd, String> {
        let target = self.expand(host, word)?;
        let [path] = target.as_slice() else {
            return Err(format!(
                "rc: redirection needs one file name, not {}",
                target.len()
            ));
        };
        let how = match kind {
            RedirectKind::Read => OpenHow::Read,
            RedirectKind::Write => OpenHow::Write,
            RedirectKind::Append => OpenHow::Append,
        };
        host.open(path, how)
            .map_err(|e| format!("rc: can't open {path}: {e}"))
    }

    /// A here document's text with `$name` replaced by the variable's
    /// elements joined by spaces (rc(1), "Here Documents").
    fn substitute_text(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                out.push(c);
                continue;
            }
            let mut name = String::new();
            while let Some(c) = chars.next_if(|&c| crate::lexer::is_name_char(c)) {
                name.push(c);
            }
            if name.is_empty() {
                out.push('$');
            } else {
                out.push_str(&self.lookup(&name).join(" "));
            }
        }
        out
    }

    /// A variable's list; `$1`... are elements of `$*`.
    fn lookup(&self, name: &str) -> Vec<String> {
        if name != "0" && name.chars().all(|c| c.is_ascii_digit()) {
            let n: usize = name.parse().unwrap_or(0);
            return self
                .vars
                .get("*")
                .and_then(|all| all.get(n.wrapping_sub(1)))
                .cloned()
                .into_iter()
                .collect();
        }
        self.vars.get(name).cloned().unwrap_or_default()
    }

    fn expand_words<H: Host>(
        &mut self,
        host: &mut H,
        words: &[Word],
    ) -> Result<Vec<String>, String> {
        let mut list = Vec::new();
        for word in words {
            list.extend(self.expand(host, word)?);
        }
        Ok(list)
    }

    /// Words as arguments: expanded, then each element with an unquoted
    /// `*`, `?` or `[` replaced by the files it matches (rc(1), "Patterns").
    fn expand_globbed<H: Host>(
        &mut self,
        host: &mut H,
        words: &[Word],
    ) -> Result<Vec<String>, String> {
        let mut list = Vec::new();
        for word in words {
            for pattern in self.expand_as(host, word, true)? {
                list.extend(glob(host, &pattern));
            }
        }
        Ok(list)
    }

    /// A word's list of strings (rc(1), "Variables" and "Free carets").
    fn expand<H: Host>(&mut self, host: &mut H, word: &Word) -> Result<Vec<String>, String> {
        self.expand_as(host, word, false)
    }

    /// With `pattern`, the result is a pattern for [`glob_match`]: text
    /// that was quoted or came from a variable or a substitution has its
    /// special characters escaped with `\`.
    fn expand_as<H: Host>(
        &mut self,
        host: &mut H,
        word: &Word,
        pattern: bool,
    ) -> Result<Vec<String>, String> {
        let mut parts = word.parts.iter();
        let Some(first) = parts.next() else {
            return Ok(Vec::new());
        };
        let mut list = self.expand_part(host, first, pattern)?;
        for part in parts {
            let right = self.expand_part(host, part, pattern)?;
            list = concatenate(list, right)?;
        }
        Ok(list)
    }

    fn expand_part<H: Host>(
        &mut self,
        host: &mut H,
        part: &Part,
        pattern: bool,
    ) -> Result<Vec<String>, String> {
        let escape = |list: Vec<String>| -> Vec<String> {
            if pattern {
                list.iter().map(|s| escape_pattern(s, "*?[]\\")).collect()
            } else {
                list
            }
        };
        Ok(match part {
            Part::Literal(text) if pattern => vec![escape_pattern(text, "\\")],
            Part::Literal(text) => vec![text.clone()],
            Part::Quoted(text) => escape(vec![text.clone()]),
            Part::Var(name) => escape(self.lookup(name)),
            Part::Count(name) => vec![self.lookup(name).len().to_string()],
            Part::Join(name) => escape(vec![self.lookup(name).join(" ")]),
            Part::Sub(name, subscripts) => {
                let values = self.lookup(name);
                let subscripts = self.expand_words(host, subscripts)?;
                let mut picked = Vec::new();
                for subscript in subscripts {
                    let (from, to) = parse_subscript(&subscript, values.len())
                        .ok_or_else(|| format!("rc: bad subscript '{subscript}'"))?;
                    picked.extend(values.iter().take(to).skip(from - 1).cloned());
                }
                escape(picked)
            }
            Part::List(words) => {
                let mut list = Vec::new();
                for word in words {
                    list.extend(self.expand_as(host, word, pattern)?);
                }
                list
            }
            Part::Subst(program) => {
                let output = self.substitute(host, program)?;
                escape(output)
            }
        })
    }

    /// rc(1) `` `{cmd} ``: runs cmd with fd 1 into a pipe and splits what
    /// it wrote at `$ifs` characters. The output is read after cmd ended,
    /// so it must fit in the pipe.
    fn substitute<H: Host>(
        &mut self,
        host: &mut H,
        program: &Program,
    ) -> Result<Vec<String>, String> {
        let (read, write) = host
            .pipe()
            .map_err(|e| format!("rc: can't make a pipe: {e}"))?;
        let mut fds = self.io.clone();
        fds.insert(1, write);
        let saved = core::mem::replace(&mut self.io, fds);
        // An `exit` inside ends only the substitution (rc's subshell).
        let _ = self.run_program(host, program);
        self.io = saved;
        host.close(write);
        let mut output = Vec::new();
        let mut buffer = [0u8; 512];
        while let Ok(n) = host.read(read, &mut buffer) {
            if n == 0 {
                break;
            }
            output.extend_from_slice(&buffer[..n.min(buffer.len())]);
        }
        host.close(read);
        let ifs = self.lookup("ifs").concat();
        let text = String::from_utf8_lossy(&output);
        Ok(text
            .split(|c| ifs.contains(c))
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect())
    }

    /// The files to try for a command name, from `$path`.
    fn candidates(&self, name: &str) -> Vec<String> {
        let explicit = ["/", "./", "../", "#"];
        let dirs = self.vars.get("path").map(Vec::as_slice).unwrap_or(&[]);
        if explicit.iter().any(|p| name.starts_with(p)) || dirs.is_empty() {
            return vec![String::from(name)];
        }
        dirs.iter()
            .map(|dir| match dir.as_str() {
                "" | "." => String::from(name),
                d if d.ends_with('/') => format!("{d}{name}"),
                d => format!("{d}/{name}"),
            })
            .collect()
    }

    /// Starts an external command, trying each `$path` candidate. If none
    /// exists the error is `name: file does not exist`, as rc words it,
    /// without the path that was tried; another error is reported as
    /// `name: error`.
    fn spawn<H: Host>(&self, host: &mut H, prepared: &Prepared) -> Result<H::Process, String> {
        const MISSING: &str = "file does not exist";
        let name = &prepared.argv[0];
        let mut env = self.vars.clone();
        for (key, value) in &prepared.locals {
            env.insert(key.clone(), value.clone());
        }
        let env: Vec<(String, Vec<String>)> = env.into_iter().collect();
        let fds: Vec<(u32, HostFd)> = prepared.fds.iter().map(|(k, v)| (*k, *v)).collect();
        let mut last = String::from(MISSING);
        for path in self.candidates(name) {
            let request = Spawn {
                path: &path,
                argv: &prepared.argv,
                fds: &fds,
                env: &env,
            };
            match host.spawn(&request) {
                Ok(process) => return Ok(process),
                Err(e) if e.ends_with(MISSING) => last = String::from(MISSING),
                Err(e) => last = e,
            }
        }
        Err(self.report(host, &prepared.fds, format!("{name}: {last}")))
    }

    fn builtin<H: Host>(
        &mut self,
        host: &mut H,
        argv: &[String],
        fds: &FdTable,
        alone: bool,
    ) -> Ran {
        let args = &argv[1..];
        let status = match argv[0].as_str() {
            "cd" => self.cd(host, args, fds),
            "bind" => self.bind(host, args, fds),
            "mount" => self.mount(host, args, fds),
            "unmount" => self.unmount(host, args, fds),
            "echo" => self.echo(host, args, fds),
            "rfork" => self.rfork(host, args, fds),
            "shift" => self.shift(host, args, fds),
            "whatis" => self.whatis(host, args, fds),
            "wait" => self.wait(host, args, fds),
            "test" => match test(host, args) {
                Ok(true) => String::new(),
                Ok(false) => String::from("false"),
                Err(e) => self.report(host, fds, format!("test: {e}")),
            },
            "eval" | "." => {
                let flow = if argv[0] == "eval" {
                    let source = args.join(" ");
                    self.nested(host, fds, &[], |this, host| this.run(host, &source))
                } else {
                    self.dot(host, args, fds)
                };
                return match flow {
                    Flow::Exit(status) if alone => Ran::Exit(status),
                    Flow::Exit(status) => Ran::Status(status),
                    Flow::Continue => Ran::Status(self.status()),
                };
            }
            "exit" => {
                let status = if args.is_empty() {
                    self.status()
                } else {
                    args.join(" ")
                };
                return if alone {
                    Ran::Exit(status)
                } else {
                    Ran::Status(status)
                };
            }
            other => self.report(host, fds, format!("rc: {other}: not a builtin")),
        };
        Ran::Status(status)
    }

    // rc(1): . file [arg ...]: runs file in this shell with $* the args.
    fn dot<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> Flow {
        let Some((file, rest)) = args.split_first() else {
            let status = self.usage(host, fds, ".", None, ". file [arg ...]");
            self.set_status(status);
            return Flow::Continue;
        };
        let source = match read_all(host, file) {
            Ok(source) => source,
            Err(e) => {
                let status = self.report(host, fds, format!(".: can't open {file}: {e}"));
                self.set_status(status);
                return Flow::Continue;
            }
        };
        let locals = [(String::from("*"), rest.to_vec())];
        self.nested(host, fds, &locals, |this, host| this.run(host, &source))
    }

    // rc(1): wait [pid]: waits for the command started with `&` that has
    // this pid, or for all of them; $status is the last one's.
    fn wait<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        let pids = match args {
            [] => core::mem::take(&mut self.jobs),
            [pid] => match pid.parse::<u64>() {
                Ok(pid) => {
                    self.jobs.retain(|&job| job != pid);
                    vec![pid]
                }
                Err(_) => return self.usage(host, fds, "wait", None, "wait [pid]"),
            },
            _ => return self.usage(host, fds, "wait", None, "wait [pid]"),
        };
        let mut status = String::new();
        for pid in pids {
            status = match host.wait_pid(pid) {
                Ok(status) => status,
                Err(e) => self.report(host, fds, format!("wait: {pid}: {e}")),
            };
        }
        status
    }

    // rc(1): shift [n]: drops the first n (1) elements of $*.
    fn shift<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        let n = match args {
            [] => 1,
            [n] => match n.parse::<usize>() {
                Ok(n) => n,
                Err(_) => return self.usage(host, fds, "shift", None, "shift [n]"),
            },
            _ => return self.usage(host, fds, "shift", None, "shift [n]"),
        };
        let mut all = self.lookup("*");
        if n > all.len() {
            return self.report(host, fds, String::from("shift: nothing to shift"));
        }
        all.drain(..n);
        self.vars.insert(String::from("*"), all);
        String::new()
    }

    // rc(1): whatis name ...: how each name would be taken: a variable
    // (`x=(a b)`), a function (`fn f {...}`), a builtin, or a file.
    fn whatis<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        if args.is_empty() {
            return self.usage(host, fds, "whatis", None, "whatis name ...");
        }
        let mut text = String::new();
        let mut status = String::new();
        for name in args {
            let mut found = false;
            if let Some(value) = self.vars.get(name) {
                found = true;
                let words: Vec<String> = value.iter().map(|w| quote(w)).collect();
                match words.as_slice() {
                    [one] => text.push_str(&format!("{name}={one}\n")),
                    _ => text.push_str(&format!("{name}=({})\n", words.join(" "))),
                }
            }
            if let Some((_, source)) = self.fns.get(name) {
                found = true;
                text.push_str(&format!("fn {name} {source}\n"));
            }
            if found {
                continue;
            }
            if is_builtin(name) {
                text.push_str(&format!("builtin {name}\n"));
                continue;
            }
            let file = self.candidates(name).into_iter().find(|path| {
                match host.open(path, OpenHow::Read) {
                    Ok(fd) => {
                        host.close(fd);
                        true
                    }
                    Err(_) => false,
                }
            });
            match file {
                Some(path) => text.push_str(&format!("{path}\n")),
                None => status = self.report(host, fds, format!("{name}: not found")),
            }
        }
        let written = match fds.get(&1) {
            Some(fd) => host.write(*fd, text.as_bytes()),
            None => Err(String::from("fd 1 is not open")),
        };
        match written {
            Ok(()) => status,
            Err(e) => self.report(host, fds, format!("whatis: write error: {e}")),
        }
    }

    /// Prints `cmd: complaint` and the usage line; the status is
    /// `cmd: usage`, as Plan 9's commands exit with "usage".
    fn usage<H: Host>(
        &self,
        host: &mut H,
        fds: &FdTable,
        cmd: &str,
        complaint: Option<String>,
        usage: &str,
    ) -> String {
        if let Some(complaint) = complaint {
            self.report(host, fds, format!("{cmd}: {complaint}"));
        }
        self.report(host, fds, format!("usage: {usage}"));
        format!("{cmd}: usage")
    }

    // rc(1): rfork [nNeEs], "ens" without flags. Kasane has no note
    // groups, so `s` asks nothing; fd-table and memory flags (f F m) are
    // refused.
    fn rfork<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        const USAGE: &str = "rfork [nNeEs]";
        let letters = match args {
            [] => "ens",
            [flags] => flags.as_str(),
            _ => return self.usage(host, fds, "rfork", None, USAGE),
        };
        let mut flags = 0;
        for letter in letters.chars() {
            flags |= match letter {
                'n' => crate::host::RFNAMEG,
                'N' => crate::host::RFCNAMEG,
                'e' => crate::host::RFENVG,
                'E' => crate::host::RFCENVG,
                's' => 0,
                bad => {
                    let complaint = Some(format!("bad flag {bad}"));
                    return self.usage(host, fds, "rfork", complaint, USAGE);
                }
            };
        }
        match host.rfork(flags) {
            Ok(()) => String::new(),
            Err(e) => self.report(host, fds, format!("rfork: {e}")),
        }
    }

    // rc(1), "Built-in Commands": cd [dir], to $home without one.
    fn cd<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        let dir = match args {
            [] => match self.vars.get("home").map(Vec::as_slice) {
                Some([home]) => home.clone(),
                _ => return self.report(host, fds, String::from("cd: $home is not set")),
            },
            [dir] => dir.clone(),
            _ => return self.usage(host, fds, "cd", None, "cd [directory]"),
        };
        match host.chdir(&dir) {
            Ok(()) => String::new(),
            Err(e) => self.report(host, fds, format!("cd: {dir}: {e}")),
        }
    }

    // bind(1): bind [-b|-a|-c|-bc|-ac] new old
    fn bind<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        const USAGE: &str = "bind [-b|-a|-c|-bc|-ac] new old";
        let (flags, rest) = match mount_flags(args, "abcC") {
            Ok(parsed) => parsed,
            Err(bad) => {
                return self.usage(host, fds, "bind", Some(format!("bad flag -{bad}")), USAGE)
            }
        };
        let [new, old] = rest else {
            return self.usage(host, fds, "bind", None, USAGE);
        };
        if flags.contains(MountFlags::BEFORE) && flags.contains(MountFlags::AFTER) {
            return self.usage(
                host,
                fds,
                "bind",
                Some(String::from("-a and -b conflict")),
                USAGE,
            );
        }
        match host.bind(new, old, flags) {
            Ok(()) => String::new(),
            Err(e) => self.report(host, fds, format!("bind: {new} {old}: {e}")),
        }
    }

    // mount(1): mount [-b|-a] [-cC] srvfile old [spec]. The srvfile is
    // opened ORDWR and its fd handed to mount(2), which keeps the link.
    fn mount<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        const USAGE: &str = "mount [-b|-a] [-cC] srvfile old [spec]";
        let (flags, rest) = match mount_flags(args, "abcC") {
            Ok(parsed) => parsed,
            Err(bad) => {
                return self.usage(host, fds, "mount", Some(format!("bad flag -{bad}")), USAGE)
            }
        };
        let (srvfile, old, spec) = match rest {
            [srvfile, old] => (srvfile, old, ""),
            [srvfile, old, spec] => (srvfile, old, spec.as_str()),
            _ => return self.usage(host, fds, "mount", None, USAGE),
        };
        if flags.contains(MountFlags::BEFORE) && flags.contains(MountFlags::AFTER) {
            return self.usage(
                host,
                fds,
                "mount",
                Some(String::from("-a and -b conflict")),
                USAGE,
            );
        }
        let fd = match host.open(srvfile, OpenHow::ReadWrite) {
            Ok(fd) => fd,
            Err(e) => return self.report(host, fds, format!("mount: can't open {srvfile}: {e}")),
        };
        let result = host.mount(fd, old, spec, flags);
        host.close(fd);
        match result {
            Ok(()) => String::new(),
            Err(e) => self.report(host, fds, format!("mount: {srvfile} {old}: {e}")),
        }
    }

    // bind(1): unmount [new] old
    fn unmount<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        const USAGE: &str = "unmount [new] old";
        let (_, rest) = match mount_flags(args, "") {
            Ok(parsed) => parsed,
            Err(bad) => {
                return self.usage(
                    host,
                    fds,
                    "unmount",
                    Some(format!("bad flag -{bad}")),
                    USAGE,
                )
            }
        };
        let (new, old) = match rest {
            [old] => (None, old),
            [new, old] => (Some(new.as_str()), old),
            _ => return self.usage(host, fds, "unmount", None, USAGE),
        };
        match host.unmount(new, old) {
            Ok(()) => String::new(),
            Err(e) => self.report(host, fds, format!("unmount: {old}: {e}")),
        }
    }

    // echo(1): echo [-n] [arg ...]
    fn echo<H: Host>(&mut self, host: &mut H, args: &[String], fds: &FdTable) -> String {
        let (newline, words) = match args {
            [first, rest @ ..] if first == "-n" => (false, rest),
            _ => (true, args),
        };
        let mut text = words.join(" ");
        if newline {
            text.push('\n');
        }
        let result = match fds.get(&1) {
            Some(fd) => host.write(*fd, text.as_bytes()),
            None => Err(String::from("fd 1 is not open")),
        };
        match result {
            Ok(()) => String::new(),
            Err(e) => self.report(host, fds, format!("echo: write error: {e}")),
        }
    }
}

fn close_all<H: Host>(host: &mut H, fds: &[HostFd]) {
    for fd in fds {
        host.close(*fd);
    }
}

/// test(1), as a builtin: `expr [-o expr]...` where `expr` is
/// `primary [-a primary]...` and a primary is `! primary`, `-e`, `-f`,
/// `-d`, `-s`, `-r`, `-w`, `-x` with a file (the last three: it exists;
/// Kasane's stat has no permission check), `-n s`, `-z s`, `s`, `a = b`,
/// `a != b`, or `m -eq n` (`-ne -lt -le -gt -ge`).
fn test<H: Host>(host: &mut H, args: &[String]) -> Result<bool, String> {
    if args.is_empty() {
        return Ok(false);
    }
    let mut any = false;
    for alternative in args.split(|a| a == "-o") {
        let mut all = true;
        for primary in alternative.split(|a| a == "-a") {
            all &= test_primary(host, primary)?;
        }
        any |= all;
    }
    Ok(any)
}

fn test_primary<H: Host>(host: &mut H, args: &[String]) -> Result<bool, String> {
    let number = |s: &str| s.parse::<i64>().map_err(|_| format!("bad number '{s}'"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(match args.as_slice() {
        ["!", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| String::from(*s)).collect();
            !test_primary(host, &rest)?
        }
        [op @ ("-e" | "-f" | "-d" | "-s" | "-r" | "-w" | "-x"), file] => match host.stat(file) {
            Err(_) => false,
            Ok(stat) => match *op {
                "-f" => !stat.dir,
                "-d" => stat.dir,
                "-s" => stat.length > 0,
                _ => true,
            },
        },
        ["-n", s] => !s.is_empty(),
        ["-z", s] => s.is_empty(),
        [a, "=", b] => a == b,
        [a, "!=", b] => a != b,
        [a, op @ ("-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge"), b] => {
            let (a, b) = (number(a)?, number(b)?);
            match *op {
                "-eq" => a == b,
                "-ne" => a != b,
                "-lt" => a < b,
                "-le" => a <= b,
                "-gt" => a > b,
                _ => a >= b,
            }
        }
        [s] => !s.is_empty(),
        [] => return Err(String::from("argument expected")),
        _ => return Err(format!("syntax error at '{}'", args.join(" "))),
    })
}

/// Whether a pattern (see [`escape_pattern`]) has a special character.
fn has_magic(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// A pattern with its escapes removed: the text it stands for.
fn unescape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// rc(1) globbing: the files whose names match `pattern`, one `/`
/// element at a time, each directory's matches sorted; the pattern's own
/// text if it has no special character or matches nothing.
fn glob<H: Host>(host: &mut H, pattern: &str) -> Vec<String> {
    if !has_magic(pattern) {
        return vec![unescape(pattern)];
    }
    let absolute = pattern.starts_with('/');
    let elements: Vec<&str> = pattern.split('/').filter(|e| !e.is_empty()).collect();
    // Paths so far, as written ("" for the current directory).
    let mut paths = vec![String::from(if absolute { "/" } else { "" })];
    for (i, element) in elements.iter().enumerate() {
        let last = i + 1 == elements.len();
        let mut next = Vec::new();
        for path in &paths {
            let join = |name: &str| match path.as_str() {
                "" => String::from(name),
                p if p.ends_with('/') => format!("{p}{name}"),
                p => format!("{p}/{name}"),
            };
            if !has_magic(element) {
                next.push(join(&unescape(element)));
                continue;
            }
            let dir = if path.is_empty() { "." } else { path.as_str() };
            let Ok(entries) = host.read_dir(dir) else {
                continue;
            };
            let element: Vec<char> = element.chars().collect();
            let mut names: Vec<String> = entries
                .into_iter()
                .filter(|(name, is_dir)| {
                    let name: Vec<char> = name.chars().collect();
                    (last || *is_dir) && glob_match(&element, &name)
                })
                .map(|(name, _)| name)
                .collect();
            names.sort();
            next.extend(names.iter().map(|name| join(name)));
        }
        paths = next;
    }
    if paths.is_empty() {
        return vec![unescape(pattern)];
    }
    paths
}

/// The read end of a pipe that holds `text` and is closed for writing.
/// The text must fit in the pipe.
fn here_document<H: Host>(host: &mut H, text: &str) -> Result<HostFd, String> {
    let (read, write) = host
        .pipe()
        .map_err(|e| format!("rc: can't make a pipe: {e}"))?;
    let written = host.write(write, text.as_bytes());
    host.close(write);
    match written {
        Ok(()) => Ok(read),
        Err(e) => {
            host.close(read);
            Err(format!("rc: here document: {e}"))
        }
    }
}

/// A whole file, through the host.
fn read_all<H: Host>(host: &mut H, path: &str) -> Result<String, String> {
    let fd = host.open(path, OpenHow::Read)?;
    let mut data = Vec::new();
    let mut buffer = [0u8; 512];
    let result = loop {
        match host.read(fd, &mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => data.extend_from_slice(&buffer[..n.min(buffer.len())]),
            Err(e) => break Err(e),
        }
    };
    host.close(fd);
    result?;
    String::from_utf8(data).map_err(|_| String::from("not UTF-8 text"))
}

/// The patterns of a `case` command in a switch body, if it is one.
fn case_patterns(command: &Command) -> Option<&[Word]> {
    let Kind::Simple(simple) = &command.kind else {
        return None;
    };
    let (first, rest) = simple.words.split_first()?;
    match first.parts.as_slice() {
        [Part::Literal(word)] if word == "case" && simple.assignments.is_empty() => Some(rest),
        _ => None,
    }
}

/// `n`, `n-` or `n-m` (1-based, inclusive) as a range `(from, to)` with
/// `from >= 1`; `n-` runs to `len`.
fn parse_subscript(text: &str, len: usize) -> Option<(usize, usize)> {
    let number = |s: &str| s.parse::<usize>().ok().filter(|&n| n >= 1);
    match text.split_once('-') {
        None => number(text).map(|n| (n, n)),
        Some((from, "")) => number(from).map(|n| (n, len)),
        Some((from, to)) => Some((number(from)?, number(to)?)),
    }
}

/// `text` with each of `special` preceded by `\`.
fn escape_pattern(text: &str, special: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// rc(1) pattern matching: `*` any string, `?` any character, `[...]`
/// any character in it (`a-z` ranges, `[~...]` any not in it); `\x` is x
/// itself (see [`escape_pattern`]).
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => {
            let rest = rest
                .iter()
                .position(|&c| c != '*')
                .map_or(&[][..], |i| &rest[i..]);
            (0..=text.len()).any(|i| glob_match(rest, &text[i..]))
        }
        Some(('?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some(('[', rest)) => match (class(rest), text.split_first()) {
            (Some((set, after)), Some((c, tail))) => set(*c) && glob_match(after, tail),
            (Some(_), None) => false,
            (None, Some((c, tail))) => *c == '[' && glob_match(rest, tail),
            (None, None) => false,
        },
        Some(('\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && glob_match(&rest[1..], &text[1..])
        }
        Some((p, rest)) => text.first() == Some(p) && glob_match(rest, &text[1..]),
    }
}

/// A `[...]` class after the `[`: a test and the pattern after `]`, or
/// None if there is no `]`.
fn class(pattern: &[char]) -> Option<(impl Fn(char) -> bool + '_, &[char])> {
    let (negate, body) = match pattern.split_first() {
        Some(('~', rest)) => (true, rest),
        _ => (false, pattern),
    };
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        let mut c = *body.get(i)?;
        if c == ']' {
            break;
        }
        if c == '\\' {
            i += 1;
            c = *body.get(i)?;
        }
        i += 1;
        let mut high = c;
        if body.get(i) == Some(&'-') && body.get(i + 1).is_some_and(|&h| h != ']') {
            high = body[i + 1];
            i += 2;
        }
        items.push((c, high));
    }
    let rest = &body[i + 1..];
    Some((
        move |c: char| items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negate,
        rest,
    ))
}

/// A word as rc would read it back: quoted if it has special characters.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:,+@%*".contains(c));
    if plain {
        return String::from(word);
    }
    format!("'{}'", word.replace('\'', "''"))
}

fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

/// Plan 9's ARGBEGIN for the namespace commands: leading `-xyz`
/// arguments, up to `--` or the first other argument. `allowed` lists the
/// flag letters; a bad one is returned as the error.
fn mount_flags<'a>(args: &'a [String], allowed: &str) -> Result<(MountFlags, &'a [String]), char> {
    let mut flags = MountFlags::REPLACE;
    let mut rest = args;
    while let [first, tail @ ..] = rest {
        if first == "--" {
            rest = tail;
            break;
        }
        let Some(letters) = first.strip_prefix('-').filter(|l| !l.is_empty()) else {
            break;
        };
        for letter in letters.chars() {
            if !allowed.contains(letter) {
                return Err(letter);
            }
            flags = flags.union(match letter {
                'a' => MountFlags::AFTER,
                'b' => MountFlags::BEFORE,
                'c' => MountFlags::CREATE,
                _ => MountFlags::CACHE,
            });
        }
        rest = tail;
    }
    Ok((flags, rest))
}

/// rc(1) concatenation of two lists.
fn concatenate(left: Vec<String>, right: Vec<String>) -> Result<Vec<String>, String> {
    if left.is_empty() || right.is_empty() {
        return Err(String::from("rc: null list in concatenation"));
    }
    Ok(match (left.len(), right.len()) {
        (1, _) => right.iter().map(|r| format!("{}{r}", left[0])).collect(),
        (_, 1) => left.iter().map(|l| format!("{l}{}", right[0])).collect(),
        (a, b) if a == b => left
            .iter()
            .zip(&right)
            .map(|(l, r)| format!("{l}{r}"))
            .collect(),
        _ => return Err(String::from("rc: mismatched list lengths in concatenation")),
    })
}
