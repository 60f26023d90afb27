//! A call's journal: the operations it made, replayed when it reruns.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use kasane_servant::{Error, LinkId};
use ninep::{FileMode, OpenMode, Stat};
use ninep_client::{Client, Fid, OpId, Outcome};

use crate::link::{queue_frames, Owner};
use crate::{nine, MountDriver, Transport};

/// One 9P operation, as the driver asks it and as a call's journal
/// records it (the same operation asked again is the same value).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
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
    /// A walk along a whole path, to find a chan's file again after its
    /// server was restarted (`recover`).
    Rewalk {
        fid: Fid,
        names: Vec<String>,
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
    pub(crate) fn start(
        &self,
        c: &mut Client,
        out: &mut Vec<u8>,
    ) -> Result<OpId, ninep_client::Error> {
        match self {
            Op::Version => c.version(out),
            Op::Attach { uname, aname } => c.attach(uname, aname, out),
            Op::Walk {
                fid,
                name: Some(name),
            } => c.walk(*fid, &[name.as_str()], out),
            Op::Walk { fid, name: None } => c.walk(*fid, &[], out),
            Op::Rewalk { fid, names } => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                c.walk(*fid, &names, out)
            }
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

/// The fid an outcome hands out (walk(5) and attach(5) make one).
pub(crate) fn new_fid(result: &Result<Outcome, Error>) -> Option<Fid> {
    match result {
        Ok(Outcome::Walked { fid, .. } | Outcome::Attached { fid, .. }) => Some(*fid),
        _ => None,
    }
}

/// One operation a call made, and its result once it came.
pub(crate) struct Entry {
    /// Names the entry for the answer that completes it.
    pub(crate) id: u64,
    pub(crate) link: LinkId,
    pub(crate) op: Op,
    pub(crate) result: Option<Result<Outcome, Error>>,
}

/// What one process's call has asked of the servers so far
/// (see the module docs).
#[derive(Default)]
pub(crate) struct Journal {
    pub(crate) entries: Vec<Entry>,
    /// How far the current run of the call has come.
    pub(crate) cursor: usize,
    /// The serial of the run the cursor belongs to ([`crate::CallGate`]).
    pub(crate) serial: u32,
    /// Fids the call was given that no chan holds now: handed to the
    /// rerun that takes their walk from the journal, clunked when the
    /// journal goes.
    pub(crate) spare: Vec<(LinkId, Fid)>,
}

impl<T: Transport> MountDriver<T> {
    pub(crate) fn drop_journal(&mut self, pid: u32) {
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
    pub(crate) fn journal(&mut self, pid: u32, serial: u32) -> &mut Journal {
        self.gate.0.journals.store(true, Ordering::Relaxed);
        let journal = self.journals.entry(pid).or_default();
        if journal.serial != serial {
            journal.serial = serial;
            journal.cursor = 0;
        }
        journal
    }

    /// Runs one operation to its end, with the follow-up requests the
    /// client makes (parts of a long read, a clean-up clunk): posted and
    /// journalled in a call on a posting link, else an exchange.
    pub(crate) fn run(&mut self, link: LinkId, op: Op) -> Result<Outcome, Error> {
        if let Some((pid, serial)) = self.gate.current() {
            // A link waiting for its revive: the call's journal may hold
            // the failure of what it had under way, else it waits.
            if self.posts(link) || self.awaits_revive(link) {
                return self.run_in_call(pid, serial, link, op);
            }
        }
        if self.links.get(&link).is_some_and(|l| l.multiplexed) {
            return self.run_alone(link, &op);
        }
        self.settle(link)?;
        let result = self.exchange_op(link, &op);
        self.pump(link);
        result
    }

    /// The result of the journal entry at the cursor, if it is there,
    /// moving the cursor on; a fid it made is no longer spare.
    pub(crate) fn take_entry(&mut self, pid: u32) -> Option<Result<Outcome, Error>> {
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
    pub(crate) fn journal_has(&mut self, pid: u32, serial: u32, link: LinkId, op: &Op) -> bool {
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
    pub(crate) fn awaiting(&self, link: LinkId, op: &Op) -> bool {
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
    pub(crate) fn block(&mut self) -> Error {
        self.gate.block();
        Error::PENDING
    }

    /// An operation of a call on a posting link: its result from the
    /// journal, or it is posted (if the link is free) and its answer waited
    /// for a moment; an answer that does not come in that time blocks the
    /// call.
    pub(crate) fn run_in_call(
        &mut self,
        pid: u32,
        serial: u32,
        link: LinkId,
        op: Op,
    ) -> Result<Outcome, Error> {
        if self.gate.blocked() {
            return Err(Error::PENDING);
        }
        if let Some(error) = self.take_fail_once(pid) {
            return Err(error);
        }
        if self.journal_has(pid, serial, link, &op) {
            return match self.take_entry(pid) {
                Some(result) => result,
                // Asked, and not answered yet.
                None => Err(self.block()),
            };
        }
        if self.awaits_revive(link) {
            return Err(self.block());
        }
        let entry = self.next_entry;
        let l = self.links.get_mut(&link).ok_or(Error::HUNGUP)?;
        if l.server.is_none() {
            return Err(Error::HUNGUP);
        }
        // A link that carries one operation at a time must be idle; a
        // multiplexing one must have room.
        let full = if l.multiplexed {
            !l.has_room()
        } else {
            l.busy()
        };
        if full {
            l.waiters = true;
            return Err(self.block());
        }
        let mut out = Vec::new();
        let started = op.start(&mut l.client, &mut out).map_err(nine)?;
        l.ops.push((Owner::Call { pid, id: entry }, started));
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
}
