//! An in-process link: the client on one end, a ramfs session on the other.
//!
//! `SlowFs` is the ramfs with one twist: reads of a file named "slow" wait
//! until the test completes them, so a request can be outstanding when a
//! Tflush arrives (flush(5)). The link checks, frame by frame, that the
//! client never reuses a tag the server might still answer.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use ninep::{FileMode, Frame, Message, OpenMode, Qid, Stat};
use ninep_client::{Client, Completion, Error, Fid, OpId, Outcome};
use ninep_server::{Caller, Completion as Late, Error as FsError, FileServer, Reply, RequestId};
use ninep_server::{Session, StatChanges};
use ramfs::{Clock, RamFs};

#[derive(Clone, Default)]
pub struct TestClock(pub Rc<Cell<u32>>);

impl Clock for TestClock {
    fn now(&self) -> u32 {
        self.0.get()
    }
}

pub struct SlowFs {
    pub ram: RamFs<TestClock>,
    /// Deferred reads: request, node, offset, count.
    pub waiting: Vec<(RequestId, u64, u64, u32)>,
    pub flushed: Vec<RequestId>,
}

impl SlowFs {
    pub fn new() -> Self {
        let clock = TestClock::default();
        clock.0.set(100);
        Self {
            ram: RamFs::new(clock, "glenda", "glenda", 0o775),
            waiting: Vec::new(),
            flushed: Vec::new(),
        }
    }
}

impl FileServer for SlowFs {
    type Node = u64;

    fn attach(&mut self, uname: &str, aname: &str) -> Result<(u64, Qid), FsError> {
        self.ram.attach(uname, aname)
    }
    fn walk(&mut self, c: &Caller<'_>, dir: &u64, name: &str) -> Result<(u64, Qid), FsError> {
        self.ram.walk(c, dir, name)
    }
    fn stat(&mut self, node: &u64) -> Result<Stat, FsError> {
        self.ram.stat(node)
    }
    fn open(&mut self, c: &Caller<'_>, node: &u64, mode: OpenMode) -> Result<Qid, FsError> {
        self.ram.open(c, node, mode)
    }
    fn create(
        &mut self,
        c: &Caller<'_>,
        dir: &u64,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<(u64, Qid), FsError> {
        self.ram.create(c, dir, name, perm, mode)
    }
    fn read(
        &mut self,
        c: &Caller<'_>,
        node: &u64,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, FsError> {
        if self.ram.stat(node)?.name == "slow" {
            self.waiting.push((c.request, *node, offset, count));
            return Ok(Reply::Later);
        }
        self.ram.read(c, node, offset, count)
    }
    fn read_dir(&mut self, c: &Caller<'_>, dir: &u64) -> Result<Vec<Stat>, FsError> {
        self.ram.read_dir(c, dir)
    }
    fn write(
        &mut self,
        c: &Caller<'_>,
        node: &u64,
        offset: u64,
        data: &[u8],
    ) -> Result<Reply<u32>, FsError> {
        self.ram.write(c, node, offset, data)
    }
    fn remove(&mut self, c: &Caller<'_>, node: &u64) -> Result<(), FsError> {
        self.ram.remove(c, node)
    }
    fn wstat(&mut self, c: &Caller<'_>, node: &u64, ch: &StatChanges) -> Result<(), FsError> {
        self.ram.wstat(c, node, ch)
    }
    fn clunk(&mut self, node: &u64, opened: Option<OpenMode>) {
        self.ram.clunk(node, opened)
    }
    fn flush(&mut self, request: RequestId) {
        self.waiting.retain(|w| w.0 != request);
        self.flushed.push(request);
    }
}

pub const MSIZE: u32 = 8192;

pub struct Link {
    pub client: Client,
    pub session: Session<SlowFs>,
    pub fs: SlowFs,
    /// Bytes the client wrote that the server has not read.
    pub to_server: Vec<u8>,
    /// Reply frames the server wrote that the client has not read.
    pub to_client: VecDeque<Vec<u8>>,
    /// Every request frame the client sent, decoded.
    pub sent: Vec<Frame>,
    /// Tags the client may not reuse: requests not yet answered to the
    /// client, and flushed ones whose Rflush has not reached it.
    pub busy: BTreeMap<u16, u16>,
    /// Completions not yet claimed by `call`.
    pub done: Vec<Completion>,
}

/// No flush pending on a tag.
const PLAIN: u16 = u16::MAX;

impl Link {
    pub fn new() -> Self {
        Self::with_msize(MSIZE, MSIZE)
    }

    /// A negotiated link: the client proposes `client_msize`, the server
    /// allows `server_msize`.
    pub fn with_msize(client_msize: u32, server_msize: u32) -> Self {
        let mut link = Self {
            client: Client::new(client_msize),
            session: Session::new(server_msize),
            fs: SlowFs::new(),
            to_server: Vec::new(),
            to_client: VecDeque::new(),
            sent: Vec::new(),
            busy: BTreeMap::new(),
            done: Vec::new(),
        };
        let result = link.call(|c, out| c.version(out));
        assert!(matches!(result, Ok(Outcome::Version { .. })), "{result:?}");
        link
    }

    /// Moves one request frame to the server. False if there was none.
    pub fn server_step(&mut self) -> bool {
        let Some(size) = ninep::frame_length(&self.to_server, u32::MAX).unwrap() else {
            return false;
        };
        let frame: Vec<u8> = self.to_server.drain(..size).collect();
        let mut out = Vec::new();
        self.session
            .handle(&mut self.fs, &frame, &mut out)
            .expect("the client sent a well-formed frame");
        self.push_replies(&out);
        true
    }

    pub fn push_replies(&mut self, mut out: &[u8]) {
        while let Some(size) = ninep::frame_length(out, u32::MAX).unwrap() {
            self.to_client.push_back(out[..size].to_vec());
            out = &out[size..];
        }
    }

    /// Completes the oldest deferred read with `data`.
    pub fn complete_slow(&mut self, data: &[u8]) -> bool {
        if self.fs.waiting.is_empty() {
            return false;
        }
        let (request, ..) = self.fs.waiting.remove(0);
        let mut out = Vec::new();
        self.session
            .complete(request, Late::Read(Ok(data.to_vec())), &mut out);
        self.push_replies(&out);
        true
    }

    /// Moves one reply frame to the client. False if there was none.
    pub fn client_step(&mut self) -> bool {
        let Some(frame) = self.to_client.pop_front() else {
            return false;
        };
        let reply = Frame::decode(&frame, u32::MAX).unwrap();
        match self.busy.get(&reply.tag).copied() {
            Some(PLAIN) => {
                self.busy.remove(&reply.tag);
            }
            Some(oldtag) => {
                // An answer to a Tflush frees both tags; an answer to a
                // flushed request frees nothing yet.
                if matches!(reply.message, Message::Rflush) {
                    self.busy.remove(&reply.tag);
                    self.busy.remove(&oldtag);
                }
            }
            None => panic!("reply on a tag the client never used: {reply:?}"),
        }
        let mut out = Vec::new();
        let completion = self
            .client
            .receive(&frame, &mut out)
            .expect("the server's replies are well formed");
        self.record(out);
        if let Some(c) = completion {
            self.done.push(c);
        }
        true
    }

    /// Takes the client's output, checking every tag is free.
    pub fn record(&mut self, out: Vec<u8>) {
        let mut rest = &out[..];
        while let Some(size) = ninep::frame_length(rest, u32::MAX).unwrap() {
            let frame = Frame::decode(&rest[..size], u32::MAX).unwrap();
            assert!(
                !self.busy.contains_key(&frame.tag),
                "tag {} reused while busy: {frame:?}",
                frame.tag
            );
            self.busy.insert(frame.tag, PLAIN);
            if let Message::Tflush { oldtag } = frame.message {
                // The flushed request's tag stays busy until the Rflush.
                self.busy.insert(frame.tag, oldtag);
                self.busy.insert(oldtag, frame.tag);
            }
            self.sent.push(frame);
            rest = &rest[size..];
        }
        self.to_server.extend_from_slice(&out);
    }

    /// Runs both ends until neither has anything to do.
    pub fn settle(&mut self) {
        while self.server_step() || self.client_step() {}
    }

    /// Starts an operation, settles, and returns its result.
    pub fn call(
        &mut self,
        start: impl FnOnce(&mut Client, &mut Vec<u8>) -> Result<OpId, Error>,
    ) -> Result<Outcome, Error> {
        let mut out = Vec::new();
        let op = start(&mut self.client, &mut out)?;
        self.record(out);
        self.settle();
        self.take(op).expect("the operation completed")
    }

    /// The completion of `op`, if it has come.
    pub fn take(&mut self, op: OpId) -> Option<Result<Outcome, Error>> {
        let at = self.done.iter().position(|c| c.op == op)?;
        Some(self.done.remove(at).result)
    }

    pub fn attach(&mut self) -> Fid {
        match self.call(|c, out| c.attach("glenda", "", out)) {
            Ok(Outcome::Attached { fid, .. }) => fid,
            other => panic!("attach: {other:?}"),
        }
    }

    pub fn walk(&mut self, fid: Fid, path: &str) -> Result<Fid, Error> {
        match self.call(|c, out| c.walk_path(fid, path, out))? {
            Outcome::Walked { fid, .. } => Ok(fid),
            other => panic!("walk: {other:?}"),
        }
    }

    /// Creates `name` in directory `dir` (through a clone) and clunks it.
    pub fn make(&mut self, dir: Fid, name: &str, perm: u32) {
        let clone = self.walk(dir, "").unwrap();
        let perm = FileMode::from_bits_retain(perm);
        let result = self.call(|c, out| c.create(clone, name, perm, OpenMode::OREAD, out));
        assert!(matches!(result, Ok(Outcome::Created { .. })), "{result:?}");
        assert_eq!(
            self.call(|c, out| c.clunk(clone, out)),
            Ok(Outcome::Clunked)
        );
    }

    /// How many frames of this type the client has sent.
    pub fn count_sent(&self, kind: ninep::MessageType) -> usize {
        self.sent
            .iter()
            .filter(|f| f.message.message_type() == kind)
            .count()
    }
}
