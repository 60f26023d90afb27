//! Runs a [`Program`] against a [`Host`]: expansion, fds, pipes, builtins.
//!
//! Rules and where they come from:
//! - Expansion (rc(1), "Variables", "Free carets"): an unset variable is
//!   the empty list; concatenating two lists pairs them element by element
//!   if they are equally long, distributes a one-element list over the
//!   other, and is an error otherwise or if either is empty.
//! - `$status` (rc(1)): the exit status of the last pipeline, a string,
//!   empty for success. For a pipeline it is the statuses of its commands
//!   joined with `|`, and it counts as success if it holds only `|` and
//!   `0` characters, as rc's own test does.
//! - Redirections (rc(1), "I/O Redirections") apply left to right and
//!   override the pipe; `>` truncates, `>>` appends, `>[n=m]` copies m.
//! - A command is looked up in each directory of `$path` unless its name
//!   starts with `/`, `./`, `../` or `#` (rc(1), "Simple Commands").
//! - Errors print as `cmd: message` on the command's fd 2, and that text
//!   becomes `$status`; the shell's own errors say `rc:`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::ast::{Part, Pipeline, Program, RedirectKind, RedirectTarget, Simple, Word};
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
pub const BUILTINS: [&str; 7] = ["cd", "bind", "mount", "unmount", "echo", "exit", "rfork"];

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
    Builtin(Prepared),
}

/// The interpreter's state: variables and the shell's own standard fds.
#[derive(Debug, Clone)]
pub struct Shell {
    vars: BTreeMap<String, Vec<String>>,
    stdio: [HostFd; 3],
}

impl Default for Shell {
    fn default() -> Self {
        Self::new()
    }
}

impl Shell {
    /// A shell on fds 0, 1 and 2 with `$path` set to `/bin` and an empty
    /// (successful) `$status`.
    pub fn new() -> Self {
        Self::with_stdio(HostFd(0), HostFd(1), HostFd(2))
    }

    pub fn with_stdio(stdin: HostFd, stdout: HostFd, stderr: HostFd) -> Self {
        let mut vars = BTreeMap::new();
        vars.insert(String::from("path"), vec![String::from("/bin")]);
        vars.insert(String::from("status"), vec![String::new()]);
        Self {
            vars,
            stdio: [stdin, stdout, stderr],
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
                let status = self.report(host, &self.base(), format!("rc: {e}"));
                self.set_status(status);
                Flow::Continue
            }
        }
    }

    pub fn run_program<H: Host>(&mut self, host: &mut H, program: &Program) -> Flow {
        for pipeline in &program.pipelines {
            if let Flow::Exit(status) = self.run_pipeline(host, pipeline) {
                return Flow::Exit(status);
            }
        }
        Flow::Continue
    }

    fn base(&self) -> FdTable {
        (0u32..).zip(self.stdio).collect()
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

    fn run_pipeline<H: Host>(&mut self, host: &mut H, pipeline: &Pipeline) -> Flow {
        if let [command] = pipeline.commands.as_slice() {
            return self.run_alone(host, command);
        }
        let n = pipeline.commands.len();
        let mut pipes = Vec::with_capacity(n - 1);
        for _ in 1..n {
            match host.pipe() {
                Ok(pipe) => pipes.push(pipe),
                Err(e) => {
                    for (read, write) in pipes {
                        host.close(read);
                        host.close(write);
                    }
                    let text = format!("rc: can't make a pipe: {e}");
                    let status = self.report(host, &self.base(), text);
                    self.set_status(status);
                    return Flow::Continue;
                }
            }
        }
        // Each pipe end belongs to one command: the shell closes it once
        // that command has started (or, for a builtin, finished).
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
        for (i, command) in pipeline.commands.iter().enumerate() {
            let mut fds = self.base();
            if i > 0 {
                fds.insert(0, pipes[i - 1].0);
            }
            if i < n - 1 {
                fds.insert(pipeline.pipe_fds[i], pipes[i].1);
            }
            let slot = match self.prepare(host, command, fds) {
                Err(status) => Slot::Done(status),
                // Assignments alone in a pipeline: rc runs them in a
                // subshell, so they change nothing.
                Ok(prepared) if prepared.argv.is_empty() => {
                    Self::close_all(host, &prepared.owned);
                    Slot::Done(String::new())
                }
                Ok(prepared) if is_builtin(&prepared.argv[0]) => Slot::Builtin(prepared),
                Ok(prepared) => {
                    let started = self.spawn(host, &prepared);
                    Self::close_all(host, &prepared.owned);
                    match started {
                        Ok(process) => Slot::Running(process),
                        Err(status) => Slot::Done(status),
                    }
                }
            };
            if !matches!(slot, Slot::Builtin(_)) {
                close_ends(host, i);
            }
            slots.push(slot);
        }
        let mut statuses = Vec::with_capacity(n);
        for (i, slot) in slots.iter_mut().enumerate() {
            if let Slot::Builtin(prepared) = slot {
                // `exit` in a pipeline ends only its own element, as it
                // would in rc's subshell.
                let status = match self.builtin_with_locals(host, prepared, false) {
                    Ran::Status(s) | Ran::Exit(s) => s,
                };
                Self::close_all(host, &prepared.owned);
                close_ends(host, i);
                *slot = Slot::Done(status);
            }
        }
        for slot in slots {
            statuses.push(match slot {
                Slot::Done(status) => status,
                Slot::Running(process) => host.wait(process),
                Slot::Builtin(_) => String::new(),
            });
        }
        self.set_status(statuses.join("|"));
        Flow::Continue
    }

    fn run_alone<H: Host>(&mut self, host: &mut H, command: &Simple) -> Flow {
        let prepared = match self.prepare(host, command, self.base()) {
            Ok(prepared) => prepared,
            Err(status) => {
                self.set_status(status);
                return Flow::Continue;
            }
        };
        if prepared.argv.is_empty() {
            // `name=value` alone sets the variable; `>file` alone creates
            // the file (rc(1)). Neither changes $status.
            Self::close_all(host, &prepared.owned);
            for (name, value) in prepared.locals {
                self.vars.insert(name, value);
            }
            return Flow::Continue;
        }
        let ran = if is_builtin(&prepared.argv[0]) {
            let ran = self.builtin_with_locals(host, &prepared, true);
            Self::close_all(host, &prepared.owned);
            ran
        } else {
            // The child has its own copies; the shell's go before the wait.
            let started = self.spawn(host, &prepared);
            Self::close_all(host, &prepared.owned);
            Ran::Status(match started {
                Ok(process) => host.wait(process),
                Err(status) => status,
            })
        };
        match ran {
            Ran::Status(status) => {
                self.set_status(status);
                Flow::Continue
            }
            Ran::Exit(status) => Flow::Exit(status),
        }
    }

    fn close_all<H: Host>(host: &mut H, fds: &[HostFd]) {
        for fd in fds {
            host.close(*fd);
        }
    }

    /// Expands a command and applies its redirections to `fds`. On error
    /// the message is printed and returned as the status, and whatever it
    /// had opened is closed.
    fn prepare<H: Host>(
        &mut self,
        host: &mut H,
        command: &Simple,
        mut fds: FdTable,
    ) -> Result<Prepared, String> {
        let base = fds.clone();
        let fail = |this: &Self, host: &mut H, text: String| this.report(host, &base, text);
        let mut locals = Vec::new();
        for assignment in &command.assignments {
            match self.expand(&assignment.value) {
                Ok(value) => locals.push((assignment.name.clone(), value)),
                Err(e) => return Err(fail(self, host, e)),
            }
        }
        let mut argv = Vec::new();
        for word in &command.words {
            match self.expand(word) {
                Ok(list) => argv.extend(list),
                Err(e) => return Err(fail(self, host, e)),
            }
        }
        let mut owned = Vec::new();
        for redirection in &command.redirections {
            let result = match &redirection.target {
                RedirectTarget::File(kind, word) => self.open_target(host, *kind, word),
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
                    if matches!(redirection.target, RedirectTarget::File(..)) {
                        owned.push(fd);
                    }
                    fds.insert(redirection.fd, fd);
                }
                Err(e) => {
                    Self::close_all(host, &owned);
                    return Err(fail(self, host, e));
                }
            }
        }
        Ok(Prepared {
            argv,
            fds,
            owned,
            locals,
        })
    }

    fn open_target<H: Host>(
        &self,
        host: &mut H,
        kind: RedirectKind,
        word: &Word,
    ) -> Result<HostFd, String> {
        let target = self.expand(word)?;
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

    /// A word's list of strings (rc(1), "Variables" and "Free carets").
    pub fn expand(&self, word: &Word) -> Result<Vec<String>, String> {
        let mut parts = word.parts.iter();
        let Some(first) = parts.next() else {
            return Ok(Vec::new());
        };
        let mut list = self.expand_part(first)?;
        for part in parts {
            list = concatenate(list, self.expand_part(part)?)?;
        }
        Ok(list)
    }

    fn expand_part(&self, part: &Part) -> Result<Vec<String>, String> {
        Ok(match part {
            Part::Literal(text) => vec![text.clone()],
            Part::Var(name) => self.vars.get(name).cloned().unwrap_or_default(),
            Part::Count(name) => {
                let count = self.vars.get(name).map_or(0, Vec::len);
                vec![count.to_string()]
            }
            Part::List(words) => {
                let mut list = Vec::new();
                for word in words {
                    list.extend(self.expand(word)?);
                }
                list
            }
        })
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

    /// Starts an external command, trying each `$path` candidate; on
    /// failure the last error is reported as `name: error`.
    fn spawn<H: Host>(&self, host: &mut H, prepared: &Prepared) -> Result<H::Process, String> {
        let name = &prepared.argv[0];
        let mut env = self.vars.clone();
        for (key, value) in &prepared.locals {
            env.insert(key.clone(), value.clone());
        }
        let env: Vec<(String, Vec<String>)> = env.into_iter().collect();
        let fds: Vec<(u32, HostFd)> = prepared.fds.iter().map(|(k, v)| (*k, *v)).collect();
        let mut last = String::from("file does not exist");
        for path in self.candidates(name) {
            let request = Spawn {
                path: &path,
                argv: &prepared.argv,
                fds: &fds,
                env: &env,
            };
            match host.spawn(&request) {
                Ok(process) => return Ok(process),
                Err(e) => last = e,
            }
        }
        Err(self.report(host, &prepared.fds, format!("{name}: {last}")))
    }

    /// Runs a builtin with the command's own assignments in force.
    fn builtin_with_locals<H: Host>(
        &mut self,
        host: &mut H,
        prepared: &Prepared,
        alone: bool,
    ) -> Ran {
        let saved: Vec<(String, Option<Vec<String>>)> = prepared
            .locals
            .iter()
            .map(|(name, value)| (name.clone(), self.vars.insert(name.clone(), value.clone())))
            .collect();
        let ran = self.builtin(host, &prepared.argv, &prepared.fds, alone);
        for (name, old) in saved.into_iter().rev() {
            match old {
                Some(value) => self.vars.insert(name, value),
                None => self.vars.remove(&name),
            };
        }
        ran
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
