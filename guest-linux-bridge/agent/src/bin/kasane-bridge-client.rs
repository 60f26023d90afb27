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
//! `N passed, N failed`, and exits non-zero if any check failed. Besides
//! the link's own messages it checks a delegated call sequence, a 9P read
//! of /proc/version, a program run, and the guest's FUSE mount of the
//! peer (`/kasane`, served here in exportfs's place), in the real guest.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_agent::syscall::{join_buffers, split_buffers, AT_FDCWD};
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
    Done,
    Ninep(Vec<u8>),
    SyscallResult {
        result: i64,
        output: Vec<u8>,
    },
    ExecStarted,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exited {
        code: i32,
        signal: u8,
    },
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
            Message::Done => Received::Done,
            Message::Ninep { data } => Received::Ninep(data.to_vec()),
            Message::SyscallResult { result, output } => Received::SyscallResult {
                result,
                output: output.to_vec(),
            },
            Message::ExecStarted { .. } => Received::ExecStarted,
            Message::Stdout { data } => Received::Stdout(data.to_vec()),
            Message::Stderr { data } => Received::Stderr(data.to_vec()),
            Message::Exited { code, signal } => Received::Exited { code, signal },
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

/// One delegated call for process 1: the result and the output buffers.
fn call(
    link: &mut Link,
    number: u32,
    arguments: [u64; 6],
    inputs: &[&[u8]],
    deadline: Instant,
) -> Result<(i64, Vec<Vec<u8>>), String> {
    let input = join_buffers(inputs);
    let id = link.request(Message::Syscall {
        process: 1,
        number,
        arguments,
        input: &input,
    })?;
    match link.reply_to(id, deadline)? {
        Received::SyscallResult { result, output } => {
            let buffers = split_buffers(&output).ok_or("bad output buffers")?;
            Ok((result, buffers.into_iter().map(<[u8]>::to_vec).collect()))
        }
        other => Err(format!("call {number}: {other:?}")),
    }
}

/// getpid, openat, read and close of /proc/version in a proxy, then a
/// refused call and the proxy's end.
fn delegated_calls(link: &mut Link, deadline: Instant) -> Result<String, String> {
    let (pid, _) = call(link, 39, [0; 6], &[], deadline)?;
    let at_fdcwd = AT_FDCWD as u64;
    let (fd, _) = call(
        link,
        257,
        [at_fdcwd, 0, 0, 0, 0, 0],
        &[b"/proc/version"],
        deadline,
    )?;
    if fd < 3 {
        return Err(format!("openat /proc/version gave {fd}"));
    }
    let (count, output) = call(link, 0, [fd as u64, 0, 200, 0, 0, 0], &[], deadline)?;
    let text = output.first().cloned().unwrap_or_default();
    if count <= 0 || !text.starts_with(b"Linux version") {
        return Err(format!(
            "read gave {count}: {:?}",
            String::from_utf8_lossy(&text)
        ));
    }
    call(link, 3, [fd as u64, 0, 0, 0, 0, 0], &[], deadline)?;
    let id = link.request(Message::Syscall {
        process: 1,
        number: 57,
        arguments: [0; 6],
        input: &[],
    })?;
    match link.reply_to(id, deadline)? {
        Received::Error {
            code: ErrorCode::Unsupported,
            ..
        } => {}
        other => return Err(format!("fork was not refused: {other:?}")),
    }
    let id = link.request(Message::ProcessExited { process: 1 })?;
    match link.reply_to(id, deadline)? {
        Received::Done => Ok(format!(
            "proxy pid {pid} read {count} bytes of /proc/version; fork refused"
        )),
        other => Err(format!("ProcessExited: {other:?}")),
    }
}

/// One 9P message on channel `channel`, and its reply.
fn ninep_rpc(
    link: &mut Link,
    channel: u32,
    message: ninep::Message,
    deadline: Instant,
) -> Result<ninep::Message, String> {
    let bytes = ninep::Frame::new(1, message)
        .to_bytes()
        .map_err(|error| error.to_string())?;
    for piece in bytes.chunks(4000) {
        link.send_raw(&{
            let (buffer, length) = Frame {
                request_id: channel,
                message: Message::Ninep { data: piece },
            }
            .to_buffer()
            .map_err(|error| format!("{error:?}"))?;
            buffer[..length].to_vec()
        })?;
    }
    let mut stream = Vec::new();
    loop {
        match link.reply_to(channel, deadline)? {
            Received::Ninep(data) => stream.extend(data),
            other => return Err(format!("9P channel: {other:?}")),
        }
        if let Ok(Some(size)) = ninep::frame_length(&stream, 1 << 20) {
            if stream.len() >= size {
                let frame = ninep::Frame::decode(&stream[..size], 1 << 20)
                    .map_err(|error| error.to_string())?;
                return Ok(frame.message);
            }
        }
    }
}

/// Attach, walk to /proc/version, open and read it over a 9P channel.
fn ninep_read(link: &mut Link, deadline: Instant) -> Result<String, String> {
    use ninep::Message as M;
    let channel = 950;
    let replies = [
        ninep_rpc(
            link,
            channel,
            M::Tversion {
                msize: 8216,
                version: "9P2000".into(),
            },
            deadline,
        )?,
        ninep_rpc(
            link,
            channel,
            M::Tattach {
                fid: 0,
                afid: ninep::NOFID,
                uname: "0".into(),
                aname: String::new(),
            },
            deadline,
        )?,
        ninep_rpc(
            link,
            channel,
            M::Twalk {
                fid: 0,
                newfid: 1,
                wnames: vec!["proc".into(), "version".into()],
            },
            deadline,
        )?,
        ninep_rpc(
            link,
            channel,
            M::Topen {
                fid: 1,
                mode: ninep::OpenMode::OREAD,
            },
            deadline,
        )?,
        ninep_rpc(
            link,
            channel,
            M::Tread {
                fid: 1,
                offset: 0,
                count: 4096,
            },
            deadline,
        )?,
    ];
    let M::Rread { data } = &replies[4] else {
        return Err(format!("9P replies: {replies:?}"));
    };
    if !data.starts_with(b"Linux version") {
        return Err(format!("read {:?}", String::from_utf8_lossy(data)));
    }
    // The hang-up travels on the channel's id, not a fresh request id.
    link.send_raw(&{
        let (buffer, length) = Frame {
            request_id: channel,
            message: Message::NinepHangup,
        }
        .to_buffer()
        .map_err(|error| format!("{error:?}"))?;
        buffer[..length].to_vec()
    })?;
    match link.reply_to(channel, deadline)? {
        Received::Done => Ok(format!("/proc/version: {} bytes over 9P", data.len())),
        other => Err(format!("hang-up: {other:?}")),
    }
}

/// Runs the agent itself as a proxy with its input closed: it must start,
/// end both streams and exit 0.
fn program_run(link: &mut Link, deadline: Instant) -> Result<String, String> {
    let run = 960;
    let frame = |message| {
        Frame {
            request_id: run,
            message,
        }
        .to_buffer()
        .map(|(buffer, length)| buffer[..length].to_vec())
        .map_err(|error| format!("{error:?}"))
    };
    link.send_raw(&frame(Message::Exec {
        path: "/init",
        arguments: b"init\0--syscall-proxy\0",
        environment: b"",
        directory: "/",
    })?)?;
    match link.reply_to(run, deadline)? {
        Received::ExecStarted => {}
        other => return Err(format!("Exec: {other:?}")),
    }
    link.send_raw(&frame(Message::Stdin { data: b"" })?)?;
    loop {
        match link.reply_to(run, deadline)? {
            Received::Stdout(_) | Received::Stderr(_) => {}
            Received::Exited { code: 0, signal: 0 } => {
                return Ok("/init --syscall-proxy started, stdin closed, exit 0".into())
            }
            other => return Err(format!("run: {other:?}")),
        }
    }
}

/// Linux mounts the peer: this client serves a temporary directory over
/// 9P on the export channel (as Kasane's exportfs would) while a shell in
/// the guest lists and reads `/kasane` and writes a file there.
fn export_mount(link: &mut Link, deadline: Instant) -> Result<String, String> {
    use bridge_agent::channels::{Channels, PIECE};
    use bridge_agent::linuxfs::Names;
    use bridge_protocol::EXPORT_CHANNEL;
    let top = std::env::temp_dir().join(format!("kasane-export-{}", std::process::id()));
    let _ = fs::remove_dir_all(&top);
    fs::create_dir_all(&top).map_err(|e| e.to_string())?;
    fs::write(top.join("hello"), b"hello from the peer\n").map_err(|e| e.to_string())?;
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let names = Names::parse(
        &format!("eve:x:{uid}:{gid}::/:/bin/sh\n"),
        &format!("eve:x:{gid}:\n"),
    );
    let mut server = Channels::new(&top, names).map_err(|e| e.to_string())?;
    let run = 970;
    let script = "ls /kasane; cat /kasane/hello; echo from linux > /kasane/x";
    let arguments = format!("sh\0-c\0{script}\0");
    let exec = Frame {
        request_id: run,
        message: Message::Exec {
            path: "/bin/sh",
            arguments: arguments.as_bytes(),
            environment: b"",
            directory: "/",
        },
    };
    let (buffer, length) = exec.to_buffer().map_err(|e| format!("{e:?}"))?;
    link.send_raw(&buffer[..length])?;
    let mut stdout = Vec::new();
    let mut requests = 0;
    let result = loop {
        let (id, received) = link.receive(deadline)?;
        match (id, received) {
            (EXPORT_CHANNEL, Received::Ninep(data)) => {
                requests += 1;
                let replies = server.feed(1, &data)?;
                for piece in replies.chunks(PIECE) {
                    let (buffer, length) = Frame {
                        request_id: EXPORT_CHANNEL,
                        message: Message::Ninep { data: piece },
                    }
                    .to_buffer()
                    .map_err(|e| format!("{e:?}"))?;
                    link.send_raw(&buffer[..length])?;
                }
            }
            (id, Received::Stdout(data)) if id == run => stdout.extend(data),
            (id, Received::Exited { code, signal }) if id == run => break (code, signal),
            (id, Received::Error { detail, .. }) if id == run => {
                return Err(format!("Exec: {detail}"))
            }
            _ => {}
        }
    };
    let written = fs::read(top.join("x")).unwrap_or_default();
    let _ = fs::remove_dir_all(&top);
    let stdout = String::from_utf8_lossy(&stdout);
    if result != (0, 0) || stdout != "hello\nhello from the peer\n" || written != b"from linux\n" {
        return Err(format!(
            "exit {result:?}, output {stdout:?}, x holds {:?}",
            String::from_utf8_lossy(&written)
        ));
    }
    Ok(format!(
        "ls and cat of /kasane and a write to it, {requests} 9P messages served"
    ))
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

    tally.record("delegated calls", delegated_calls(&mut link, step(30)));
    tally.record("9P read", ninep_read(&mut link, step(30)));
    tally.record("program run", program_run(&mut link, step(30)));
    tally.record("export mount", export_mount(&mut link, step(60)));

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
