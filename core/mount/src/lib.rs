//! `#M`, the mount driver: servant calls as 9P2000 on a server's link.
//!
//! Plan 9's devmnt for Kasane's core. The driver owns the links of file
//! servers (task servers today) and the mounts made through them, and it
//! turns every servant call on a mounted file into 9P requests through
//! `ninep-client`. How a frame reaches the server is the [`Transport`]'s
//! business: core's task-server link on the microkernel, an in-process
//! `ninep-server` session in the host tests. One operation runs to its end
//! before the next starts (a long read or walk may be several requests),
//! so one request is outstanding per link.
//!
//! Every `File` this servant hands out is one chan, and holds one fid:
//! - `dev` is the mount's number in bits 0..16 and a serial in bits 16..32.
//! - Walked chans (serial 0) share one fid per (mount, qid path),
//!   counted, so a file keeps the identity (`M`, dev, path) the namespace
//!   finds mount points by. Walks start from these fids.
//! - Opened and created chans (serial > 0) have a fid of their own, a
//!   clone (a Twalk with no names), because an open fid cannot be walked
//!   and its mode is the chan's alone.
//! - `close` clunks: a serial fid at once, a shared one with its last chan.
//!
//! Reads and writes of opened files are posted when the transport
//! [`posts`](Transport::posts): the transport waits a moment for the
//! answer; if it comes, the call is answered at once, and if not, the call
//! answers `Io::WouldBlock`, the answer comes back later through
//! [`MountDriver::deliver`], the driver lists a wakeup, and the caller's
//! retry (same process, file, offset and count) finds the result. So a
//! slow server holds up only the processes reading or writing it. One
//! request is on a link at a time; others queue. Every other operation
//! (walk, open, create, stat, wstat, remove, clunk) is a synchronous
//! exchange, after the link's posted request has been answered.
//!
//! A transport error, or an answer that is not a whole 9P frame, hangs the
//! link up: the transport is stopped and kept
//! in [`MountDriver::take_dead`] with the reason, for its owner to restart
//! on a new link, and every later operation on the old link answers
//! "i/o on hungup channel", as a Plan 9 mount of a dead server does.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use kasane_servant::{Caller, Error, File, Io, LinkId, Opened, Servant, WaitKey};
use ninep::{FileMode, OpenMode, Stat};
use ninep_client::{Client, Fid, FrameReader, OpId, Outcome};

/// The largest 9P message a link carries (Tversion's msize); the
/// transport's buffers must hold it (core's link: `core_abi::link::MSIZE`).
pub const MSIZE: u32 = 8216;

/// Why a link whose answer was not one whole 9P frame hangs up.
const NOT_A_FRAME: &str = "an answer that is not a whole 9P frame";

const MOUNT_BITS: u32 = 16;
const MOUNT_MASK: u32 = (1 << MOUNT_BITS) - 1;

/// How frames reach a file server and come back.
pub trait Transport {
    /// The name the server is known by (its /srv name).
    fn name(&self) -> &str;

    /// One exchange: the T-message `frame` out, the R-message into
    /// `answer`; returns its length. An error hangs the link up.
    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String>;

    /// The link hung up: release the server (destroy its task).
    fn stop(&mut self) {}

    /// Whether the link takes posted requests, whose answers come back
    /// through [`MountDriver::deliver`]. Without, every operation is an
    /// [`exchange`](Self::exchange).
    fn posts(&self) -> bool {
        false
    }

    /// Sends the T-message `frame` and waits a moment (the transport's
    /// patience) for its answer: `Some(length)` if it came, into `answer`;
    /// `None` if it is still to come, through [`MountDriver::deliver`]. A
    /// quick server costs no more than an exchange; a slow one holds up
    /// only its caller. An error hangs the link up.
    fn post(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<Option<usize>, String> {
        let _ = (frame, answer);
        Err(format!(
            "{}: the link does not take posted requests",
            self.name()
        ))
    }

    /// Waits for the answer to the posted request, into `answer`; its
    /// length. Used to settle a link before a synchronous exchange.
    fn collect(&mut self, answer: &mut [u8]) -> Result<usize, String> {
        let _ = answer;
        Err(format!("{}: nothing was posted", self.name()))
    }

    /// Who the server's messages come from (core: its thread), so its
    /// owner can route an answer to [`MountDriver::deliver`].
    fn peer(&self) -> u64 {
        0
    }
}

/// A read or write of a posting link, as its retry will name it: the
/// caller's process, the chan's dev, the offset and the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    pid: u32,
    dev: u32,
    offset: u64,
    count: u32,
    write: bool,
}

/// A posted or queued request: its link, fid, and the bytes to write.
struct Request {
    link: LinkId,
    fid: Fid,
    data: Vec<u8>,
}

/// A server whose link hung up, stopped, for its owner to restart.
#[derive(Debug)]
pub struct Dead<T> {
    pub link: LinkId,
    pub transport: T,
    /// Why the link hung up (the transport's error).
    pub reason: String,
}

struct Link<T> {
    /// `None` once the link hung up: the stopped transport waits in
    /// `MountDriver::dead` for its owner to restart it on a new link.
    server: Option<T>,
    client: Client,
    answer: Box<[u8]>,
    /// A frame is posted and its answer not yet delivered; since when
    /// (the first [`MountDriver::expire`] after the post).
    posted: Option<Option<u64>>,
    /// The request the posted frames belong to, and its client op.
    current: Option<(Pending, OpId)>,
    /// Frames the client made that wait for the link (a long read's next
    /// part, a clean-up clunk).
    outbox: VecDeque<Vec<u8>>,
    /// Requests waiting for the link, oldest first.
    queue: VecDeque<Pending>,
}

/// The mount driver: servers' links, mounts, and a fid per chan.
pub struct MountDriver<T> {
    links: BTreeMap<LinkId, Link<T>>,
    /// Mount number → the link it goes over.
    mounts: BTreeMap<u32, LinkId>,
    next_mount: u32,
    /// Walked chans' fids by (mount, qid path), with their chan counts.
    walked: BTreeMap<(u32, u64), (Fid, u32)>,
    /// Opened chans' fids by dev.
    opened: BTreeMap<u32, Fid>,
    next_serial: u32,
    /// Servers whose links hung up, stopped, for the owner to restart.
    dead: Vec<Dead<T>>,
    /// Posted and queued reads and writes.
    requests: BTreeMap<Pending, Request>,
    /// Their results, until the caller's retry takes them.
    done: BTreeMap<Pending, Result<Outcome, Error>>,
    wakeups: Vec<WaitKey>,
}

/// The spec `#M`'s attach takes from core's mount call: the link, then
/// attach(5)'s aname.
pub fn attach_spec(link: LinkId, aname: &str) -> String {
    format!("{} {aname}", link.0)
}

fn nine(error: ninep_client::Error) -> Error {
    match error {
        ninep_client::Error::NotFound { .. } => Error::NOT_FOUND,
        ninep_client::Error::HungUp => Error::HUNGUP,
        other => Error::new(other.to_string()),
    }
}

impl<T: Transport> Default for MountDriver<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Transport> MountDriver<T> {
    pub fn new() -> Self {
        MountDriver {
            links: BTreeMap::new(),
            mounts: BTreeMap::new(),
            next_mount: 1,
            walked: BTreeMap::new(),
            opened: BTreeMap::new(),
            next_serial: 1,
            dead: Vec::new(),
            requests: BTreeMap::new(),
            done: BTreeMap::new(),
            wakeups: Vec::new(),
        }
    }

    /// The servers whose links hung up since the last call, each stopped
    /// (task destroyed, pages back in its pool). Their links stay hung up:
    /// mounts made through them answer "i/o on hungup channel" until they
    /// are unmounted, as a Plan 9 mount of a dead server does.
    pub fn take_dead(&mut self) -> Vec<Dead<T>> {
        core::mem::take(&mut self.dead)
    }

    /// Adds a server's link.
    pub fn add_link(&mut self, link: LinkId, server: T) {
        let answer = vec![0u8; MSIZE as usize].into_boxed_slice();
        self.links.insert(
            link,
            Link {
                server: Some(server),
                client: Client::new(MSIZE),
                answer,
                posted: None,
                current: None,
                outbox: VecDeque::new(),
                queue: VecDeque::new(),
            },
        );
    }

    /// The link whose server is `peer` ([`Transport::peer`]).
    pub fn link_of_peer(&self, peer: u64) -> Option<LinkId> {
        self.links
            .iter()
            .find(|(_, l)| l.server.as_ref().is_some_and(|s| s.peer() == peer))
            .map(|(id, _)| *id)
    }

    /// The live transport of `link`, for its owner (core pages a task
    /// server whose fault arrives outside an exchange).
    pub fn transport_mut(&mut self, link: LinkId) -> Option<&mut T> {
        self.links.get_mut(&link)?.server.as_mut()
    }

    /// Whether a posted request waits for its answer on any link.
    pub fn in_flight(&self) -> bool {
        self.links.values().any(|l| l.posted.is_some())
    }

    /// Hangs up every link whose posted request has waited longer than
    /// `limit` since `now` was first seen after the post (times in any
    /// unit, e.g. microseconds). Its waiting reads and writes fail.
    pub fn expire(&mut self, now: u64, limit: u64) {
        let mut late = Vec::new();
        for (id, link) in &mut self.links {
            match &mut link.posted {
                Some(since @ None) => *since = Some(now),
                Some(Some(since)) if now.saturating_sub(*since) > limit => late.push(*id),
                _ => {}
            }
        }
        for id in late {
            self.fail_link(id, &"no answer in time");
        }
    }

    /// Forgets the reads and writes of a process that has gone: an answer
    /// still to come is dropped.
    pub fn forget(&mut self, pid: u32) {
        self.requests.retain(|key, _| key.pid != pid);
        self.done.retain(|key, _| key.pid != pid);
    }

    /// Hangs `link` up for a failure of its server's, the reason naming
    /// the server (core's task-server faults, bad answers, silence).
    pub fn fail_link(&mut self, id: LinkId, what: &dyn core::fmt::Display) {
        let name = self
            .links
            .get(&id)
            .and_then(|l| l.server.as_ref())
            .map_or(String::new(), |s| String::from(s.name()));
        self.hang_up(id, format!("{name}: {what}"));
    }

    /// Hangs `link` up: the transport is stopped and kept for its owner
    /// ([`take_dead`](Self::take_dead)), and its reads and writes fail.
    pub fn hang_up(&mut self, id: LinkId, reason: String) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        link.client.hang_up();
        link.posted = None;
        link.outbox.clear();
        let mut failed: Vec<Pending> = link.queue.drain(..).collect();
        failed.extend(link.current.take().map(|(key, _)| key));
        if let Some(mut transport) = link.server.take() {
            transport.stop();
            self.dead.push(Dead {
                link: id,
                transport,
                reason,
            });
        }
        for key in failed {
            self.complete(key, Err(Error::HUNGUP));
        }
    }

    /// The answer to the request posted on `link` (a 9P R-message, as the
    /// server sent it). A frame that does not decode, or an answer
    /// nobody posted, hangs the link up.
    pub fn deliver(&mut self, id: LinkId, frame: &[u8]) {
        self.take_answer(id, frame);
        self.pump(id);
    }

    /// [`deliver`](Self::deliver) without starting what comes next.
    fn take_answer(&mut self, id: LinkId, frame: &[u8]) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        if link.posted.take().is_none() {
            self.fail_link(id, &"an answer nobody asked for");
            return;
        }
        let mut more = Vec::new();
        let finished = match link.client.receive(frame, &mut more) {
            Ok(Some(done)) if matches!(done.result, Err(ninep_client::Error::Protocol(_))) => {
                if let Err(e) = done.result {
                    self.fail_link(id, &format_args!("9P botch: {e}"));
                }
                return;
            }
            Ok(Some(done)) => match link.current {
                Some((key, op)) if op == done.op => {
                    link.current = None;
                    Some((key, done.result.map_err(nine)))
                }
                _ => None,
            },
            Ok(None) if more.is_empty() => {
                // One message is one whole frame (see exchange_op).
                self.fail_link(id, &NOT_A_FRAME);
                return;
            }
            Ok(None) => None,
            Err(e) => {
                self.fail_link(id, &format_args!("9P botch: {e}"));
                return;
            }
        };
        let mut frames = FrameReader::new();
        frames.push(&more);
        while let Ok(Some(frame)) = frames.next_frame(MSIZE) {
            link.outbox.push_back(frame);
        }
        if let Some((key, result)) = finished {
            self.complete(key, result);
        }
    }

    /// [`take_answer`](Self::take_answer) of the `length` bytes the
    /// transport left in the link's answer buffer.
    fn take_buffered_answer(&mut self, id: LinkId, length: usize) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let answer = core::mem::take(&mut link.answer);
        let length = length.min(answer.len());
        self.take_answer(id, &answer[..length]);
        if let Some(link) = self.links.get_mut(&id) {
            link.answer = answer;
        }
    }

    /// Keeps a finished request's result for the caller's retry, unless
    /// its process went, and says so.
    fn complete(&mut self, key: Pending, result: Result<Outcome, Error>) {
        if let Some(request) = self.requests.remove(&key) {
            self.done.insert(key, result);
            // One wakeup says "try again"; more would say nothing more.
            if self.wakeups.is_empty() {
                self.wakeups.push(WaitKey {
                    letter: 'M',
                    key: request.link.0,
                });
            }
        }
    }

    /// Posts the next frame of `link`, or starts its next queued request,
    /// while nothing is on the wire.
    fn pump(&mut self, id: LinkId) {
        loop {
            let Some(link) = self.links.get_mut(&id) else {
                return;
            };
            if link.posted.is_some() || link.server.is_none() {
                return;
            }
            let frame = match link.outbox.pop_front() {
                Some(frame) => frame,
                None => {
                    if let Some((key, _)) = link.current.take() {
                        // Nothing more will come for it.
                        self.complete(key, Err(Error::new("#M: the operation stalled")));
                        continue;
                    }
                    let Some(key) = link.queue.pop_front() else {
                        return;
                    };
                    let Some(request) = self.requests.get(&key) else {
                        continue; // its process went
                    };
                    let mut out = Vec::new();
                    let started = if key.write {
                        link.client
                            .write(request.fid, key.offset, &request.data, &mut out)
                    } else {
                        link.client
                            .read(request.fid, key.offset, key.count, &mut out)
                    };
                    match started {
                        Ok(op) => link.current = Some((key, op)),
                        Err(e) => {
                            self.complete(key, Err(nine(e)));
                            continue;
                        }
                    }
                    let mut frames = FrameReader::new();
                    frames.push(&out);
                    while let Ok(Some(frame)) = frames.next_frame(MSIZE) {
                        link.outbox.push_back(frame);
                    }
                    continue;
                }
            };
            let Some(server) = link.server.as_mut() else {
                return;
            };
            match server.post(&frame, &mut link.answer) {
                Ok(None) => link.posted = Some(None),
                Ok(Some(length)) => {
                    // Answered at once: take it here and go on.
                    link.posted = Some(None);
                    self.take_buffered_answer(id, length);
                }
                Err(reason) => {
                    self.hang_up(id, reason);
                    return;
                }
            }
        }
    }

    /// Waits until nothing is posted on `link` (its answers are taken by
    /// [`Transport::collect`]), before a synchronous exchange.
    fn settle(&mut self, id: LinkId) -> Result<(), Error> {
        loop {
            let link = self.links.get_mut(&id).ok_or(Error::HUNGUP)?;
            let server = link.server.as_mut().ok_or(Error::HUNGUP)?;
            let collected = if link.posted.is_some() {
                server.collect(&mut link.answer).map(Some)
            } else if let Some(frame) = link.outbox.pop_front() {
                link.posted = Some(None);
                server.post(&frame, &mut link.answer)
            } else if let Some((key, _)) = link.current.take() {
                // Nothing more will come for it.
                self.complete(key, Err(Error::new("#M: the operation stalled")));
                continue;
            } else {
                return Ok(());
            };
            match collected {
                // Posted, its answer to come: collected on the next pass.
                Ok(None) => {}
                // Queued requests wait: only what was under way settles.
                Ok(Some(length)) => self.take_buffered_answer(id, length),
                Err(reason) => {
                    self.hang_up(id, reason);
                    return Err(Error::HUNGUP);
                }
            }
        }
    }

    /// A read or write of an opened chan on a posting link: the result if
    /// it came, or the request is posted (or queued) and the caller waits.
    fn posted_io(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
        data: Option<&[u8]>,
    ) -> Result<Option<Io<Outcome>>, Error> {
        let link = self.link_of(file)?;
        let posts = self
            .links
            .get(&link)
            .and_then(|l| l.server.as_ref())
            .is_some_and(|s| s.posts());
        if !posts || file.dev >> MOUNT_BITS == 0 {
            return Ok(None);
        }
        let key = Pending {
            pid: caller.pid,
            dev: file.dev,
            offset,
            count,
            write: data.is_some(),
        };
        let waiting = Io::WouldBlock(WaitKey {
            letter: 'M',
            key: link.0,
        });
        if let Some(result) = self.done.remove(&key) {
            return result.map(|outcome| Some(Io::Ready(outcome)));
        }
        if self.requests.contains_key(&key) {
            return Ok(Some(waiting));
        }
        let fid = self.fid_of(file)?;
        let request = Request {
            link,
            fid,
            data: data.map(<[u8]>::to_vec).unwrap_or_default(),
        };
        self.requests.insert(key, request);
        if let Some(l) = self.links.get_mut(&link) {
            l.queue.push_back(key);
        }
        self.pump(link);
        match self.done.remove(&key) {
            Some(result) => result.map(|outcome| Some(Io::Ready(outcome))),
            None => Ok(Some(waiting)),
        }
    }

    /// Runs one operation to its end, with the follow-up requests the
    /// client makes (parts of a long read, a clean-up clunk).
    fn run(
        &mut self,
        link: LinkId,
        start: impl FnOnce(&mut Client, &mut Vec<u8>) -> Result<OpId, ninep_client::Error>,
    ) -> Result<Outcome, Error> {
        let id = link;
        self.settle(id)?;
        let result = self.exchange_op(id, start);
        self.pump(id);
        result
    }

    fn exchange_op(
        &mut self,
        id: LinkId,
        start: impl FnOnce(&mut Client, &mut Vec<u8>) -> Result<OpId, ninep_client::Error>,
    ) -> Result<Outcome, Error> {
        let link = self.links.get_mut(&id).ok_or(Error::HUNGUP)?;
        let Some(server) = link.server.as_mut() else {
            return Err(Error::HUNGUP);
        };
        let mut out = Vec::new();
        let op = start(&mut link.client, &mut out).map_err(nine)?;
        let mut frames = FrameReader::new();
        frames.push(&out);
        let mut result = None;
        while let Ok(Some(frame)) = frames.next_frame(MSIZE) {
            let length = match server.exchange(&frame, &mut link.answer) {
                Ok(length) => length.min(link.answer.len()),
                Err(reason) => {
                    self.hang_up(id, reason);
                    return Err(Error::HUNGUP);
                }
            };
            let mut more = Vec::new();
            match link.client.receive(&link.answer[..length], &mut more) {
                Ok(Some(done)) if done.op == op => result = Some(done.result),
                Ok(_) => {}
                Err(e) => {
                    // A server that answers with something else than 9P is
                    // broken: its link goes, as on the posted path.
                    self.fail_link(id, &format_args!("9P botch: {e}"));
                    return Err(Error::HUNGUP);
                }
            }
            frames.push(&more);
        }
        match result {
            // The server broke the protocol answering: its link goes.
            Some(Err(ninep_client::Error::Protocol(e))) => {
                self.fail_link(id, &format_args!("9P botch: {e}"));
                Err(Error::HUNGUP)
            }
            Some(result) => result.map_err(nine),
            None => {
                // Each message of the link is one whole frame: an answer
                // that left the operation unfinished was not one.
                self.fail_link(id, &NOT_A_FRAME);
                Err(Error::HUNGUP)
            }
        }
    }

    fn link_of(&self, file: &File) -> Result<LinkId, Error> {
        self.mounts
            .get(&(file.dev & MOUNT_MASK))
            .copied()
            .ok_or(Error::BAD_FD)
    }

    /// The fid of a chan's file.
    fn fid_of(&self, file: &File) -> Result<Fid, Error> {
        let fid = if file.dev >> MOUNT_BITS == 0 {
            self.walked
                .get(&(file.dev, file.qid.path))
                .map(|(fid, _)| *fid)
        } else {
            self.opened.get(&file.dev).copied()
        };
        fid.ok_or(Error::BAD_FD)
    }

    /// A fresh fid on the file of `file` (walk(5) with no names).
    fn clone_fid(&mut self, file: &File) -> Result<Fid, Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.walk(fid, &[], out))? {
            Outcome::Walked { fid, .. } => Ok(fid),
            _ => Err(Error::new("#M: walk answered wrongly")),
        }
    }

    /// A dev with a serial no live chan of `mount` has.
    fn new_serial_dev(&mut self, mount: u32) -> u32 {
        loop {
            let serial = self.next_serial;
            self.next_serial = if serial >= MOUNT_MASK { 1 } else { serial + 1 };
            let dev = mount | (serial << MOUNT_BITS);
            if !self.opened.contains_key(&dev) {
                return dev;
            }
        }
    }

    fn clunk(&mut self, link: LinkId, fid: Fid) {
        let _ = self.run(link, |c, out| c.clunk(fid, out));
    }

    /// Keeps a walked fid, or counts one more chan on the fid the file
    /// already has (and clunks the new one).
    fn keep_walked(&mut self, link: LinkId, mount: u32, path: u64, fid: Fid) {
        match self.walked.get_mut(&(mount, path)) {
            Some((_, count)) => {
                *count += 1;
                self.clunk(link, fid);
            }
            None => {
                self.walked.insert((mount, path), (fid, 1));
            }
        }
    }
}

impl<T: Transport + 'static> Servant for MountDriver<T> {
    fn letter(&self) -> char {
        'M'
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    /// Only core's mount call attaches, with [`attach_spec`]'s spec.
    fn attach(&mut self, caller: &Caller<'_>, spec: &str) -> Result<File, Error> {
        let (link, aname) = spec.split_once(' ').ok_or(Error::NO_ATTACH)?;
        let link = LinkId(link.parse().map_err(|_| Error::NO_ATTACH)?);
        let negotiated = self
            .links
            .get(&link)
            .ok_or(Error::HUNGUP)?
            .client
            .is_negotiated();
        if !negotiated {
            self.run(link, |c, out| c.version(out))?;
        }
        let uname = caller.uname;
        let Outcome::Attached { fid, qid } =
            self.run(link, |c, out| c.attach(uname, aname, out))?
        else {
            return Err(Error::new("#M: attach answered wrongly"));
        };
        let mount = self.next_mount;
        if mount > MOUNT_MASK {
            self.clunk(link, fid);
            return Err(Error::new("#M: too many mounts"));
        }
        self.next_mount += 1;
        self.mounts.insert(mount, link);
        self.walked.insert((mount, qid.path), (fid, 1));
        Ok(File { dev: mount, qid })
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &File, name: &str) -> Result<File, Error> {
        let link = self.link_of(dir)?;
        let fid = self.fid_of(dir)?;
        let Outcome::Walked { fid, qids } = self.run(link, |c, out| c.walk(fid, &[name], out))?
        else {
            return Err(Error::new("#M: walk answered wrongly"));
        };
        let Some(qid) = qids.last().copied() else {
            self.clunk(link, fid);
            return Err(Error::NOT_FOUND);
        };
        let mount = dir.dev & MOUNT_MASK;
        self.keep_walked(link, mount, qid.path, fid);
        Ok(File { dev: mount, qid })
    }

    fn clone_file(&mut self, _caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        let fid = self.clone_fid(file)?;
        let dev = self.new_serial_dev(file.dev & MOUNT_MASK);
        self.opened.insert(dev, fid);
        Ok(File { dev, qid: file.qid })
    }

    fn stat(&mut self, _caller: &Caller<'_>, file: &File) -> Result<Stat, Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        let Outcome::Stat(mut stat) = self.run(link, |c, out| c.stat(fid, out))? else {
            return Err(Error::new("#M: stat answered wrongly"));
        };
        // As devmnt does: the kernel's fields name the mount.
        stat.kind = 'M' as u16;
        stat.dev = file.dev & MOUNT_MASK;
        Ok(stat)
    }

    fn open(&mut self, _caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        if file.dev >> MOUNT_BITS == 0 {
            // Core opens clones only; a shared fid must stay unopened.
            return Err(Error::new("#M: open of a shared chan"));
        }
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.open(fid, mode, out))? {
            Outcome::Opened { qid, .. } => Ok(Opened::File(qid)),
            _ => Err(Error::new("#M: open answered wrongly")),
        }
    }

    fn create(
        &mut self,
        _caller: &Caller<'_>,
        dir: &File,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<File, Error> {
        let link = self.link_of(dir)?;
        let fid = self.clone_fid(dir)?;
        match self.run(link, |c, out| c.create(fid, name, perm, mode, out)) {
            Ok(Outcome::Created { qid, .. }) => {
                let dev = self.new_serial_dev(dir.dev & MOUNT_MASK);
                self.opened.insert(dev, fid);
                Ok(File { dev, qid })
            }
            Ok(_) => {
                self.clunk(link, fid);
                Err(Error::new("#M: create answered wrongly"))
            }
            Err(e) => {
                self.clunk(link, fid);
                Err(e)
            }
        }
    }

    fn read(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        match self.posted_io(caller, file, offset, count, None)? {
            Some(Io::Ready(Outcome::Read(data))) => return Ok(Io::Ready(data)),
            Some(Io::Ready(_)) => return Err(Error::new("#M: read answered wrongly")),
            Some(Io::WouldBlock(key)) => return Ok(Io::WouldBlock(key)),
            None => {}
        }
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.read(fid, offset, count, out))? {
            Outcome::Read(data) => Ok(Io::Ready(data)),
            _ => Err(Error::new("#M: read answered wrongly")),
        }
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        let link = self.link_of(dir)?;
        let fid = self.clone_fid(dir)?;
        let result = (|| {
            self.run(link, |c, out| c.open(fid, OpenMode::OREAD, out))?;
            let mut bytes = Vec::new();
            loop {
                let offset = bytes.len() as u64;
                match self.run(link, |c, out| c.read(fid, offset, MSIZE, out))? {
                    Outcome::Read(data) if data.is_empty() => break,
                    Outcome::Read(data) => bytes.extend_from_slice(&data),
                    _ => return Err(Error::new("#M: read answered wrongly")),
                }
            }
            Stat::decode_directory(&bytes).map_err(|e| Error::new(format!("#M: {e}")))
        })();
        self.clunk(link, fid);
        let mut entries = result?;
        for stat in &mut entries {
            stat.kind = 'M' as u16;
            stat.dev = dir.dev & MOUNT_MASK;
        }
        Ok(entries)
    }

    fn write(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        let count = u32::try_from(data.len()).map_err(|_| Error::TOO_BIG)?;
        match self.posted_io(caller, file, offset, count, Some(data))? {
            Some(Io::Ready(Outcome::Wrote(n))) => return Ok(Io::Ready(n)),
            Some(Io::Ready(_)) => return Err(Error::new("#M: write answered wrongly")),
            Some(Io::WouldBlock(key)) => return Ok(Io::WouldBlock(key)),
            None => {}
        }
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.write(fid, offset, data, out))? {
            Outcome::Wrote(count) => Ok(Io::Ready(count)),
            _ => Err(Error::new("#M: write answered wrongly")),
        }
    }

    fn wstat(&mut self, _caller: &Caller<'_>, file: &File, stat: &Stat) -> Result<(), Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.wstat(fid, stat, out))? {
            Outcome::Wstat => Ok(()),
            _ => Err(Error::new("#M: wstat answered wrongly")),
        }
    }

    fn remove(&mut self, _caller: &Caller<'_>, file: &File) -> Result<(), Error> {
        let link = self.link_of(file)?;
        // remove(5) clunks the fid: a walked fid is shared, so a clone
        // goes; an opened chan's own fid goes, and its close clunks nothing.
        let fid = if file.dev >> MOUNT_BITS == 0 {
            self.clone_fid(file)?
        } else {
            self.opened.remove(&file.dev).ok_or(Error::BAD_FD)?
        };
        self.run(link, |c, out| c.remove(fid, out)).map(|_| ())
    }

    fn take_wakeups(&mut self) -> Vec<WaitKey> {
        core::mem::take(&mut self.wakeups)
    }

    fn close(&mut self, file: &File, _opened: Option<OpenMode>) {
        let Ok(link) = self.link_of(file) else {
            return;
        };
        if file.dev >> MOUNT_BITS != 0 {
            if let Some(fid) = self.opened.remove(&file.dev) {
                self.clunk(link, fid);
            }
            return;
        }
        let key = (file.dev, file.qid.path);
        if let Some((fid, count)) = self.walked.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                let fid = *fid;
                self.walked.remove(&key);
                self.clunk(link, fid);
            }
        }
    }
}
