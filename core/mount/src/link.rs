//! A link's queue: posted reads and writes, what is on the wire, answers.
//!
//! A link carries one operation at a time, or several at once if its
//! transport [`multiplexes`](crate::Transport::multiplexes) (a server
//! VM's link): then every posted read or write and every call's operation
//! goes out at once with a tag of its own (intro(5): "the tag is chosen
//! by the client to identify the message"), answers are matched to their
//! operations by tag whatever order they come in, and an operation whose
//! process went is flushed (flush(5)) so a server does not hold a read
//! nobody will take.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use kasane_servant::{Caller, Error, File, Io, LinkId, WaitKey};
use ninep_client::{Client, Fid, OpId, Outcome};

use crate::fids::MOUNT_BITS;
use crate::journal::{new_fid, Op};
use crate::transport::NOT_A_FRAME;
use crate::{nine, MountDriver, Transport, MSIZE};

/// Whose operation is on a link's wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A posted read or write.
    Io(Pending),
    /// A journal entry of a process's call.
    Call { pid: u32, id: u64 },
    /// A read or write started on an idle link and waited for within the
    /// same call ([`MountDriver::start_now`]); its result goes to `now`.
    Now,
    /// An operation whose process went: its answer is nobody's (a fid it
    /// made is clunked), even if a later request has the same key.
    Gone,
}

/// Most operations a multiplexing link carries at once; more wait in the
/// link's queue (a call's operation blocks until one ends). Each holds a
/// tag and a server-side request, so this bounds what one client asks of
/// a server.
pub(crate) const MAX_IN_FLIGHT: usize = 32;

impl Owner {
    /// The process the operation is for, if it has one.
    fn pid(&self) -> Option<u32> {
        match self {
            Owner::Io(key) => Some(key.pid),
            Owner::Call { pid, .. } => Some(*pid),
            Owner::Now | Owner::Gone => None,
        }
    }
}

/// What became of a read or write offered to an idle link.
enum Started {
    /// Answered at once.
    Done(Result<Outcome, Error>),
    /// Posted; its answer comes later, as a posted request's does.
    Posted,
    /// The link was not idle: the request is the queue's.
    Busy(Request),
}

/// A read or write of a posting link, as its retry will name it: the
/// caller's process, the chan's dev, the offset and the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pending {
    pid: u32,
    dev: u32,
    offset: u64,
    count: u32,
    write: bool,
}

/// A posted or queued request: its fid, and the bytes to write.
pub(crate) struct Request {
    pub(crate) fid: Fid,
    data: Vec<u8>,
    /// Sent again after its server was restarted (`recover`): a request
    /// is sent again once, so one that kills its server is not sent to
    /// every restart.
    pub(crate) resent: bool,
}

pub(crate) struct Link<T> {
    /// `None` once the link hung up: the stopped transport waits in
    /// `MountDriver::dead` for its owner to restart it on a new link.
    pub(crate) server: Option<T>,
    pub(crate) client: Client,
    pub(crate) answer: Box<[u8]>,
    /// Frames posted whose answers are not yet delivered (at most one
    /// unless the link multiplexes).
    pub(crate) posted: usize,
    /// Since when the link has waited for an answer (the first
    /// [`MountDriver::expire`] after a post or an answer).
    pub(crate) since: Option<u64>,
    /// The link carries several operations at once, with no answer
    /// deadline ([`Transport::multiplexes`]).
    pub(crate) multiplexed: bool,
    /// The operations under way, and their client ops.
    pub(crate) ops: Vec<(Owner, OpId)>,
    /// Frames the client made that wait for the link (a long read's next
    /// part, a clean-up clunk).
    pub(crate) outbox: VecDeque<Vec<u8>>,
    /// Requests waiting for the link, oldest first.
    pub(crate) queue: VecDeque<Pending>,
    /// A call's operation found the link busy (or, multiplexing, full):
    /// wake it when there is room.
    pub(crate) waiters: bool,
    /// The last frame posted, emptied: the next request is written into
    /// it, so a quiet link's reads allocate no frame.
    pub(crate) spare: Vec<u8>,
    /// Reads and writes under way or queued when the link hung up, kept
    /// for a revive (`recover`).
    pub(crate) stranded: Vec<Pending>,
    /// Hung up, and its owner may yet revive it (no
    /// [`MountDriver::give_up`]): in recovery, what comes for it waits.
    pub(crate) revivable: bool,
    /// What the requests under way at the last hang-up fail with instead
    /// of being sent again ([`Transport::restart_error`]).
    pub(crate) lost: Option<&'static str>,
}

impl<T> Link<T> {
    /// Something is on the wire, waits to go out, or is under way.
    pub(crate) fn busy(&self) -> bool {
        self.posted > 0 || !self.ops.is_empty() || !self.outbox.is_empty() || !self.queue.is_empty()
    }

    /// Whether core watches the link's answers: it has an answer deadline
    /// (it does not multiplex), or its server is probed.
    pub(crate) fn watched(&self) -> bool
    where
        T: Transport,
    {
        !self.multiplexed || self.server.as_ref().is_some_and(Transport::probes)
    }

    /// Whether another operation may start now: on an idle link, or on a
    /// multiplexing one that carries fewer than [`MAX_IN_FLIGHT`].
    pub(crate) fn has_room(&self) -> bool {
        if self.multiplexed {
            self.ops.len() < MAX_IN_FLIGHT
        } else {
            self.posted == 0 && self.ops.is_empty() && self.outbox.is_empty()
        }
    }
}

/// Queues the requests a client wrote into `out`: whole frames, one after
/// another (each starts with its size, intro(5)). The usual single frame
/// is moved into the queue, not copied.
pub(crate) fn queue_frames(outbox: &mut VecDeque<Vec<u8>>, out: Vec<u8>) {
    let size = |bytes: &[u8]| -> Option<usize> {
        let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        let size = u32::from_le_bytes(head) as usize;
        (size >= 7 && size <= bytes.len()).then_some(size)
    };
    if size(&out) == Some(out.len()) {
        outbox.push_back(out);
        return;
    }
    let mut rest = &out[..];
    while let Some(n) = size(rest) {
        outbox.push_back(rest[..n].to_vec());
        rest = &rest[n..];
    }
}

/// Starts the posted read or write `key` names on the client: its frames
/// into `out`.
#[inline]
fn start_io(
    client: &mut Client,
    key: &Pending,
    request: &Request,
    out: &mut Vec<u8>,
) -> Result<OpId, ninep_client::Error> {
    if key.write {
        client.write(request.fid, key.offset, &request.data, out)
    } else {
        client.read(request.fid, key.offset, key.count, out)
    }
}

impl<T: Transport> MountDriver<T> {
    /// Wakes the callers waiting on `link`. One wakeup says "try again";
    /// more would say nothing more.
    pub(crate) fn wake(&mut self, link: LinkId) {
        if self.wakeups.is_empty() {
            self.wakeups.push(WaitKey {
                letter: 'M',
                key: link.0,
            });
        }
    }

    /// Whether `link` is hung up in recovery and its owner is restarting
    /// its server: a call's operation on it waits for the revive rather
    /// than failing with "i/o on hungup channel" (an open while the
    /// server is down is made on the new one).
    pub(crate) fn awaits_revive(&self, id: LinkId) -> bool {
        self.recovering
            && self
                .links
                .get(&id)
                .is_some_and(|l| l.server.is_none() && l.revivable)
    }

    /// Adds a server's link.
    pub fn add_link(&mut self, link: LinkId, server: T) {
        let answer = vec![0u8; MSIZE as usize].into_boxed_slice();
        self.links.insert(
            link,
            Link {
                multiplexed: server.multiplexes(),
                server: Some(server),
                client: Client::new(MSIZE),
                answer,
                posted: 0,
                since: None,
                ops: Vec::new(),
                outbox: VecDeque::new(),
                queue: VecDeque::new(),
                waiters: false,
                spare: Vec::new(),
                stranded: Vec::new(),
                revivable: false,
                lost: None,
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

    /// Whether a posted request waits for its answer on a link that has
    /// an answer deadline (one that does not multiplex) or whose server
    /// is probed ([`Transport::probes`]).
    pub fn in_flight(&self) -> bool {
        self.links.values().any(|l| l.posted > 0 && l.watched())
    }

    /// Hangs up every link whose posted request has waited longer than
    /// `limit` since `now` was first seen after the post (times in any
    /// unit, e.g. microseconds), not counting the time its transport held
    /// the request unsent ([`Transport::holding`]). Its waiting reads and
    /// writes fail. A
    /// multiplexing link has no deadline: its server may hold a request
    /// as long as it likes (a `listen`). Whoever runs the server watches
    /// it instead: hvm's heartbeat restarts a hung VM, and a task server
    /// that [`probes`](Transport::probes) is asked, each `limit`, whether
    /// it still takes requests.
    pub fn expire(&mut self, now: u64, limit: u64) {
        let mut late = Vec::new();
        for (id, link) in &mut self.links {
            let held = |link: &Link<T>| link.server.as_ref().is_some_and(Transport::holding);
            if link.posted == 0 || !link.watched() || held(link) {
                link.since = None;
                continue;
            }
            match link.since {
                None => link.since = Some(now),
                Some(since) if now.saturating_sub(since) > limit => late.push(*id),
                Some(_) => {}
            }
        }
        for id in late {
            let Some(link) = self.links.get_mut(&id) else {
                continue;
            };
            if !link.multiplexed {
                self.fail_link(id, &"no answer in time");
                continue;
            }
            let probed = link.server.as_mut().map(Transport::probe);
            match probed {
                Some(Err(why)) => self.fail_link(id, &why),
                // Alive: its requests may wait on.
                _ => link.since = Some(now),
            }
        }
    }

    /// Forgets the reads and writes of a process that has gone: an answer
    /// still to come is dropped.
    pub fn forget(&mut self, pid: u32) {
        self.requests.retain(|key, _| key.pid != pid);
        self.done.retain(|key, _| key.pid != pid);
        self.fail_once.remove(&pid);
        self.drop_journal(pid);
        self.flush_owned_by(pid);
    }

    /// Makes every operation of process `pid` still under way nobody's,
    /// and on a multiplexing link sends a Tflush (flush(5)) for each: its
    /// server forgets a request that waits (a read for data, a `listen`),
    /// and the answer, the Rflush or a late reply, is dropped. A link that
    /// carries one request at a time gets its answer soon anyway.
    fn flush_owned_by(&mut self, pid: u32) {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            let Some(link) = self.links.get_mut(&id) else {
                continue;
            };
            let flush = link.multiplexed && link.server.is_some();
            let mut out = Vec::new();
            for (owner, op) in &mut link.ops {
                if owner.pid() == Some(pid) {
                    *owner = Owner::Gone;
                    if flush {
                        // A clunk or remove cannot be flushed; it ends soon.
                        let _ = link.client.flush(*op, &mut out);
                    }
                }
            }
            if !out.is_empty() {
                queue_frames(&mut link.outbox, out);
                self.pump(id);
            }
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
        if link.posted == 0 {
            self.fail_link(id, &"an answer nobody asked for");
            return;
        }
        link.posted -= 1;
        link.since = None;
        let mut more = Vec::new();
        let finished = match link.client.receive(frame, &mut more) {
            Ok(Some(done)) if matches!(done.result, Err(ninep_client::Error::Protocol(_))) => {
                if let Err(e) = done.result {
                    self.fail_link(id, &format_args!("9P botch: {e}"));
                }
                return;
            }
            // The tag named the operation; answers come in any order.
            Ok(Some(done)) => match link.ops.iter().position(|(_, op)| *op == done.op) {
                Some(at) => {
                    let (owner, _) = link.ops.remove(at);
                    Some((owner, done.result.map_err(nine)))
                }
                None => None,
            },
            Ok(None) if more.is_empty() && !link.multiplexed => {
                // One message is one whole frame (see exchange_op).
                self.fail_link(id, &NOT_A_FRAME);
                return;
            }
            // An Rflush, the late reply to a flushed request, or a part
            // that asks for the next.
            Ok(None) => None,
            Err(e) => {
                self.fail_link(id, &format_args!("9P botch: {e}"));
                return;
            }
        };
        queue_frames(&mut link.outbox, more);
        if let Some((owner, result)) = finished {
            self.complete(id, owner, result);
        }
    }

    /// [`take_answer`](Self::take_answer) of the `length` bytes the
    /// transport left in the link's answer buffer.
    pub(crate) fn take_buffered_answer(&mut self, id: LinkId, length: usize) {
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

    /// Keeps a finished operation's result for the caller's retry, unless
    /// its process (or its call) went, and says so.
    pub(crate) fn complete(&mut self, link: LinkId, owner: Owner, result: Result<Outcome, Error>) {
        match owner {
            Owner::Io(key) => {
                if self.requests.remove(&key).is_some() {
                    self.done.insert(key, result);
                    self.wake(link);
                }
            }
            Owner::Now => self.now = Some(result),
            Owner::Gone => {
                if let Some(fid) = new_fid(&result) {
                    self.clunk_later(link, fid);
                }
            }
            Owner::Call { pid, id } => {
                let entry = self.journals.get_mut(&pid).and_then(|journal| {
                    let at = journal.entries.iter().position(|e| e.id == id)?;
                    Some((journal, at))
                });
                match entry {
                    Some((journal, at)) => {
                        // The fid is the call's until a run takes it.
                        if let Some(fid) = new_fid(&result) {
                            journal.spare.push((link, fid));
                        }
                        journal.entries[at].result = Some(result);
                        self.wake(link);
                    }
                    None => {
                        // Nobody will take what it made.
                        if let Some(fid) = new_fid(&result) {
                            self.clunk_later(link, fid);
                        }
                    }
                }
            }
        }
    }

    /// Posts the frames of `link` that wait, and starts its queued
    /// requests, as far as the link takes them: one frame on the wire at
    /// a time, or on a multiplexing link all of them (up to
    /// [`MAX_IN_FLIGHT`] operations).
    pub(crate) fn pump(&mut self, id: LinkId) {
        loop {
            let Some(link) = self.links.get_mut(&id) else {
                return;
            };
            if link.server.is_none() || (link.posted > 0 && !link.multiplexed) {
                return;
            }
            let frame = match link.outbox.pop_front() {
                Some(frame) => frame,
                None => {
                    if link.posted == 0 && !link.ops.is_empty() {
                        // Nothing more will come for them.
                        for (owner, _) in core::mem::take(&mut link.ops) {
                            let error = Error::new("#M: the operation stalled");
                            self.complete(id, owner, Err(error));
                        }
                        continue;
                    }
                    if !link.has_room() {
                        return;
                    }
                    let Some(key) = link.queue.pop_front() else {
                        // Room: a call that found none may go on.
                        if core::mem::take(&mut link.waiters) {
                            self.wake(id);
                        }
                        return;
                    };
                    let Some(request) = self.requests.get(&key) else {
                        continue; // its process went
                    };
                    let mut out = core::mem::take(&mut link.spare);
                    match start_io(&mut link.client, &key, request, &mut out) {
                        Ok(op) => link.ops.push((Owner::Io(key), op)),
                        Err(e) => {
                            self.complete(id, Owner::Io(key), Err(nine(e)));
                            continue;
                        }
                    }
                    queue_frames(&mut link.outbox, out);
                    continue;
                }
            };
            let Some(server) = link.server.as_mut() else {
                return;
            };
            let posted = server.post(&frame, &mut link.answer);
            link.spare = frame;
            link.spare.clear();
            match posted {
                Ok(None) => link.posted += 1,
                Ok(Some(length)) => {
                    // Answered at once: take it here and go on.
                    link.posted += 1;
                    self.take_buffered_answer(id, length);
                }
                Err(reason) => {
                    self.hang_up(id, reason);
                    return;
                }
            }
        }
    }

    /// A read or write of an opened chan on a posting link: the result if
    /// it came, or the request is posted (or queued) and the caller waits.
    pub(crate) fn posted_io(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
        data: Option<&[u8]>,
    ) -> Result<Option<Io<Outcome>>, Error> {
        let link = self.link_of(file)?;
        if let Some(error) = self.take_fail_once(caller.pid) {
            return Err(error);
        }
        let key = Pending {
            pid: caller.pid,
            dev: file.dev,
            offset,
            count,
            write: data.is_some(),
        };
        // A result kept for this retry is its, even if the link hung up
        // since (a request that failed with its server).
        if let Some(result) = self.done.remove(&key) {
            return result.map(|outcome| Some(Io::Ready(outcome)));
        }
        let posts = self
            .links
            .get(&link)
            .and_then(|l| l.server.as_ref())
            .is_some_and(|s| s.posts());
        let down = self.awaits_revive(link);
        if (!posts && !down) || file.dev >> MOUNT_BITS == 0 {
            return Ok(None);
        }
        // In a call that has asked the server something already (a spawn
        // reading its program after the walk and open), the I/O goes in
        // the journal too: a rerun must not ask again for what it read.
        if let Some((pid, serial)) = self.gate.current() {
            if self
                .journals
                .get(&pid)
                .is_some_and(|j| !j.entries.is_empty())
            {
                let fid = self.fid_of(file)?;
                let op = match data {
                    Some(data) => Op::Write {
                        fid,
                        offset,
                        data: data.to_vec(),
                    },
                    None => Op::Read { fid, offset, count },
                };
                return self
                    .run_in_call(pid, serial, link, op)
                    .map(|outcome| Some(Io::Ready(outcome)));
            }
        }
        let waiting = Io::WouldBlock(WaitKey {
            letter: 'M',
            key: link.0,
        });
        if self.requests.contains_key(&key) {
            return Ok(Some(waiting));
        }
        let fid = self.fid_of(file)?;
        let request = Request {
            fid,
            data: data.map(<[u8]>::to_vec).unwrap_or_default(),
            resent: false,
        };
        if down {
            // Its server is being restarted: the revive sends it.
            self.requests.insert(key, request);
            // (Once: a killed process's key may still be listed.)
            if let Some(l) = self
                .links
                .get_mut(&link)
                .filter(|l| !l.stranded.contains(&key))
            {
                l.stranded.push(key);
            }
            return Ok(Some(waiting));
        }
        let request = match self.start_now(link, key, request) {
            Started::Done(result) => return result.map(|outcome| Some(Io::Ready(outcome))),
            Started::Posted => return Ok(Some(waiting)),
            Started::Busy(request) => request,
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

    /// Starts a read or write at once on an idle link, past the request
    /// queue and the result table: a server that answers within the post
    /// (a task server does, unless it is slow) gives the result here, and
    /// nobody is woken for it. An answer still to come makes it an
    /// ordinary posted request, which the caller's retry collects.
    fn start_now(&mut self, id: LinkId, key: Pending, request: Request) -> Started {
        let Some(link) = self.links.get_mut(&id) else {
            return Started::Busy(request);
        };
        if link.server.is_none() || link.busy() {
            return Started::Busy(request);
        }
        let mut out = core::mem::take(&mut link.spare);
        let op = match start_io(&mut link.client, &key, &request, &mut out) {
            Ok(op) => op,
            Err(e) => return Started::Done(Err(nine(e))),
        };
        link.ops.push((Owner::Now, op));
        queue_frames(&mut link.outbox, out);
        // Only here is the frame going out known to be the caller's read,
        // so only here may the transport aim its answer at the reader.
        let aim = self.aim.take().filter(|_| !key.write);
        if let Some(server) = link.server.as_mut().filter(|_| aim.is_some()) {
            server.aim(aim);
        }
        self.pump(id);
        if aim.is_some() {
            if let Some(server) = self.links.get_mut(&id).and_then(|l| l.server.as_mut()) {
                self.aimed = server.take_aimed();
                server.aim(None);
            }
        }
        if let Some(result) = self.now.take() {
            let dead = self.links.get(&id).is_none_or(|l| l.server.is_none());
            if self.recovering && dead && matches!(&result, Err(e) if *e == Error::HUNGUP) {
                // The server died on it: the request waits for its
                // restart, as a posted one does.
                self.requests.insert(key, request);
                if let Some(link) = self.links.get_mut(&id) {
                    link.stranded.push(key);
                }
                return Started::Posted;
            }
            return Started::Done(result);
        }
        // Under way: its answer completes it as a posted request.
        if let Some((owner, _)) = self
            .links
            .get_mut(&id)
            .and_then(|l| l.ops.iter_mut().find(|(owner, _)| *owner == Owner::Now))
        {
            *owner = Owner::Io(key);
        }
        self.requests.insert(key, request);
        Started::Posted
    }

    pub(crate) fn posts(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .and_then(|l| l.server.as_ref())
            .is_some_and(|s| s.posts())
    }
}
