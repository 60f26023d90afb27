//! 9P over a link: a byte stream cut into messages by their size[4].
//!
//! On a server link (hvm's contract 1) 9P messages travel as a plain
//! stream; each starts with its size[4], little-endian, counting itself
//! (intro(5)), which frames it. A size below the smallest message (7:
//! size, type, tag) or above the link's message size is a broken peer,
//! never a reason to wait for more bytes. [`Exchanger`] does one
//! synchronous exchange over any [`StreamLink`] (core's `#M` transport for
//! a server VM), dropping what an earlier peer left when the link's
//! generation changes.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

/// The smallest 9P message: size[4] type[1] tag[2].
pub const SMALLEST_MESSAGE: u32 = 7;

/// Why the stream is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// A size[4] below [`SMALLEST_MESSAGE`].
    TooShort(u32),
    /// A size[4] above the limit.
    TooLong(u32),
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StreamError::TooShort(size) => write!(f, "a 9P size of {size} bytes is too short"),
            StreamError::TooLong(size) => write!(f, "a 9P size of {size} bytes is over msize"),
        }
    }
}

/// Bytes received so far, and the messages they hold.
#[derive(Debug)]
pub struct MessageStream {
    pending: Vec<u8>,
    limit: u32,
    broken: Option<StreamError>,
}

impl MessageStream {
    /// A stream whose messages are at most `limit` bytes (the msize).
    pub fn new(limit: u32) -> MessageStream {
        MessageStream {
            pending: Vec::new(),
            limit,
            broken: None,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.broken.is_none() {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// The next whole message, if one has arrived. Once broken, the stream
    /// stays broken (the link must be reset).
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        if let Some(error) = self.broken {
            return Err(error);
        }
        let Some(header) = self.pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let size = u32::from_le_bytes(*header);
        let error = if size < SMALLEST_MESSAGE {
            Some(StreamError::TooShort(size))
        } else if size > self.limit {
            Some(StreamError::TooLong(size))
        } else {
            None
        };
        if let Some(error) = error {
            self.broken = Some(error);
            self.pending.clear();
            return Err(error);
        }
        let size = size as usize;
        if self.pending.len() < size {
            return Ok(None);
        }
        let rest = self.pending.split_off(size);
        Ok(Some(core::mem::replace(&mut self.pending, rest)))
    }

    /// Forgets everything: the peer is new (the link was reset).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.broken = None;
    }

    /// Bytes of a message still to be completed.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let size = (7 + body.len()) as u32;
        let mut m = size.to_le_bytes().to_vec();
        m.push(kind);
        m.extend_from_slice(&[1, 0]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn messages_come_out_whole_however_the_bytes_are_cut() {
        let a = message(101, b"9P2000");
        let b = message(105, &[]);
        let c = message(117, &[7; 300]);
        let all: Vec<u8> = [a.clone(), b.clone(), c.clone()].concat();
        for cut in 1..all.len() {
            let mut stream = MessageStream::new(8216);
            let mut out = Vec::new();
            for piece in all.chunks(cut) {
                stream.push(piece);
                while let Some(m) = stream.next_message().unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(out, [a.clone(), b.clone(), c.clone()], "pieces of {cut}");
            assert_eq!(stream.buffered(), 0);
        }
    }

    #[test]
    fn a_bad_size_breaks_the_stream_until_reset() {
        let mut stream = MessageStream::new(8216);
        stream.push(&[3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(stream.next_message(), Err(StreamError::TooShort(3)));
        stream.push(&message(100, &[]));
        assert_eq!(stream.next_message(), Err(StreamError::TooShort(3)));
        stream.reset();
        stream.push(&message(100, &[]));
        assert_eq!(stream.next_message(), Ok(Some(message(100, &[]))));

        let mut stream = MessageStream::new(100);
        stream.push(&101u32.to_le_bytes());
        assert_eq!(stream.next_message(), Err(StreamError::TooLong(101)));
        // Garbage such as a shell's text is refused at once, never waited on.
        let mut stream = MessageStream::new(8216);
        stream.push(b"hello, world\n");
        assert!(stream.next_message().is_err());
    }
}

/// What a synchronous 9P exchange needs of a link.
pub trait StreamLink {
    /// Sends bytes.
    fn send(&mut self, bytes: &[u8]) -> Result<(), &'static str>;
    /// Bytes received, if any; never blocks.
    fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str>;
    /// The link's generation (hvm's `LinkStatus`).
    fn generation(&mut self) -> Option<u64>;
    /// Microseconds on some clock.
    fn now(&mut self) -> u64;
    /// Waits a little, or until the link has news.
    fn wait(&mut self);
}

/// Why an exchange failed; each hangs the link up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeError {
    /// The driver failed.
    Link(&'static str),
    /// The peer sent something that is not 9P.
    Stream(StreamError),
    /// The link's generation changed while the answer was awaited: the
    /// peer is new and will never answer.
    PeerRestarted,
    /// No whole answer within the limit.
    NoAnswer,
}

impl core::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExchangeError::Link(why) => f.write_str(why),
            ExchangeError::Stream(error) => write!(f, "{error}"),
            ExchangeError::PeerRestarted => f.write_str("the server VM was restarted"),
            ExchangeError::NoAnswer => f.write_str("no answer"),
        }
    }
}

/// One link's side of synchronous 9P exchanges: a T-message out, then the
/// stream read until one whole R-message is in.
#[derive(Debug)]
pub struct Exchanger {
    stream: MessageStream,
    generation: Option<u64>,
    input: Vec<u8>,
}

impl Exchanger {
    /// For a link of message size `msize`, whose generation is now
    /// `generation`.
    pub fn new(msize: u32, generation: Option<u64>) -> Exchanger {
        Exchanger {
            stream: MessageStream::new(msize),
            generation,
            input: alloc::vec![0; 12 * 1024],
        }
    }

    /// The link generation the stream belongs to (its peer's).
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Sends `frame` and waits at most `limit` microseconds for the
    /// answer, which goes into `answer`; its length. Bytes left from an
    /// earlier peer (the generation changed since) are dropped first.
    pub fn exchange<L: StreamLink>(
        &mut self,
        link: &mut L,
        frame: &[u8],
        answer: &mut [u8],
        limit: u64,
    ) -> Result<usize, ExchangeError> {
        self.send(link, frame)?;
        self.await_answer(link, answer, limit)
    }

    /// Sends `frame` (a posted request: its answer is taken later by
    /// [`poll`](Self::poll) or [`await_answer`](Self::await_answer)).
    /// Bytes left from an earlier peer are dropped first.
    pub fn send<L: StreamLink>(&mut self, link: &mut L, frame: &[u8]) -> Result<(), ExchangeError> {
        let generation = link.generation();
        if generation != self.generation {
            self.generation = generation;
            self.stream.reset();
        }
        link.send(frame).map_err(ExchangeError::Link)
    }

    /// A whole message, if the bytes received so far make one; never
    /// blocks. A changed generation means the peer is new.
    pub fn poll<L: StreamLink>(&mut self, link: &mut L) -> Result<Option<Vec<u8>>, ExchangeError> {
        loop {
            if let Some(message) = self.stream.next_message().map_err(ExchangeError::Stream)? {
                return Ok(Some(message));
            }
            let received = link.receive(&mut self.input).map_err(ExchangeError::Link)?;
            if received == 0 {
                break;
            }
            self.stream.push(&self.input[..received]);
        }
        if link.generation() != self.generation {
            return Err(ExchangeError::PeerRestarted);
        }
        Ok(None)
    }

    /// Waits at most `limit` microseconds for a whole message, which goes
    /// into `answer`; its length.
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
}

#[cfg(test)]
mod exchange_tests {
    use super::*;
    use std::collections::VecDeque;

    /// A peer that answers every T-message with `reply(frame)`, a few
    /// bytes per receive, on a clock that moves 1 ms per call.
    struct FakePeer {
        pending: VecDeque<u8>,
        reply: fn(&[u8]) -> Vec<u8>,
        generation: u64,
        restart_after_send: bool,
        clock: u64,
    }

    impl StreamLink for FakePeer {
        fn send(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
            if self.restart_after_send {
                self.generation += 1;
                self.pending.clear();
            } else {
                self.pending.extend((self.reply)(bytes));
            }
            Ok(())
        }
        fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str> {
            let n = self.pending.len().min(out.len()).min(5);
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
            self.clock
        }
        fn wait(&mut self) {}
    }

    fn peer(reply: fn(&[u8]) -> Vec<u8>) -> FakePeer {
        FakePeer {
            pending: VecDeque::new(),
            reply,
            generation: 1,
            restart_after_send: false,
            clock: 0,
        }
    }

    /// Rversion for any request: size[4] type[1]=101 tag[2] msize[4]
    /// version[s].
    fn rversion(_: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&19u32.to_le_bytes());
        m.push(101);
        m.extend_from_slice(&[0xFF, 0xFF]);
        m.extend_from_slice(&8216u32.to_le_bytes());
        m.extend_from_slice(&6u16.to_le_bytes());
        m.extend_from_slice(b"9P2000");
        m
    }

    #[test]
    fn an_answer_in_pieces_comes_out_whole() {
        let mut link = peer(rversion);
        let mut exchanger = Exchanger::new(8216, Some(1));
        let mut answer = [0u8; 8216];
        for _ in 0..3 {
            let n = exchanger
                .exchange(&mut link, b"Tversion", &mut answer, 1_000_000)
                .unwrap();
            assert_eq!(&answer[..n], &rversion(&[])[..]);
        }
    }

    #[test]
    fn garbage_silence_and_a_restart_are_errors() {
        let mut answer = [0u8; 8216];
        let mut garbage = peer(|_| b"this is not 9P at all".to_vec());
        let mut exchanger = Exchanger::new(8216, Some(1));
        assert!(matches!(
            exchanger.exchange(&mut garbage, b"T", &mut answer, 1_000_000),
            Err(ExchangeError::Stream(StreamError::TooLong(_)))
        ));
        let mut silent = peer(|_| Vec::new());
        let mut exchanger = Exchanger::new(8216, Some(1));
        assert_eq!(
            exchanger.exchange(&mut silent, b"T", &mut answer, 50_000),
            Err(ExchangeError::NoAnswer)
        );
        let mut restarting = peer(rversion);
        restarting.restart_after_send = true;
        let mut exchanger = Exchanger::new(8216, Some(1));
        assert_eq!(
            exchanger.exchange(&mut restarting, b"T", &mut answer, 1_000_000),
            Err(ExchangeError::PeerRestarted)
        );
    }

    #[test]
    fn a_new_peer_starts_a_clean_stream() {
        let mut link = peer(rversion);
        let mut exchanger = Exchanger::new(8216, Some(1));
        // Half a message from the old peer, then the link is reset.
        exchanger.stream.push(&[40, 0, 0, 0, 100]);
        link.generation = 2;
        let mut answer = [0u8; 8216];
        let n = exchanger
            .exchange(&mut link, b"Tversion", &mut answer, 1_000_000)
            .unwrap();
        assert_eq!(&answer[..n], &rversion(&[])[..]);
    }

    #[test]
    fn a_posted_request_is_polled_until_whole() {
        let mut link = peer(rversion);
        let mut exchanger = Exchanger::new(8216, Some(1));
        // Nothing sent: nothing to take, and no error.
        assert_eq!(exchanger.poll(&mut link), Ok(None));
        exchanger.send(&mut link, b"Tversion").unwrap();
        // The fake peer hands over five bytes per receive; poll keeps
        // reading until the message is whole or the link is dry.
        assert_eq!(exchanger.poll(&mut link), Ok(Some(rversion(&[]))));
        assert_eq!(exchanger.poll(&mut link), Ok(None));
        // A peer restarted with the request under way is an error, not a
        // wait for an answer that will never come.
        link.restart_after_send = true;
        exchanger.send(&mut link, b"Tversion").unwrap();
        assert_eq!(exchanger.poll(&mut link), Err(ExchangeError::PeerRestarted));
    }
}
