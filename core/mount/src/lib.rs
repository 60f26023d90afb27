//! `#M`, the mount driver: servant calls as 9P2000 on a server's link.
//!
//! Plan 9's devmnt for Kasane's core. The driver owns the links of file
//! servers (task servers today) and the mounts made through them, and it
//! turns every servant call on a mounted file into 9P requests through
//! `ninep-client`. How a frame reaches the server is the [`Transport`]'s
//! business: core's task-server link on the microkernel, an in-process
//! `ninep-server` session in the host tests. On a task server's link one
//! operation runs to its end before the next starts (a long read or walk
//! may be several requests), so one request is outstanding; a link whose
//! transport [`multiplexes`](Transport::multiplexes) (a server VM's, or
//! a task server's that says so) carries several operations at once,
//! each on its own tag, answered in any order, with no answer deadline
//! (`link`); a task server's is probed instead ([`Transport::probes`]).
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
//! slow server holds up only the processes reading or writing it. On a
//! link that does not multiplex one request is on it at a time, and
//! others queue; a multiplexing link sends them all at once.
//!
//! Every other operation (version, attach, walk, open, create, stat, wstat,
//! remove, and the reads of a directory listing) is posted too while core
//! handles a call ([`MountDriver::begin_call`] to
//! [`MountDriver::end_call`]). Such an operation that is not answered at
//! once, or that finds a link that does not multiplex busy, fails the call with
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
//! request has been answered; on a multiplexing link it is posted beside
//! the others and the link's answers are collected until its own comes.
//! A process that goes has its operations under way flushed (flush(5)).
//!
//! A transport error, or an answer that is not a whole 9P frame, hangs the
//! link up: the transport is stopped and kept
//! in [`MountDriver::take_dead`] with the reason, for its owner to restart
//! on a new link, and every later operation on the old link answers
//! "i/o on hungup channel", as a Plan 9 mount of a dead server does;
//! in recovery, until the owner revives the link or gives it up, a
//! call's operation on it waits instead (`recover`).
//!
//! The parts: `transport` (the [`Transport`] trait, the synchronous
//! exchange, hang-ups), `gate` (the [`CallGate`]), `journal` (a call's
//! operations and their replay), `link` (a link's queue of posted
//! requests and their answers) and `fids` (a chan's dev and fid). This
//! file holds the driver's state and its servant calls.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod fids;
mod gate;
mod journal;
mod link;
mod recover;
mod transport;
mod user;

pub use gate::CallGate;
pub use transport::{Dead, ReadTarget, Transport, MSIZE};
pub use user::UserLink;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use fids::{MOUNT_BITS, MOUNT_MASK};
use journal::{Journal, Op};
use kasane_servant::{Caller, Error, File, Io, LinkId, Opened, Servant, WaitKey};
use link::{Link, Pending, Request};
use litemap::LiteMap;
use ninep::{FileMode, OpenMode, Stat};
use ninep_client::{Fid, Outcome};

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
    /// Hung-up links keep their reads and writes for a revive
    /// (`recover`).
    recovering: bool,
    /// Each mount's attach(5) user name and aname, to attach again.
    attaches: BTreeMap<u32, (String, String)>,
    /// The names a walked fid was walked by from its mount's root.
    paths: BTreeMap<(u32, u64), Vec<String>>,
    /// An opened chan's names from the root, its open mode once open, and
    /// the qid path of its file (the open's, once open: a clone file's
    /// open gives another file).
    opened_paths: BTreeMap<u32, (Vec<String>, Option<OpenMode>, u64)>,
    /// Walked chans whose files the restarted server lacks, with their
    /// chan counts and the error they fail with.
    gone_walked: BTreeMap<(u32, u64), (u32, Error)>,
    /// Opened chans whose files the restarted server lacks, with the
    /// error they fail with.
    gone_opened: BTreeMap<u32, Error>,
    /// Processes whose call had a changing operation under way when its
    /// link hung up: their next operation fails with "server restarted".
    fail_once: BTreeMap<u32, LinkId>,
    /// The reader's buffer for the read being handled ([`Self::aim_read`]).
    aim: Option<ReadTarget>,
    /// The data count its answer put there.
    aimed: Option<usize>,
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
            recovering: false,
            attaches: BTreeMap::new(),
            paths: BTreeMap::new(),
            opened_paths: BTreeMap::new(),
            gone_walked: BTreeMap::new(),
            gone_opened: BTreeMap::new(),
            fail_once: BTreeMap::new(),
            aim: None,
            aimed: None,
        }
    }

    /// Offers the reader's buffer for the read core is about to make (or
    /// takes it back, `None`): a read started at once on an idle link lets
    /// its transport put the data there ([`Transport::aim`]).
    pub fn aim_read(&mut self, target: Option<ReadTarget>) {
        self.aim = target;
        self.aimed = None;
    }

    /// How many bytes the read put straight into the offered buffer, if it
    /// did; its result then has no data.
    pub fn take_aimed(&mut self) -> Option<usize> {
        self.aimed.take()
    }
}

impl<T: Transport + 'static> Servant for MountDriver<T> {
    fn letter(&self) -> char {
        'M'
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
        let (uname, aname) = (String::from(caller.uname), String::from(aname));
        let attach = Op::Attach {
            uname: uname.clone(),
            aname: aname.clone(),
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
        self.attaches.insert(mount, (uname, aname));
        self.walked.insert((mount, qid.path), (fid, 1));
        self.paths.insert((mount, qid.path), Vec::new());
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
        let path = self.path_to(dir, Some(name));
        self.keep_walked(link, mount, qid.path, fid);
        self.paths.entry((mount, qid.path)).or_insert(path);
        Ok(File { dev: mount, qid })
    }

    fn clone_file(&mut self, _caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        let fid = self.clone_fid(file)?;
        let dev = self.new_serial_dev(file.dev & MOUNT_MASK);
        self.opened.insert(dev, fid);
        let path = self.path_to(file, None);
        self.opened_paths.insert(dev, (path, None, file.qid.path));
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
            Outcome::Opened { qid, .. } => {
                if let Some((_, opened, path)) = self.opened_paths.get_mut(&file.dev) {
                    *opened = Some(mode);
                    *path = qid.path;
                }
                Ok(Opened::File(qid))
            }
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
                let path = self.path_to(dir, Some(name));
                self.opened_paths.insert(dev, (path, Some(mode), qid.path));
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
            self.fid_of(file)?;
            self.opened_paths.remove(&file.dev);
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
        if self.close_gone(file) {
            return;
        }
        if file.dev >> MOUNT_BITS != 0 {
            self.opened_paths.remove(&file.dev);
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
                self.paths.remove(&key);
                self.clunk(link, fid);
            }
        }
    }
}
