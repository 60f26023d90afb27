//! System-call proxies: one Linux process per Kasane process (McKernel).
//!
//! A proxy is the agent's own binary started as `kasane-agent
//! --syscall-proxy`, with pipes for standard input and output. It reads
//! `Syscall` frames, runs each through the table (`syscall`) and writes a
//! `SyscallResult` or `Error` frame with the same request id. Because it is
//! a process of its own, the Linux state a Kasane process builds up (open
//! descriptors, working directory, credentials) lives in it between calls
//! and in nothing else: a delegated `close(5)` closes the proxy's fd 5,
//! never the agent's link, and a `chdir` moves only that proxy. A thread
//! would share the agent's descriptor table and working directory.
//!
//! [`Proxies`] (in the agent) starts a proxy on a process's first call,
//! forwards calls to it, and ends it on `ProcessExited`. A reader thread
//! per proxy forwards its frames to the link; if the proxy dies, each call
//! still waiting on it is answered with an `Error`. Calls a proxy would
//! refuse are refused before one is started.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use bridge_protocol::{Decoder, ErrorCode, Frame, Message, MAX_FRAME_LEN};

use crate::outbox::Outbox;
use crate::raw;
use crate::syscall::{Call, Refusal};

/// The argument that makes the agent's binary a proxy.
pub const PROXY_FLAG: &str = "--syscall-proxy";

/// How many proxies may run at once.
pub const MAX_PROXIES: usize = 64;

fn error_frame(request_id: u32, code: ErrorCode, detail: &str) -> Frame<'_> {
    Frame {
        request_id,
        message: Message::Error { code, detail },
    }
}

/// The proxy's answer to one frame: a result or an error, same id.
fn answer(frame: &Frame<'_>, out: &mut dyn Write) -> io::Result<()> {
    let Message::Syscall {
        number,
        arguments,
        input,
        ..
    } = frame.message
    else {
        let reply = error_frame(
            frame.request_id,
            ErrorCode::Unsupported,
            "a proxy runs calls only",
        );
        return write_frame(out, &reply);
    };
    match Call::prepare(number, arguments, input) {
        Ok(mut call) => {
            let result = raw::run(&mut call);
            let output = call.output(result);
            let reply = Frame {
                request_id: frame.request_id,
                message: Message::SyscallResult {
                    result,
                    output: &output,
                },
            };
            write_frame(out, &reply)
        }
        Err(refusal) => {
            let detail = refusal.to_string();
            write_frame(out, &refusal_frame(frame.request_id, &refusal, &detail))
        }
    }
}

fn refusal_frame<'a>(request_id: u32, refusal: &Refusal, detail: &'a str) -> Frame<'a> {
    error_frame(request_id, refusal_code(refusal), detail)
}

/// `Unsupported` for a call not in the table, `BadPayload` for bad buffers.
pub fn refusal_code(refusal: &Refusal) -> ErrorCode {
    match refusal {
        Refusal::NotDelegated(_) => ErrorCode::Unsupported,
        Refusal::BadInput(_) => ErrorCode::BadPayload,
    }
}

fn write_frame(out: &mut dyn Write, frame: &Frame<'_>) -> io::Result<()> {
    let (buffer, length) = frame
        .to_buffer()
        .map_err(|error| io::Error::other(format!("cannot encode: {error:?}")))?;
    out.write_all(&buffer[..length])?;
    out.flush()
}

/// The proxy process's loop: calls in on `input`, answers out on
/// `output`, until `input` ends.
pub fn serve(mut input: impl Read, mut output: impl Write) -> io::Result<()> {
    let mut decoder = Decoder::new();
    let mut buffer = vec![0u8; MAX_FRAME_LEN];
    loop {
        let count = match input.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let mut rest = &buffer[..count];
        loop {
            let (taken, event) = decoder.feed(rest);
            rest = &rest[taken..];
            match event {
                None => break,
                Some(Ok(frame)) => answer(&frame, &mut output)?,
                Some(Err(error)) => {
                    let reply = error_frame(error.request_id(), ErrorCode::BadFrame, "bad frame");
                    write_frame(&mut output, &reply)?;
                }
            }
        }
    }
}

struct Proxy {
    child: Arc<Mutex<Child>>,
    /// To the writer thread, which owns the proxy's stdin, so that a proxy
    /// blocked in a long call cannot stall the agent's loop.
    calls: Sender<(u32, Vec<u8>)>,
    waiting: Arc<Mutex<Waiting>>,
}

/// The calls a proxy has not answered, and whether it is gone.
#[derive(Debug, Default)]
struct Waiting {
    ids: VecDeque<u32>,
    dead: bool,
}

/// The proxy is gone: marks it dead and answers every call it left.
fn bury(process: u64, waiting: &Mutex<Waiting>, outbox: &Outbox) {
    let mut waiting = lock(waiting);
    waiting.dead = true;
    let detail = ended(process);
    for request_id in waiting.ids.drain(..) {
        let _ = outbox.send(&error_frame(request_id, ErrorCode::Internal, &detail));
    }
}

/// The agent's proxies, one per Kasane process that has called.
#[derive(Debug)]
pub struct Proxies {
    program: PathBuf,
    outbox: Outbox,
    running: BTreeMap<u64, Proxy>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Proxies {
    /// Proxies started from `program` (the agent's binary), answering
    /// through `outbox`.
    pub fn new(program: PathBuf, outbox: Outbox) -> Proxies {
        Proxies {
            program,
            outbox,
            running: BTreeMap::new(),
        }
    }

    /// How many proxies run.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Sends a call to `process`'s proxy, starting it if need be. The
    /// answer comes later through the outbox; an error here is answered
    /// by the caller at once.
    pub fn call(&mut self, request_id: u32, frame: &Frame<'_>) -> Result<(), (ErrorCode, String)> {
        let Message::Syscall {
            process,
            number,
            arguments,
            input,
        } = frame.message
        else {
            return Err((ErrorCode::Unsupported, "not a call".into()));
        };
        if let Err(refusal) = Call::prepare(number, arguments, input) {
            let code = refusal_code(&refusal);
            return Err((code, refusal.to_string()));
        }
        if !self.running.contains_key(&process) {
            if self.running.len() >= MAX_PROXIES {
                let detail =
                    format!("too many Kasane processes have linux proxies ({MAX_PROXIES})");
                return Err((ErrorCode::Internal, detail));
            }
            let proxy = self.start(process).map_err(|error| {
                let detail = format!("cannot start a linux proxy: {error}");
                (ErrorCode::Internal, detail)
            })?;
            self.running.insert(process, proxy);
        }
        let Some(proxy) = self.running.get_mut(&process) else {
            return Err((ErrorCode::Internal, "proxy vanished".into()));
        };
        let (buffer, length) = frame
            .to_buffer()
            .map_err(|_| (ErrorCode::Internal, "cannot encode the call".into()))?;
        // Under the lock, so that a proxy found dead later answers this
        // call (it is on the list) and one found dead before refuses it.
        let mut waiting = lock(&proxy.waiting);
        if waiting.dead {
            // Its state is lost, so the process gets this error until cell
            // 0 says it exited; no new proxy starts behind its back.
            return Err((ErrorCode::Internal, ended(process)));
        }
        waiting.ids.push_back(request_id);
        // A send fails only once the writer has ended, which it does only
        // after marking the proxy dead and answering the list.
        let _ = proxy.calls.send((request_id, buffer[..length].to_vec()));
        Ok(())
    }

    fn start(&self, process: u64) -> io::Result<Proxy> {
        let mut child = Command::new(&self.program)
            .arg(PROXY_FLAG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .current_dir("/")
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let child = Arc::new(Mutex::new(child));
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let outbox = self.outbox.clone();
        let reader_child = child.clone();
        let reader_waiting = waiting.clone();
        thread::spawn(move || forward(process, stdout, outbox, reader_child, reader_waiting));
        let (calls, queue) = mpsc::channel::<(u32, Vec<u8>)>();
        let writer_outbox = self.outbox.clone();
        let writer_waiting = waiting.clone();
        thread::spawn(move || {
            for (_, bytes) in queue {
                if stdin.write_all(&bytes).is_err() {
                    bury(process, &writer_waiting, &writer_outbox);
                    break;
                }
            }
        });
        Ok(Proxy {
            child,
            calls,
            waiting,
        })
    }

    /// `process` exited: its proxy ends, and with it its Linux state.
    /// Unknown processes are fine (they never called).
    pub fn exited(&mut self, process: u64) {
        if let Some(proxy) = self.running.remove(&process) {
            let _ = lock(&proxy.child).kill();
        }
    }

    /// Ends every proxy (the peer went away).
    pub fn end_all(&mut self) {
        let processes: Vec<u64> = self.running.keys().copied().collect();
        for process in processes {
            self.exited(process);
        }
    }
}

fn ended(process: u64) -> String {
    format!("the linux proxy of process {process} ended")
}

/// A proxy's reader: its frames to the link, then the calls it left.
fn forward(
    process: u64,
    mut stdout: impl Read,
    outbox: Outbox,
    child: Arc<Mutex<Child>>,
    waiting: Arc<Mutex<Waiting>>,
) {
    let mut decoder = Decoder::new();
    let mut buffer = vec![0u8; MAX_FRAME_LEN];
    'reading: loop {
        let count = match stdout.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(count) => count,
        };
        let mut rest = &buffer[..count];
        loop {
            let (taken, event) = decoder.feed(rest);
            rest = &rest[taken..];
            match event {
                None => break,
                Some(Ok(frame)) => {
                    lock(&waiting).ids.retain(|&id| id != frame.request_id);
                    if outbox.send(&frame).is_err() {
                        break 'reading;
                    }
                }
                // The proxy is our own code; a bad frame from it means it
                // is broken, and it is ended below.
                Some(Err(_)) => break 'reading,
            }
        }
    }
    let _ = lock(&child).kill();
    let _ = lock(&child).wait();
    bury(process, &waiting, &outbox);
}
