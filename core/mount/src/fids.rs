//! Fid bookkeeping: a chan's dev, its fid, clones, and clunks.

use alloc::string::String;
use alloc::vec::Vec;

use kasane_servant::{Error, File, LinkId};
use ninep_client::{Fid, Outcome};

use crate::journal::{Entry, Op};
use crate::link::queue_frames;
use crate::{MountDriver, Transport};

pub(crate) const MOUNT_BITS: u32 = 16;
pub(crate) const MOUNT_MASK: u32 = (1 << MOUNT_BITS) - 1;

impl<T: Transport> MountDriver<T> {
    pub(crate) fn link_of(&self, file: &File) -> Result<LinkId, Error> {
        self.mounts
            .get(&(file.dev & MOUNT_MASK))
            .copied()
            .ok_or(Error::BAD_FD)
    }

    /// The fid of a chan's file; a chan whose file did not come back
    /// with its restarted server answers why (`recover`: "server
    /// restarted: file is gone", or the new server's reason).
    pub(crate) fn fid_of(&self, file: &File) -> Result<Fid, Error> {
        let gone = if file.dev >> MOUNT_BITS == 0 {
            self.gone_walked
                .get(&(file.dev, file.qid.path))
                .map(|(_, why)| why)
        } else {
            self.gone_opened.get(&file.dev)
        };
        if let Some(why) = gone {
            return Err(why.clone());
        }
        let fid = if file.dev >> MOUNT_BITS == 0 {
            self.walked
                .get(&(file.dev, file.qid.path))
                .map(|(fid, _)| *fid)
        } else {
            self.opened.get(&file.dev).copied()
        };
        fid.ok_or(Error::BAD_FD)
    }

    /// The names `file` was walked by from its mount's root, then `name`
    /// (`..` goes up, `.` stays), for a walk after a restart.
    pub(crate) fn path_to(&self, file: &File, name: Option<&str>) -> Vec<String> {
        let mut path = if file.dev >> MOUNT_BITS == 0 {
            self.paths.get(&(file.dev, file.qid.path)).cloned()
        } else {
            self.opened_paths
                .get(&file.dev)
                .map(|(path, _, _)| path.clone())
        }
        .unwrap_or_default();
        match name {
            Some("..") => {
                path.pop();
            }
            Some(".") | None => {}
            Some(name) => path.push(String::from(name)),
        }
        path
    }

    /// Closes a chan whose file is gone: nothing to clunk. Whether it was
    /// one.
    pub(crate) fn close_gone(&mut self, file: &File) -> bool {
        if file.dev >> MOUNT_BITS != 0 {
            return self.gone_opened.remove(&file.dev).is_some();
        }
        let key = (file.dev, file.qid.path);
        let Some((count, _)) = self.gone_walked.get_mut(&key) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            self.gone_walked.remove(&key);
            self.paths.remove(&key);
        }
        true
    }

    /// A fresh fid on the file of `file` (walk(5) with no names).
    pub(crate) fn clone_fid(&mut self, file: &File) -> Result<Fid, Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, Op::Walk { fid, name: None })? {
            Outcome::Walked { fid, .. } => Ok(fid),
            _ => Err(Error::new("#M: walk answered wrongly")),
        }
    }

    /// A dev with a serial no live chan of `mount` has.
    pub(crate) fn new_serial_dev(&mut self, mount: u32) -> u32 {
        loop {
            let serial = self.next_serial;
            self.next_serial = if serial >= MOUNT_MASK { 1 } else { serial + 1 };
            let dev = mount | (serial << MOUNT_BITS);
            // A gone chan keeps its dev until it is closed.
            if !self.opened.contains_key(&dev) && !self.gone_opened.contains_key(&dev) {
                return dev;
            }
        }
    }

    /// Releases `fid`. On a posting link it is queued and never waits;
    /// in a call it is journalled (a rerun does not clunk again), and
    /// while a blocked call unwinds it is held back as a spare fid.
    pub(crate) fn clunk(&mut self, link: LinkId, fid: Fid) {
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
    pub(crate) fn clunk_later(&mut self, id: LinkId, fid: Fid) {
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
    pub(crate) fn keep_walked(&mut self, link: LinkId, mount: u32, path: u64, fid: Fid) {
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
