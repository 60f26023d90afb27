//! Linux programs run for the peer (`/dev/linux/clone`'s Linux half).
//!
//! An `Exec` names a run by its request id and starts the program with
//! exactly the environment and working directory given (nothing is
//! inherited from the agent). It is answered with `ExecStarted`; then, in
//! the run's id, `Stdout` and `Stderr` frames as the program writes (an
//! empty one when that stream ends), and last an `Exited`. `Stdin` frames
//! feed standard input (an empty one closes it), and `Kill` signals it.
//!
//! Threads: one per output stream and one that waits for both and then for
//! the exit, so `Exited` always follows the last output; one writer per
//! run so that a program that does not read cannot stall the link. At
//! most `MAX_RUNS` runs at once.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use bridge_protocol::{string_list, ErrorCode, Frame, Message};

use crate::outbox::Outbox;

/// How many programs may run at once.
pub const MAX_RUNS: usize = 32;

/// The most output bytes one frame carries.
pub const PIECE: usize = bridge_protocol::MAX_PAYLOAD_LEN - 2;

/// The signals `Kill` may send, by Linux number.
fn signal(number: u8) -> Option<rustix::process::Signal> {
    use rustix::process::Signal;
    Some(match number {
        1 => Signal::HUP,
        2 => Signal::INT,
        3 => Signal::QUIT,
        9 => Signal::KILL,
        10 => Signal::USR1,
        12 => Signal::USR2,
        13 => Signal::PIPE,
        14 => Signal::ALARM,
        15 => Signal::TERM,
        18 => Signal::CONT,
        19 => Signal::STOP,
        _ => return None,
    })
}

struct Run {
    pid: u32,
    /// Standard input's writer; `None` once closed.
    stdin: Option<Sender<Vec<u8>>>,
}

/// Every program that runs, by run id.
#[derive(Clone, Debug)]
pub struct Runs {
    outbox: Outbox,
    running: Arc<Mutex<BTreeMap<u32, Run>>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").field("pid", &self.pid).finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An error for the peer: what failed, in words.
pub type RunError = (ErrorCode, String);

impl Runs {
    /// Runs reporting through `outbox`.
    pub fn new(outbox: Outbox) -> Runs {
        Runs {
            outbox,
            running: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// How many runs have not yet sent `Exited`.
    pub fn len(&self) -> usize {
        lock(&self.running).len()
    }

    /// Whether nothing runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a run; returns the Linux process id for `ExecStarted`.
    pub fn exec(
        &self,
        run: u32,
        path: &str,
        arguments: &[u8],
        environment: &[u8],
        directory: &str,
    ) -> Result<u32, RunError> {
        if run == 0 {
            return Err((ErrorCode::BadPayload, "a run needs a nonzero id".into()));
        }
        let mut running = lock(&self.running);
        if running.contains_key(&run) {
            return Err((
                ErrorCode::BadPayload,
                format!("run {run} is already running"),
            ));
        }
        if running.len() >= MAX_RUNS {
            return Err((
                ErrorCode::Internal,
                format!("too many runs (at most {MAX_RUNS})"),
            ));
        }
        if path.is_empty() || path.contains('\0') {
            return Err((ErrorCode::BadPayload, "exec needs a program path".into()));
        }
        let mut command = Command::new(path);
        let mut list = string_list(arguments);
        if let Some(zero) = list.next() {
            command.arg0(OsStr::from_bytes(zero));
        }
        command.args(list.map(OsStr::from_bytes));
        command.env_clear();
        for variable in string_list(environment) {
            let Some(equals) = variable.iter().position(|&byte| byte == b'=') else {
                return Err((
                    ErrorCode::BadPayload,
                    "an environment entry needs NAME=VALUE".into(),
                ));
            };
            command.env(
                OsStr::from_bytes(&variable[..equals]),
                OsStr::from_bytes(&variable[equals + 1..]),
            );
        }
        command.current_dir(if directory.is_empty() { "/" } else { directory });
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|error| (ErrorCode::Internal, format!("cannot run {path}: {error}")))?;
        let pid = child.id();
        let (stdin_sender, stdin_receiver) = mpsc::channel::<Vec<u8>>();
        if let Some(mut stdin) = child.stdin.take() {
            thread::spawn(move || {
                for data in stdin_receiver {
                    if data.is_empty() || stdin.write_all(&data).is_err() {
                        break;
                    }
                }
            });
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let outbox = self.outbox.clone();
        let pump = |stream: Option<Box<dyn Read + Send>>, is_error: bool| {
            let outbox = outbox.clone();
            thread::spawn(move || {
                if let Some(stream) = stream {
                    pump_output(run, stream, is_error, &outbox);
                }
            })
        };
        let out_thread = pump(stdout.map(|s| Box::new(s) as Box<dyn Read + Send>), false);
        let err_thread = pump(stderr.map(|s| Box::new(s) as Box<dyn Read + Send>), true);
        let table = self.running.clone();
        let outbox = self.outbox.clone();
        thread::spawn(move || {
            let _ = out_thread.join();
            let _ = err_thread.join();
            let (code, signal) = match child.wait() {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => (code, 0),
                    (None, Some(signal)) => (-1, u8::try_from(signal).unwrap_or(u8::MAX)),
                    (None, None) => (-1, 0),
                },
                Err(_) => (-1, 0),
            };
            // Out of the table first: a Kill after this must not reach a
            // process that reused the pid.
            lock(&table).remove(&run);
            let exited = Frame {
                request_id: run,
                message: Message::Exited { code, signal },
            };
            let _ = outbox.send(&exited);
        });
        running.insert(
            run,
            Run {
                pid,
                stdin: Some(stdin_sender),
            },
        );
        Ok(pid)
    }

    /// Bytes for `run`'s standard input; empty closes it.
    pub fn stdin(&self, run: u32, data: &[u8]) -> Result<(), RunError> {
        let mut running = lock(&self.running);
        let entry = running
            .get_mut(&run)
            .ok_or_else(|| (ErrorCode::BadPayload, format!("no run {run}")))?;
        if data.is_empty() {
            entry.stdin = None;
            return Ok(());
        }
        let sender = entry.stdin.as_ref().ok_or_else(|| {
            (
                ErrorCode::BadPayload,
                format!("run {run}'s input is closed"),
            )
        })?;
        // A send fails only when the program closed its input; like a
        // write to a closed pipe, the bytes are dropped.
        let _ = sender.send(data.to_vec());
        Ok(())
    }

    /// Sends `signal` to `run`.
    pub fn kill(&self, run: u32, number: u8) -> Result<(), RunError> {
        let running = lock(&self.running);
        let entry = running
            .get(&run)
            .ok_or_else(|| (ErrorCode::BadPayload, format!("no run {run}")))?;
        let signal = signal(number).ok_or_else(|| {
            (
                ErrorCode::BadPayload,
                format!("signal {number} is not sent"),
            )
        })?;
        let pid = i32::try_from(entry.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| (ErrorCode::Internal, "bad pid".to_string()))?;
        rustix::process::kill_process(pid, signal)
            .map_err(|error| (ErrorCode::Internal, format!("kill: {error}")))
    }

    /// Kills every run (the peer went away); their `Exited` still follow.
    pub fn kill_all(&self) {
        let runs: Vec<u32> = lock(&self.running).keys().copied().collect();
        for run in runs {
            let _ = self.kill(run, 9);
        }
    }
}

fn pump_output(run: u32, mut stream: impl Read, is_error: bool, outbox: &Outbox) {
    let mut buffer = vec![0u8; PIECE];
    fn frame(run: u32, is_error: bool, data: &[u8]) -> Frame<'_> {
        Frame {
            request_id: run,
            message: if is_error {
                Message::Stderr { data }
            } else {
                Message::Stdout { data }
            },
        }
    }
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => {
                if outbox
                    .send(&frame(run, is_error, &buffer[..count]))
                    .is_err()
                {
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = outbox.send(&frame(run, is_error, &[]));
}
