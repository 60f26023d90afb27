//! Parked calls: a call that must wait is kept, unanswered, and tried
//! again when what it waits for may have happened.
//!
//! A call is parked when a servant answers "would block" (a pipe, a
//! console line, a slow task server's read or write), when `wait` finds
//! only living children, when it sleeps, or when `#M` met a request still
//! to be answered (the call then runs again from its start and takes the
//! answers it has from `#M`'s journal). Replies go through
//! [`System::reply`]: the first of a pass is deferred to the shell's next
//! receive, any other is sent at once.

use alloc::string::String;
use alloc::vec::Vec;

use core_abi::{Call, STATUS_ERROR, STATUS_OK};
use kasane_servant::Servant;

use crate::servants::CONS;
use crate::{Kernel, Reply, System, Thread};

/// A request as received, kept to be tried again.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) client: Thread,
    pub(crate) pid: u32,
    pub(crate) call: Call,
    pub(crate) words: [u64; 4],
    pub(crate) items: Vec<Vec<u8>>,
}

/// What running a call came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    Reply([u64; 2], Option<Vec<u8>>),
    Fail(String),
    /// Try again later (a would-block servant, a child not yet exited).
    Park,
    /// Until this kernel time (microseconds).
    Sleep(u64),
    /// The client is gone; say nothing.
    Silent,
}

/// What the parked calls wait for, gathered in one pass: the earliest
/// wake-up time, and whether any waits for console input or for a
/// mounted server.
#[derive(Clone, Copy, Default)]
pub(crate) struct Waits {
    pub until: Option<u64>,
    pub console: bool,
    pub mounted: bool,
}

impl Waits {
    pub fn with(self, parked: &Parked) -> Waits {
        Waits {
            until: match (self.until, parked.until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            console: self.console || parked.console,
            mounted: self.mounted || parked.mounted,
        }
    }

    /// Nothing to wake up for but a message.
    pub fn is_idle(&self) -> bool {
        self.until.is_none() && !self.console && !self.mounted
    }
}

/// A call waiting to be tried again.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) request: Request,
    pub(crate) until: Option<u64>,
    /// A read of /dev/cons: tried again at every poll of console input.
    pub(crate) console: bool,
    /// A call waiting for a task server's answer (`#M`): a read or
    /// write, or any operation of a call that found the server slow.
    pub(crate) mounted: bool,
}

impl<K: Kernel> System<K> {
    /// Runs a call (again), and answers or parks it.
    pub(crate) fn attempt(&mut self, request: Request) {
        self.waits = None;
        self.gate.begin(request.pid);
        let mut outcome = self.dispatch(&request);
        // A file server that has not answered yet: the call waits for it
        // and runs again, taking what was answered from #M's journal.
        let blocked = self.gate.blocked();
        if blocked && matches!(outcome, Outcome::Fail(_)) {
            outcome = Outcome::Park;
        }
        let parked = matches!(outcome, Outcome::Park | Outcome::Sleep(_));
        if self.gate.end() {
            self.servants.mount.end_call(request.pid, parked);
        }
        match outcome {
            Outcome::Park => {
                let letter = self.io_letter(&request);
                self.parked.push(Parked {
                    request,
                    until: None,
                    console: letter == Some(('c', true)),
                    mounted: blocked || letter == Some(('M', false)),
                });
            }
            Outcome::Sleep(until) => self.parked.push(Parked {
                request,
                until: Some(until),
                console: false,
                mounted: false,
            }),
            Outcome::Silent => {}
            Outcome::Fail(text) => {
                if let Some(process) = self.processes.get_mut(&request.pid) {
                    process.errstr = text.clone();
                }
                self.reply(request.client, Outcome::Fail(text));
            }
            other => self.reply(request.client, other),
        }
    }

    /// For a read or write: the servant letter of its descriptor, and
    /// whether the file is /dev/cons.
    fn io_letter(&self, request: &Request) -> Option<(char, bool)> {
        if !matches!(
            request.call,
            Call::Read | Call::Pread | Call::Write | Call::Pwrite
        ) {
            return None;
        }
        let chan = self
            .table
            .get(self.fd_handle(request.pid, request.words[0])?)
            .ok()?;
        Some((chan.letter, chan.letter == 'c' && chan.qid.path == CONS))
    }

    /// Tries parked calls again when something they wait for may have
    /// happened: a pipe woke (its servant lists wait keys), a process ended
    /// (`wait`), a ctl request was carried out, a sleep is due, or console
    /// input may have come (reads of /dev/cons poll). Otherwise nothing is
    /// retried, so a call's cost does not grow with the parked calls.
    pub(crate) fn retry_parked(&mut self) {
        let waits = self.parked.iter().fold(Waits::default(), Waits::with);
        let linux = self
            .servants
            .linux
            .as_mut()
            .is_some_and(|runs| !runs.take_wakeups().is_empty());
        // Only whether a pipe woke anyone matters, not whom.
        let piped = self.servants.pipes.has_wakeups();
        if piped {
            self.servants.pipes.take_wakeups();
        }
        let piped = piped || linux;
        let mounted = waits.mounted && !self.servants.mount.take_wakeups().is_empty();
        let piped = piped || mounted;
        let woke = core::mem::take(&mut self.woken) || piped;
        let timed = waits.until.is_some();
        let console = waits.console;
        if !(woke || timed || console) {
            // Nothing changes them before the next receive's timeout.
            self.waits = Some(waits);
            return;
        }
        self.waits = None;
        let now = if timed { self.kernel.now() } else { 0 };
        let parked = core::mem::take(&mut self.parked);
        for entry in parked {
            if !self.processes.contains_key(&entry.request.pid) {
                continue;
            }
            match entry.until {
                Some(until) if until > now => self.parked.push(entry),
                Some(_) => self.reply(entry.request.client, Outcome::Reply([0, 0], None)),
                None if woke || entry.console => self.attempt(entry.request),
                None => self.parked.push(entry),
            }
        }
    }

    /// Answers a call: with the shell's next receive if the pass has no
    /// reply for it yet, else at once.
    pub(crate) fn reply(&mut self, client: Thread, outcome: Outcome) {
        let (status, words, data) = match outcome {
            Outcome::Reply(words, data) => (STATUS_OK, words, data),
            Outcome::Fail(_) => (STATUS_ERROR, [0, 0], None),
            _ => return,
        };
        let reply = Reply {
            client,
            status,
            words,
            data: data.filter(|d| !d.is_empty()),
        };
        if self.deferred.is_none() {
            self.deferred = Some(reply);
            return;
        }
        self.kernel.send(&reply);
    }
}
