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
//! A transport error hangs the link up: the transport is stopped and kept
//! in [`MountDriver::take_dead`] with the reason, for its owner to restart
//! on a new link, and every later operation on the old link answers
//! "i/o on hungup channel", as a Plan 9 mount of a dead server does.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use kasane_servant::{Caller, Error, File, Io, LinkId, Opened, Servant};
use ninep::{FileMode, OpenMode, Stat};
use ninep_client::{Client, Fid, FrameReader, OpId, Outcome};

/// The largest 9P message a link carries (Tversion's msize); the
/// transport's buffers must hold it (core's link: `core_abi::link::MSIZE`).
pub const MSIZE: u32 = 8216;

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
            },
        );
    }

    /// Runs one operation to its end, with the follow-up requests the
    /// client makes (parts of a long read, a clean-up clunk).
    fn run(
        &mut self,
        link: LinkId,
        start: impl FnOnce(&mut Client, &mut Vec<u8>) -> Result<OpId, ninep_client::Error>,
    ) -> Result<Outcome, Error> {
        let id = link;
        let link = self.links.get_mut(&link).ok_or(Error::HUNGUP)?;
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
                    link.client.hang_up();
                    if let Some(mut transport) = link.server.take() {
                        transport.stop();
                        self.dead.push(Dead {
                            link: id,
                            transport,
                            reason,
                        });
                    }
                    return Err(Error::HUNGUP);
                }
            };
            let mut more = Vec::new();
            match link.client.receive(&link.answer[..length], &mut more) {
                Ok(Some(done)) if done.op == op => result = Some(done.result),
                Ok(_) => {}
                Err(e) => result = Some(Err(ninep_client::Error::Protocol(e))),
            }
            frames.push(&more);
        }
        result
            .unwrap_or(Err(ninep_client::Error::HungUp))
            .map_err(nine)
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
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
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
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
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
