//! `/dev/linux`: Linux programs run from Kasane (`#L`, bound after `/dev`).
//!
//! | file | what |
//! |---|---|
//! | `/dev/linux/clone` | opening it makes a run N; the open file is N's `ctl` |
//! | `/dev/linux/N/ctl` | read: `N`; write: `exec PATH ARGS…`, `env NAME=VALUE`, `cwd DIR`, `eof`, `kill` |
//! | `/dev/linux/N/data` | read: the program's standard output; write: its standard input |
//! | `/dev/linux/N/stderr` | read: its standard error |
//! | `/dev/linux/N/status` | read: its exit status, Plan 9 style (empty: success), once it ended |
//! | `/dev/linux/syscall` | a delegated Linux system call: write the request, read the answer |
//! | `/dev/linux/export` | the export channel: read Linux's 9P T-messages, write the R-messages |
//!
//! This is Plan 9's clone-file pattern (ip(3)'s `clone`, `ctl`, `data`).
//! The servant is the protocol half only: it turns ctl and data writes
//! into bridge frames (`Exec`, `Stdin`, `Kill`; docs/linux-bridge.md)
//! that the shell takes from [`LinuxRuns::take_frames`] and sends on the
//! Linux link, and the shell hands it every frame of a run that comes
//! back ([`LinuxRuns::deliver`]). Reads that must wait park the caller
//! ([`Io::WouldBlock`]) until output or the exit arrives.
//!
//! **System-call delegation** (McKernel's proxy model, docs/linux-bridge.md):
//! a process writes `syscall` with a call number `u32`, six argument
//! words `u64` and the input bytes of the agent's table (what
//! `core_user::linux` marshals), all little-endian; the servant sends it
//! as a `Syscall` frame naming the process by its pid, and the next read
//! answers the result `i64` and the output bytes, or fails with the
//! agent's refusal. The agent keeps one proxy per process; when the
//! process's last chan on `syscall` closes (its exit), the servant sends
//! `ProcessExited` and the proxy ends. A call's bridge id is the pid plus
//! [`SYSCALL_ID_BASE`].
//!
//! **The export channel** (Linux mounts Kasane, docs/linux-bridge.md):
//! the agent's FUSE file system is a 9P client whose T-messages come in
//! `Ninep` frames of id [`EXPORT_CHANNEL`]. `export` is that byte stream:
//! a read gives what came (parked until some does), a write goes back
//! in `Ninep` frames of the same id. `exportfs` (core/programs) serves
//! its namespace on it. One open at a time. After a restart of the
//! Linux cell the next read fails once with `linux cell restarted`, so
//! that exportfs drops the old agent's session and half message.
//!
//! A run's bridge id is its number plus [`RUN_ID_BASE`], so it never
//! meets core's 9P channel or its Hello. The frames from the agent are
//! hostile input: a frame for a run that does not exist, or out of order,
//! is ignored. When the Linux cell restarts ([`LinuxRuns::peer_changed`])
//! every run under way fails once with `linux cell restarted`. Without a
//! Linux cell (bare mode) every open answers `no linux cell`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bridge_protocol::{Frame, Message, EXPORT_CHANNEL};
use kasane_servant::dev::{Devgen, Dirtab, ROOT};
use kasane_servant::dir::{self, dir_qid};
use kasane_servant::{Caller, Error, File, Io, Opened, Servant, WaitKey};
use ninep::{OpenMode, Qid};

/// A run's bridge request id is its number plus this.
pub const RUN_ID_BASE: u32 = 0x100;

/// A delegated call's bridge request id is its process's pid plus this.
pub const SYSCALL_ID_BASE: u32 = 0x0100_0000;

/// `syscall`'s qid path for process p, once opened, is this plus p.
const SYSCALL_BASE: u64 = 1 << 40;

/// Wait keys of delegated calls are this plus the pid.
const SYSCALL_KEY: u64 = 1 << 32;

/// Most runs at once (the agent's limit is 32).
pub const MAX_RUNS: usize = 32;

/// Most bytes of a `Stdin` or `Ninep` piece (the payload less the bytes'
/// count).
const STDIN_PIECE: usize = 4094;

/// The wait key of a read of `export`.
const EXPORT_KEY: u64 = 1 << 33;

/// The agent's 9P bytes kept for `export` before more are dropped (a 9P
/// client has at most a few messages of 8 KiB outstanding).
const EXPORT_LIMIT: usize = 64 * 1024;

/// Output kept per stream before the agent's pieces are dropped: a reader
/// that never reads cannot fill core's heap.
const OUTPUT_LIMIT: usize = 256 * 1024;

/// The error of every open without a Linux cell.
pub const NO_LINUX: &str = "no linux cell";

/// The error of a run under way when the Linux cell restarted.
pub const RESTARTED: &str = "linux cell restarted";

const LINUX: u64 = 1;
const CLONE: u64 = 2;
const SYSCALL: u64 = 3;
const EXPORT: u64 = 4;
/// Run n's directory is `RUN_BASE + 8 n`; its files follow it.
const RUN_BASE: u64 = 16;
const CTL: u64 = 1;
const DATA: u64 = 2;
const STDERR: u64 = 3;
const STATUS: u64 = 4;

fn run_dir(n: u32) -> u64 {
    RUN_BASE + 8 * u64::from(n)
}

/// (run, part) of a qid path under `linux`: part 0 is the directory.
fn split(path: u64) -> Option<(u32, u64)> {
    let offset = path.checked_sub(RUN_BASE)?;
    let n = u32::try_from(offset / 8).ok()?;
    let part = offset % 8;
    (part <= STATUS).then_some((n, part))
}

/// The pid of a process's opened `syscall` file.
fn syscall_pid(path: u64) -> Option<u32> {
    path.checked_sub(SYSCALL_BASE)
        .and_then(|pid| u32::try_from(pid).ok())
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// No `exec` yet.
    Fresh,
    /// `Exec` sent; output may come.
    Started,
    /// Ended: its Plan 9 status.
    Exited(String),
    /// Failed: the agent's error, or the cell restarted.
    Failed(String),
}

/// A delegated call of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Waiting,
    /// The answer: result and output bytes.
    Done(Vec<u8>),
    Failed(String),
}

#[derive(Debug)]
struct Run {
    name: String,
    /// Chans open on the run's files.
    opens: u32,
    environment: Vec<u8>,
    directory: String,
    state: State,
    stdout: VecDeque<u8>,
    stdout_ended: bool,
    stderr: VecDeque<u8>,
    stderr_ended: bool,
}

/// The Plan 9 status of a Linux exit: empty for code 0.
pub fn status_of(code: i32, signal: u8) -> String {
    match (code, signal) {
        (0, 0) => String::new(),
        (code, 0) => format!("exit {code}"),
        (_, signal) => format!("signal {signal}"),
    }
}

/// Splits a ctl line into words: blanks separate them, and a word in
/// single quotes keeps its blanks (`''` inside is one quote), as rc
/// quotes.
pub fn tokenize(line: &str) -> Result<Vec<String>, Error> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c != '\'' {
                word.push(c);
                continue;
            }
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        word.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => word.push(c),
                    None => return Err(Error::new("unbalanced quote in a linux ctl line")),
                }
            }
        }
        words.push(word);
    }
}

/// `#L`.
#[derive(Debug)]
pub struct LinuxRuns {
    present: bool,
    runs: BTreeMap<u32, Run>,
    next: u32,
    outbox: Vec<Vec<u8>>,
    wakeups: Vec<WaitKey>,
    /// Delegated calls by pid.
    calls: BTreeMap<u32, Call>,
    /// Chans open on `syscall`, by pid.
    callers: BTreeMap<u32, u32>,
    /// Whether `export` is open.
    export_open: bool,
    /// The agent's 9P bytes not yet read from `export`.
    export_in: VecDeque<u8>,
    /// The cell restarted since `export`'s last read.
    export_restarted: bool,
}

impl LinuxRuns {
    /// The servant; `present` says whether there is a Linux cell.
    pub fn new(present: bool) -> Self {
        LinuxRuns {
            present,
            runs: BTreeMap::new(),
            next: 1,
            outbox: Vec::new(),
            wakeups: Vec::new(),
            calls: BTreeMap::new(),
            callers: BTreeMap::new(),
            export_open: false,
            export_in: VecDeque::new(),
            export_restarted: false,
        }
    }

    /// A read of `export`: the agent's bytes, the restart, or the wait.
    fn export_read(&mut self, count: u32) -> Result<Io<Vec<u8>>, Error> {
        if core::mem::take(&mut self.export_restarted) {
            return Err(Error::new(RESTARTED));
        }
        if self.export_in.is_empty() {
            return Ok(Io::WouldBlock(WaitKey {
                letter: 'L',
                key: EXPORT_KEY,
            }));
        }
        let n = (count as usize).min(self.export_in.len());
        Ok(Io::Ready(self.export_in.drain(..n).collect()))
    }

    /// A write of `export`: 9P answers to the agent, in `Ninep` pieces.
    fn export_write(&mut self, data: &[u8]) -> Result<(), Error> {
        for piece in data.chunks(STDIN_PIECE) {
            let frame = Self::encode(EXPORT_CHANNEL, Message::Ninep { data: piece })?;
            self.outbox.push(frame);
        }
        Ok(())
    }

    fn wake_key(&mut self, key: u64) {
        let key = WaitKey { letter: 'L', key };
        if !self.wakeups.contains(&key) {
            self.wakeups.push(key);
        }
    }

    fn encode(request_id: u32, message: Message<'_>) -> Result<Vec<u8>, Error> {
        Frame {
            request_id,
            message,
        }
        .to_vec()
        .map_err(|_| Error::new("the linux request is too long"))
    }

    /// A process's delegated call: `request` as `syscall` takes it.
    fn call(&mut self, pid: u32, request: &[u8]) -> Result<(), Error> {
        if self.calls.get(&pid) == Some(&Call::Waiting) {
            return Err(Error::new("a linux call is under way"));
        }
        let bad = || Error::new("a delegated call is number[4] arguments[6*8] input");
        let (number, rest) = request.split_first_chunk::<4>().ok_or_else(bad)?;
        let mut arguments = [0u64; 6];
        let mut rest = rest;
        for argument in &mut arguments {
            let (word, tail) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
            *argument = u64::from_le_bytes(*word);
            rest = tail;
        }
        let frame = Self::encode(
            pid + SYSCALL_ID_BASE,
            Message::Syscall {
                process: u64::from(pid),
                number: u32::from_le_bytes(*number),
                arguments,
                input: rest,
            },
        )?;
        self.outbox.push(frame);
        self.calls.insert(pid, Call::Waiting);
        Ok(())
    }

    /// The answer to `pid`'s call, or the wait for it.
    fn answer(&mut self, pid: u32) -> Result<Io<Vec<u8>>, Error> {
        match self.calls.get(&pid) {
            None => Err(Error::new("no linux call was made")),
            Some(Call::Waiting) => Ok(Io::WouldBlock(WaitKey {
                letter: 'L',
                key: SYSCALL_KEY + u64::from(pid),
            })),
            Some(_) => match self.calls.remove(&pid) {
                Some(Call::Done(bytes)) => Ok(Io::Ready(bytes)),
                Some(Call::Failed(why)) => Err(Error::new(why)),
                _ => Err(Error::new("no linux call was made")),
            },
        }
    }

    /// Whether there is a Linux cell.
    pub fn present(&self) -> bool {
        self.present
    }

    /// The encoded frames to send on the Linux link, oldest first.
    pub fn take_frames(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.outbox)
    }

    fn wake(&mut self, n: u32) {
        let key = WaitKey {
            letter: 'L',
            key: u64::from(n),
        };
        if !self.wakeups.contains(&key) {
            self.wakeups.push(key);
        }
    }

    fn queue(&mut self, n: u32, message: Message<'_>) -> Result<(), Error> {
        let frame = Frame {
            request_id: n + RUN_ID_BASE,
            message,
        }
        .to_vec()
        .map_err(|_| Error::new("the linux command line is too long"))?;
        self.outbox.push(frame);
        Ok(())
    }

    /// A frame from the agent with request id `id`.
    pub fn deliver(&mut self, id: u32, message: &Message<'_>) {
        if id == EXPORT_CHANNEL {
            if let Message::Ninep { data } = *message {
                if self.export_in.len() + data.len() <= EXPORT_LIMIT {
                    self.export_in.extend(data);
                    self.wake_key(EXPORT_KEY);
                }
            }
            return;
        }
        if let Some(pid) = id.checked_sub(SYSCALL_ID_BASE) {
            if self.calls.get(&pid) != Some(&Call::Waiting) {
                return;
            }
            let call = match *message {
                Message::SyscallResult { result, output } => {
                    let mut bytes = result.to_le_bytes().to_vec();
                    bytes.extend_from_slice(output);
                    Call::Done(bytes)
                }
                Message::Error { detail, .. } => Call::Failed(String::from(detail)),
                _ => return,
            };
            self.calls.insert(pid, call);
            self.wake_key(SYSCALL_KEY + u64::from(pid));
            return;
        }
        let Some(n) = id.checked_sub(RUN_ID_BASE) else {
            return;
        };
        let Some(run) = self.runs.get_mut(&n) else {
            return;
        };
        if run.state != State::Started {
            return;
        }
        match *message {
            Message::Stdout { data: [] } => run.stdout_ended = true,
            Message::Stdout { data } if run.stdout.len() < OUTPUT_LIMIT => run.stdout.extend(data),
            Message::Stderr { data: [] } => run.stderr_ended = true,
            Message::Stderr { data } if run.stderr.len() < OUTPUT_LIMIT => run.stderr.extend(data),
            Message::Exited { code, signal } => {
                run.stdout_ended = true;
                run.stderr_ended = true;
                run.state = State::Exited(status_of(code, signal));
            }
            // The exec failed (or a later request did: then the run goes
            // on, and the error is only the agent's word).
            Message::Error { detail, .. } if run.stdout.is_empty() && !run.stdout_ended => {
                run.state = State::Failed(String::from(detail));
            }
            _ => return,
        }
        self.wake(n);
    }

    /// The Linux cell restarted: every run under way fails once.
    pub fn peer_changed(&mut self) {
        // The old agent's half message must not run into the new one's.
        self.export_in.clear();
        if self.export_open {
            self.export_restarted = true;
            self.wake_key(EXPORT_KEY);
        }
        let mut woken = Vec::new();
        for (&n, run) in self.runs.iter_mut() {
            if run.state == State::Started {
                run.state = State::Failed(String::from(RESTARTED));
                woken.push(n);
            }
        }
        for n in woken {
            self.wake(n);
        }
        // The proxies died with the cell: calls under way fail once, and
        // a process's next call starts a new proxy.
        let waiting: Vec<u32> = self
            .calls
            .iter()
            .filter(|(_, call)| **call == Call::Waiting)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in waiting {
            self.calls
                .insert(pid, Call::Failed(String::from(RESTARTED)));
            self.wake_key(SYSCALL_KEY + u64::from(pid));
        }
    }

    fn run(&mut self, path: u64) -> Result<(u32, u64, &mut Run), Error> {
        let (n, part) = split(path).ok_or(Error::NOT_FOUND)?;
        let run = self.runs.get_mut(&n).ok_or(Error::NOT_FOUND)?;
        Ok((n, part, run))
    }

    fn ctl(&mut self, n: u32, line: &str) -> Result<(), Error> {
        let words = tokenize(line)?;
        let Some((verb, rest)) = words.split_first() else {
            return Ok(());
        };
        let run = self.runs.get_mut(&n).ok_or(Error::NOT_FOUND)?;
        match (verb.as_str(), rest) {
            ("exec", [path, ..]) => {
                if run.state != State::Fresh {
                    return Err(Error::new("the run has started already"));
                }
                let mut arguments = Vec::new();
                for word in rest {
                    if word.contains('\0') {
                        return Err(Error::BAD_ARG);
                    }
                    arguments.extend_from_slice(word.as_bytes());
                    arguments.push(0);
                }
                let environment = core::mem::take(&mut run.environment);
                let directory = core::mem::take(&mut run.directory);
                run.state = State::Started;
                let path = path.clone();
                self.queue(
                    n,
                    Message::Exec {
                        path: &path,
                        arguments: &arguments,
                        environment: &environment,
                        directory: &directory,
                    },
                )
                .inspect_err(|_| {
                    if let Some(run) = self.runs.get_mut(&n) {
                        run.state = State::Fresh;
                    }
                })
            }
            ("env", [pair]) if pair.contains('=') && !pair.contains('\0') => {
                run.environment.extend_from_slice(pair.as_bytes());
                run.environment.push(0);
                Ok(())
            }
            ("cwd", [directory]) => {
                run.directory = directory.clone();
                Ok(())
            }
            ("eof", []) if run.state == State::Started => {
                self.queue(n, Message::Stdin { data: &[] })
            }
            ("kill", []) if run.state == State::Started => {
                self.queue(n, Message::Kill { signal: 9 })
            }
            ("eof" | "kill", []) => Ok(()),
            _ => Err(Error::new(format!(
                "bad linux ctl request: {}",
                line.trim()
            ))),
        }
    }
}

impl Devgen for LinuxRuns {
    fn gen<'a>(
        &'a self,
        _caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        match dir.qid.path {
            ROOT => Ok(match index {
                0 => Some(Dirtab::dir("#L", ROOT, 0o555)),
                1 => Some(Dirtab::dir("linux", LINUX, 0o555)),
                _ => None,
            }),
            LINUX => Ok(match index {
                0 => Some(Dirtab::dir("linux", LINUX, 0o555)),
                1 => Some(Dirtab::file("clone", CLONE, 0o666)),
                2 => Some(Dirtab::file("syscall", SYSCALL, 0o666)),
                3 => Some(Dirtab::file("export", EXPORT, 0o660)),
                i => self
                    .runs
                    .iter()
                    .nth(i - 4)
                    .map(|(&n, run)| Dirtab::dir(&run.name, run_dir(n), 0o555)),
            }),
            path => {
                let Some((n, 0)) = split(path) else {
                    return Ok(None);
                };
                let Some(run) = self.runs.get(&n) else {
                    return Ok(None);
                };
                Ok(match index {
                    0 => Some(Dirtab::dir(&run.name, path, 0o555)),
                    1 => Some(Dirtab::file("ctl", path + CTL, 0o666)),
                    2 => Some(Dirtab::file("data", path + DATA, 0o666)),
                    3 => Some(Dirtab::file("stderr", path + STDERR, 0o444)),
                    4 => Some(Dirtab::file("status", path + STATUS, 0o444)),
                    _ => None,
                })
            }
        }
    }

    fn dotdot(&self, file: &File) -> Qid {
        match file.qid.path {
            ROOT | LINUX => dir_qid(ROOT),
            CLONE | SYSCALL | EXPORT => dir_qid(LINUX),
            path if path >= SYSCALL_BASE => dir_qid(LINUX),
            path => match split(path) {
                Some((_, 0)) => dir_qid(LINUX),
                Some((n, _)) => dir_qid(run_dir(n)),
                None => dir_qid(ROOT),
            },
        }
    }
}

impl Servant for LinuxRuns {
    fn letter(&self) -> char {
        'L'
    }

    fn devgen(&self) -> Option<&dyn Devgen> {
        Some(self)
    }

    fn attach(&mut self, _caller: &Caller<'_>, _spec: &str) -> Result<File, Error> {
        Ok(kasane_servant::dev::attach())
    }

    fn open(&mut self, caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        kasane_servant::dev::open(self, caller, file, mode)?;
        let path = file.qid.path;
        if path == ROOT || path == LINUX {
            return Ok(Opened::File(file.qid));
        }
        if !self.present {
            return Err(Error::new(NO_LINUX));
        }
        if path == CLONE {
            if self.runs.len() >= MAX_RUNS {
                return Err(Error::new("too many linux runs"));
            }
            let n = self.next;
            self.next += 1;
            self.runs.insert(
                n,
                Run {
                    name: format!("{n}"),
                    opens: 1,
                    environment: Vec::new(),
                    directory: String::new(),
                    state: State::Fresh,
                    stdout: VecDeque::new(),
                    stdout_ended: false,
                    stderr: VecDeque::new(),
                    stderr_ended: false,
                },
            );
            return Ok(Opened::File(dir::file_qid(run_dir(n) + CTL)));
        }
        if path == EXPORT {
            if self.export_open {
                return Err(Error::new("/dev/linux/export is in use"));
            }
            self.export_open = true;
            self.export_restarted = false;
            return Ok(Opened::File(file.qid));
        }
        if path == SYSCALL {
            *self.callers.entry(caller.pid).or_insert(0) += 1;
            return Ok(Opened::File(dir::file_qid(
                SYSCALL_BASE + u64::from(caller.pid),
            )));
        }
        let (_, _, run) = self.run(path)?;
        run.opens += 1;
        Ok(Opened::File(file.qid))
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        if let Some(pid) = syscall_pid(file.qid.path) {
            return self.answer(pid);
        }
        if file.qid.path == EXPORT {
            return self.export_read(count);
        }
        let (n, part, run) = self.run(file.qid.path)?;
        let count = count as usize;
        let (stream, ended) = match part {
            CTL => {
                return Ok(Io::Ready(dir::read_at(
                    run.name.as_bytes(),
                    offset,
                    count as u32,
                )))
            }
            STATUS => {
                return match &run.state {
                    State::Exited(status) => Ok(Io::Ready(dir::read_at(
                        status.as_bytes(),
                        offset,
                        count as u32,
                    ))),
                    State::Failed(why) => Err(Error::new(why.clone())),
                    State::Fresh => Err(Error::new("no program was started")),
                    State::Started => Ok(Io::WouldBlock(WaitKey {
                        letter: 'L',
                        key: u64::from(n),
                    })),
                };
            }
            DATA => (&mut run.stdout, run.stdout_ended),
            STDERR => (&mut run.stderr, run.stderr_ended),
            _ => return Err(Error::PERMISSION_DENIED),
        };
        if !stream.is_empty() {
            let n = count.min(stream.len());
            return Ok(Io::Ready(stream.drain(..n).collect()));
        }
        match &run.state {
            State::Failed(why) => Err(Error::new(why.clone())),
            State::Started if !ended => Ok(Io::WouldBlock(WaitKey {
                letter: 'L',
                key: u64::from(n),
            })),
            _ => Ok(Io::Ready(Vec::new())),
        }
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        _offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        if let Some(pid) = syscall_pid(file.qid.path) {
            self.call(pid, data)?;
            return Ok(Io::Ready(data.len() as u32));
        }
        if file.qid.path == EXPORT {
            self.export_write(data)?;
            return Ok(Io::Ready(data.len() as u32));
        }
        let (n, part, run) = self.run(file.qid.path)?;
        let state = run.state.clone();
        match part {
            CTL => {
                let text = core::str::from_utf8(data).map_err(|_| Error::BAD_ARG)?;
                for line in text.lines() {
                    self.ctl(n, line)?;
                }
            }
            DATA => {
                match &state {
                    State::Started => {}
                    State::Failed(why) => return Err(Error::new(why.clone())),
                    State::Fresh => return Err(Error::new("no program was started")),
                    State::Exited(_) => return Err(Error::new("the linux program has ended")),
                }
                for piece in data.chunks(STDIN_PIECE) {
                    self.queue(n, Message::Stdin { data: piece })?;
                }
            }
            _ => return Err(Error::PERMISSION_DENIED),
        }
        Ok(Io::Ready(data.len() as u32))
    }

    fn close(&mut self, file: &File, opened: Option<OpenMode>) {
        if opened.is_none() {
            return;
        }
        if file.qid.path == EXPORT {
            self.export_open = false;
            return;
        }
        if let Some(pid) = syscall_pid(file.qid.path) {
            let Some(count) = self.callers.get_mut(&pid) else {
                return;
            };
            *count -= 1;
            if *count == 0 {
                // The process is done with Linux: its proxy ends.
                self.callers.remove(&pid);
                self.calls.remove(&pid);
                let exited = Message::ProcessExited {
                    process: u64::from(pid),
                };
                if let Ok(frame) = Self::encode(pid + SYSCALL_ID_BASE, exited) {
                    self.outbox.push(frame);
                }
            }
            return;
        }
        let Ok((n, _, run)) = self.run(file.qid.path) else {
            return;
        };
        run.opens = run.opens.saturating_sub(1);
        if run.opens > 0 {
            return;
        }
        // The last open file of the run: a program still running is
        // killed, and the run goes.
        let running = run.state == State::Started;
        self.runs.remove(&n);
        if running {
            let _ = self.queue(n, Message::Kill { signal: 9 });
        }
    }

    fn take_wakeups(&mut self) -> Vec<WaitKey> {
        core::mem::take(&mut self.wakeups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_protocol::Decoder;

    fn caller() -> Caller<'static> {
        Caller::new(1, "eve")
    }

    fn decode(frame: &[u8]) -> (u32, String) {
        let mut decoder = Decoder::new();
        let (_, event) = decoder.feed(frame);
        let frame = event.unwrap().unwrap();
        (frame.request_id, format!("{:?}", frame.message))
    }

    fn open(l: &mut LinuxRuns, path: u64) -> Result<File, Error> {
        let file = File {
            dev: 0,
            qid: dir::file_qid(path),
        };
        let mode = if path != EXPORT && (path % 8 == STATUS || path % 8 == STDERR) {
            OpenMode::OREAD
        } else {
            OpenMode::ORDWR
        };
        match l.open(&caller(), &file, mode)? {
            Opened::File(qid) => Ok(File { dev: 0, qid }),
            Opened::Link(_) => unreachable!(),
        }
    }

    fn write(l: &mut LinuxRuns, file: &File, text: &[u8]) -> Result<Io<u32>, Error> {
        l.write(&caller(), file, 0, text)
    }

    fn read(l: &mut LinuxRuns, file: &File) -> Result<Io<Vec<u8>>, Error> {
        l.read(&caller(), file, 0, 8192)
    }

    #[test]
    fn tokenize_keeps_quoted_blanks_and_quotes() {
        assert_eq!(
            tokenize("exec /bin/sh -c 'echo $((6*7))' 'it''s'").unwrap(),
            ["exec", "/bin/sh", "-c", "echo $((6*7))", "it's"]
        );
        assert!(tokenize("exec 'open").is_err());
        assert_eq!(tokenize("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_run_execs_streams_its_output_and_reports_its_status() {
        let mut l = LinuxRuns::new(true);
        let ctl = open(&mut l, CLONE).unwrap();
        assert_eq!(ctl.qid.path, run_dir(1) + CTL);
        assert_eq!(read(&mut l, &ctl).unwrap(), Io::Ready(b"1".to_vec()));
        let data = open(&mut l, run_dir(1) + DATA).unwrap();
        let status = open(&mut l, run_dir(1) + STATUS).unwrap();
        write(&mut l, &ctl, b"env A=b\ncwd /tmp\nexec /bin/echo 'a b'\n").unwrap();
        let frames = l.take_frames();
        assert_eq!(frames.len(), 1);
        let (id, text) = decode(&frames[0]);
        assert_eq!(id, 1 + RUN_ID_BASE);
        assert!(text.contains("path: \"/bin/echo\""), "{text}");
        assert!(text.contains("directory: \"/tmp\""), "{text}");
        assert!(matches!(read(&mut l, &data), Ok(Io::WouldBlock(_))));
        assert!(matches!(read(&mut l, &status), Ok(Io::WouldBlock(_))));
        write(&mut l, &data, b"input").unwrap();
        assert!(decode(&l.take_frames()[0]).1.contains("Stdin"));
        l.deliver(1 + RUN_ID_BASE, &Message::Stdout { data: b"a b\n" });
        // Frames of other ids are ignored.
        l.deliver(7 + RUN_ID_BASE, &Message::Stdout { data: b"x" });
        l.deliver(1, &Message::Stdout { data: b"x" });
        assert_eq!(l.take_wakeups().len(), 1);
        assert_eq!(read(&mut l, &data).unwrap(), Io::Ready(b"a b\n".to_vec()));
        l.deliver(1 + RUN_ID_BASE, &Message::Exited { code: 3, signal: 0 });
        assert_eq!(read(&mut l, &data).unwrap(), Io::Ready(Vec::new()));
        assert_eq!(
            read(&mut l, &status).unwrap(),
            Io::Ready(b"exit 3".to_vec())
        );
        for file in [ctl, data, status] {
            l.close(&file, Some(OpenMode::ORDWR));
        }
        assert!(l.runs.is_empty());
        assert!(l.take_frames().is_empty(), "an ended run is not killed");
    }

    #[test]
    fn a_restart_fails_runs_under_way_once_and_a_closed_run_is_killed() {
        let mut l = LinuxRuns::new(true);
        let ctl = open(&mut l, CLONE).unwrap();
        let data = open(&mut l, run_dir(1) + DATA).unwrap();
        write(&mut l, &ctl, b"exec /bin/cat").unwrap();
        l.take_frames();
        l.peer_changed();
        assert_eq!(l.take_wakeups().len(), 1);
        assert_eq!(read(&mut l, &data).unwrap_err().as_str(), RESTARTED);
        // A late frame of the old agent changes nothing.
        l.deliver(1 + RUN_ID_BASE, &Message::Exited { code: 0, signal: 0 });
        assert_eq!(read(&mut l, &data).unwrap_err().as_str(), RESTARTED);
        l.close(&data, Some(OpenMode::ORDWR));
        l.close(&ctl, Some(OpenMode::ORDWR));
        let ctl = open(&mut l, CLONE).unwrap();
        write(&mut l, &ctl, b"exec /bin/cat").unwrap();
        l.take_frames();
        l.close(&ctl, Some(OpenMode::ORDWR));
        let frames = l.take_frames();
        assert!(decode(&frames[0]).1.contains("Kill"));
    }

    #[test]
    fn a_delegated_call_goes_out_and_its_answer_comes_back_once() {
        let mut l = LinuxRuns::new(true);
        let file = open(&mut l, SYSCALL).unwrap();
        assert_eq!(file.qid.path, SYSCALL_BASE + 1);
        assert!(read(&mut l, &file).is_err(), "no call yet");
        let mut request = 39u32.to_le_bytes().to_vec();
        request.extend([0u8; 48]);
        write(&mut l, &file, &request).unwrap();
        let (id, text) = decode(&l.take_frames()[0]);
        assert_eq!(id, SYSCALL_ID_BASE + 1);
        assert!(text.contains("number: 39"), "{text}");
        assert!(matches!(read(&mut l, &file), Ok(Io::WouldBlock(_))));
        l.deliver(
            SYSCALL_ID_BASE + 1,
            &Message::SyscallResult {
                result: 77,
                output: b"",
            },
        );
        assert_eq!(l.take_wakeups().len(), 1);
        assert_eq!(
            read(&mut l, &file).unwrap(),
            Io::Ready(77i64.to_le_bytes().to_vec())
        );
        // A refusal is the call's error; a short request never goes out.
        request[0] = 231;
        write(&mut l, &file, &request).unwrap();
        l.take_frames();
        l.deliver(
            SYSCALL_ID_BASE + 1,
            &Message::Error {
                code: bridge_protocol::ErrorCode::Unsupported,
                detail: "linux system call 231 is not delegated",
            },
        );
        assert!(read(&mut l, &file)
            .unwrap_err()
            .as_str()
            .contains("not delegated"));
        assert!(write(&mut l, &file, &[1, 2, 3]).is_err());
        // A restart fails the call under way.
        write(&mut l, &file, &request).unwrap();
        l.peer_changed();
        assert_eq!(read(&mut l, &file).unwrap_err().as_str(), RESTARTED);
        // The last close ends the proxy.
        l.take_frames();
        l.close(&file, Some(OpenMode::ORDWR));
        assert!(decode(&l.take_frames()[0]).1.contains("ProcessExited"));
    }

    #[test]
    fn export_carries_the_agents_9p_both_ways_and_reports_a_restart_once() {
        let mut l = LinuxRuns::new(true);
        // The agent's first bytes may come before exportfs opens.
        l.deliver(EXPORT_CHANNEL, &Message::Ninep { data: b"Tver" });
        l.deliver(7 + RUN_ID_BASE, &Message::Ninep { data: b"x" });
        let export = open(&mut l, EXPORT).unwrap();
        assert_eq!(
            open(&mut l, EXPORT).unwrap_err().as_str(),
            "/dev/linux/export is in use"
        );
        assert_eq!(read(&mut l, &export).unwrap(), Io::Ready(b"Tver".to_vec()));
        assert!(matches!(read(&mut l, &export), Ok(Io::WouldBlock(_))));
        l.deliver(EXPORT_CHANNEL, &Message::Ninep { data: b"sion" });
        assert_eq!(l.take_wakeups().len(), 1);
        assert_eq!(
            l.read(&caller(), &export, 0, 2).unwrap(),
            Io::Ready(b"si".to_vec())
        );
        let answer = vec![7u8; 5000];
        write(&mut l, &export, &answer).unwrap();
        let frames = l.take_frames();
        assert_eq!(frames.len(), 2, "cut into pieces that fit a frame");
        assert_eq!(decode(&frames[0]).0, EXPORT_CHANNEL);
        // A restart drops the old agent's half message and fails one read.
        l.peer_changed();
        assert_eq!(read(&mut l, &export).unwrap_err().as_str(), RESTARTED);
        assert!(matches!(read(&mut l, &export), Ok(Io::WouldBlock(_))));
        // Too much unread is dropped, not kept.
        l.deliver(EXPORT_CHANNEL, &Message::Ninep { data: &[1; 4000] });
        for _ in 0..20 {
            l.deliver(EXPORT_CHANNEL, &Message::Ninep { data: &[2; 4000] });
        }
        assert!(l.export_in.len() <= EXPORT_LIMIT);
        l.close(&export, Some(OpenMode::ORDWR));
        assert!(open(&mut l, EXPORT).is_ok(), "open again after the close");
    }

    #[test]
    fn exec_errors_bad_requests_and_no_cell() {
        let mut l = LinuxRuns::new(true);
        let ctl = open(&mut l, CLONE).unwrap();
        assert!(write(&mut l, &ctl, b"frobnicate").is_err());
        assert!(write(&mut l, &ctl, b"exec").is_err());
        write(&mut l, &ctl, b"exec /no/such").unwrap();
        assert!(write(&mut l, &ctl, b"exec /bin/true").is_err());
        l.deliver(
            1 + RUN_ID_BASE,
            &Message::Error {
                code: bridge_protocol::ErrorCode::Internal,
                detail: "cannot run /no/such",
            },
        );
        let status = open(&mut l, run_dir(1) + STATUS).unwrap();
        assert_eq!(
            read(&mut l, &status).unwrap_err().as_str(),
            "cannot run /no/such"
        );
        let mut bare = LinuxRuns::new(false);
        assert_eq!(open(&mut bare, CLONE).unwrap_err().as_str(), NO_LINUX);
        assert_eq!(status_of(0, 0), "");
        assert_eq!(status_of(1, 0), "exit 1");
        assert_eq!(status_of(-1, 9), "signal 9");
    }
}
