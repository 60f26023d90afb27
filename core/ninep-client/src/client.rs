//! The client state machine: operations, tags, fids, flush and splitting.
//!
//! An operation ([`OpId`]) is what a caller asked for; it may take several
//! requests (a long walk, a long read), one at a time, each with a tag of
//! its own. The tables keep these invariants:
//! - A tag in `tags` is never handed out again until it leaves the table.
//!   A request's tag leaves when its reply arrives, unless a Tflush for it
//!   is in flight: then it stays `Retired` until the Rflush (flush(5)).
//! - A fid in `fids` is never handed out again until it leaves the table,
//!   which happens when the server answers a clunk or remove (either way),
//!   or when an attach or walk that reserved it is known not to have made
//!   it (an Rerror, a short Rwalk, or an Rflush that beat the reply).
//! - Every outstanding operation has exactly one request outstanding.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use litemap::LiteMap;

use ninep::{
    FileMode, Frame, Message, MessageType, OpenMode, Qid, Rread, Stat, Tread, IOHDRSZ, MAXWELEM,
    NOFID, NOTAG, VERSION,
};

use crate::error::{Error, ProtocolError};

/// The smallest msize the client accepts from a server: room for a stat
/// with short names and a useful read, as the server framework requires.
pub const MIN_MSIZE: u32 = 256;

/// A fid this client allocated (intro(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fid(u32);

impl Fid {
    /// The number on the wire.
    pub fn number(self) -> u32 {
        self.0
    }
}

/// One operation a caller started. Never reused, unlike tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(u64);

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// version(5): the msize now in force.
    Version {
        msize: u32,
    },
    /// attach(5): `fid` now refers to the root of the tree.
    Attached {
        fid: Fid,
        qid: Qid,
    },
    /// walk(5): `fid` is new and refers to the last name; one qid per name.
    Walked {
        fid: Fid,
        qids: Vec<Qid>,
    },
    /// open(5): the fid is open; `iounit` 0 means "msize - IOHDRSZ".
    Opened {
        qid: Qid,
        iounit: u32,
    },
    /// open(5), Tcreate: the fid now refers to the new file, open.
    Created {
        qid: Qid,
        iounit: u32,
    },
    /// read(5): fewer bytes than asked means the end, or an interrupt.
    Read(Vec<u8>),
    /// read(5), Twrite: bytes the server took.
    Wrote(u32),
    /// stat(5). Boxed: the other outcomes are small, and an outcome is
    /// moved several times on every read's way out.
    Stat(Box<Stat>),
    Wstat,
    Clunked,
    Removed,
}

/// The end of one operation, as [`Client::receive`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub op: OpId,
    pub result: Result<Outcome, Error>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FidState {
    /// Chosen for an attach or walk that has not finished.
    Reserved,
    /// Known to the server, not open.
    Live,
    /// Open, with the iounit the server gave (0: none given).
    Open { iounit: u32 },
    /// A clunk or remove is in flight; the fid may not be used.
    Closing,
}

#[derive(Debug, Clone, Copy)]
enum TagUse {
    Request {
        op: OpId,
        kind: MessageType,
    },
    Flush {
        oldtag: u16,
    },
    /// A flushed request that was answered (or whose flush went wrong):
    /// any further reply is dropped, and the tag waits for the Rflush.
    Retired,
}

#[derive(Debug)]
enum OpKind {
    Version {
        proposed: u32,
    },
    Attach {
        fid: u32,
    },
    Walk {
        newfid: u32,
        names: Vec<String>,
        /// Names walked by answered Twalks.
        done: usize,
        /// Names in the Twalk outstanding.
        chunk: usize,
        qids: Vec<Qid>,
    },
    Open {
        fid: u32,
    },
    Create {
        fid: u32,
    },
    Read {
        fid: u32,
        offset: u64,
        remaining: u32,
        chunk: u32,
        data: Vec<u8>,
    },
    Write {
        fid: u32,
        offset: u64,
        data: Vec<u8>,
        written: usize,
        chunk: usize,
    },
    Stat,
    Wstat,
    Clunk {
        fid: u32,
    },
    Remove {
        fid: u32,
    },
    /// A clunk the client sends on its own behalf, for a walk that failed
    /// after its first Twalk had made newfid. Nobody hears its outcome.
    Cleanup {
        fid: u32,
    },
}

#[derive(Debug)]
struct Op {
    tag: u16,
    /// The tag of the Tflush in flight for this operation.
    flush: Option<u16>,
    kind: OpKind,
}

/// The client side of one 9P2000 connection.
#[derive(Debug)]
pub struct Client {
    /// Before an Rversion: the msize to propose; after: the one in force.
    msize: u32,
    negotiated: bool,
    /// Set while the Tversion is outstanding.
    versioning: bool,
    // Sorted vectors, not B-trees: a client has a few tags and operations
    // out at once, and a B-tree allocates a node whenever one goes from
    // empty to one entry, which is every request on a quiet link.
    tags: LiteMap<u16, TagUse>,
    fids: LiteMap<u32, FidState>,
    ops: LiteMap<OpId, Op>,
    next_op: u64,
}

/// What one answered request means for its operation.
enum Step {
    /// The operation is over.
    Done(Result<Outcome, Error>),
    /// Another request of the operation was sent.
    Continue,
}

impl Client {
    /// A client that will propose `msize` (version(5)).
    pub fn new(msize: u32) -> Self {
        Self {
            msize: msize.max(MIN_MSIZE),
            negotiated: false,
            versioning: false,
            tags: LiteMap::new(),
            fids: LiteMap::new(),
            ops: LiteMap::new(),
            next_op: 0,
        }
    }

    /// The largest frame either side may send: the msize in force, or the
    /// proposed one before negotiation.
    pub fn msize(&self) -> u32 {
        self.msize
    }

    pub fn is_negotiated(&self) -> bool {
        self.negotiated
    }

    /// Tags in use, Tflushes and retired tags included.
    pub fn tags_in_use(&self) -> usize {
        self.tags.len()
    }

    /// Fids held, reserved and closing ones included.
    pub fn fids_in_use(&self) -> usize {
        self.fids.len()
    }

    /// Operations started and not yet completed, the client's own
    /// clean-up clunks included.
    pub fn outstanding(&self) -> usize {
        self.ops.len()
    }

    /// The iounit an open fid was given, or None if it is not open.
    pub fn iounit(&self, fid: Fid) -> Option<u32> {
        match self.fids.get(&fid.0) {
            Some(FidState::Open { iounit }) => Some(*iounit),
            _ => None,
        }
    }

    /// Tversion (version(5)). Every fid is forgotten: the server clunks
    /// them all. Nothing may be outstanding.
    pub fn version(&mut self, out: &mut Vec<u8>) -> Result<OpId, Error> {
        if !self.tags.is_empty() || self.versioning {
            return Err(Error::Busy);
        }
        let proposed = self.msize;
        let frame = Frame::new(
            NOTAG,
            Message::Tversion {
                msize: proposed,
                version: String::from(VERSION),
            },
        );
        Self::encode(&frame, proposed, out)?;
        self.negotiated = false;
        self.versioning = true;
        self.fids.clear();
        let op = self.new_op();
        let kind = MessageType::Tversion;
        self.tags.insert(NOTAG, TagUse::Request { op, kind });
        self.ops.insert(
            op,
            Op {
                tag: NOTAG,
                flush: None,
                kind: OpKind::Version { proposed },
            },
        );
        Ok(op)
    }

    /// Tattach without authentication (attach(5)); the new fid is in
    /// [`Outcome::Attached`].
    pub fn attach(&mut self, uname: &str, aname: &str, out: &mut Vec<u8>) -> Result<OpId, Error> {
        let fid = self.free_fid()?;
        let message = Message::Tattach {
            fid,
            afid: NOFID,
            uname: String::from(uname),
            aname: String::from(aname),
        };
        let op = self.start(message, OpKind::Attach { fid }, out)?;
        self.fids.insert(fid, FidState::Reserved);
        Ok(op)
    }

    /// Twalk from `fid` to a new fid through `names` (walk(5)), in Twalks
    /// of at most MAXWELEM names each. No names clones the fid.
    pub fn walk(&mut self, fid: Fid, names: &[&str], out: &mut Vec<u8>) -> Result<OpId, Error> {
        self.usable(fid)?;
        let newfid = self.free_fid()?;
        let names: Vec<String> = names.iter().map(|n| String::from(*n)).collect();
        let chunk = names.len().min(MAXWELEM);
        let message = Message::Twalk {
            fid: fid.0,
            newfid,
            wnames: names[..chunk].to_vec(),
        };
        let kind = OpKind::Walk {
            newfid,
            names,
            done: 0,
            chunk,
            qids: Vec::new(),
        };
        let op = self.start(message, kind, out)?;
        self.fids.insert(newfid, FidState::Reserved);
        Ok(op)
    }

    /// [`Client::walk`] along a slash-separated path; empty elements (from
    /// "//" or a leading "/") are skipped.
    pub fn walk_path(&mut self, fid: Fid, path: &str, out: &mut Vec<u8>) -> Result<OpId, Error> {
        let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
        self.walk(fid, &names, out)
    }

    /// Topen (open(5)).
    pub fn open(&mut self, fid: Fid, mode: OpenMode, out: &mut Vec<u8>) -> Result<OpId, Error> {
        self.usable(fid)?;
        let message = Message::Topen { fid: fid.0, mode };
        self.start(message, OpKind::Open { fid: fid.0 }, out)
    }

    /// Tcreate in the directory `fid` (open(5)); on success the fid
    /// refers to the new file, opened with `mode`.
    pub fn create(
        &mut self,
        fid: Fid,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
        out: &mut Vec<u8>,
    ) -> Result<OpId, Error> {
        self.usable(fid)?;
        let message = Message::Tcreate {
            fid: fid.0,
            name: String::from(name),
            perm,
            mode,
        };
        self.start(message, OpKind::Create { fid: fid.0 }, out)
    }

    /// Up to `count` bytes from `offset` (read(5)), in Treads of at most the
    /// iounit; it stops early at a short answer.
    pub fn read(
        &mut self,
        fid: Fid,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<OpId, Error> {
        self.usable(fid)?;
        if !self.negotiated {
            return Err(Error::NotNegotiated);
        }
        let chunk = count.min(self.io_limit(fid.0));
        let op = self.new_op();
        let tag = self.send_tread(op, fid.0, offset, chunk, out)?;
        let kind = OpKind::Read {
            fid: fid.0,
            offset,
            remaining: count,
            chunk,
            data: Vec::new(),
        };
        Ok(self.record(op, tag, kind))
    }

    /// `data` at `offset` (read(5), Twrite), in Twrites of at most the
    /// iounit; it stops early at a short answer. Empty data is still sent,
    /// as Plan 9 does (a zero-length write means something to a pipe).
    pub fn write(
        &mut self,
        fid: Fid,
        offset: u64,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<OpId, Error> {
        self.usable(fid)?;
        let chunk = data.len().min(self.io_limit(fid.0) as usize);
        let message = Message::Twrite {
            fid: fid.0,
            offset,
            data: data[..chunk].to_vec(),
        };
        let kind = OpKind::Write {
            fid: fid.0,
            offset,
            data: data.to_vec(),
            written: 0,
            chunk,
        };
        self.start(message, kind, out)
    }

    /// Tstat (stat(5)).
    pub fn stat(&mut self, fid: Fid, out: &mut Vec<u8>) -> Result<OpId, Error> {
        self.usable(fid)?;
        self.start(Message::Tstat { fid: fid.0 }, OpKind::Stat, out)
    }

    /// Twstat (stat(5)); start from [`Stat::dont_touch`].
    pub fn wstat(&mut self, fid: Fid, stat: &Stat, out: &mut Vec<u8>) -> Result<OpId, Error> {
        self.usable(fid)?;
        let message = Message::Twstat {
            fid: fid.0,
            stat: stat.clone(),
        };
        self.start(message, OpKind::Wstat, out)
    }

    /// Tclunk (clunk(5)). The fid is unusable from now on and free for
    /// reuse once the server answers, whatever it answers.
    pub fn clunk(&mut self, fid: Fid, out: &mut Vec<u8>) -> Result<OpId, Error> {
        self.usable(fid)?;
        let op = self.start(
            Message::Tclunk { fid: fid.0 },
            OpKind::Clunk { fid: fid.0 },
            out,
        )?;
        self.fids.insert(fid.0, FidState::Closing);
        Ok(op)
    }

    /// Tremove (remove(5)): like a clunk, the fid goes even if the remove
    /// fails.
    pub fn remove(&mut self, fid: Fid, out: &mut Vec<u8>) -> Result<OpId, Error> {
        self.usable(fid)?;
        let op = self.start(
            Message::Tremove { fid: fid.0 },
            OpKind::Remove { fid: fid.0 },
            out,
        )?;
        self.fids.insert(fid.0, FidState::Closing);
        Ok(op)
    }

    /// Tflush for an operation whose caller was interrupted (flush(5)).
    /// The operation then completes either with its reply, if that comes
    /// before the Rflush (the server did the work, so it counts), or with
    /// [`Error::Interrupted`]. A read or write that had moved some bytes
    /// before the flush completes with those. Flushing twice is harmless.
    pub fn flush(&mut self, op: OpId, out: &mut Vec<u8>) -> Result<(), Error> {
        let entry = self.ops.get(&op).ok_or(Error::UnknownOp)?;
        match entry.kind {
            OpKind::Version { .. }
            | OpKind::Clunk { .. }
            | OpKind::Remove { .. }
            | OpKind::Cleanup { .. } => return Err(Error::NotInterruptible),
            _ => {}
        }
        if entry.flush.is_some() {
            return Ok(());
        }
        let oldtag = entry.tag;
        let tag = self.free_tag()?;
        let frame = Frame::new(tag, Message::Tflush { oldtag });
        Self::encode(&frame, self.msize, out)?;
        self.tags.insert(tag, TagUse::Flush { oldtag });
        if let Some(entry) = self.ops.get_mut(&op) {
            entry.flush = Some(tag);
        }
        Ok(())
    }

    /// The link is gone: every operation fails with [`Error::HungUp`] and
    /// every tag and fid is forgotten. A new Tversion starts afresh.
    pub fn hang_up(&mut self) -> Vec<Completion> {
        let ops = core::mem::take(&mut self.ops);
        self.tags.clear();
        self.fids.clear();
        self.negotiated = false;
        self.versioning = false;
        ops.into_iter()
            .filter(|(_, op)| !matches!(op.kind, OpKind::Cleanup { .. }))
            .map(|(op, _)| Completion {
                op,
                result: Err(Error::HungUp),
            })
            .collect()
    }

    /// Takes one whole reply frame. Follow-up requests (the next part of a
    /// long walk, read or write, or a clean-up clunk) are appended to
    /// `out`. Returns the operation that ended, if one did. A frame that
    /// belongs to no outstanding request is an error and changes nothing.
    pub fn receive(
        &mut self,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Completion>, ProtocolError> {
        if let Some(done) = self.quick_rread(frame) {
            return Ok(Some(done));
        }
        let reply = match Frame::decode(frame, self.msize) {
            Ok(reply) => reply,
            Err(e) => return self.malformed(frame, e, out),
        };
        let kind = reply.message.message_type();
        if kind.is_request() {
            return Err(ProtocolError::NotAReply(kind));
        }
        let tag_use = *self
            .tags
            .get(&reply.tag)
            .ok_or(ProtocolError::UnknownTag(reply.tag))?;
        match tag_use {
            TagUse::Retired => Ok(None),
            TagUse::Flush { oldtag } => Ok(self.flushed(reply.tag, oldtag, reply.message, out)),
            TagUse::Request { op, kind } => {
                self.release_tag(reply.tag);
                Ok(self.answered(op, kind, reply.message, out))
            }
        }
    }

    /// The commonest answer, an Rread that ends a read in one part, taken
    /// without decoding a [`Message`] first: its bytes are copied once,
    /// into the result. Anything else (a malformed frame included) is left
    /// to the general path, which answers it as it always does.
    fn quick_rread(&mut self, frame: &[u8]) -> Option<Completion> {
        let Rread { tag, data: answer } = Rread::decode(frame, self.msize)?;
        let count = answer.len();
        let Some(&TagUse::Request {
            op,
            kind: MessageType::Tread,
        }) = self.tags.get(&tag)
        else {
            return None;
        };
        let entry = self.ops.get(&op)?;
        let OpKind::Read {
            remaining,
            chunk,
            data,
            ..
        } = &entry.kind
        else {
            return None;
        };
        // A later part, too many bytes, or more to ask for: the general path.
        let last = count < *chunk as usize || count == *remaining as usize;
        if entry.flush.is_some() || !data.is_empty() || count > *chunk as usize || !last {
            return None;
        }
        self.release_tag(tag);
        self.ops.remove(&op);
        Some(Completion {
            op,
            result: Ok(Outcome::Read(answer.to_vec())),
        })
    }

    // A frame that does not decode: if its tag is that of a request, the
    // request's operation fails; otherwise it is the caller's to report.
    fn malformed(
        &mut self,
        frame: &[u8],
        error: ninep::DecodeError,
        out: &mut Vec<u8>,
    ) -> Result<Option<Completion>, ProtocolError> {
        let protocol = ProtocolError::Decode(error);
        let Some(tag) = Frame::peek_tag(frame) else {
            return Err(protocol);
        };
        match self.tags.get(&tag).copied() {
            Some(TagUse::Request { op, .. }) => {
                self.release_tag(tag);
                Ok(self.finish_failed(op, Error::Protocol(protocol), out))
            }
            _ => Err(protocol),
        }
    }

    /// A request's tag leaves the table, unless a flush for it is in flight.
    fn release_tag(&mut self, tag: u16) {
        let flushing = self
            .tags
            .values()
            .any(|u| matches!(u, TagUse::Flush { oldtag } if *oldtag == tag));
        if flushing {
            self.tags.insert(tag, TagUse::Retired);
        } else {
            self.tags.remove(&tag);
        }
    }

    // flush(5): the answer to a Tflush. After an Rflush the old tag is free;
    // if the old request had no reply, it never ran.
    fn flushed(
        &mut self,
        tag: u16,
        oldtag: u16,
        message: Message,
        out: &mut Vec<u8>,
    ) -> Option<Completion> {
        self.tags.remove(&tag);
        let old = self.tags.get(&oldtag).copied();
        let op = match old {
            Some(TagUse::Request { op, .. }) => Some(op),
            _ => None,
        };
        if !matches!(message, Message::Rflush) {
            // A server that cannot flush: the old request may still be
            // answered, so it keeps its tag and its operation waits on.
            if let Some(entry) = op.and_then(|op| self.ops.get_mut(&op)) {
                entry.flush = None;
            }
            return None;
        }
        match old {
            Some(TagUse::Retired) => {
                self.tags.remove(&oldtag);
                None
            }
            Some(TagUse::Request { op, .. }) => {
                self.tags.remove(&oldtag);
                self.interrupted(op, out)
            }
            _ => None,
        }
    }

    // The flushed request never ran: end its operation.
    fn interrupted(&mut self, op: OpId, out: &mut Vec<u8>) -> Option<Completion> {
        let entry = self.ops.remove(&op)?;
        let result = match entry.kind {
            OpKind::Read { data, .. } if !data.is_empty() => Ok(Outcome::Read(data)),
            OpKind::Write { written, .. } if written > 0 => Ok(Outcome::Wrote(count32(written))),
            kind => {
                self.abandon(&kind, out);
                Err(Error::Interrupted)
            }
        };
        Some(Completion { op, result })
    }

    /// Undoes what a failed operation reserved: a fid no server knows is
    /// freed; a walk's newfid that an earlier Twalk made is clunked.
    fn abandon(&mut self, kind: &OpKind, out: &mut Vec<u8>) {
        match *kind {
            OpKind::Attach { fid } => {
                self.fids.remove(&fid);
            }
            OpKind::Walk {
                newfid, done: 0, ..
            } => {
                self.fids.remove(&newfid);
            }
            OpKind::Walk { newfid, .. } => self.cleanup(newfid, out),
            OpKind::Clunk { fid } | OpKind::Remove { fid } | OpKind::Cleanup { fid } => {
                self.fids.remove(&fid);
            }
            OpKind::Version { .. } => self.versioning = false,
            _ => {}
        }
    }

    fn cleanup(&mut self, fid: u32, out: &mut Vec<u8>) {
        self.fids.insert(fid, FidState::Closing);
        // Without a tag the fid stays Closing for good: never reused, which
        // is safe, only a leak on a link already in trouble.
        let _ = self.start(Message::Tclunk { fid }, OpKind::Cleanup { fid }, out);
    }

    fn finish_failed(&mut self, op: OpId, error: Error, out: &mut Vec<u8>) -> Option<Completion> {
        let entry = self.ops.remove(&op)?;
        self.abandon(&entry.kind, out);
        if matches!(entry.kind, OpKind::Cleanup { .. }) {
            return None;
        }
        Some(Completion {
            op,
            result: Err(error),
        })
    }

    // A reply to a request of `op`, whose tag has been released.
    fn answered(
        &mut self,
        op: OpId,
        sent: MessageType,
        message: Message,
        out: &mut Vec<u8>,
    ) -> Option<Completion> {
        let got = message.message_type();
        if let Message::Rerror { ename } = message {
            return self.finish_failed(op, Error::Server(ename), out);
        }
        // The reply type is the request type plus one (intro(5)).
        let expected = MessageType::from_byte(sent as u8 + 1).unwrap_or(MessageType::Rerror);
        if got != expected {
            let error = ProtocolError::UnexpectedReply { expected, got };
            return self.finish_failed(op, Error::Protocol(error), out);
        }
        let mut entry = self.ops.remove(&op)?;
        let flushing = entry.flush.is_some();
        let step = self.step(op, &mut entry, message, flushing, out);
        match step {
            Ok(Step::Continue) => {
                self.ops.insert(op, entry);
                None
            }
            Ok(Step::Done(result)) => {
                if result.is_err() {
                    self.abandon(&entry.kind, out);
                }
                if matches!(entry.kind, OpKind::Cleanup { .. }) {
                    return None;
                }
                Some(Completion { op, result })
            }
            Err(error) => {
                self.abandon(&entry.kind, out);
                Some(Completion {
                    op,
                    result: Err(error),
                })
            }
        }
    }

    /// Applies a reply of the right type to its operation. A flushed
    /// operation does not go on to its next request.
    fn step(
        &mut self,
        op: OpId,
        entry: &mut Op,
        message: Message,
        flushing: bool,
        out: &mut Vec<u8>,
    ) -> Result<Step, Error> {
        let done = |outcome| Ok(Step::Done(Ok(outcome)));
        match (&mut entry.kind, message) {
            // version(5)
            (OpKind::Version { proposed }, Message::Rversion { msize, version }) => {
                self.versioning = false;
                if version != VERSION {
                    return Ok(Step::Done(Err(Error::VersionRejected { version })));
                }
                if msize > *proposed || msize < MIN_MSIZE {
                    let error = ProtocolError::BadMsize {
                        proposed: *proposed,
                        got: msize,
                    };
                    return Err(error.into());
                }
                self.msize = msize;
                self.negotiated = true;
                done(Outcome::Version { msize })
            }
            // attach(5)
            (OpKind::Attach { fid }, Message::Rattach { qid }) => {
                self.fids.insert(*fid, FidState::Live);
                done(Outcome::Attached {
                    fid: Fid(*fid),
                    qid,
                })
            }
            // walk(5): newfid exists only if every name of a Twalk was
            // walked; later Twalks go from newfid to itself.
            (
                OpKind::Walk {
                    newfid,
                    names,
                    done: walked,
                    chunk,
                    qids,
                },
                Message::Rwalk { wqids },
            ) => {
                if wqids.len() > *chunk {
                    let error = ProtocolError::TooMuch {
                        what: "qids",
                        asked: *chunk,
                        got: wqids.len(),
                    };
                    return Err(error.into());
                }
                if wqids.len() < *chunk {
                    let name = names[*walked + wqids.len()].clone();
                    return Ok(Step::Done(Err(Error::NotFound { name })));
                }
                *walked += *chunk;
                qids.extend(wqids);
                if *walked == names.len() {
                    self.fids.insert(*newfid, FidState::Live);
                    let qids = core::mem::take(qids);
                    return done(Outcome::Walked {
                        fid: Fid(*newfid),
                        qids,
                    });
                }
                if flushing {
                    return Ok(Step::Done(Err(Error::Interrupted)));
                }
                *chunk = (names.len() - *walked).min(MAXWELEM);
                let message = Message::Twalk {
                    fid: *newfid,
                    newfid: *newfid,
                    wnames: names[*walked..*walked + *chunk].to_vec(),
                };
                entry.tag = self.send(op, message, out)?;
                Ok(Step::Continue)
            }
            // open(5)
            (OpKind::Open { fid }, Message::Ropen { qid, iounit }) => {
                self.fids.insert(*fid, FidState::Open { iounit });
                done(Outcome::Opened { qid, iounit })
            }
            (OpKind::Create { fid }, Message::Rcreate { qid, iounit }) => {
                self.fids.insert(*fid, FidState::Open { iounit });
                done(Outcome::Created { qid, iounit })
            }
            // read(5)
            (
                OpKind::Read {
                    fid,
                    offset,
                    remaining,
                    chunk,
                    data,
                },
                Message::Rread { data: got },
            ) => {
                if got.len() > *chunk as usize {
                    let error = ProtocolError::TooMuch {
                        what: "bytes",
                        asked: *chunk as usize,
                        got: got.len(),
                    };
                    return Err(error.into());
                }
                let short = got.len() < *chunk as usize;
                // At most `chunk`, which is a u32, so the cast is lossless.
                let count = got.len() as u32;
                // The first (often only) part is moved, not copied.
                if data.is_empty() {
                    *data = got;
                } else {
                    data.extend_from_slice(&got);
                }
                *remaining -= count;
                *offset += u64::from(count);
                if short || *remaining == 0 || flushing {
                    return done(Outcome::Read(core::mem::take(data)));
                }
                *chunk = (*remaining).min(self.io_limit(*fid));
                entry.tag = self.send_tread(op, *fid, *offset, *chunk, out)?;
                Ok(Step::Continue)
            }
            (
                OpKind::Write {
                    fid,
                    offset,
                    data,
                    written,
                    chunk,
                },
                Message::Rwrite { count },
            ) => {
                let count = count as usize;
                if count > *chunk {
                    let error = ProtocolError::TooMuch {
                        what: "bytes written",
                        asked: *chunk,
                        got: count,
                    };
                    return Err(error.into());
                }
                *written += count;
                *offset += count as u64;
                if count < *chunk || *written == data.len() || flushing {
                    return done(Outcome::Wrote(count32(*written)));
                }
                *chunk = (data.len() - *written).min(self.io_limit(*fid) as usize);
                let message = Message::Twrite {
                    fid: *fid,
                    offset: *offset,
                    data: data[*written..*written + *chunk].to_vec(),
                };
                entry.tag = self.send(op, message, out)?;
                Ok(Step::Continue)
            }
            // stat(5)
            (OpKind::Stat, Message::Rstat { stat }) => done(Outcome::Stat(Box::new(stat))),
            (OpKind::Wstat, Message::Rwstat) => done(Outcome::Wstat),
            // clunk(5), remove(5)
            (OpKind::Clunk { fid }, Message::Rclunk) => {
                self.fids.remove(fid);
                done(Outcome::Clunked)
            }
            (OpKind::Remove { fid }, Message::Rremove) => {
                self.fids.remove(fid);
                done(Outcome::Removed)
            }
            (OpKind::Cleanup { fid }, Message::Rclunk) => {
                self.fids.remove(fid);
                done(Outcome::Clunked)
            }
            // `answered` checked the type against the request's, and each
            // request kind maps to one operation kind.
            (_, message) => Err(Error::Protocol(ProtocolError::NotAReply(
                message.message_type(),
            ))),
        }
    }

    /// The most data one Tread or Twrite on `fid` may carry: its iounit if
    /// the server gave one that fits, else msize - IOHDRSZ (open(5)).
    fn io_limit(&self, fid: u32) -> u32 {
        let limit = self.msize.saturating_sub(IOHDRSZ).max(1);
        match self.fids.get(&fid) {
            Some(FidState::Open { iounit }) if *iounit > 0 => (*iounit).min(limit),
            _ => limit,
        }
    }

    fn usable(&self, fid: Fid) -> Result<(), Error> {
        if !self.negotiated {
            return Err(Error::NotNegotiated);
        }
        match self.fids.get(&fid.0) {
            Some(FidState::Live | FidState::Open { .. }) => Ok(()),
            _ => Err(Error::UnknownFid(fid.0)),
        }
    }

    fn new_op(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }

    /// Sends the first request of a new operation.
    fn start(&mut self, message: Message, kind: OpKind, out: &mut Vec<u8>) -> Result<OpId, Error> {
        if !self.negotiated {
            return Err(Error::NotNegotiated);
        }
        let op = self.new_op();
        let tag = self.send(op, message, out)?;
        Ok(self.record(op, tag, kind))
    }

    /// Records a started operation, its first request sent under `tag`.
    #[inline]
    fn record(&mut self, op: OpId, tag: u16, kind: OpKind) -> OpId {
        let entry = Op {
            tag,
            flush: None,
            kind,
        };
        self.ops.insert(op, entry);
        op
    }

    /// Encodes a request of `op` under a fresh tag and records the tag.
    fn send(&mut self, op: OpId, message: Message, out: &mut Vec<u8>) -> Result<u16, Error> {
        let tag = self.free_tag()?;
        let kind = message.message_type();
        let frame = Frame::new(tag, message);
        Self::encode(&frame, self.msize, out)?;
        self.tags.insert(tag, TagUse::Request { op, kind });
        Ok(tag)
    }

    /// [`send`](Self::send) of a Tread, written out directly
    /// ([`ninep::Tread`]): the commonest request, and of a fixed size
    /// (below any msize).
    fn send_tread(
        &mut self,
        op: OpId,
        fid: u32,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<u16, Error> {
        let tag = self.free_tag()?;
        let tread = Tread {
            tag,
            fid,
            offset,
            count,
        };
        tread.encode(out);
        let kind = MessageType::Tread;
        self.tags.insert(tag, TagUse::Request { op, kind });
        Ok(tag)
    }

    fn encode(frame: &Frame, msize: u32, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        frame.encode(out).map_err(Error::Encode)?;
        let size = out.len() - start;
        if size > msize as usize {
            out.truncate(start);
            return Err(Error::TooLarge { size, msize });
        }
        Ok(())
    }

    /// The lowest free tag, as Plan 9's devmnt allocates them: a tag is
    /// reused as soon as the rules allow, which keeps the rules honest.
    fn free_tag(&self) -> Result<u16, Error> {
        lowest_free(self.tags.keys().map(|&t| u32::from(t)), u32::from(NOTAG))
            .map(|t| t as u16)
            .ok_or(Error::TagsExhausted)
    }

    /// The lowest free fid.
    fn free_fid(&self) -> Result<u32, Error> {
        lowest_free(self.fids.keys().copied(), NOFID).ok_or(Error::FidsExhausted)
    }
}

/// The smallest number below `limit` that `used` (ascending) lacks.
fn lowest_free(used: impl Iterator<Item = u32>, limit: u32) -> Option<u32> {
    let mut candidate = 0;
    for n in used {
        if n != candidate {
            break;
        }
        candidate += 1;
    }
    (candidate < limit).then_some(candidate)
}

/// Bytes moved by one operation fit the u32 count they were asked with.
fn count32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
