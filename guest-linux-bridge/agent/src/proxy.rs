//! System-call proxies: one Linux process per Kasane process (McKernel).
//!
//! A proxy is the agent's own binary started as `kasane-agent
//! --syscall-proxy`. It has three descriptors: 0 is a pipe from the
//! agent, which brings `Syscall` frames; 1 is the link itself, where the
//! proxy writes each `SyscallResult` or `Error` frame whole, in one
//! `write`; 2 is a pipe back to the agent, on which it reports each call
//! it has answered as its 4-byte request id. It runs each call through
//! the table (`syscall`). Because it is a process of its own, the Linux
//! state a Kasane process builds up (open descriptors, working
//! directory, credentials) lives in it between calls and in nothing else:
//! a delegated `close(5)` closes the proxy's fd 5, never the agent's
//! link, and a `chdir` moves only that proxy. A thread would share the
//! agent's descriptor table and working directory, and `getpid`.
//!
//! [`Proxies`] (in the agent) starts a proxy on a process's first call,
//! writes each call into its pipe without waiting, and ends it on
//! `ProcessExited`. The answer goes from the proxy to the peer directly,
//! so a call costs Linux one switch to the proxy and back, not a trip
//! through writer and reader threads of the agent as well. A watcher
//! thread per proxy waits for its end; the ids it reported tell the agent
//! which calls it left unanswered, and each of those is answered with an
//! `Error`. Calls a proxy would refuse are refused before one is started.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use bridge_protocol::{Decoder, ErrorCode, Frame, Message, MAX_FRAME_LEN};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

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

/// The proxy's answer to one frame: a result or an error, same id,
/// encoded.
fn answer(frame: &Frame<'_>) -> Vec<u8> {
    let Message::Syscall {
        number,
        arguments,
        input,
        ..
    } = frame.message
    else {
        return encode(&error_frame(
            frame.request_id,
            ErrorCode::Unsupported,
            "a proxy runs calls only",
        ));
    };
    match Call::prepare(number, arguments, input) {
        Ok(mut call) => {
            let result = raw::run(&mut call);
            let output = call.output(result);
            encode(&Frame {
                request_id: frame.request_id,
                message: Message::SyscallResult {
                    result,
                    output: &output,
                },
            })
        }
        Err(refusal) => {
            let detail = refusal.to_string();
            encode(&refusal_frame(frame.request_id, &refusal, &detail))
        }
    }
}

/// A frame's bytes; a frame of ours that does not encode (cannot happen:
/// the output is clamped to fit) becomes an `Internal` error.
fn encode(frame: &Frame<'_>) -> Vec<u8> {
    frame.to_vec().unwrap_or_else(|_| {
        let detail = "the proxy's answer did not encode";
        let error = error_frame(frame.request_id, ErrorCode::Internal, detail);
        error.to_vec().unwrap_or_default()
    })
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

/// Writes all of `bytes` to `fd`: one `write` for a frame on a console
/// port or a pipe (up to `PIPE_BUF`), so frames stay whole.
fn write_whole(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// The proxy process's loop on its standard descriptors: calls on 0,
/// answers on 1, reports on 2 (see the module's note).
pub fn serve_standard() -> io::Result<()> {
    serve(
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    )
}

/// The proxy's loop: calls from `calls`, each answer written whole to
/// `link` and its id then to `reports`; until `calls` ends.
pub fn serve(
    calls: BorrowedFd<'_>,
    link: BorrowedFd<'_>,
    reports: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut decoder = Decoder::new();
    let mut buffer = vec![0u8; MAX_FRAME_LEN];
    loop {
        let count = match rustix::io::read(calls, &mut buffer[..]) {
            Ok(0) => return Ok(()),
            Ok(count) => count,
            Err(Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        };
        let mut rest = &buffer[..count];
        loop {
            let (taken, event) = decoder.feed(rest);
            rest = &rest[taken..];
            let (id, reply) = match event {
                None => break,
                Some(Ok(frame)) => (frame.request_id, answer(&frame)),
                Some(Err(error)) => {
                    let id = error.request_id();
                    (
                        id,
                        encode(&error_frame(id, ErrorCode::BadFrame, "bad frame")),
                    )
                }
            };
            write_whole(link, &reply)?;
            write_whole(reports, &id.to_le_bytes())?;
        }
    }
}

/// Calls handed to a proxy and not yet reported answered are settled this
/// often (and when it ends), so that its reports never fill their pipe.
const SETTLE_AFTER: usize = 8;

struct Proxy {
    /// The write end of its calls pipe (non-blocking).
    calls: OwnedFd,
    /// Signals the very process even after the watcher has reaped it
    /// (no pid reuse race).
    pidfd: OwnedFd,
    waiting: Arc<Mutex<Waiting>>,
}

/// The calls a proxy has not reported answered, and whether it is gone.
#[derive(Debug)]
struct Waiting {
    ids: VecDeque<u32>,
    dead: bool,
    /// The read end of its reports pipe (non-blocking).
    reports: OwnedFd,
    /// Bytes of a report not yet whole.
    partial: Vec<u8>,
}

impl Waiting {
    /// Takes the proxy's reports of answered calls.
    fn settle(&mut self) {
        let mut bytes = [0u8; 256];
        while let Ok(count @ 1..) = rustix::io::read(&self.reports, &mut bytes[..]) {
            self.partial.extend_from_slice(&bytes[..count]);
        }
        let whole = self.partial.len() / 4 * 4;
        for report in self.partial[..whole].chunks_exact(4) {
            let id = u32::from_le_bytes([report[0], report[1], report[2], report[3]]);
            if let Some(at) = self.ids.iter().position(|&waiting| waiting == id) {
                self.ids.remove(at);
            }
        }
        self.partial.drain(..whole);
    }
}

/// The proxy is gone: marks it dead and answers every call it left
/// (unless it was ended on purpose: its process is gone, and nobody
/// waits for its answers). A proxy killed from inside Linux between its
/// answer and its report leaves an `Error` for a call already answered,
/// which the peer ignores (it no longer waits for that id).
fn bury(process: u64, waiting: &Mutex<Waiting>, outbox: &Outbox) {
    let mut waiting = lock(waiting);
    if waiting.dead {
        return;
    }
    waiting.settle();
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
    /// Proxies started from `program` (the agent's binary), answering on
    /// `outbox`'s descriptor (the agent's errors through `outbox`).
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

    /// Hands a call to `process`'s proxy, starting it if need be; never
    /// waits. The answer comes later from the proxy; an error here is
    /// answered by the caller at once.
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
        let bytes = frame
            .to_vec()
            .map_err(|_| (ErrorCode::Internal, "cannot encode the call".into()))?;
        // Under the lock, so that a proxy found dead later answers this
        // call (it is on the list) and one found dead before refuses it.
        let mut waiting = lock(&proxy.waiting);
        if waiting.dead {
            // Its state is lost, so the process gets this error until cell
            // 0 says it exited; no new proxy starts behind its back.
            return Err((ErrorCode::Internal, ended(process)));
        }
        if waiting.ids.len() >= SETTLE_AFTER {
            waiting.settle();
        }
        match rustix::io::write(&proxy.calls, &bytes) {
            Ok(n) if n == bytes.len() => {}
            // A frame longer than PIPE_BUF went in part: the rest follows
            // (the proxy is reading), so that the frame stays whole.
            Ok(n) => {
                if let Err(error) = finish_write(&proxy.calls, &bytes[n..]) {
                    return Err((ErrorCode::Internal, format!("{}: {error}", ended(process))));
                }
            }
            // A proxy stuck in a long call with its pipe full: the peer
            // sent more calls than one at a time.
            Err(Errno::AGAIN) => {
                let detail = format!("the linux proxy of process {process} is busy");
                return Err((ErrorCode::Internal, detail));
            }
            // Gone: its watcher answers what it left.
            Err(_) => return Err((ErrorCode::Internal, ended(process))),
        }
        waiting.ids.push_back(request_id);
        Ok(())
    }

    fn start(&self, process: u64) -> io::Result<Proxy> {
        let link = self
            .outbox
            .descriptor()
            .ok_or_else(|| io::Error::other("the link has no descriptor for proxies"))?
            .try_clone_to_owned()?;
        let (their_calls, calls) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        let (reports, their_reports) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        rustix::fs::fcntl_setfl(&calls, OFlags::NONBLOCK)?;
        rustix::fs::fcntl_setfl(&reports, OFlags::NONBLOCK)?;
        let mut child = Command::new(&self.program)
            .arg(PROXY_FLAG)
            .stdin(Stdio::from(their_calls))
            .stdout(Stdio::from(link))
            .stderr(Stdio::from(their_reports))
            .current_dir("/")
            .spawn()?;
        // The child is not reaped before the watcher below waits for it,
        // so its pid is still its own here.
        let pidfd = match rustix::process::pidfd_open(Pid::from_child(&child), PidfdFlags::empty())
        {
            Ok(pidfd) => pidfd,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error.into());
            }
        };
        let waiting = Arc::new(Mutex::new(Waiting {
            ids: VecDeque::new(),
            dead: false,
            reports,
            partial: Vec::new(),
        }));
        let outbox = self.outbox.clone();
        let watched = waiting.clone();
        thread::spawn(move || {
            let _ = child.wait();
            bury(process, &watched, &outbox);
        });
        Ok(Proxy {
            calls,
            pidfd,
            waiting,
        })
    }

    /// `process` exited: its proxy ends, and with it its Linux state.
    /// Unknown processes are fine (they never called).
    pub fn exited(&mut self, process: u64) {
        if let Some(proxy) = self.running.remove(&process) {
            lock(&proxy.waiting).dead = true;
            let _ = rustix::process::pidfd_send_signal(proxy.pidfd.as_fd(), Signal::KILL);
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

/// Writes the rest of a frame to a non-blocking pipe whose reader is
/// draining it (a few tries, 1 ms apart, for at most a second).
fn finish_write(fd: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    for _ in 0..1000 {
        match rustix::io::write(fd, bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::AGAIN) | Err(Errno::INTR) => {
                thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(io::ErrorKind::TimedOut.into())
}

fn ended(process: u64) -> String {
    format!("the linux proxy of process {process} ended")
}
