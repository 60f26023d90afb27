//! One client connection's protocol state: negotiation, fids, tags, rules.
//!
//! [`Session::handle`] takes one whole frame and appends at most one reply
//! frame. Its invariants:
//! - Every request gets exactly one reply, except a flushed one, which gets
//!   none (flush(5)); a Tflush is answered at once with its own tag.
//! - A frame whose size field is impossible is a [`SessionError`]: the
//!   stream is out of step and the transport must hang up. Any other bad
//!   frame is answered with an Rerror on its tag.
//! - A Twalk that fails part way leaves newfid untouched (walk(5)).
//! - A Tremove clunks its fid whatever the outcome (remove(5)).
//! - A Tversion clunks every fid and abandons every outstanding request
//!   (version(5)).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use ninep::{
    frame_length, DecodeError, FileMode, Frame, Message, OpenMode, Qid, QidType, Rread, Stat,
    Tread, IOHDRSZ, NOFID, RREAD_HEADER, VERSION, VERSION_UNKNOWN,
};

use crate::access::{self, EXEC, WRITE};
use crate::server::{Caller, Completion, FileServer, Reply, RequestId, StatChanges};
use crate::Error;

/// The smallest msize a session accepts: room for a stat with short names
/// and a useful read.
pub const MIN_MSIZE: u32 = 256;

/// The stream can no longer be trusted; the transport must hang up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The frame's header is impossible (size below 7, above msize, or not
    /// the length of the frame handed over).
    BadFrame(DecodeError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadFrame(e) => write!(f, "unrecoverable 9P framing error: {e}"),
        }
    }
}

struct DirCursor {
    /// Encoded stat entries, whole.
    entries: Vec<Vec<u8>>,
    next: usize,
    /// The offset the next read must ask for (read(5)).
    offset: u64,
}

struct Opened {
    mode: OpenMode,
    dir: Option<DirCursor>,
}

struct FidEntry<N> {
    node: N,
    qid: Qid,
    uname: Arc<str>,
    /// The qid path of the attach root, where ".." stays put (walk(5)).
    root: u64,
    open: Option<Opened>,
}

struct Pending {
    id: RequestId,
    /// For a read, the count to clamp a late answer to.
    count: u32,
}

/// The server side of one 9P2000 connection.
pub struct Session<F: FileServer> {
    max_msize: u32,
    msize: u32,
    negotiated: bool,
    fids: BTreeMap<u32, FidEntry<F::Node>>,
    pending: BTreeMap<u16, Pending>,
    next_request: u64,
}

impl<F: FileServer> fmt::Debug for Session<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("msize", &self.msize)
            .field("negotiated", &self.negotiated)
            .field("fids", &self.fids.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Plan 9 file names: not empty, not "." or "..", no '/'.
fn legal_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Appends what a request handler's result says to send, if anything.
fn answer(out: &mut Vec<u8>, tag: u16, result: Result<Option<Message>, Error>) {
    match result {
        Ok(Some(message)) => reply(out, tag, message),
        Ok(None) => {}
        Err(error) => reply_error(out, tag, &error),
    }
}

fn reply(out: &mut Vec<u8>, tag: u16, message: Message) {
    let frame = Frame::new(tag, message);
    if let Err(e) = frame.encode(out) {
        // Only a server's own oversized strings get here; say so instead.
        let ename = format!("server reply could not be encoded: {e}");
        let fallback = Frame::new(tag, Message::Rerror { ename });
        let _ = fallback.encode(out);
    }
}

fn reply_error(out: &mut Vec<u8>, tag: u16, error: &Error) {
    reply(
        out,
        tag,
        Message::Rerror {
            ename: String::from(error.as_str()),
        },
    );
}

/// version(5): "9P2000" and "9P2000.x" get "9P2000"; a later "9Pnnnn"
/// gets our lower "9P2000"; anything else gets "unknown".
fn negotiate_version(client: &str) -> &'static str {
    let base = client.split('.').next().unwrap_or("");
    let Some(number) = base.strip_prefix("9P") else {
        return VERSION_UNKNOWN;
    };
    match number.parse::<u32>() {
        Ok(n) if n >= 2000 && !number.starts_with('+') => VERSION,
        _ => VERSION_UNKNOWN,
    }
}

impl<F: FileServer> Session<F> {
    /// A session that will accept an msize of at most `max_msize`.
    pub fn new(max_msize: u32) -> Self {
        let max_msize = max_msize.max(MIN_MSIZE);
        Self {
            max_msize,
            msize: max_msize,
            negotiated: false,
            fids: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request: 0,
        }
    }

    /// The largest frame the peer may send now: the negotiated msize, or
    /// the server's limit before a Tversion.
    pub fn msize(&self) -> u32 {
        self.msize
    }

    /// How many fids are in use.
    pub fn fid_count(&self) -> usize {
        self.fids.len()
    }

    /// How many requests await [`Session::complete`].
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Handles one whole frame, appending the reply (if any) to `out`.
    pub fn handle(
        &mut self,
        fs: &mut F,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        match frame_length(frame, self.msize) {
            Ok(Some(size)) if size == frame.len() => {}
            Ok(Some(size)) => {
                return Err(SessionError::BadFrame(DecodeError::SizeMismatch {
                    size: u32::try_from(size).unwrap_or(u32::MAX),
                    have: frame.len(),
                }))
            }
            Ok(None) => {
                return Err(SessionError::BadFrame(DecodeError::ShortHeader {
                    have: frame.len(),
                }))
            }
            Err(e) => return Err(SessionError::BadFrame(e)),
        }
        let tag = Frame::peek_tag(frame).unwrap_or(ninep::NOTAG);
        // The commonest request, a Tread, is read off the frame in place.
        if let Some(tread) = Tread::decode(frame) {
            if self.negotiated && !self.pending.contains_key(&tread.tag) {
                let id = self.next_id();
                let Tread {
                    tag,
                    fid,
                    offset,
                    count,
                } = tread;
                let result = self.read(fs, id, tag, fid, offset, count, out);
                answer(out, tag, result);
                return Ok(());
            }
        }
        let request = match Frame::decode(frame, self.msize) {
            Ok(request) => request,
            Err(e) => {
                reply_error(out, tag, &Error::new(format!("bad 9P message: {e}")));
                return Ok(());
            }
        };
        let kind = request.message.message_type();
        if !kind.is_request() {
            let text = format!("{} is a reply, not a request", kind.name());
            reply_error(out, tag, &Error::new(text));
            return Ok(());
        }
        if let Message::Tversion { msize, version } = request.message {
            self.version(fs, tag, msize, &version, out);
            return Ok(());
        }
        if !self.negotiated {
            let text = "Tversion must come first (version(5))";
            reply_error(out, tag, &Error::new(text));
            return Ok(());
        }
        if self.pending.contains_key(&tag) {
            let text = format!("duplicate tag {tag}: a request with it is outstanding");
            reply_error(out, tag, &Error::new(text));
            return Ok(());
        }
        let id = self.next_id();
        let result = match request.message {
            Message::Tauth { .. } => Err(Error::NO_AUTH),
            Message::Tattach {
                fid,
                afid,
                uname,
                aname,
            } => self.attach(fs, fid, afid, &uname, &aname),
            Message::Tflush { oldtag } => Ok(self.flush(fs, oldtag)),
            Message::Twalk {
                fid,
                newfid,
                wnames,
            } => self.walk(fs, id, fid, newfid, &wnames),
            Message::Topen { fid, mode } => self.open(fs, id, fid, mode),
            Message::Tcreate {
                fid,
                name,
                perm,
                mode,
            } => self.create(fs, id, fid, &name, perm, mode),
            Message::Tread { fid, offset, count } => {
                self.read(fs, id, tag, fid, offset, count, out)
            }
            Message::Twrite { fid, offset, data } => self.write(fs, id, tag, fid, offset, &data),
            Message::Tclunk { fid } => self.clunk(fs, id, fid),
            Message::Tremove { fid } => self.remove(fs, id, fid),
            Message::Tstat { fid } => self.stat(fs, fid),
            Message::Twstat { fid, stat } => self.wstat(fs, id, fid, &stat),
            // Replies and Tversion were dealt with above.
            _ => Err(Error::new("unexpected message")),
        };
        answer(out, tag, result);
        Ok(())
    }

    /// Delivers the late answer of a read or write that returned
    /// [`Reply::Later`]. Appends nothing if the request was flushed.
    pub fn complete(&mut self, id: RequestId, completion: Completion, out: &mut Vec<u8>) {
        let Some(tag) = self
            .pending
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(tag, _)| *tag)
        else {
            return;
        };
        let Some(pending) = self.pending.remove(&tag) else {
            return;
        };
        match completion {
            Completion::Read(Ok(mut data)) => {
                data.truncate(pending.count as usize);
                reply(out, tag, Message::Rread { data });
            }
            Completion::Write(Ok(count)) => reply(out, tag, Message::Rwrite { count }),
            Completion::Read(Err(e)) | Completion::Write(Err(e)) => reply_error(out, tag, &e),
        }
    }

    /// Answers every request still waiting with `error`, telling the
    /// server to forget them: for a transport that cannot carry late
    /// answers (a task link answers each request before the next).
    pub fn fail_pending(&mut self, fs: &mut F, error: &Error, out: &mut Vec<u8>) {
        for (tag, pending) in core::mem::take(&mut self.pending) {
            fs.flush(pending.id);
            reply_error(out, tag, error);
        }
    }

    /// The connection is gone: clunk every fid (removing ORCLOSE files) and
    /// abandon outstanding requests.
    pub fn close(&mut self, fs: &mut F) {
        self.abort(fs);
        self.negotiated = false;
    }

    /// A request id never used before.
    fn next_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn abort(&mut self, fs: &mut F) {
        for (_, pending) in core::mem::take(&mut self.pending) {
            fs.flush(pending.id);
        }
        let fids = core::mem::take(&mut self.fids);
        for (_, entry) in fids {
            let id = self.next_id();
            self.release(fs, id, entry);
        }
    }

    /// Ends a fid: ORCLOSE removal (errors are nobody's to hear), then the
    /// server's clunk notice.
    fn release(&mut self, fs: &mut F, id: RequestId, entry: FidEntry<F::Node>) {
        let opened = entry.open.as_ref().map(|o| o.mode);
        if opened.is_some_and(|m| m.contains(OpenMode::ORCLOSE)) {
            let caller = Caller {
                uname: &entry.uname,
                request: id,
            };
            let _ = fs.remove(&caller, &entry.node);
        }
        fs.clunk(&entry.node, opened);
    }

    fn fid(&self, fid: u32) -> Result<&FidEntry<F::Node>, Error> {
        self.fids.get(&fid).ok_or(Error::UNKNOWN_FID)
    }

    fn permitted(fs: &F, stat: &Stat, uname: &str, want: u32) -> bool {
        access::permitted(stat, uname, |u, g| fs.is_member(u, g), want)
    }

    // version(5)
    fn version(&mut self, fs: &mut F, tag: u16, msize: u32, version: &str, out: &mut Vec<u8>) {
        self.abort(fs);
        let answer = negotiate_version(version);
        let msize = msize.min(self.max_msize);
        if answer == VERSION && msize < MIN_MSIZE {
            self.negotiated = false;
            let text = format!("msize {msize} is below the minimum of {MIN_MSIZE}");
            reply_error(out, tag, &Error::new(text));
            return;
        }
        self.negotiated = answer == VERSION;
        if self.negotiated {
            self.msize = msize;
        }
        let message = Message::Rversion {
            msize,
            version: String::from(answer),
        };
        reply(out, tag, message);
    }

    // attach(5)
    fn attach(
        &mut self,
        fs: &mut F,
        fid: u32,
        afid: u32,
        uname: &str,
        aname: &str,
    ) -> Result<Option<Message>, Error> {
        if afid != NOFID {
            return Err(Error::NO_AUTH);
        }
        if self.fids.contains_key(&fid) {
            return Err(Error::FID_IN_USE);
        }
        let (node, qid) = fs.attach(uname, aname)?;
        let entry = FidEntry {
            node,
            qid,
            uname: Arc::from(uname),
            root: qid.path,
            open: None,
        };
        self.fids.insert(fid, entry);
        Ok(Some(Message::Rattach { qid }))
    }

    // flush(5): answer at once, and never answer the flushed request.
    fn flush(&mut self, fs: &mut F, oldtag: u16) -> Option<Message> {
        if let Some(pending) = self.pending.remove(&oldtag) {
            fs.flush(pending.id);
        }
        Some(Message::Rflush)
    }

    // walk(5)
    fn walk(
        &mut self,
        fs: &mut F,
        id: RequestId,
        fid: u32,
        newfid: u32,
        wnames: &[String],
    ) -> Result<Option<Message>, Error> {
        let entry = self.fid(fid)?;
        if entry.open.is_some() {
            return Err(Error::BAD_FID_USE);
        }
        if newfid != fid && self.fids.contains_key(&newfid) {
            return Err(Error::FID_IN_USE);
        }
        if !wnames.is_empty() && !entry.qid.kind.contains(QidType::DIR) {
            return Err(Error::NOT_DIR);
        }
        let uname = entry.uname.clone();
        let root = entry.root;
        let mut node = entry.node.clone();
        let mut qid = entry.qid;
        let mut wqids = Vec::with_capacity(wnames.len());
        let caller = Caller {
            uname: &uname,
            request: id,
        };
        for (i, name) in wnames.iter().enumerate() {
            let step = Self::walk_step(fs, &caller, &node, qid, root, name);
            match step {
                Ok((next, next_qid)) => {
                    node = next;
                    qid = next_qid;
                    wqids.push(qid);
                }
                // Only a failure of the first element is an error.
                Err(e) if i == 0 => return Err(e),
                Err(_) => break,
            }
        }
        if wqids.len() == wnames.len() {
            let entry = FidEntry {
                node,
                qid,
                uname,
                root,
                open: None,
            };
            if let Some(old) = self.fids.insert(newfid, entry) {
                // newfid == fid: the old entry was unopened; tell the server
                // that its node lost this fid.
                fs.clunk(&old.node, None);
            }
        }
        Ok(Some(Message::Rwalk { wqids }))
    }

    fn walk_step(
        fs: &mut F,
        caller: &Caller<'_>,
        dir: &F::Node,
        dir_qid: Qid,
        root: u64,
        name: &str,
    ) -> Result<(F::Node, Qid), Error> {
        if !dir_qid.kind.contains(QidType::DIR) {
            return Err(Error::NOT_DIR);
        }
        let stat = fs.stat(dir)?;
        if !Self::permitted(fs, &stat, caller.uname, EXEC) {
            return Err(Error::PERMISSION_DENIED);
        }
        if name == ".." && dir_qid.path == root {
            return Ok((dir.clone(), dir_qid));
        }
        fs.walk(caller, dir, name)
    }

    fn iounit(&self) -> u32 {
        self.msize.saturating_sub(IOHDRSZ)
    }

    // open(5)
    fn open(
        &mut self,
        fs: &mut F,
        id: RequestId,
        fid: u32,
        mode: OpenMode,
    ) -> Result<Option<Message>, Error> {
        let entry = self.fid(fid)?;
        if entry.open.is_some() {
            return Err(Error::ALREADY_OPEN);
        }
        if mode.bits() & !OpenMode::KNOWN != 0 {
            return Err(Error::ILLEGAL_MODE);
        }
        let is_dir = entry.qid.kind.contains(QidType::DIR);
        if is_dir && (mode.can_write() || mode.contains(OpenMode::OTRUNC)) {
            return Err(Error::IS_DIR);
        }
        let stat = fs.stat(&entry.node)?;
        if !Self::permitted(fs, &stat, &entry.uname, access::needed_for_open(mode)) {
            return Err(Error::PERMISSION_DENIED);
        }
        let caller = Caller {
            uname: &entry.uname,
            request: id,
        };
        let (node, qid) = fs.open_as(&caller, &entry.node, mode)?;
        let iounit = self.iounit();
        if let Some(entry) = self.fids.get_mut(&fid) {
            entry.node = node;
            entry.qid = qid;
            entry.open = Some(Opened {
                mode,
                dir: is_dir.then(|| DirCursor {
                    entries: Vec::new(),
                    next: 0,
                    offset: 0,
                }),
            });
        }
        Ok(Some(Message::Ropen { qid, iounit }))
    }

    // open(5), Tcreate
    fn create(
        &mut self,
        fs: &mut F,
        id: RequestId,
        fid: u32,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<Option<Message>, Error> {
        let entry = self.fid(fid)?;
        if entry.open.is_some() {
            return Err(Error::ALREADY_OPEN);
        }
        if !entry.qid.kind.contains(QidType::DIR) {
            return Err(Error::NOT_DIR);
        }
        if !legal_name(name) {
            return Err(Error::ILLEGAL_NAME);
        }
        if mode.bits() & !OpenMode::KNOWN != 0 {
            return Err(Error::ILLEGAL_MODE);
        }
        if perm.is_dir() && (mode.can_write() || mode.contains(OpenMode::OTRUNC)) {
            return Err(Error::IS_DIR);
        }
        let dir_stat = fs.stat(&entry.node)?;
        if !Self::permitted(fs, &dir_stat, &entry.uname, WRITE) {
            return Err(Error::PERMISSION_DENIED);
        }
        let caller = Caller {
            uname: &entry.uname,
            request: id,
        };
        match fs.walk(&caller, &entry.node, name) {
            Ok((existing, _)) => {
                fs.clunk(&existing, None);
                return Err(Error::EXISTS);
            }
            Err(e) if e != Error::NOT_FOUND => return Err(e),
            Err(_) => {}
        }
        // open(5): the directory's permissions mask the new file's.
        let dir_perm = dir_stat.mode.bits();
        let masked = if perm.is_dir() {
            perm.bits() & (!0o777 | (dir_perm & 0o777))
        } else {
            perm.bits() & (!0o666 | (dir_perm & 0o666))
        };
        let perm = FileMode::from_bits_retain(masked);
        let (node, qid) = fs.create(&caller, &entry.node, name, perm, mode)?;
        let iounit = self.iounit();
        if let Some(entry) = self.fids.get_mut(&fid) {
            let old = core::mem::replace(&mut entry.node, node);
            entry.qid = qid;
            entry.open = Some(Opened {
                mode,
                dir: perm.is_dir().then(|| DirCursor {
                    entries: Vec::new(),
                    next: 0,
                    offset: 0,
                }),
            });
            // The fid no longer refers to the directory.
            fs.clunk(&old, None);
        }
        Ok(Some(Message::Rcreate { qid, iounit }))
    }

    // read(5)
    // A file's Rread is written into `out` here, around the bytes the
    // server appends (`FileServer::read_into`), so they are copied once.
    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        fs: &mut F,
        id: RequestId,
        tag: u16,
        fid: u32,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<Option<Message>, Error> {
        let limit = self.msize.saturating_sub(RREAD_HEADER as u32);
        let count = count.min(limit);
        let entry = self.fids.get_mut(&fid).ok_or(Error::UNKNOWN_FID)?;
        let Some(opened) = entry.open.as_mut() else {
            return Err(Error::BAD_FID_USE);
        };
        if !opened.mode.can_read() {
            return Err(Error::BAD_FID_USE);
        }
        let caller = Caller {
            uname: &entry.uname,
            request: id,
        };
        if let Some(cursor) = opened.dir.as_mut() {
            if offset == 0 {
                let stats = fs.read_dir(&caller, &entry.node)?;
                let mut entries = Vec::with_capacity(stats.len());
                for stat in &stats {
                    let mut bytes = Vec::with_capacity(stat.encoded_len());
                    stat.encode(&mut bytes)
                        .map_err(|e| Error::new(format!("directory entry: {e}")))?;
                    entries.push(bytes);
                }
                *cursor = DirCursor {
                    entries,
                    next: 0,
                    offset: 0,
                };
            } else if offset != cursor.offset {
                return Err(Error::BAD_DIR_OFFSET);
            }
            let mut data = Vec::new();
            while let Some(next) = cursor.entries.get(cursor.next) {
                if data.len() + next.len() > count as usize {
                    break;
                }
                data.extend_from_slice(next);
                cursor.next += 1;
            }
            if data.is_empty() && cursor.next < cursor.entries.len() {
                return Err(Error::new("read count too small for a directory entry"));
            }
            cursor.offset += data.len() as u64;
            return Ok(Some(Message::Rread { data }));
        }
        let start = Rread::begin(out);
        match fs.read_into(&caller, &entry.node, offset, count, out) {
            Ok(Reply::Now(())) => {
                start.finish(out, tag, count);
                Ok(None)
            }
            Ok(Reply::Later) => {
                start.cancel(out);
                self.pending.insert(tag, Pending { id, count });
                Ok(None)
            }
            Err(e) => {
                start.cancel(out);
                Err(e)
            }
        }
    }

    // read(5), Twrite
    fn write(
        &mut self,
        fs: &mut F,
        id: RequestId,
        tag: u16,
        fid: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Option<Message>, Error> {
        let entry = self.fid(fid)?;
        if !entry.open.as_ref().is_some_and(|o| o.mode.can_write()) {
            return Err(Error::BAD_FID_USE);
        }
        let caller = Caller {
            uname: &entry.uname,
            request: id,
        };
        match fs.write(&caller, &entry.node, offset, data)? {
            Reply::Now(count) => Ok(Some(Message::Rwrite {
                count: count.min(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            })),
            Reply::Later => {
                self.pending.insert(tag, Pending { id, count: 0 });
                Ok(None)
            }
        }
    }

    // clunk(5)
    fn clunk(&mut self, fs: &mut F, id: RequestId, fid: u32) -> Result<Option<Message>, Error> {
        let entry = self.fids.remove(&fid).ok_or(Error::UNKNOWN_FID)?;
        self.release(fs, id, entry);
        Ok(Some(Message::Rclunk))
    }

    // remove(5): the fid is clunked even when the remove fails.
    fn remove(&mut self, fs: &mut F, id: RequestId, fid: u32) -> Result<Option<Message>, Error> {
        let entry = self.fids.remove(&fid).ok_or(Error::UNKNOWN_FID)?;
        let caller = Caller {
            uname: &entry.uname,
            request: id,
        };
        let result = fs.remove(&caller, &entry.node);
        fs.clunk(&entry.node, entry.open.as_ref().map(|o| o.mode));
        result.map(|()| Some(Message::Rremove))
    }

    // stat(5)
    fn stat(&mut self, fs: &mut F, fid: u32) -> Result<Option<Message>, Error> {
        let entry = self.fid(fid)?;
        let stat = fs.stat(&entry.node)?;
        Ok(Some(Message::Rstat { stat }))
    }

    // stat(5), wstat: "don't touch" values, who may change what, and
    // all-or-nothing (the server applies the checked set in one step).
    fn wstat(
        &mut self,
        fs: &mut F,
        id: RequestId,
        fid: u32,
        wanted: &Stat,
    ) -> Result<Option<Message>, Error> {
        let entry = self.fid(fid)?;
        let current = fs.stat(&entry.node)?;
        let changes = wstat_changes(fs, &entry.uname, &current, wanted)?;
        let caller = Caller {
            uname: &entry.uname,
            request: id,
        };
        fs.wstat(&caller, &entry.node, &changes)?;
        Ok(Some(Message::Rwstat))
    }
}

/// Turns a Twstat's stat into the changes it asks for, or the error
/// stat(5) prescribes. Values equal to the current ones are no change.
fn wstat_changes<F: FileServer>(
    fs: &F,
    uname: &str,
    current: &Stat,
    wanted: &Stat,
) -> Result<StatChanges, Error> {
    let is_owner = uname == current.uid;
    let leads_group = fs.is_leader(uname, &current.gid);
    let mut changes = StatChanges::default();

    // type, dev and qid cannot change; qid.vers may have moved since the
    // client's stat, so only type and path are compared.
    if wanted.kind != u16::MAX && wanted.kind != current.kind {
        return Err(Error::WSTAT_PROHIBITED);
    }
    if wanted.dev != u32::MAX && wanted.dev != current.dev {
        return Err(Error::WSTAT_PROHIBITED);
    }
    let qid_kind = wanted.qid.kind.bits();
    if qid_kind != 0xFF && qid_kind != current.qid.kind.bits() {
        return Err(Error::WSTAT_PROHIBITED);
    }
    if wanted.qid.path != u64::MAX && wanted.qid.path != current.qid.path {
        return Err(Error::WSTAT_PROHIBITED);
    }
    // "It is illegal to attempt to change the owner of a file."
    if !wanted.uid.is_empty() && wanted.uid != current.uid {
        return Err(Error::WSTAT_PROHIBITED);
    }
    // muid is not checked: Linux sends its uname there on rename.

    if !wanted.name.is_empty() && wanted.name != current.name {
        if !legal_name(&wanted.name) {
            return Err(Error::ILLEGAL_NAME);
        }
        changes.name = Some(wanted.name.clone());
    }
    if wanted.length != u64::MAX && wanted.length != current.length {
        if current.mode.is_dir() {
            return Err(Error::IS_DIR);
        }
        if !access::permitted(current, uname, |u, g| fs.is_member(u, g), WRITE) {
            return Err(Error::PERMISSION_DENIED);
        }
        changes.length = Some(wanted.length);
    }
    if wanted.mode.bits() != u32::MAX && wanted.mode != current.mode {
        if wanted.mode.is_dir() != current.mode.is_dir() {
            return Err(Error::WSTAT_DIR_BIT);
        }
        if !is_owner && !leads_group {
            return Err(Error::NOT_OWNER);
        }
        changes.mode = Some(wanted.mode);
    }
    // stat(5) names mtime; atime is allowed on the same terms because
    // Linux's utimes sends both.
    if wanted.mtime != u32::MAX && wanted.mtime != current.mtime {
        if !is_owner && !leads_group {
            return Err(Error::NOT_OWNER);
        }
        changes.mtime = Some(wanted.mtime);
    }
    if wanted.atime != u32::MAX && wanted.atime != current.atime {
        if !is_owner && !leads_group {
            return Err(Error::NOT_OWNER);
        }
        changes.atime = Some(wanted.atime);
    }
    if !wanted.gid.is_empty() && wanted.gid != current.gid {
        let as_owner = is_owner && fs.is_member(uname, &wanted.gid);
        let as_leader = leads_group && fs.is_leader(uname, &wanted.gid);
        if !as_owner && !as_leader {
            return Err(if is_owner || leads_group {
                Error::NOT_GROUP_MEMBER
            } else {
                Error::GROUP_CHANGE
            });
        }
        changes.gid = Some(wanted.gid.clone());
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::negotiate_version;

    #[test]
    fn versions() {
        assert_eq!(negotiate_version("9P2000"), "9P2000");
        assert_eq!(negotiate_version("9P2000.u"), "9P2000");
        assert_eq!(negotiate_version("9P2000.L"), "9P2000");
        assert_eq!(negotiate_version("9P2010"), "9P2000");
        assert_eq!(negotiate_version("9P1999"), "unknown");
        assert_eq!(negotiate_version("9P"), "unknown");
        assert_eq!(negotiate_version("9P+2000"), "unknown");
        assert_eq!(negotiate_version("styx"), "unknown");
        assert_eq!(negotiate_version(""), "unknown");
    }
}
