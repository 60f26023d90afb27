//! 9P to the Linux agent: one 9P channel carried in bridge `Ninep` frames.
//!
//! The Linux link carries bridge frames (docs/linux-bridge.md), not a bare
//! 9P stream as a server VM's link does. [`BridgedExchanger`] offers the
//! same calls as [`Exchanger`](crate::stream::Exchanger) (send, poll,
//! await an answer) over a [`StreamLink`]: each T-message goes out in
//! `Ninep` frames with the channel's id as request id, at most
//! [`NINEP_PIECE`] bytes each; the agent's `Ninep` frames of that channel
//! are joined and cut into R-messages by their size[4]
//! ([`MessageStream`]). Every other frame is hostile input checked by the
//! decoder and then ignored.
//!
//! The agent is not there at once: a Linux cell boots for tens of seconds
//! (longer under Bochs), and again after each restart. So the exchanger
//! first waits for the agent's `Hello` (its announcement, or the answer to
//! the `Hello` request it sends) before the first 9P byte of a new link
//! generation goes out; until then nothing of the 9P stream is sent. A
//! synchronous [`send`](BridgedExchanger::send) waits for it; a
//! [`post`](BridgedExchanger::post) never does: what is posted before the
//! `Hello` is kept, in order, and goes out from the
//! [`poll`](BridgedExchanger::poll) that sees the `Hello` arrive, so core
//! goes on serving others while the agent boots.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use bridge_protocol::{Decoder, ErrorCode, Frame, Message};

use crate::stream::{ExchangeError, MessageStream, StreamLink};

/// Most 9P bytes in one `Ninep` frame: the payload (4096) less the
/// bytes' `u16` count.
pub const NINEP_PIECE: usize = 4094;

/// The request id of core's `Hello` request (any id the channels do not
/// use).
pub const HELLO_ID: u32 = 0x4B43_0001;

/// The release field core names itself with in its `Hello`.
pub const CORE_NAME: &str = "kasane-core";

/// 9P over the Linux link's bridge frames, on one channel.
pub struct BridgedExchanger {
    decoder: Decoder,
    stream: MessageStream,
    channel: u32,
    generation: Option<u64>,
    /// The agent of this generation said Hello.
    ready: bool,
    /// Core's Hello request went out in this generation.
    asked: bool,
    /// The agent closed the channel (an `Error` with its id).
    closed: bool,
    input: Vec<u8>,
    /// Frames of other ids (program runs), re-encoded, for the caller.
    others: Vec<Vec<u8>>,
    /// Encoded frames posted before the agent said Hello, oldest first.
    queued: Vec<Vec<u8>>,
    /// When the first of them was posted (the link's clock, µs).
    queued_since: Option<u64>,
}

/// Most frames of other ids kept for the caller; later ones are dropped
/// (a caller that never takes them cannot fill the heap).
pub const OTHERS_LIMIT: usize = 1024;

impl core::fmt::Debug for BridgedExchanger {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BridgedExchanger")
            .field("channel", &self.channel)
            .field("generation", &self.generation)
            .field("ready", &self.ready)
            .finish()
    }
}

impl BridgedExchanger {
    /// 9P channel `channel` (not 0, not [`HELLO_ID`]) with messages of at
    /// most `msize` bytes, on a link whose generation is now `generation`.
    pub fn new(msize: u32, generation: Option<u64>, channel: u32) -> BridgedExchanger {
        BridgedExchanger {
            decoder: Decoder::new(),
            stream: MessageStream::new(msize),
            channel,
            generation,
            ready: false,
            asked: false,
            closed: false,
            input: alloc::vec![0; 4096],
            others: Vec::new(),
            queued: Vec::new(),
            queued_since: None,
        }
    }

    /// The link generation the channel belongs to (its agent's).
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Whether the agent of this generation has said Hello.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// A new peer: nothing of the old one counts.
    fn forget_peer(&mut self, generation: Option<u64>) {
        self.generation = generation;
        self.decoder = Decoder::new();
        self.stream.reset();
        self.ready = false;
        self.asked = false;
        self.closed = false;
        // Posted for the old agent: a new one knows nothing of them (the
        // caller sees the restart from `poll`).
        self.queued.clear();
        self.queued_since = None;
    }

    /// Encodes and sends one frame.
    fn send_frame<L: StreamLink>(
        link: &mut L,
        request_id: u32,
        message: Message<'_>,
    ) -> Result<(), ExchangeError> {
        let bytes = Self::encode(request_id, message)?;
        link.send(&bytes).map_err(ExchangeError::Link)
    }

    /// Encodes one frame, in a vector of its length.
    fn encode(request_id: u32, message: Message<'_>) -> Result<Vec<u8>, ExchangeError> {
        Frame {
            request_id,
            message,
        }
        .to_vec()
        .map_err(|_| ExchangeError::Link("a bridge frame did not encode"))
    }

    /// Sends what was posted before the agent said Hello, in order.
    fn flush<L: StreamLink>(&mut self, link: &mut L) -> Result<(), ExchangeError> {
        self.queued_since = None;
        for frame in core::mem::take(&mut self.queued) {
            link.send(&frame).map_err(ExchangeError::Link)?;
        }
        Ok(())
    }

    /// Sends the encoded `frames` now if the agent of the link's current
    /// generation has said Hello, after anything posted before; else
    /// keeps them for the [`poll`](Self::poll) that sees its Hello.
    fn post_frames<L: StreamLink>(
        &mut self,
        link: &mut L,
        frames: Vec<Vec<u8>>,
    ) -> Result<(), ExchangeError> {
        let known = self.ready && link.generation() == self.generation;
        if known || self.agent_ready(link)? {
            self.flush(link)?;
            for frame in frames {
                link.send(&frame).map_err(ExchangeError::Link)?;
            }
        } else {
            if self.queued.is_empty() {
                self.queued_since = Some(link.now());
            }
            self.queued.extend(frames);
        }
        Ok(())
    }

    /// Sends `frame`, a whole T-message, in `Ninep` pieces, or keeps it
    /// until the agent is there (see the module's note); never blocks.
    pub fn post<L: StreamLink>(&mut self, link: &mut L, frame: &[u8]) -> Result<(), ExchangeError> {
        let mut frames = Vec::new();
        for piece in frame.chunks(NINEP_PIECE) {
            frames.push(Self::encode(self.channel, Message::Ninep { data: piece })?);
        }
        self.post_frames(link, frames)
    }

    /// Sends an encoded bridge frame of another id (a run's), or keeps it
    /// until the agent is there; never blocks.
    pub fn post_other<L: StreamLink>(
        &mut self,
        link: &mut L,
        frame: &[u8],
    ) -> Result<(), ExchangeError> {
        self.post_frames(link, alloc::vec![frame.to_vec()])
    }

    /// Whether frames posted before the agent's Hello are still kept, for
    /// less than `limit` µs of the link's clock since the first (at
    /// `now`): their answers cannot have come, so no answer deadline runs
    /// for them yet. Past the limit the agent is overdue, and the
    /// caller's deadline may run.
    pub fn holding(&self, now: u64, limit: u64) -> bool {
        self.queued_since
            .is_some_and(|since| now.saturating_sub(since) < limit)
    }

    /// Takes what the link has brought into the decoder; never blocks.
    fn drain<L: StreamLink>(&mut self, link: &mut L) -> Result<(), ExchangeError> {
        loop {
            let received = link.receive(&mut self.input).map_err(ExchangeError::Link)?;
            if received == 0 {
                return Ok(());
            }
            // Until the decoder says it needs more (`None`): it takes the
            // input in whole and may still hold several frames after
            // returning one, so stopping when the input is used up would
            // leave frames behind until more bytes came.
            let mut rest = 0;
            loop {
                let (taken, event) = self.decoder.feed(&self.input[rest..received]);
                rest += taken;
                match event {
                    Some(Ok(frame)) => match frame.message {
                        Message::Hello { .. } => self.ready = true,
                        Message::Ninep { data } if frame.request_id == self.channel => {
                            self.stream.push(data)
                        }
                        Message::Error { code, .. }
                            if frame.request_id == self.channel
                                && code != ErrorCode::UnknownMessageType =>
                        {
                            self.closed = true
                        }
                        // Frames of other ids (runs, proxies) are the
                        // caller's; id 0 and core's Hello id carry none.
                        _ if frame.request_id != 0
                            && frame.request_id != HELLO_ID
                            && frame.request_id != self.channel
                            && self.others.len() < OTHERS_LIMIT =>
                        {
                            if let Ok(bytes) = frame.to_vec() {
                                self.others.push(bytes);
                            }
                        }
                        _ => {}
                    },
                    // Damaged bytes: the decoder has moved on; a 9P piece
                    // lost in them breaks the stream, which the size[4]
                    // check or the answer's limit then reports.
                    Some(Err(_)) => {}
                    None => break,
                }
            }
        }
    }

    /// Whether the agent of the link's current generation has said Hello;
    /// asks for it once per generation. Never blocks.
    pub fn agent_ready<L: StreamLink>(&mut self, link: &mut L) -> Result<bool, ExchangeError> {
        let generation = link.generation();
        if generation != self.generation {
            self.forget_peer(generation);
        }
        self.drain(link)?;
        if !self.ready && !self.asked {
            self.asked = true;
            let hello = Message::Hello {
                protocol_version: bridge_protocol::VERSION,
                kernel_release: CORE_NAME,
            };
            Self::send_frame(link, HELLO_ID, hello)?;
        }
        Ok(self.ready)
    }

    /// Waits at most `limit` microseconds for the agent of the link's
    /// current generation to say Hello; asks for it once per generation.
    pub fn await_agent<L: StreamLink>(
        &mut self,
        link: &mut L,
        limit: u64,
    ) -> Result<(), ExchangeError> {
        let deadline = link.now().saturating_add(limit);
        loop {
            if self.agent_ready(link)? {
                return Ok(());
            }
            if link.now() > deadline {
                return Err(ExchangeError::NoAnswer);
            }
            link.wait();
        }
    }

    /// Sends `frame`, a whole T-message, in `Ninep` pieces, once the
    /// agent is there (waiting at most `agent_limit` microseconds).
    pub fn send<L: StreamLink>(
        &mut self,
        link: &mut L,
        frame: &[u8],
        agent_limit: u64,
    ) -> Result<(), ExchangeError> {
        if link.generation() != self.generation || !self.ready {
            self.await_agent(link, agent_limit)?;
        }
        // The agent is there: the post goes out at once, after anything
        // posted before it.
        self.post(link, frame)
    }

    /// A whole R-message, if the frames received so far make one; never
    /// blocks. A changed generation means the agent is new.
    pub fn poll<L: StreamLink>(&mut self, link: &mut L) -> Result<Option<Vec<u8>>, ExchangeError> {
        if let Some(message) = self.stream.next_message().map_err(ExchangeError::Stream)? {
            return Ok(Some(message));
        }
        self.drain(link)?;
        // The Hello of the agent posts waited for: they go out now.
        if self.ready && !self.queued.is_empty() && link.generation() == self.generation {
            self.flush(link)?;
        }
        if let Some(message) = self.stream.next_message().map_err(ExchangeError::Stream)? {
            return Ok(Some(message));
        }
        if self.closed {
            return Err(ExchangeError::Link("the agent closed the 9P channel"));
        }
        if link.generation() != self.generation {
            return Err(ExchangeError::PeerRestarted);
        }
        Ok(None)
    }

    /// Waits at most `limit` microseconds for a whole R-message, which
    /// goes into `answer`; its length.
    pub fn await_answer<L: StreamLink>(
        &mut self,
        link: &mut L,
        answer: &mut [u8],
        limit: u64,
    ) -> Result<usize, ExchangeError> {
        let deadline = link.now().saturating_add(limit);
        loop {
            if let Some(message) = self.poll(link)? {
                let length = message.len().min(answer.len());
                answer[..length].copy_from_slice(&message[..length]);
                return Ok(length);
            }
            if link.now() > deadline {
                return Err(ExchangeError::NoAnswer);
            }
            link.wait();
        }
    }

    /// The frames of other ids received so far, encoded, oldest first.
    pub fn take_others(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.others)
    }

    /// [`send`](Self::send), then [`await_answer`](Self::await_answer).
    pub fn exchange<L: StreamLink>(
        &mut self,
        link: &mut L,
        frame: &[u8],
        answer: &mut [u8],
        agent_limit: u64,
        limit: u64,
    ) -> Result<usize, ExchangeError> {
        self.send(link, frame, agent_limit)?;
        self.await_answer(link, answer, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A fake agent: answers a Hello request, and each whole 9P message
    /// on its channel with `reply`, in frames, a few bytes per receive.
    struct FakeAgent {
        pending: VecDeque<u8>,
        decoder: Decoder,
        stream: MessageStream,
        reply: fn(&[u8]) -> Vec<u8>,
        generation: u64,
        booted: bool,
        clock: u64,
        /// The most bytes one receive hands over.
        chunk: usize,
    }

    fn frame(id: u32, message: Message<'_>) -> Vec<u8> {
        let (buffer, n) = Frame {
            request_id: id,
            message,
        }
        .to_buffer()
        .unwrap();
        buffer[..n].to_vec()
    }

    impl StreamLink for FakeAgent {
        fn send(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
            let mut rest = bytes;
            loop {
                let (taken, event) = self.decoder.feed(rest);
                rest = &rest[taken..];
                let Some(Ok(f)) = event else {
                    break;
                };
                let id = f.request_id;
                let mut out = Vec::new();
                match f.message {
                    Message::Hello { .. } if self.booted => out.extend(frame(
                        id,
                        Message::Hello {
                            protocol_version: 1,
                            kernel_release: "6.1.0-test",
                        },
                    )),
                    Message::Ninep { data } => {
                        self.stream.push(data);
                        while let Some(m) = self.stream.next_message().unwrap() {
                            // Noise of another run between the pieces.
                            out.extend(frame(9, Message::Stdout { data: b"x" }));
                            for piece in (self.reply)(&m).chunks(1000) {
                                out.extend(frame(id, Message::Ninep { data: piece }));
                            }
                        }
                    }
                    _ => {}
                }
                self.pending.extend(out);
            }
            Ok(())
        }
        fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str> {
            let n = self.pending.len().min(out.len()).min(self.chunk);
            for slot in &mut out[..n] {
                *slot = self.pending.pop_front().unwrap();
            }
            Ok(n)
        }
        fn generation(&mut self) -> Option<u64> {
            Some(self.generation)
        }
        fn now(&mut self) -> u64 {
            self.clock += 1000;
            // The agent boots after 20 ms.
            if !self.booted && self.clock > 20_000 {
                self.booted = true;
                self.pending.extend(frame(
                    0,
                    Message::Hello {
                        protocol_version: 1,
                        kernel_release: "6.1.0-test",
                    },
                ));
            }
            self.clock
        }
        fn wait(&mut self) {}
    }

    fn agent(reply: fn(&[u8]) -> Vec<u8>) -> FakeAgent {
        FakeAgent {
            pending: VecDeque::new(),
            decoder: Decoder::new(),
            stream: MessageStream::new(8216),
            reply,
            generation: 1,
            booted: false,
            clock: 0,
            chunk: 7,
        }
    }

    /// Echoes the T-message back with its type + 1 (an R-message of the
    /// same size).
    fn echo(t: &[u8]) -> Vec<u8> {
        let mut r = t.to_vec();
        r[4] += 1;
        r
    }

    fn message(kind: u8, body_len: usize) -> Vec<u8> {
        let size = (7 + body_len) as u32;
        let mut m = size.to_le_bytes().to_vec();
        m.push(kind);
        m.extend_from_slice(&[1, 0]);
        m.extend((0..body_len).map(|i| i as u8));
        m
    }

    #[test]
    fn waits_for_the_agent_then_carries_big_messages_in_pieces() {
        let mut link = agent(echo);
        let mut exchanger = BridgedExchanger::new(8216, Some(1), 1);
        let mut answer = [0u8; 8216];
        for body in [0, 100, 4094, 8209] {
            let t = message(118, body);
            let n = exchanger
                .exchange(&mut link, &t, &mut answer, 1_000_000, 1_000_000)
                .unwrap();
            assert_eq!(&answer[..n], &echo(&t)[..], "body {body}");
        }
        assert!(exchanger.ready());
    }

    /// A request posted while the agent boots is kept, not sent and not
    /// waited for; the poll that sees the agent's Hello sends what was
    /// kept, in order, and the answers follow.
    #[test]
    fn a_post_before_the_agents_hello_is_kept_until_it_comes() {
        let mut link = agent(echo);
        let mut exchanger = BridgedExchanger::new(8216, Some(1), 1);
        let (small, big) = (message(100, 3), message(118, 5000));
        exchanger.post(&mut link, &small).unwrap();
        exchanger.post(&mut link, &big).unwrap();
        let now = link.clock;
        assert!(link.clock < 20_000, "neither post waited for the boot");
        assert!(exchanger.holding(now, 1_000_000));
        assert!(!exchanger.holding(now + 1_000_000, 1_000_000), "overdue");
        // The fake answers every whole 9P message it is sent: none was.
        assert_eq!(exchanger.poll(&mut link), Ok(None));
        assert!(link.pending.is_empty(), "something went out early");
        while link.now() < 25_000 {}
        let mut answers = Vec::new();
        for _ in 0..100 {
            if let Some(answer) = exchanger.poll(&mut link).unwrap() {
                answers.push(answer);
            }
        }
        assert_eq!(answers, [echo(&small), echo(&big)]);
        assert!(!exchanger.holding(link.clock, 1_000_000));
        // With the agent there, a post goes out at once.
        exchanger.post(&mut link, &small).unwrap();
        assert!(!exchanger.holding(link.clock, 1_000_000));
        let mut answer = [0u8; 8216];
        let n = exchanger
            .await_answer(&mut link, &mut answer, 1_000_000)
            .unwrap();
        assert_eq!(&answer[..n], &echo(&small)[..]);
    }

    #[test]
    fn agent_ready_asks_once_and_never_blocks() {
        let mut link = agent(echo);
        let mut exchanger = BridgedExchanger::new(8216, Some(1), 1);
        assert_eq!(exchanger.agent_ready(&mut link), Ok(false));
        // The agent boots (its announcement) after 20 ms of the clock.
        while link.now() < 25_000 {}
        assert_eq!(exchanger.agent_ready(&mut link), Ok(true));
        link.generation = 2;
        assert_eq!(exchanger.agent_ready(&mut link), Ok(false), "a new peer");
    }

    #[test]
    fn an_agent_that_never_comes_is_no_answer() {
        let mut link = agent(echo);
        link.clock = 0;
        let mut exchanger = BridgedExchanger::new(8216, Some(1), 1);
        assert_eq!(
            exchanger.send(&mut link, &message(100, 0), 5_000),
            Err(ExchangeError::NoAnswer)
        );
    }

    #[test]
    fn a_restarted_agent_is_reported_and_then_awaited_again() {
        let mut link = agent(|_| Vec::new());
        let mut exchanger = BridgedExchanger::new(8216, Some(1), 1);
        exchanger
            .send(&mut link, &message(100, 3), 1_000_000)
            .unwrap();
        link.generation = 2;
        assert_eq!(exchanger.poll(&mut link), Err(ExchangeError::PeerRestarted));
        let mut link = agent(echo);
        link.generation = 3;
        let mut answer = [0u8; 64];
        let n = exchanger
            .exchange(
                &mut link,
                &message(100, 3),
                &mut answer,
                1_000_000,
                1_000_000,
            )
            .unwrap();
        assert_eq!(answer[4], 101);
        assert_eq!(n, 10);
    }

    #[test]
    fn frames_of_other_ids_are_kept_for_the_caller() {
        let mut link = agent(echo);
        let mut exchanger = BridgedExchanger::new(8216, Some(1), 1);
        let mut answer = [0u8; 64];
        exchanger
            .exchange(
                &mut link,
                &message(100, 0),
                &mut answer,
                1_000_000,
                1_000_000,
            )
            .unwrap();
        let others = exchanger.take_others();
        assert_eq!(others, [frame(9, Message::Stdout { data: b"x" })]);
        exchanger.post_other(&mut link, &others[0]).unwrap();
        assert!(exchanger.take_others().is_empty());
    }

    #[test]
    fn every_frame_of_one_receive_is_taken_at_once() {
        // A run's end comes as small frames in one burst (its stdout and
        // stderr ending, its exit, a 9P request of the export channel),
        // then nothing more: all of them must come out of one poll, not
        // one per later receive (the linuxpeer hang).
        for chunk in [7, 64, 4096] {
            let mut link = agent(echo);
            link.chunk = chunk;
            link.booted = true;
            let mut exchanger = BridgedExchanger::new(8216, Some(1), 1);
            let burst = [
                frame(268, Message::Stdout { data: b"" }),
                frame(268, Message::Stderr { data: b"" }),
                frame(268, Message::Exited { code: 0, signal: 0 }),
                frame(
                    0x4558_0001,
                    Message::Ninep {
                        data: &[11, 0, 0, 0, 120, 1, 0, 4, 0, 0, 0],
                    },
                ),
            ];
            link.pending.extend(burst.concat());
            assert_eq!(exchanger.poll(&mut link), Ok(None));
            assert_eq!(exchanger.take_others(), burst, "chunk {chunk}");
        }
    }

    #[test]
    fn an_error_on_the_channel_closes_it() {
        let mut link = agent(|_| Vec::new());
        let mut exchanger = BridgedExchanger::new(8216, Some(1), 1);
        exchanger
            .send(&mut link, &message(100, 0), 1_000_000)
            .unwrap();
        link.pending.extend(frame(
            1,
            Message::Error {
                code: ErrorCode::BadPayload,
                detail: "9P channel 1 closed",
            },
        ));
        assert!(matches!(
            exchanger.poll(&mut link),
            Err(ExchangeError::Link(_))
        ));
    }
}
