//! The Linux link's session with the bridge agent, over any [`Port`].
//!
//! The scenario of the Linux link test (docs/linux-cell.md), run by core
//! over its user-space driver: wait for the agent's announcement, say
//! Hello, time Pings, ask Uname, ask the agent to crash the kernel, see
//! the link's generation change when hvm restarts the Linux cell, and do
//! it again with the new agent (without the crash). A tick line every
//! [`TICK_PERIOD`] cycles shows that cell 0 runs on all the while, and a
//! heartbeat goes to the agent on every tick (its answers are the Linux
//! cell's sign of life for hvm's watchdog).
//!
//! Everything the agent sends is decoded by `bridge-protocol` and checked
//! against the phase and the request id awaited; anything else is
//! ignored (or printed, for an agent's error).
#![forbid(unsafe_code)]

use bridge_protocol::{Decoder, Frame, Message};

/// Cycles between tick lines (2.5 s at the 200 MHz hvm reports).
pub const TICK_PERIOD: u64 = 500_000_000;
/// Cycles the whole session may take before it gives up.
pub const SESSION_LIMIT: u64 = 400_000_000_000;
/// Pings timed for the round-trip figure.
pub const PINGS: usize = 8;

/// What the session needs of the link and the machine.
pub trait Port {
    /// Sends bytes on the link.
    fn send(&mut self, bytes: &[u8]) -> Result<(), &'static str>;
    /// Bytes received, if any, into `out`; never blocks.
    fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str>;
    /// The link's generation (hvm's `LinkStatus`); `None` if unknown.
    fn generation(&mut self) -> Option<u64>;
    /// The time-stamp counter.
    fn now(&mut self) -> u64;
    /// Waits a little, or until the link has news (its interrupt).
    fn wait(&mut self);
    /// Prints one line.
    fn log(&mut self, line: core::fmt::Arguments<'_>);
}

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the agent's Hello (the first boot or a restart).
    WaitAgent,
    /// Our Hello request is out.
    WaitHello,
    /// Pinging.
    Ping,
    WaitUname,
    WaitCrash,
    Done,
}

/// What a frame from the agent was, with what the session keeps of it.
enum Answer {
    Hello([u8; 64], usize),
    Pong,
    Uname([u8; 64], usize, [u8; 16], usize),
    CrashAccepted,
    Other,
}

fn copy<const N: usize>(text: &str) -> ([u8; N], usize) {
    let mut out = [0u8; N];
    let n = text.len().min(N);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    (out, n)
}

fn text(bytes: &[u8], length: usize) -> &str {
    core::str::from_utf8(&bytes[..length]).unwrap_or("?")
}

/// The session's state.
struct Session {
    decoder: Decoder,
    phase: Phase,
    round: u32,
    next_id: u32,
    awaited: u32,
    generation: u64,
    started: u64,
    agent_wait_start: u64,
    ping_sent: u64,
    pings: [u64; PINGS],
    ping_count: usize,
    nonce: u64,
    ticks: u64,
}

/// Runs the session to its end; `Err` says why it failed.
pub fn run<P: Port>(port: &mut P) -> Result<(), &'static str> {
    let started = port.now();
    let mut session = Session {
        decoder: Decoder::new(),
        phase: Phase::WaitAgent,
        round: 1,
        next_id: 1,
        awaited: 0,
        generation: 0,
        started,
        agent_wait_start: started,
        ping_sent: 0,
        pings: [0; PINGS],
        ping_count: 0,
        nonce: 0x4B41_5341_4E45_0000,
        ticks: 0,
    };
    let mut next_tick = started + TICK_PERIOD;
    let mut input = [0u8; 512];
    while session.phase != Phase::Done {
        let now = port.now();
        if now.wrapping_sub(started) > SESSION_LIMIT {
            return Err("the agent did not answer in time");
        }
        if now >= next_tick {
            session.ticks += 1;
            port.log(format_args!("core: tick {}", session.ticks));
            next_tick = now + TICK_PERIOD;
            if session.phase != Phase::WaitAgent {
                let id = session.fresh_id();
                let sequence = session.ticks;
                send(port, id, Message::Heartbeat { sequence })?;
            }
        }
        if let Some(generation) = port.generation() {
            if generation != session.generation {
                if session.generation != 0 {
                    port.log(format_args!(
                        "core: linux-link: link reset by hvm (generation {generation}): the Linux cell was restarted"
                    ));
                    session.decoder = Decoder::new();
                    session.agent_wait_start = now;
                    session.phase = Phase::WaitAgent;
                }
                session.generation = generation;
            }
        }
        let n = port.receive(&mut input)?;
        if n > 0 {
            session.input(port, &input[..n])?;
            continue;
        }
        port.wait();
    }
    Ok(())
}

/// After the link was reset under the session's feet (the hostile test):
/// a fresh Hello and a Ping must be answered.
pub fn ping_again<P: Port>(port: &mut P) -> Result<(), &'static str> {
    let mut decoder = Decoder::new();
    send(
        port,
        0x7000,
        Message::Hello {
            protocol_version: bridge_protocol::VERSION,
            kernel_release: "kasane-cell0",
        },
    )?;
    send(port, 0x7001, Message::Ping { nonce: 0x600D })?;
    let deadline = port.now() + 40_000_000_000;
    let mut input = [0u8; 512];
    while port.now() < deadline {
        let n = port.receive(&mut input)?;
        let mut rest = &input[..n];
        // Until `None`: frames may wait in the decoder after the input
        // is used up.
        loop {
            let (taken, event) = decoder.feed(rest);
            rest = &rest[taken..];
            match event {
                Some(Ok(frame)) if frame.request_id == 0x7001 => {
                    if let Message::Pong { nonce: 0x600D } = frame.message {
                        return Ok(());
                    }
                }
                None => break,
                _ => {}
            }
        }
        if n == 0 {
            port.wait();
        }
    }
    Err("no pong after the hostile test")
}

fn send<P: Port>(port: &mut P, request_id: u32, message: Message<'_>) -> Result<(), &'static str> {
    let frame = Frame {
        request_id,
        message,
    };
    let (buffer, length) = frame.to_buffer().map_err(|_| "cannot encode a frame")?;
    port.send(&buffer[..length])
}

impl Session {
    fn fresh_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn input<P: Port>(&mut self, port: &mut P, mut bytes: &[u8]) -> Result<(), &'static str> {
        loop {
            let (taken, event) = self.decoder.feed(bytes);
            bytes = &bytes[taken..];
            let frame = match event {
                None => return Ok(()),
                Some(Err(error)) => {
                    port.log(format_args!("core: linux-link: bad input: {error:?}"));
                    continue;
                }
                Some(Ok(frame)) => frame,
            };
            let id = frame.request_id;
            let answer = match frame.message {
                Message::Hello { kernel_release, .. } => {
                    let (r, n) = copy(kernel_release);
                    Answer::Hello(r, n)
                }
                Message::Pong { nonce } if nonce == self.nonce => Answer::Pong,
                Message::UnameReply { release, machine } => {
                    let (r, rn) = copy(release);
                    let (m, mn) = copy(machine);
                    Answer::Uname(r, rn, m, mn)
                }
                Message::CrashAccepted => Answer::CrashAccepted,
                Message::Error { code, detail } => {
                    port.log(format_args!(
                        "core: linux-link: agent error {code:?}: {detail}"
                    ));
                    Answer::Other
                }
                _ => Answer::Other,
            };
            self.answer(port, id, answer)?;
        }
    }

    fn answer<P: Port>(
        &mut self,
        port: &mut P,
        id: u32,
        answer: Answer,
    ) -> Result<(), &'static str> {
        match (answer, self.phase) {
            (Answer::Hello(release, length), _) if id == 0 => {
                // The agent's announcement: it (re)opened its port.
                let now = port.now();
                port.log(format_args!(
                    "core: linux-link: agent hello (announcement) release={}",
                    text(&release, length)
                ));
                if self.phase == Phase::WaitAgent {
                    if self.round == 1 {
                        let cycles = now.wrapping_sub(self.started);
                        port.log(format_args!(
                            "bench linux_boot_to_agent_cycles {cycles} cycles"
                        ));
                    } else {
                        let cycles = now.wrapping_sub(self.agent_wait_start);
                        port.log(format_args!(
                            "bench linux_restart_to_agent_cycles {cycles} cycles"
                        ));
                    }
                }
                // Every (re)connect starts with our own Hello request.
                self.awaited = self.fresh_id();
                let hello = Message::Hello {
                    protocol_version: bridge_protocol::VERSION,
                    kernel_release: "kasane-cell0",
                };
                send(port, self.awaited, hello)?;
                self.phase = Phase::WaitHello;
            }
            (Answer::Hello(release, length), Phase::WaitHello) if id == self.awaited => {
                port.log(format_args!(
                    "core: linux-link: hello reply from the agent release={}",
                    text(&release, length)
                ));
                self.ping_count = 0;
                self.send_ping(port)?;
                self.phase = Phase::Ping;
            }
            (Answer::Pong, Phase::Ping) if id == self.awaited => {
                let rtt = port.now().wrapping_sub(self.ping_sent);
                if self.ping_count < PINGS {
                    self.pings[self.ping_count] = rtt;
                }
                self.ping_count += 1;
                if self.ping_count == 1 {
                    port.log(format_args!(
                        "core: linux-link: pong nonce={:#x} after {rtt} cycles",
                        self.nonce
                    ));
                }
                if self.ping_count < PINGS {
                    self.send_ping(port)?;
                } else {
                    if self.round == 1 {
                        let mut sorted = self.pings;
                        sorted.sort_unstable();
                        port.log(format_args!(
                            "bench link_roundtrip_cycles {} cycles",
                            sorted[PINGS / 2]
                        ));
                    }
                    self.awaited = self.fresh_id();
                    send(port, self.awaited, Message::UnameRequest)?;
                    self.phase = Phase::WaitUname;
                }
            }
            (Answer::Uname(release, rn, machine, mn), Phase::WaitUname) if id == self.awaited => {
                port.log(format_args!(
                    "core: linux-link: uname release={} machine={}",
                    text(&release, rn),
                    text(&machine, mn)
                ));
                if self.round == 1 {
                    self.awaited = self.fresh_id();
                    port.log(format_args!(
                        "core: linux-link: asking the agent to crash the kernel"
                    ));
                    send(port, self.awaited, Message::CrashRequest)?;
                    self.phase = Phase::WaitCrash;
                } else {
                    self.phase = Phase::Done;
                }
            }
            (Answer::CrashAccepted, Phase::WaitCrash) if id == self.awaited => {
                port.log(format_args!(
                    "core: linux-link: crash accepted; waiting for hvm to restart the Linux cell"
                ));
                self.round = 2;
                self.phase = Phase::WaitAgent;
            }
            _ => {}
        }
        Ok(())
    }

    fn send_ping<P: Port>(&mut self, port: &mut P) -> Result<(), &'static str> {
        self.nonce = self.nonce.wrapping_add(1);
        self.awaited = self.fresh_id();
        self.ping_sent = port.now();
        send(port, self.awaited, Message::Ping { nonce: self.nonce })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    /// A fake agent behind the link: it answers as the real one does,
    /// crashes when asked (the link's generation goes up and a new agent
    /// announces itself), and a clock that moves 50 000 000 cycles a call.
    struct FakeAgent {
        clock: u64,
        generation: u64,
        to_core: Vec<u8>,
        decoder: Decoder,
        lines: Vec<String>,
        crash_pending: bool,
    }

    impl FakeAgent {
        fn new() -> FakeAgent {
            let mut agent = FakeAgent {
                clock: 0,
                generation: 1,
                to_core: Vec::new(),
                decoder: Decoder::new(),
                lines: Vec::new(),
                crash_pending: false,
            };
            agent.announce();
            agent
        }

        fn reply(&mut self, request_id: u32, message: Message<'_>) {
            let (buffer, length) = Frame {
                request_id,
                message,
            }
            .to_buffer()
            .unwrap();
            self.to_core.extend_from_slice(&buffer[..length]);
        }

        fn announce(&mut self) {
            let hello = Message::Hello {
                protocol_version: bridge_protocol::VERSION,
                kernel_release: "6.1.0-fake",
            };
            self.reply(0, hello);
        }
    }

    impl Port for FakeAgent {
        fn send(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
            loop {
                let (taken, event) = self.decoder.feed(bytes);
                bytes = &bytes[taken..];
                let frame = match event {
                    None => return Ok(()),
                    Some(Err(_)) => continue,
                    Some(Ok(frame)) => frame,
                };
                let id = frame.request_id;
                match frame.message {
                    Message::Hello { .. } => self.reply(
                        id,
                        Message::Hello {
                            protocol_version: bridge_protocol::VERSION,
                            kernel_release: "6.1.0-fake",
                        },
                    ),
                    Message::Ping { nonce } => self.reply(id, Message::Pong { nonce }),
                    Message::UnameRequest => self.reply(
                        id,
                        Message::UnameReply {
                            release: "6.1.0-fake",
                            machine: "x86_64",
                        },
                    ),
                    Message::CrashRequest => {
                        self.reply(id, Message::CrashAccepted);
                        self.crash_pending = true;
                    }
                    _ => {}
                }
            }
        }

        fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str> {
            let n = self.to_core.len().min(out.len()).min(7);
            out[..n].copy_from_slice(&self.to_core[..n]);
            self.to_core.drain(..n);
            Ok(n)
        }

        fn generation(&mut self) -> Option<u64> {
            Some(self.generation)
        }

        fn now(&mut self) -> u64 {
            self.clock += 50_000_000;
            self.clock
        }

        fn wait(&mut self) {
            self.clock += 100_000_000;
            if self.crash_pending && self.to_core.is_empty() {
                // The kernel crashed; hvm restarts the cell; the new agent
                // announces itself.
                self.crash_pending = false;
                self.generation += 1;
                self.decoder = Decoder::new();
                self.announce();
            }
        }

        fn log(&mut self, line: core::fmt::Arguments<'_>) {
            self.lines.push(std::format!("{line}"));
        }
    }

    #[test]
    fn the_session_crashes_the_agent_and_talks_to_the_new_one() {
        let mut agent = FakeAgent::new();
        assert_eq!(run(&mut agent), Ok(()));
        let lines = &agent.lines;
        let expect = [
            "core: linux-link: agent hello (announcement) release=6.1.0-fake",
            "core: linux-link: hello reply from the agent release=6.1.0-fake",
            "core: linux-link: uname release=6.1.0-fake machine=x86_64",
            "core: linux-link: asking the agent to crash the kernel",
            "core: linux-link: crash accepted; waiting for hvm to restart the Linux cell",
            "core: linux-link: link reset by hvm (generation 2): the Linux cell was restarted",
            "core: linux-link: agent hello (announcement) release=6.1.0-fake",
            "core: linux-link: uname release=6.1.0-fake machine=x86_64",
        ];
        let mut at = 0;
        for line in expect {
            at += lines[at..]
                .iter()
                .position(|l| l == line)
                .unwrap_or_else(|| panic!("no `{line}` after line {at}: {lines:#?}"));
        }
        for bench in [
            "linux_boot_to_agent_cycles",
            "link_roundtrip_cycles",
            "linux_restart_to_agent_cycles",
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&std::format!("bench {bench} "))),
                "{bench}: {lines:#?}"
            );
        }
        assert!(
            lines.iter().any(|l| l.starts_with("core: tick ")),
            "{lines:#?}"
        );
        assert_eq!(ping_again(&mut agent), Ok(()));
    }

    #[test]
    fn a_silent_agent_ends_the_session_with_an_error() {
        struct Silent(u64);
        impl Port for Silent {
            fn send(&mut self, _: &[u8]) -> Result<(), &'static str> {
                Ok(())
            }
            fn receive(&mut self, _: &mut [u8]) -> Result<usize, &'static str> {
                Ok(0)
            }
            fn generation(&mut self) -> Option<u64> {
                None
            }
            fn now(&mut self) -> u64 {
                self.0 += 10_000_000_000;
                self.0
            }
            fn wait(&mut self) {}
            fn log(&mut self, _: core::fmt::Arguments<'_>) {}
        }
        assert_eq!(run(&mut Silent(0)), Err("the agent did not answer in time"));
        assert_eq!(
            ping_again(&mut Silent(0)),
            Err("no pong after the hostile test")
        );
    }
}
