//! Transparent recovery: a link whose server was restarted gets its fids
//! back, and the reads and writes it was carrying are sent again.
//!
//! When a server's link hangs up and its owner restarts the server (a
//! task server's new task; a server VM restarted by hvm), the owner hands
//! the new transport to [`MountDriver::revive`] on the *same* link. The
//! driver then, synchronously (core calls it between calls):
//!
//! 1. negotiates again (Tversion) on a fresh client;
//! 2. attaches again for every mount made through the link, with the
//!    mount's user name and aname (attach(5));
//! 3. walks every chan's fid again from that root along the names the
//!    chan was walked by (walk(5)), and opens each opened chan again with
//!    its mode, less OTRUNC and ORCLOSE (open(5): a truncation or a
//!    remove-on-close was done once, by the first open);
//! 4. sends again the reads and writes that were posted or queued when
//!    the link hung up, on the new fids (9P reads and writes name their
//!    offset, so sending one twice gives the same bytes);
//! 5. forgets what calls' journals hold of the link (their fids died with
//!    the server): a parked call runs again from its start and asks the
//!    new server afresh. A call that had a create, remove, wstat or an
//!    open that writes under way fails once with [`Error::RESTARTED`]
//!    instead, since it cannot know whether the old server did it.
//!
//! A chan whose file the new server does not have (it was created after
//! the server started, say) is *gone*: every operation on it fails with
//! [`Error::GONE`], never with another file's data; it is closed as usual.
//! So is a chan whose names now lead to a file with another qid path: a
//! qid path names one file of a server (intro(5)), and a clone file's
//! open (ip(3)'s `clone`) makes a new file each time. When the server
//! refuses the walk with a reason other than "file does not exist", the
//! chan fails with that reason (the network server's "connection reset:
//! network restarted" for a conversation of its earlier start).
//! If the new server fails during recovery, its link hangs up again and
//! the owner may restart it again. The owner that does not restart a
//! server calls [`MountDriver::give_up`], which fails what waited.
//!
//! Limits: a chan renamed (wstat) before the restart is walked again by
//! its old name; a server that gives its files other qid paths at each
//! start loses every chan at a restart; a write to an append-only file is
//! sent again like any other.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use kasane_servant::{Error, LinkId};
use ninep::{Access, OpenMode};
use ninep_client::{Client, Fid, Outcome};

use crate::fids::MOUNT_MASK;
use crate::journal::Op;
use crate::link::Owner;
use crate::{MountDriver, Transport, MSIZE};

/// Whether sending `op` twice does what sending it once does, so an
/// answer lost with a dead server may be asked for again.
pub(crate) fn idempotent(op: &Op) -> bool {
    match op {
        Op::Version
        | Op::Attach { .. }
        | Op::Walk { .. }
        | Op::Rewalk { .. }
        | Op::Read { .. }
        | Op::Write { .. }
        | Op::Stat { .. }
        | Op::Clunk { .. } => true,
        Op::Open { mode, .. } => {
            let changes = OpenMode::OTRUNC | OpenMode::ORCLOSE;
            matches!(mode.access(), Access::Read | Access::Exec) && !mode.intersects(changes)
        }
        Op::Create { .. } | Op::Wstat { .. } | Op::Remove { .. } => false,
    }
}

impl<T: Transport> MountDriver<T> {
    /// Asks `link`'s server to perform failure `verb`
    /// ([`Transport::inject`]).
    pub fn inject(&mut self, id: LinkId, verb: &str) -> Result<(), String> {
        match self.links.get_mut(&id).and_then(|l| l.server.as_mut()) {
            Some(server) => server.inject(verb),
            None => Err(String::from("the link is hung up")),
        }
    }

    /// Has the driver keep a hung-up link's reads and writes for a
    /// [`revive`](Self::revive) rather than fail them at once (core does;
    /// an owner that never restarts servers need not).
    pub fn recover_links(&mut self, on: bool) {
        self.recovering = on;
    }

    /// The server of hung-up `link` was restarted: `server` is its new
    /// transport. Re-establishes every mount and chan of the link and
    /// sends the stranded reads and writes again (see the module docs).
    /// An error means the new server failed too: the link is hung up
    /// again (and its transport is in [`take_dead`](Self::take_dead)).
    pub fn revive(&mut self, id: LinkId, server: T) -> Result<(), Error> {
        let Some(link) = self.links.get_mut(&id) else {
            return Err(Error::HUNGUP);
        };
        link.multiplexed = server.multiplexes();
        link.server = Some(server);
        link.client = Client::new(MSIZE);
        link.posted = 0;
        link.since = None;
        link.ops.clear();
        link.outbox.clear();
        self.forget_link_in_journals(id);
        let mut remap: BTreeMap<Fid, Result<Fid, Error>> = BTreeMap::new();
        let result = self.reestablish(id, &mut remap);
        let stranded = self
            .links
            .get_mut(&id)
            .map(|l| core::mem::take(&mut l.stranded))
            .unwrap_or_default();
        let alive = result.is_ok();
        for key in stranded {
            let new = self
                .requests
                .get(&key)
                .and_then(|request| remap.get(&request.fid).cloned())
                .unwrap_or(Err(Error::GONE));
            match (alive, new) {
                (true, Ok(fid)) => {
                    if let Some(request) = self.requests.get_mut(&key) {
                        request.fid = fid;
                        request.resent = true;
                    }
                    if let Some(link) = self.links.get_mut(&id) {
                        link.queue.push_back(key);
                    }
                }
                (true, Err(why)) => self.complete(id, Owner::Io(key), Err(why)),
                (false, _) => self.complete(id, Owner::Io(key), Err(Error::HUNGUP)),
            }
        }
        self.wake(id);
        if alive {
            self.pump(id);
        }
        result
    }

    /// The owner will not restart `link`'s server: what waited for a
    /// revive fails with "i/o on hungup channel".
    pub fn give_up(&mut self, id: LinkId) {
        let stranded = self
            .links
            .get_mut(&id)
            .map(|l| {
                l.revivable = false;
                core::mem::take(&mut l.stranded)
            })
            .unwrap_or_default();
        for key in stranded {
            self.complete(id, Owner::Io(key), Err(Error::HUNGUP));
        }
        self.fail_once.retain(|_, link| *link != id);
        self.wake(id);
    }

    /// Steps 1 to 3: version, attaches, walks and opens. Only a hang-up
    /// is an error; a file the new server lacks makes its chan gone.
    fn reestablish(
        &mut self,
        id: LinkId,
        remap: &mut BTreeMap<Fid, Result<Fid, Error>>,
    ) -> Result<(), Error> {
        self.exchange_op(id, &Op::Version)?;
        let mounts: Vec<u32> = self
            .mounts
            .iter()
            .filter(|(_, link)| **link == id)
            .map(|(mount, _)| *mount)
            .collect();
        for mount in mounts {
            let (uname, aname) = self.attaches.get(&mount).cloned().unwrap_or_default();
            let root = match self.exchange_op(id, &Op::Attach { uname, aname }) {
                Ok(Outcome::Attached { fid, .. }) => Ok(fid),
                Err(e) if e == Error::HUNGUP => return Err(e),
                Err(e) => Err(gone_reason(e)),
                Ok(_) => Err(Error::GONE),
            };
            let walked: Vec<(u32, u64)> = self
                .walked
                .range((mount, 0)..=(mount, u64::MAX))
                .map(|(key, _)| *key)
                .collect();
            for key in walked {
                let path = self.paths.get(&key).cloned().unwrap_or_default();
                let new = match &root {
                    Ok(root) => self.rewalk(id, *root, path, key.1)?,
                    Err(why) => Err(why.clone()),
                };
                let Some((old, count)) = self.walked.get(&key).copied() else {
                    continue;
                };
                remap.insert(old, new.clone());
                match new {
                    Ok(fid) => {
                        self.walked.insert(key, (fid, count));
                    }
                    Err(why) => {
                        self.walked.remove(&key);
                        self.gone_walked.insert(key, (count, why));
                    }
                }
            }
            let opened: Vec<u32> = self
                .opened
                .keys()
                .filter(|dev| *dev & MOUNT_MASK == mount)
                .copied()
                .collect();
            for dev in opened {
                let Some((path, mode, was)) = self.opened_paths.get(&dev).cloned() else {
                    continue;
                };
                let walk_qid = if mode.is_some() { None } else { Some(was) };
                let mut new = match &root {
                    Ok(root) => self.rewalk(id, *root, path, walk_qid)?,
                    Err(why) => Err(why.clone()),
                };
                if let (Ok(fid), Some(mode)) = (&new, mode) {
                    let fid = *fid;
                    let mode = mode - (OpenMode::OTRUNC | OpenMode::ORCLOSE);
                    let why = match self.exchange_op(id, &Op::Open { fid, mode }) {
                        // The same file only if its qid path is: a clone
                        // file's open (ip(3)'s clone) makes another file.
                        Ok(Outcome::Opened { qid, .. }) if qid.path == was => None,
                        Ok(_) => Some(Error::GONE),
                        Err(e) if e == Error::HUNGUP => return Err(e),
                        Err(e) => Some(gone_reason(e)),
                    };
                    if let Some(why) = why {
                        self.exchange_op(id, &Op::Clunk { fid })?;
                        new = Err(why);
                    }
                }
                let Some(old) = self.opened.get(&dev).copied() else {
                    continue;
                };
                remap.insert(old, new.clone());
                match new {
                    Ok(fid) => {
                        self.opened.insert(dev, fid);
                    }
                    Err(why) => {
                        self.opened.remove(&dev);
                        self.gone_opened.insert(dev, why);
                    }
                }
            }
            if let Ok(root) = root {
                self.exchange_op(id, &Op::Clunk { fid: root })?;
            }
        }
        Ok(())
    }

    /// A new fid for `names` from `root`, or why the new server has no
    /// such file; an error only if the link hung up. With `was`, the file
    /// must have that qid path, or it is another file (walk(5): a qid
    /// path names one file of a server).
    fn rewalk(
        &mut self,
        id: LinkId,
        root: Fid,
        names: Vec<String>,
        was: impl Into<Option<u64>>,
    ) -> Result<Result<Fid, Error>, Error> {
        let op = Op::Rewalk {
            fid: root,
            names: names.clone(),
        };
        match self.exchange_op(id, &op) {
            Ok(Outcome::Walked { fid, qids }) => match (qids.last(), was.into()) {
                (Some(qid), Some(was)) if qid.path != was => {
                    self.exchange_op(id, &Op::Clunk { fid })?;
                    Ok(Err(Error::GONE))
                }
                _ => Ok(Ok(fid)),
            },
            Err(e) if e == Error::HUNGUP => Err(e),
            Err(_) if names.len() > 1 => self.refusal(id, root, &names).map(Err),
            Err(e) => Ok(Err(gone_reason(e))),
            Ok(_) => Ok(Err(Error::GONE)),
        }
    }

    /// Why a walk along `names` failed: walk(5) answers an Rwalk with
    /// fewer qids, and no reason, unless its first name fails, so the
    /// names are walked one at a time to hear the server's own reason.
    fn refusal(&mut self, id: LinkId, root: Fid, names: &[String]) -> Result<Error, Error> {
        let mut at = root;
        let mut why = Error::GONE;
        for name in names {
            let op = Op::Walk {
                fid: at,
                name: Some(name.clone()),
            };
            let step = self.exchange_op(id, &op);
            if at != root {
                self.exchange_op(id, &Op::Clunk { fid: at })?;
            }
            match step {
                Ok(Outcome::Walked { fid, .. }) => at = fid,
                Err(e) if e == Error::HUNGUP => return Err(e),
                Err(e) => {
                    why = gone_reason(e);
                    at = root;
                    break;
                }
                Ok(_) => {
                    at = root;
                    break;
                }
            }
        }
        if at != root {
            self.exchange_op(id, &Op::Clunk { fid: at })?;
        }
        Ok(why)
    }

    /// Step 5: the journals' entries on `link` from the first one on go
    /// (they name fids of the dead server), and so do its spare fids,
    /// unclunked: the server that had them is gone.
    fn forget_link_in_journals(&mut self, id: LinkId) {
        for journal in self.journals.values_mut() {
            if let Some(first) = journal.entries.iter().position(|e| e.link == id) {
                journal.entries.truncate(first);
                journal.cursor = journal.cursor.min(first);
            }
            journal.spare.retain(|(link, _)| *link != id);
        }
    }

    /// At a hang-up: what becomes of the operation `owner` had under way
    /// on `link`. In recovery, a posted read or write is kept for the
    /// revive; a call's idempotent operation fails with "i/o on hungup
    /// channel" (its call reruns after the revive and asks again); a
    /// call's other operation marks its process to fail once with
    /// [`Error::RESTARTED`].
    /// `None` if it is kept, else the error it fails with.
    pub(crate) fn strand(&mut self, id: LinkId, owner: Owner) -> Option<Error> {
        if !self.recovering {
            return Some(Error::HUNGUP);
        }
        if let Some(text) = self.links.get(&id).and_then(|l| l.lost) {
            // Not sent again: it fails once, saying why.
            return Some(Error::new(text));
        }
        match owner {
            Owner::Io(key) => {
                let request = self.requests.get_mut(&key)?;
                if request.resent {
                    // Its server failed on it twice: no third time.
                    return Some(Error::RESTARTED);
                }
                if let Some(link) = self.links.get_mut(&id) {
                    link.stranded.push(key);
                }
                None
            }
            Owner::Call { pid, id: entry } => {
                let changing = self
                    .journals
                    .get(&pid)
                    .and_then(|j| j.entries.iter().find(|e| e.id == entry))
                    .is_some_and(|e| !idempotent(&e.op));
                if changing {
                    self.fail_once.insert(pid, id);
                }
                Some(Error::HUNGUP)
            }
            Owner::Now | Owner::Gone => Some(Error::HUNGUP),
        }
    }

    /// A call's first operation after a revive, if the call had one under
    /// way that may have changed the server: [`Error::RESTARTED`], once.
    pub(crate) fn take_fail_once(&mut self, pid: u32) -> Option<Error> {
        self.fail_once.remove(&pid).map(|_| Error::RESTARTED)
    }
}

/// What a chan whose file the new server refused fails with: the
/// server's own reason, or "server restarted: file is gone" when it only
/// says the file does not exist.
fn gone_reason(e: Error) -> Error {
    if e == Error::NOT_FOUND {
        Error::GONE
    } else {
        e
    }
}
