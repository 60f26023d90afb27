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
//! request is on a link at a time; others queue.
//!
//! Every other operation (version, attach, walk, open, create, stat, wstat,
//! remove, and the reads of a directory listing) is posted too while core
//! handles a call ([`MountDriver::begin_call`] to
//! [`MountDriver::end_call`]). Such an operation that is not answered at
//! once, or that finds the link busy, fails the call with
//! [`Error::PENDING`]; core parks the call and runs it again from the start
//! once a wakeup comes. The driver keeps a *journal* per process: every
//! operation the call made, in order, with its result. The call's rerun
//! takes each result from the journal instead of asking the server again,
//! so a create or remove is done once, and the fids the first run was given
//! are handed to the rerun rather than clunked (clunks made while the
//! failed run unwinds are held back as the journal's spare fids). A rerun
//! that goes another way than the journal says (the namespace changed in
//! between) drops the rest of the journal and asks afresh; the journal and
//! any spare fids go when the call ends. So a server that is slow to walk
//! or stat holds up only the processes that use it, not core. Reads and
//! writes go in the journal too when the call has already asked the server
//! something (a spawn reading its program after the walk and open), so a
//! rerun never reads again what it has. Clunks never wait: they are queued
//! on the link.
//!
//! Outside a call (core's own mounts at boot), and on links that do not
//! post, an operation is a synchronous exchange after the link's posted
//! request has been answered.
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
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use kasane_servant::{Caller, Error, File, Io, LinkId, Opened, Servant, WaitKey};
use litemap::LiteMap;
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

/// Which call core is handling, shared between core and the driver so
/// that neither goes through the servant table on every call: core says
/// when a call begins and ends, the driver says whether it blocked.
/// Core is one thread; the atomics are there to make sharing sound, not
/// for contention.
#[derive(Clone, Default)]
pub struct CallGate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    /// The call's serial in bits 32..64 and its pid in bits 0..32; 0
    /// when no call is being handled.
    call: AtomicU64,
    serial: AtomicU32,
    /// The call met an operation still to be answered.
    blocked: AtomicBool,
    /// Some process has a journal: a call's end must be told to the
    /// driver ([`MountDriver::end_call`]).
    journals: AtomicBool,
    /// A link hung up since core last asked ([`MountDriver::take_dead`]).
    hung_up: AtomicBool,
}

impl CallGate {
    /// Core starts handling a call of process `pid`: operations on
    /// posting links are posted and journalled, and a rerun of a parked
    /// call takes its results from the journal (module docs).
    pub fn begin(&self, pid: u32) {
        let serial = self.0.serial.fetch_add(1, Ordering::Relaxed).max(1);
        let word = (u64::from(serial) << 32) | u64::from(pid);
        self.0.call.store(word, Ordering::Relaxed);
        self.0.blocked.store(false, Ordering::Relaxed);
    }

    /// Whether the call being handled met an operation still to be
    /// answered ([`Error::PENDING`]): core parks it, whatever error the
    /// call ended with, and runs it again after a wakeup.
    pub fn blocked(&self) -> bool {
        self.0.blocked.load(Ordering::Relaxed)
    }

    /// Core is done with the call. True if the driver must hear of it
    /// ([`MountDriver::end_call`]): some process has a journal.
    pub fn end(&self) -> bool {
        self.0.call.store(0, Ordering::Relaxed);
        self.0.journals.load(Ordering::Relaxed)
    }

    /// Whether a link hung up since the last time this was asked: only
    /// then has [`MountDriver::take_dead`] anything to give.
    pub fn take_hang_ups(&self) -> bool {
        self.0.hung_up.swap(false, Ordering::Relaxed)
    }

    /// The call being handled: its pid and serial.
    fn current(&self) -> Option<(u32, u32)> {
        let word = self.0.call.load(Ordering::Relaxed);
        (word != 0).then_some((word as u32, (word >> 32) as u32))
    }

    fn block(&self) {
        self.0.blocked.store(true, Ordering::Relaxed);
    }
}

/// One 9P operation, as the driver asks it and as a call's journal
/// records it (the same operation asked again is the same value).
#[derive(Clone, Debug, PartialEq)]
enum Op {
    Version,
    Attach {
        uname: String,
        aname: String,
    },
    /// A walk of one name, or a clone (walk(5) with no names).
    Walk {
        fid: Fid,
        name: Option<String>,
    },
    Open {
        fid: Fid,
        mode: OpenMode,
    },
    Create {
        fid: Fid,
        name: String,
        perm: FileMode,
        mode: OpenMode,
    },
    Read {
        fid: Fid,
        offset: u64,
        count: u32,
    },
    Write {
        fid: Fid,
        offset: u64,
        data: Vec<u8>,
    },
    Stat {
        fid: Fid,
    },
    Wstat {
        fid: Fid,
        stat: Stat,
    },
    Remove {
        fid: Fid,
    },
    Clunk {
        fid: Fid,
    },
}

impl Op {
    /// Starts the operation on the client: its frames into `out`.
    fn start(&self, c: &mut Client, out: &mut Vec<u8>) -> Result<OpId, ninep_client::Error> {
        match self {
            Op::Version => c.version(out),
            Op::Attach { uname, aname } => c.attach(uname, aname, out),
            Op::Walk {
                fid,
                name: Some(name),
            } => c.walk(*fid, &[name.as_str()], out),
            Op::Walk { fid, name: None } => c.walk(*fid, &[], out),
            Op::Open { fid, mode } => c.open(*fid, *mode, out),
            Op::Create {
                fid,
                name,
                perm,
                mode,
            } => c.create(*fid, name, *perm, *mode, out),
            Op::Read { fid, offset, count } => c.read(*fid, *offset, *count, out),
            Op::Write { fid, offset, data } => c.write(*fid, *offset, data, out),
            Op::Stat { fid } => c.stat(*fid, out),
            Op::Wstat { fid, stat } => c.wstat(*fid, stat, out),
            Op::Remove { fid } => c.remove(*fid, out),
            Op::Clunk { fid } => c.clunk(*fid, out),
        }
    }
}

/// Queues the requests a client wrote into `out`: whole frames, one after
/// another (each starts with its size, intro(5)). The usual single frame
/// is moved into the queue, not copied.
fn queue_frames(outbox: &mut VecDeque<Vec<u8>>, out: Vec<u8>) {
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

/// The fid an outcome hands out (walk(5) and attach(5) make one).
fn new_fid(result: &Result<Outcome, Error>) -> Option<Fid> {
    match result {
        Ok(Outcome::Walked { fid, .. } | Outcome::Attached { fid, .. }) => Some(*fid),
        _ => None,
    }
}

/// One operation a call made, and its result once it came.
struct Entry {
    /// Names the entry for the answer that completes it.
    id: u64,
    link: LinkId,
    op: Op,
    result: Option<Result<Outcome, Error>>,
}

/// What one process's call has asked of the servers so far
/// (see the module docs).
#[derive(Default)]
struct Journal {
    entries: Vec<Entry>,
    /// How far the current run of the call has come.
    cursor: usize,
    /// The serial of the run the cursor belongs to ([`CallGate`]).
    serial: u32,
    /// Fids the call was given that no chan holds now: handed to the
    /// rerun that takes their walk from the journal, clunked when the
    /// journal goes.
    spare: Vec<(LinkId, Fid)>,
}

/// Whose operation is on a link's wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// A posted read or write.
    Io(Pending),
    /// A journal entry of a process's call.
    Call { pid: u32, id: u64 },
    /// A read or write started on an idle link and waited for within the
    /// same call ([`MountDriver::start_now`]); its result goes to `now`.
    Now,
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
struct Pending {
    pid: u32,
    dev: u32,
    offset: u64,
    count: u32,
    write: bool,
}

/// A posted or queued request: its fid, and the bytes to write.
struct Request {
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
    /// The operation the posted frames belong to, and its client op.
    current: Option<(Owner, OpId)>,
    /// Frames the client made that wait for the link (a long read's next
    /// part, a clean-up clunk).
    outbox: VecDeque<Vec<u8>>,
    /// Requests waiting for the link, oldest first.
    queue: VecDeque<Pending>,
    /// A call's operation found the link busy: wake it when it is free.
    waiters: bool,
    /// The last frame posted, emptied: the next request is written into
    /// it, so a quiet link's reads allocate no frame.
    spare: Vec<u8>,
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
    requests: LiteMap<Pending, Request>,
    /// Their results, until the caller's retry takes them.
    done: LiteMap<Pending, Result<Outcome, Error>>,
    /// The result of the read or write [`start_now`](Self::start_now)
    /// waits for.
    now: Option<Result<Outcome, Error>>,
    wakeups: Vec<WaitKey>,
    /// The call core is handling.
    gate: CallGate,
    /// Calls' journals by process.
    journals: BTreeMap<u32, Journal>,
    next_entry: u64,
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
            requests: LiteMap::new(),
            done: LiteMap::new(),
            now: None,
            wakeups: Vec::new(),
            gate: CallGate::default(),
            journals: BTreeMap::new(),
            next_entry: 1,
        }
    }

    /// The gate core marks its calls with.
    pub fn gate(&self) -> CallGate {
        self.gate.clone()
    }

    /// [`CallGate::begin`].
    pub fn begin_call(&mut self, pid: u32) {
        self.gate.begin(pid);
    }

    /// [`CallGate::blocked`].
    pub fn call_blocked(&self) -> bool {
        self.gate.blocked()
    }

    /// Core is done with the call of `pid`: `parked` if it will run again
    /// (its journal stays), else its journal goes and its spare fids are
    /// clunked.
    pub fn end_call(&mut self, pid: u32, parked: bool) {
        self.gate.end();
        if !parked {
            self.drop_journal(pid);
        }
    }

    fn drop_journal(&mut self, pid: u32) {
        if let Some(journal) = self.journals.remove(&pid) {
            for (link, fid) in journal.spare {
                self.clunk_later(link, fid);
            }
        }
        let any = !self.journals.is_empty();
        self.gate.0.journals.store(any, Ordering::Relaxed);
    }

    /// The journal of the call being handled, its cursor at the start
    /// if this is a new run of the call.
    fn journal(&mut self, pid: u32, serial: u32) -> &mut Journal {
        self.gate.0.journals.store(true, Ordering::Relaxed);
        let journal = self.journals.entry(pid).or_default();
        if journal.serial != serial {
            journal.serial = serial;
            journal.cursor = 0;
        }
        journal
    }

    /// Wakes the callers waiting on `link`. One wakeup says "try again";
    /// more would say nothing more.
    fn wake(&mut self, link: LinkId) {
        if self.wakeups.is_empty() {
            self.wakeups.push(WaitKey {
                letter: 'M',
                key: link.0,
            });
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
                waiters: false,
                spare: Vec::new(),
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
        self.drop_journal(pid);
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
        let waiters = core::mem::take(&mut link.waiters);
        let mut failed: Vec<Owner> = link.queue.drain(..).map(Owner::Io).collect();
        failed.extend(link.current.take().map(|(owner, _)| owner));
        if let Some(mut transport) = link.server.take() {
            transport.stop();
            self.gate.0.hung_up.store(true, Ordering::Relaxed);
            self.dead.push(Dead {
                link: id,
                transport,
                reason,
            });
        }
        for owner in failed {
            self.complete(id, owner, Err(Error::HUNGUP));
        }
        if waiters {
            self.wake(id);
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
                Some((owner, op)) if op == done.op => {
                    link.current = None;
                    Some((owner, done.result.map_err(nine)))
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
        queue_frames(&mut link.outbox, more);
        if let Some((owner, result)) = finished {
            self.complete(id, owner, result);
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

    /// Keeps a finished operation's result for the caller's retry, unless
    /// its process (or its call) went, and says so.
    fn complete(&mut self, link: LinkId, owner: Owner, result: Result<Outcome, Error>) {
        match owner {
            Owner::Io(key) => {
                if self.requests.remove(&key).is_some() {
                    self.done.insert(key, result);
                    self.wake(link);
                }
            }
            Owner::Now => self.now = Some(result),
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
                    if let Some((owner, _)) = link.current.take() {
                        // Nothing more will come for it.
                        self.complete(id, owner, Err(Error::new("#M: the operation stalled")));
                        continue;
                    }
                    let Some(key) = link.queue.pop_front() else {
                        // Free: a call that found it busy may go on.
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
                        Ok(op) => link.current = Some((Owner::Io(key), op)),
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
            } else if let Some((owner, _)) = link.current.take() {
                // Nothing more will come for it.
                self.complete(id, owner, Err(Error::new("#M: the operation stalled")));
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
            fid,
            data: data.map(<[u8]>::to_vec).unwrap_or_default(),
        };
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
        let idle = link.server.is_some()
            && link.posted.is_none()
            && link.current.is_none()
            && link.outbox.is_empty()
            && link.queue.is_empty();
        if !idle {
            return Started::Busy(request);
        }
        let mut out = core::mem::take(&mut link.spare);
        let op = match start_io(&mut link.client, &key, &request, &mut out) {
            Ok(op) => op,
            Err(e) => return Started::Done(Err(nine(e))),
        };
        link.current = Some((Owner::Now, op));
        queue_frames(&mut link.outbox, out);
        self.pump(id);
        if let Some(result) = self.now.take() {
            return Started::Done(result);
        }
        // Under way: its answer completes it as a posted request.
        if let Some((owner, _)) = self
            .links
            .get_mut(&id)
            .and_then(|l| l.current.as_mut())
            .filter(|(owner, _)| *owner == Owner::Now)
        {
            *owner = Owner::Io(key);
        }
        self.requests.insert(key, request);
        Started::Posted
    }

    fn posts(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .and_then(|l| l.server.as_ref())
            .is_some_and(|s| s.posts())
    }

    /// Runs one operation to its end, with the follow-up requests the
    /// client makes (parts of a long read, a clean-up clunk): posted and
    /// journalled in a call on a posting link, else an exchange.
    fn run(&mut self, link: LinkId, op: Op) -> Result<Outcome, Error> {
        if let Some((pid, serial)) = self.gate.current() {
            if self.posts(link) {
                return self.run_in_call(pid, serial, link, op);
            }
        }
        self.settle(link)?;
        let result = self.exchange_op(link, &op);
        self.pump(link);
        result
    }

    /// The result of the journal entry at the cursor, if it is there,
    /// moving the cursor on; a fid it made is no longer spare.
    fn take_entry(&mut self, pid: u32) -> Option<Result<Outcome, Error>> {
        let journal = self.journals.get_mut(&pid)?;
        let entry = journal.entries.get(journal.cursor)?;
        let result = entry.result.clone()?;
        let link = entry.link;
        journal.cursor += 1;
        if let Some(fid) = new_fid(&result) {
            journal.spare.retain(|&spare| spare != (link, fid));
        }
        Some(result)
    }

    /// Whether the journal's entry at the cursor is `op` on `link`; if
    /// another one is there, the call went another way and the journal's
    /// rest is dropped.
    fn journal_has(&mut self, pid: u32, serial: u32, link: LinkId, op: &Op) -> bool {
        let journal = self.journal(pid, serial);
        match journal.entries.get(journal.cursor) {
            Some(entry) if entry.link == link && entry.op == *op => true,
            Some(_) => {
                // Answers still to come for the dropped entries find no
                // entry, and clunk what they made (`complete`).
                journal.entries.truncate(journal.cursor);
                false
            }
            None => false,
        }
    }

    /// Whether the current call sent `op` on `link` and awaits its
    /// answer (its journal entry at the cursor has no result yet).
    fn awaiting(&self, link: LinkId, op: &Op) -> bool {
        let Some((pid, _)) = self.gate.current() else {
            return false;
        };
        self.journals
            .get(&pid)
            .and_then(|j| j.entries.get(j.cursor))
            .is_some_and(|e| e.link == link && e.op == *op && e.result.is_none())
    }

    /// The call could not go on: it fails with [`Error::PENDING`] and
    /// core parks it.
    fn block(&mut self) -> Error {
        self.gate.block();
        Error::PENDING
    }

    /// An operation of a call on a posting link: its result from the
    /// journal, or it is posted (if the link is free) and its answer waited
    /// for a moment; an answer that does not come in that time blocks the
    /// call.
    fn run_in_call(
        &mut self,
        pid: u32,
        serial: u32,
        link: LinkId,
        op: Op,
    ) -> Result<Outcome, Error> {
        if self.gate.blocked() {
            return Err(Error::PENDING);
        }
        if self.journal_has(pid, serial, link, &op) {
            return match self.take_entry(pid) {
                Some(result) => result,
                // Asked, and not answered yet.
                None => Err(self.block()),
            };
        }
        let entry = self.next_entry;
        let l = self.links.get_mut(&link).ok_or(Error::HUNGUP)?;
        if l.server.is_none() {
            return Err(Error::HUNGUP);
        }
        if l.posted.is_some() || l.current.is_some() || !l.outbox.is_empty() || !l.queue.is_empty()
        {
            l.waiters = true;
            return Err(self.block());
        }
        let mut out = Vec::new();
        let started = op.start(&mut l.client, &mut out).map_err(nine)?;
        l.current = Some((Owner::Call { pid, id: entry }, started));
        queue_frames(&mut l.outbox, out);
        self.next_entry += 1;
        self.journal(pid, serial).entries.push(Entry {
            id: entry,
            link,
            op,
            result: None,
        });
        self.pump(link);
        match self.take_entry(pid) {
            Some(result) => result,
            None => Err(self.block()),
        }
    }

    fn exchange_op(&mut self, id: LinkId, start: &Op) -> Result<Outcome, Error> {
        let link = self.links.get_mut(&id).ok_or(Error::HUNGUP)?;
        let Some(server) = link.server.as_mut() else {
            return Err(Error::HUNGUP);
        };
        let mut out = Vec::new();
        let op = start.start(&mut link.client, &mut out).map_err(nine)?;
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
        match self.run(link, Op::Walk { fid, name: None })? {
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

    /// Releases `fid`. On a posting link it is queued and never waits;
    /// in a call it is journalled (a rerun does not clunk again), and
    /// while a blocked call unwinds it is held back as a spare fid.
    fn clunk(&mut self, link: LinkId, fid: Fid) {
        if !self.posts(link) {
            let _ = self.run(link, Op::Clunk { fid });
            return;
        }
        if let Some((pid, serial)) = self.gate.current() {
            if self.gate.blocked() {
                self.journal(pid, serial).spare.push((link, fid));
                return;
            }
            let op = Op::Clunk { fid };
            if self.journal_has(pid, serial, link, &op) {
                self.take_entry(pid);
                return;
            }
            let id = self.next_entry;
            self.next_entry += 1;
            let journal = self.journal(pid, serial);
            journal.entries.push(Entry {
                id,
                link,
                op,
                result: Some(Ok(Outcome::Clunked)),
            });
            journal.cursor += 1;
        }
        self.clunk_later(link, fid);
    }

    /// Queues a Tclunk of `fid` on a posting link; its answer is not
    /// waited for.
    fn clunk_later(&mut self, id: LinkId, fid: Fid) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        if link.server.is_none() {
            return;
        }
        let mut out = Vec::new();
        if link.client.clunk(fid, &mut out).is_ok() {
            queue_frames(&mut link.outbox, out);
        }
        self.pump(id);
    }

    /// Keeps a walked fid, or counts one more chan on the fid the file
    /// already has (and clunks the new one).
    fn keep_walked(&mut self, link: LinkId, mount: u32, path: u64, fid: Fid) {
        match self.walked.get_mut(&(mount, path)) {
            Some((kept, count)) => {
                *count += 1;
                // A rerun may be handed the very fid a chan still holds.
                if *kept != fid {
                    self.clunk(link, fid);
                }
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
            self.run(link, Op::Version)?;
        }
        let attach = Op::Attach {
            uname: caller.uname.into(),
            aname: aname.into(),
        };
        let Outcome::Attached { fid, qid } = self.run(link, attach)? else {
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
        let walk = Op::Walk {
            fid,
            name: Some(name.into()),
        };
        let Outcome::Walked { fid, qids } = self.run(link, walk)? else {
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
        let Outcome::Stat(stat) = self.run(link, Op::Stat { fid })? else {
            return Err(Error::new("#M: stat answered wrongly"));
        };
        let mut stat = *stat;
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
        match self.run(link, Op::Open { fid, mode })? {
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
        let create = Op::Create {
            fid,
            name: name.into(),
            perm,
            mode,
        };
        match self.run(link, create) {
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
        match self.run(link, Op::Read { fid, offset, count })? {
            Outcome::Read(data) => Ok(Io::Ready(data)),
            _ => Err(Error::new("#M: read answered wrongly")),
        }
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        let link = self.link_of(dir)?;
        let fid = self.clone_fid(dir)?;
        let result = (|| {
            let mode = OpenMode::OREAD;
            self.run(link, Op::Open { fid, mode })?;
            let mut bytes = Vec::new();
            loop {
                let offset = bytes.len() as u64;
                let count = MSIZE;
                match self.run(link, Op::Read { fid, offset, count })? {
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
        let write = Op::Write {
            fid,
            offset,
            data: data.to_vec(),
        };
        match self.run(link, write)? {
            Outcome::Wrote(count) => Ok(Io::Ready(count)),
            _ => Err(Error::new("#M: write answered wrongly")),
        }
    }

    fn wstat(&mut self, _caller: &Caller<'_>, file: &File, stat: &Stat) -> Result<(), Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        let wstat = Op::Wstat {
            fid,
            stat: stat.clone(),
        };
        match self.run(link, wstat)? {
            Outcome::Wstat => Ok(()),
            _ => Err(Error::new("#M: wstat answered wrongly")),
        }
    }

    fn remove(&mut self, _caller: &Caller<'_>, file: &File) -> Result<(), Error> {
        let link = self.link_of(file)?;
        // remove(5) clunks the fid: a walked fid is shared, so a clone
        // goes; an opened chan's own fid goes, and its close clunks nothing.
        let cloned = file.dev >> MOUNT_BITS == 0;
        let fid = if cloned {
            self.clone_fid(file)?
        } else {
            self.opened.remove(&file.dev).ok_or(Error::BAD_FD)?
        };
        let op = Op::Remove { fid };
        let result = self.run(link, op.clone());
        if matches!(&result, Err(e) if *e == Error::PENDING) && !self.awaiting(link, &op) {
            // Blocked before the Tremove went out: the fid is still the
            // call's (a spare for the rerun, or the chan's again).
            if cloned {
                self.clunk(link, fid);
            } else {
                self.opened.insert(file.dev, fid);
            }
        }
        result.map(|_| ())
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
