//! kasane-bridge-client: talk to a bridge agent over a Unix socket.
//!
//! The socket is the host end of the guest's link port, e.g. QEMU's
//! `-chardev socket,path=SOCKET`. Usage:
//!
//!   kasane-bridge-client SOCKET hello|ping|uname|heartbeat|crash
//!   kasane-bridge-client check --socket SOCKET --serial FILE
//!                              --release RELEASE [--timeout SECONDS]
//!
//! `check` is the end-to-end test: it prints one line per check, ends with
//! `N passed, N failed`, and exits non-zero if any check failed.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_protocol::{
    crc32, DecodeError, Decoder, ErrorCode, Frame, Message, MessageType, VERSION,
};

/// A message copied out of the decoder's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Received {
    Hello {
        version: u8,
        release: String,
    },
    Pong {
        nonce: u64,
    },
    Uname {
        release: String,
        machine: String,
    },
    HeartbeatAck {
        sequence: u64,
        uptime_milliseconds: u64,
    },
    CrashAccepted,
    Error {
        code: ErrorCode,
        detail: String,
    },
    /// A frame the client never expects from the agent.
    Other(MessageType),
    /// The client's own decoder rejected bytes.
    Rejected(DecodeError),
}

impl Received {
    fn from_message(message: &Message<'_>) -> Received {
        match *message {
            Message::Hello {
                protocol_version,
                kernel_release,
            } => Received::Hello {
                version: protocol_version,
                release: kernel_release.to_string(),
            },
            Message::Pong { nonce } => Received::Pong { nonce },
            Message::UnameReply { release, machine } => Received::Uname {
                release: release.to_string(),
                machine: machine.to_string(),
            },
            Message::HeartbeatAck {
                sequence,
                uptime_milliseconds,
            } => Received::HeartbeatAck {
                sequence,
                uptime_milliseconds,
            },
            Message::CrashAccepted => Received::CrashAccepted,
            Message::Error { code, detail } => Received::Error {
                code,
                detail: detail.to_string(),
            },
            ref other => Received::Other(other.message_type()),
        }
    }
}

/// One connection to the agent.
struct Link {
    stream: UnixStream,
    decoder: Decoder,
    /// Bytes read but not yet taken by the decoder.
    pending: Vec<u8>,
    next_request: u32,
}

impl Link {
    /// Connects, retrying while the socket does not exist yet.
    fn connect(path: &Path, deadline: Instant) -> Result<Link, String> {
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => {
                    return Ok(Link {
                        stream,
                        decoder: Decoder::new(),
                        pending: Vec::new(),
                        next_request: 1,
                    })
                }
                Err(error) if Instant::now() >= deadline => {
                    return Err(format!("cannot connect to {}: {error}", path.display()))
                }
                Err(_) => sleep(Duration::from_millis(100)),
            }
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|error| format!("cannot send: {error}"))
    }

    /// Sends a request and returns its id.
    fn request(&mut self, message: Message<'_>) -> Result<u32, String> {
        let request_id = self.next_request;
        self.next_request += 1;
        let (buffer, length) = Frame {
            request_id,
            message,
        }
        .to_buffer()
        .map_err(|error| format!("cannot encode: {error:?}"))?;
        self.send_raw(&buffer[..length])?;
        Ok(request_id)
    }

    /// The next frame (or the client's own decode error), by `deadline`.
    fn receive(&mut self, deadline: Instant) -> Result<(u32, Received), String> {
        loop {
            let (taken, event) = self.decoder.feed(&self.pending);
            let event = event.map(|result| match result {
                Ok(frame) => (frame.request_id, Received::from_message(&frame.message)),
                Err(error) => (error.request_id(), Received::Rejected(error)),
            });
            self.pending.drain(..taken);
            if let Some(event) = event {
                return Ok(event);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err("timed out waiting for a frame".into());
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .map_err(|error| error.to_string())?;
            let mut buffer = [0u8; 4096];
            match self.stream.read(&mut buffer) {
                Ok(0) => return Err("the link closed".into()),
                Ok(count) => self.pending.extend_from_slice(&buffer[..count]),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err("timed out waiting for a frame".into())
                }
                Err(error) => return Err(format!("cannot read: {error}")),
            }
        }
    }

    /// The reply to `request_id`, skipping anything else, by `deadline`.
    fn reply_to(&mut self, request_id: u32, deadline: Instant) -> Result<Received, String> {
        loop {
            let (id, received) = self.receive(deadline)?;
            if id == request_id {
                return Ok(received);
            }
        }
    }

    fn hello(&mut self, deadline: Instant) -> Result<(u8, String), String> {
        loop {
            if let (_, Received::Hello { version, release }) = self.receive(deadline)? {
                return Ok((version, release));
            }
        }
    }
}

/// A frame with a sound header and trailer around any type and payload;
/// built by hand so that the agent's handling of bad frames can be tested.
fn raw_frame(message_type: u8, request_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = b"KB".to_vec();
    bytes.extend_from_slice(&[VERSION, message_type]);
    bytes.extend_from_slice(&request_id.to_le_bytes());
    let length = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    bytes.extend_from_slice(&length.to_le_bytes());
    let check = (crc32(&bytes) & 0xFFFF) as u16;
    bytes.extend_from_slice(&check.to_le_bytes());
    bytes.extend_from_slice(payload);
    let trailer = crc32(&bytes);
    bytes.extend_from_slice(&trailer.to_le_bytes());
    bytes
}

fn nonce() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0x5EED)
}

/// Waits until `file` contains `needle`; returns how long it took.
fn wait_for_text(file: &Path, needle: &str, deadline: Instant) -> Result<(), String> {
    loop {
        let text = fs::read(file).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(needle) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{needle:?} not in {}", file.display()));
        }
        sleep(Duration::from_millis(100));
    }
}

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn record(&mut self, name: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(detail) => {
                self.passed += 1;
                println!("ok   {name}: {detail}");
                true
            }
            Err(detail) => {
                self.failed += 1;
                println!("FAIL {name}: {detail}");
                false
            }
        }
    }
}

struct CheckOptions {
    socket: PathBuf,
    serial: PathBuf,
    release: String,
    timeout: Duration,
}

fn check(options: &CheckOptions) -> ExitCode {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let step = |seconds| (Instant::now() + Duration::from_secs(seconds)).min(deadline);
    let mut tally = Tally {
        passed: 0,
        failed: 0,
    };
    let finish = |tally: &Tally| {
        println!("{} passed, {} failed", tally.passed, tally.failed);
        if tally.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };

    let link = Link::connect(&options.socket, deadline);
    let connected = link
        .as_ref()
        .map(|_| "connected".to_string())
        .map_err(Clone::clone);
    let Ok(mut link) = link else {
        tally.record("connect", connected);
        return finish(&tally);
    };
    tally.record("connect", connected);

    let hello = link.hello(deadline).and_then(|(version, release)| {
        let seconds = started.elapsed().as_secs_f64();
        if version != VERSION {
            Err(format!("version {version}, expected {VERSION}"))
        } else if release != options.release {
            Err(format!(
                "release {release:?}, expected {:?}",
                options.release
            ))
        } else {
            Ok(format!(
                "version {version} release {release} after {seconds:.1} s"
            ))
        }
    });
    if !tally.record("hello", hello) {
        return finish(&tally);
    }

    let ready = format!("kasane-agent: ready release={}", options.release);
    tally.record(
        "ready line",
        wait_for_text(&options.serial, &ready, step(10))
            .map(|()| format!("{ready:?} on the console")),
    );

    let nonce = nonce();
    let ping = link.request(Message::Ping { nonce }).and_then(|id| {
        let sent = Instant::now();
        match link.reply_to(id, step(20))? {
            Received::Pong { nonce: echoed } if echoed == nonce => Ok(format!(
                "nonce {nonce:#x} echoed in {} ms",
                sent.elapsed().as_millis()
            )),
            other => Err(format!("expected Pong {nonce:#x}, got {other:?}")),
        }
    });
    tally.record("ping", ping);

    let uname =
        link.request(Message::UnameRequest)
            .and_then(|id| match link.reply_to(id, step(20))? {
                Received::Uname { release, machine }
                    if release == options.release && machine == "x86_64" =>
                {
                    Ok(format!("release {release} machine {machine}"))
                }
                other => Err(format!(
                    "expected {} x86_64, got {other:?}",
                    options.release
                )),
            });
    tally.record("uname", uname);

    let heartbeat = (|| {
        let mut previous_uptime = 0;
        for sequence in 1..=3u64 {
            let id = link.request(Message::Heartbeat { sequence })?;
            match link.reply_to(id, step(20))? {
                Received::HeartbeatAck {
                    sequence: echoed,
                    uptime_milliseconds,
                } if echoed == sequence && uptime_milliseconds >= previous_uptime => {
                    previous_uptime = uptime_milliseconds;
                }
                other => return Err(format!("heartbeat {sequence}: got {other:?}")),
            }
        }
        Ok(format!("3 acknowledged, guest uptime {previous_uptime} ms"))
    })();
    tally.record("heartbeat", heartbeat);

    // A restarted peer must be able to greet the agent again. The agent may
    // not see a quick close-and-reopen (the port's "host connected" flag
    // flips twice before it looks), so the new peer asks with a Hello of
    // its own rather than waiting for an announcement.
    drop(link);
    let reconnect = Link::connect(&options.socket, step(20)).and_then(|mut again| {
        again.request(Message::Hello {
            protocol_version: VERSION,
            kernel_release: "kasane-bridge-client",
        })?;
        let (_, release) = again.hello(step(20))?;
        let id = again.request(Message::Ping { nonce: 2 })?;
        match again.reply_to(id, step(20))? {
            Received::Pong { nonce: 2 } => Ok((again, release)),
            other => Err(format!("no Pong on the new connection: {other:?}")),
        }
    });
    let mut link = match reconnect {
        Ok((again, release)) => {
            tally.record(
                "reconnect",
                Ok(format!("new Hello (release {release}), then Pong")),
            );
            again
        }
        Err(error) => {
            tally.record("reconnect", Err(error));
            return finish(&tally);
        }
    };

    let garbage = (|| {
        let mut damaged = raw_frame(MessageType::Ping.as_byte(), 900, &nonce.to_le_bytes());
        let last = damaged.len() - 1;
        damaged[last] ^= 0xFF;
        let mut bytes = b"garbage\x00\xff".to_vec();
        bytes.extend(damaged);
        link.send_raw(&bytes)?;
        match link.reply_to(900, step(20))? {
            Received::Error {
                code: ErrorCode::BadFrame,
                ..
            } => {}
            other => {
                return Err(format!(
                    "expected a BadFrame Error for request 900, got {other:?}"
                ))
            }
        }
        // The agent must still answer once the damage has passed.
        let id = link.request(Message::Ping { nonce: 1 })?;
        match link.reply_to(id, step(20))? {
            Received::Pong { nonce: 1 } => {
                Ok("Error(BadFrame) for a damaged frame, then Pong".to_string())
            }
            other => Err(format!("no Pong after the damaged frame: {other:?}")),
        }
    })();
    tally.record("bad frame", garbage);

    let unknown = (|| {
        link.send_raw(&raw_frame(0x55, 901, b""))?;
        match link.reply_to(901, step(20))? {
            Received::Error {
                code: ErrorCode::UnknownMessageType,
                detail,
            } => Ok(format!("Error(UnknownMessageType) {detail:?}")),
            other => Err(format!("expected UnknownMessageType, got {other:?}")),
        }
    })();
    tally.record("unknown type", unknown);

    let crash =
        link.request(Message::CrashRequest)
            .and_then(|id| match link.reply_to(id, step(20))? {
                Received::CrashAccepted => Ok("CrashAccepted".to_string()),
                other => Err(format!("expected CrashAccepted, got {other:?}")),
            });
    tally.record("crash accepted", crash);

    let panic_line = "Kernel panic - not syncing: sysrq triggered crash";
    tally.record(
        "kernel panic",
        wait_for_text(&options.serial, panic_line, step(60))
            .map(|()| format!("{panic_line:?} on the console")),
    );
    println!("elapsed {:.1} s", started.elapsed().as_secs_f64());
    finish(&tally)
}

fn one_shot(socket: &Path, command: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut link = Link::connect(socket, deadline)?;
    let (version, release) = link.hello(deadline)?;
    let message = match command {
        "hello" => return Ok(format!("hello version={version} release={release}")),
        "ping" => Message::Ping { nonce: nonce() },
        "uname" => Message::UnameRequest,
        "heartbeat" => Message::Heartbeat { sequence: 1 },
        "crash" => Message::CrashRequest,
        other => return Err(format!("unknown command {other}")),
    };
    let id = link.request(message)?;
    Ok(format!("{:?}", link.reply_to(id, deadline)?))
}

const USAGE: &str = "usage: kasane-bridge-client SOCKET hello|ping|uname|heartbeat|crash\n       \
     kasane-bridge-client check --socket SOCKET --serial FILE --release RELEASE [--timeout SECONDS]";

fn parse_check(arguments: &[String]) -> Result<CheckOptions, String> {
    let mut socket = None;
    let mut serial = None;
    let mut release = None;
    let mut timeout = Duration::from_secs(170);
    let mut rest = arguments.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--serial" => serial = Some(PathBuf::from(value)),
            "--release" => release = Some(value.clone()),
            "--timeout" => {
                let seconds: u64 = value.parse().map_err(|_| format!("bad timeout {value}"))?;
                timeout = Duration::from_secs(seconds);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(CheckOptions {
        socket: socket.ok_or("--socket is required")?,
        serial: serial.ok_or("--serial is required")?,
        release: release.ok_or("--release is required")?,
        timeout,
    })
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.first().map(String::as_str) {
        Some("check") => match parse_check(&arguments[1..]) {
            Ok(options) => check(&options),
            Err(message) => {
                eprintln!("kasane-bridge-client: {message}\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some(socket) if arguments.len() == 2 => match one_shot(Path::new(socket), &arguments[1]) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("kasane-bridge-client: {message}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
