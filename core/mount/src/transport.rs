//! How frames reach a server, the synchronous exchange, and hang-ups.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use kasane_servant::{Error, LinkId};
use ninep_client::{FrameReader, Outcome};

use crate::journal::Op;
use crate::link::Owner;
use crate::user::UserLink;
use crate::{nine, MountDriver};

/// The largest 9P message a link carries (Tversion's msize); the
/// transport's buffers must hold it (core's link: `core_abi::link::MSIZE`).
pub const MSIZE: u32 = 8216;

/// Why a link whose answer was not one whole 9P frame hangs up.
pub(crate) const NOT_A_FRAME: &str = "an answer that is not a whole 9P frame";

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

    /// Whether the link carries several requests at once, each with its
    /// own tag, their answers in any order (a server VM's link: its
    /// runtime reads every request as it comes and answers each when it
    /// is done). Such a link has no answer deadline: its server may hold
    /// a request as long as it likes (a `listen`), and whoever runs the
    /// server watches it instead (hvm's heartbeat). Without, one request
    /// is on the link at a time and an answer later than core's limit
    /// hangs the link up. Only a link that [`posts`](Self::posts) may
    /// multiplex.
    fn multiplexes(&self) -> bool {
        false
    }

    /// Whether the transport still holds the requests posted to it, not
    /// yet sent (the Linux link, while its agent boots): no answer
    /// deadline runs for a link until they go out.
    fn holding(&self) -> bool {
        false
    }

    /// Whether a link that [`multiplexes`](Self::multiplexes) is watched
    /// by asking its server, with [`probe`](Self::probe), whether it still
    /// takes requests, when nothing has come back from it for core's
    /// answer limit while requests wait (a multiplexing task server's;
    /// a server VM's is watched by hvm's heartbeat instead).
    fn probes(&self) -> bool {
        false
    }

    /// Asks the server whether it still takes requests; an error hangs
    /// the link up.
    fn probe(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// What a read or write under way when the link hangs up fails with,
    /// once, if the restarted server must not be sent it again; `None`
    /// (the default) has [`MountDriver::revive`] send it again. A server
    /// that comes back with none of the old one's state (a Linux cell
    /// booted again from its image) says so here: `linux cell restarted`.
    fn restart_error(&self) -> Option<&'static str> {
        None
    }

    /// Asks the server to perform failure `verb` for real (`crash`,
    /// `triple-fault`, `wild-write`, `hang`, `garbage`): core's failure
    /// injection. Its effect comes back as the link's failure.
    fn inject(&mut self, verb: &str) -> Result<(), String> {
        Err(format!("{}: cannot inject {verb}", self.name()))
    }

    /// Where the server runs, for core's boot line: `task` or `vm`.
    fn placement(&self) -> &'static str {
        "task"
    }

    /// Who the server's messages come from (core: its thread), so its
    /// owner can route an answer to [`MountDriver::deliver`].
    fn peer(&self) -> u64 {
        0
    }

    /// Points the data of the next answer that is an Rread at `target`
    /// instead of the answer buffer (the zero-copy read, docs/performance.md),
    /// or takes the aim back (`None`). A transport that cannot ignores it.
    fn aim(&mut self, target: Option<ReadTarget>) {
        let _ = target;
    }

    /// How many bytes of data the last answer put at the aimed target, if
    /// one did: that Rread then reaches the driver with no data.
    fn take_aimed(&mut self) -> Option<usize> {
        None
    }

    /// The user-level link this transport is, if it is one (a server
    /// process's pipe, [`UserLink`]): its owner moves its frames.
    fn user(&mut self) -> Option<&mut UserLink> {
        None
    }
}

/// Where a read's data may go directly: `length` bytes at `address` in the
/// transport's owner's space, which aliases the reader's own buffer (core
/// has checked that the reader may write every byte of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadTarget {
    pub address: u64,
    pub length: usize,
}

/// A server whose link hung up, stopped, for its owner to restart.
#[derive(Debug)]
pub struct Dead<T> {
    pub link: LinkId,
    pub transport: T,
    /// Why the link hung up (the transport's error).
    pub reason: String,
}

impl<T: Transport> MountDriver<T> {
    /// The servers whose links hung up since the last call, each stopped
    /// (task destroyed, pages back in its pool). Their links stay hung up:
    /// mounts made through them answer "i/o on hungup channel" until they
    /// are unmounted, as a Plan 9 mount of a dead server does.
    pub fn take_dead(&mut self) -> Vec<Dead<T>> {
        core::mem::take(&mut self.dead)
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
        link.posted = 0;
        link.since = None;
        link.outbox.clear();
        if let Some(server) = link.server.as_ref() {
            link.lost = server.restart_error();
            link.revivable = true;
        }
        let waiters = core::mem::take(&mut link.waiters);
        let mut failed: Vec<Owner> = link.queue.drain(..).map(Owner::Io).collect();
        failed.extend(link.ops.drain(..).map(|(owner, _)| owner));
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
            if let Some(error) = self.strand(id, owner) {
                self.complete(id, owner, Err(error));
            }
        }
        if waiters {
            self.wake(id);
        }
    }

    /// Waits until nothing is posted on `link` (its answers are taken by
    /// [`Transport::collect`]), before a synchronous exchange.
    pub(crate) fn settle(&mut self, id: LinkId) -> Result<(), Error> {
        loop {
            let link = self.links.get_mut(&id).ok_or(Error::HUNGUP)?;
            let server = link.server.as_mut().ok_or(Error::HUNGUP)?;
            let collected = if link.posted > 0 {
                server.collect(&mut link.answer).map(Some)
            } else if let Some(frame) = link.outbox.pop_front() {
                link.posted += 1;
                server.post(&frame, &mut link.answer)
            } else if let Some((owner, _)) = link.ops.pop() {
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

    /// Runs `op` to its end on a multiplexing link outside a call (core's
    /// own mounts at boot): posted beside whatever the link carries, and
    /// the link's answers collected, each to its owner, until `op`'s
    /// comes. Unlike [`settle`](Self::settle) it does not wait for the
    /// requests already out, which may wait for good (a `listen`).
    pub(crate) fn run_alone(&mut self, id: LinkId, op: &Op) -> Result<Outcome, Error> {
        let link = self.links.get_mut(&id).ok_or(Error::HUNGUP)?;
        if link.server.is_none() {
            return Err(Error::HUNGUP);
        }
        let mut out = Vec::new();
        let started = op.start(&mut link.client, &mut out).map_err(nine)?;
        link.ops.push((Owner::Now, started));
        crate::link::queue_frames(&mut link.outbox, out);
        self.now = None;
        loop {
            self.pump(id);
            if let Some(result) = self.now.take() {
                return result;
            }
            let link = self.links.get_mut(&id).ok_or(Error::HUNGUP)?;
            let server = link.server.as_mut().ok_or(Error::HUNGUP)?;
            match server.collect(&mut link.answer) {
                Ok(length) => self.take_buffered_answer(id, length),
                Err(reason) => self.hang_up(id, reason),
            }
        }
    }

    pub(crate) fn exchange_op(&mut self, id: LinkId, start: &Op) -> Result<Outcome, Error> {
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
}
