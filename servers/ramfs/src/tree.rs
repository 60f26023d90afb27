//! The in-memory tree and its `FileServer` implementation.
//!
//! Nodes live in one map keyed by their qid path, so a fid is just a path
//! number; a removed node's path is never reused, and a fid on it answers
//! "file has been removed". Every change is checked in full before any of it
//! is applied, which is what makes a wstat all-or-nothing.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use ninep::{FileMode, OpenMode, Qid, Stat};
use ninep_server::access::{self, WRITE};
use ninep_server::{Caller, Error, FileServer, Reply, StatChanges};

/// Seconds since the epoch, as 9P's atime and mtime count them.
pub trait Clock {
    fn now(&self) -> u32;
}

/// How much a client may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: 256 << 20,
            max_total_bytes: 1 << 30,
        }
    }
}

enum Content {
    File(Vec<u8>),
    Dir(BTreeMap<String, u64>),
}

struct Node {
    name: String,
    parent: u64,
    mode: FileMode,
    uid: String,
    gid: String,
    muid: String,
    atime: u32,
    mtime: u32,
    version: u32,
    content: Content,
    /// Open fids on this node, for DMEXCL.
    opens: u32,
}

impl Node {
    fn length(&self) -> u64 {
        match &self.content {
            Content::File(data) => data.len() as u64,
            Content::Dir(_) => 0,
        }
    }
}

const ROOT: u64 = 1;

/// A RAM file server. One instance is one tree; share it between sessions
/// behind a lock.
pub struct RamFs<C: Clock> {
    nodes: BTreeMap<u64, Node>,
    next_path: u64,
    clock: C,
    limits: Limits,
    used_bytes: u64,
}

impl<C: Clock> core::fmt::Debug for RamFs<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RamFs")
            .field("nodes", &self.nodes.len())
            .field("used_bytes", &self.used_bytes)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<C: Clock> RamFs<C> {
    /// An empty tree whose root directory belongs to `owner` and `group`
    /// with the permission bits `perm` (e.g. 0o775).
    pub fn new(clock: C, owner: &str, group: &str, perm: u32) -> Self {
        let now = clock.now();
        let root = Node {
            name: String::from("/"),
            parent: ROOT,
            mode: FileMode::from_bits_retain(FileMode::DMDIR.bits() | (perm & 0o777)),
            uid: String::from(owner),
            gid: String::from(group),
            muid: String::from(owner),
            atime: now,
            mtime: now,
            version: 0,
            content: Content::Dir(BTreeMap::new()),
            opens: 0,
        };
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, root);
        Self {
            nodes,
            next_path: ROOT + 1,
            clock,
            limits: Limits::default(),
            used_bytes: 0,
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Bytes of file data held.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Files and directories in the tree, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn node(&self, path: u64) -> Result<&Node, Error> {
        self.nodes.get(&path).ok_or(Error::REMOVED)
    }

    fn node_mut(&mut self, path: u64) -> Result<&mut Node, Error> {
        self.nodes.get_mut(&path).ok_or(Error::REMOVED)
    }

    fn qid(path: u64, node: &Node) -> Qid {
        Qid {
            kind: node.mode.qid_type(),
            version: node.version,
            path,
        }
    }

    fn stat_of(path: u64, node: &Node) -> Stat {
        Stat {
            kind: 0,
            dev: 0,
            qid: Self::qid(path, node),
            mode: node.mode,
            atime: node.atime,
            mtime: node.mtime,
            length: node.length(),
            name: node.name.clone(),
            uid: node.uid.clone(),
            gid: node.gid.clone(),
            muid: node.muid.clone(),
        }
    }

    fn may_write_parent(&self, caller: &Caller<'_>, node: &Node) -> Result<(), Error> {
        let parent = self.node(node.parent)?;
        let stat = Self::stat_of(node.parent, parent);
        if access::permitted(&stat, caller.uname, |u, g| self.is_member(u, g), WRITE) {
            Ok(())
        } else {
            Err(Error::PERMISSION_DENIED)
        }
    }

    /// Checks that a file may grow from `old` to `new` bytes.
    fn check_growth(&self, old: u64, new: u64) -> Result<(), Error> {
        if new > self.limits.max_file_size {
            return Err(Error::FILE_TOO_BIG);
        }
        let grown = new.saturating_sub(old);
        if self.used_bytes.saturating_add(grown) > self.limits.max_total_bytes {
            return Err(Error::FULL);
        }
        Ok(())
    }

    /// Sets a file's length, keeping the byte count; growth was checked.
    fn set_length(&mut self, path: u64, length: u64) {
        let Some(node) = self.nodes.get_mut(&path) else {
            return;
        };
        if let Content::File(data) = &mut node.content {
            let old = data.len() as u64;
            // The limits keep lengths far below usize::MAX.
            data.resize(usize::try_from(length).unwrap_or(usize::MAX), 0);
            self.used_bytes = self.used_bytes - old + length;
        }
    }

    /// Puts a file or directory at `names` (from the root), making the
    /// directories on the way (0o775) as needed, owned by the root's
    /// owner: how an image is unpacked (`image`). A directory that is
    /// there already is kept (its mode changes); a file replaces nothing.
    pub(crate) fn install(
        &mut self,
        names: &[&str],
        dir: bool,
        perm: u32,
        data: &[u8],
    ) -> Result<(), Error> {
        let Some((last, parents)) = names.split_last() else {
            return Err(Error::EXISTS);
        };
        let mut at = ROOT;
        for (index, name) in parents
            .iter()
            .map(|n| (*n, 0o775))
            .chain([(*last, perm)])
            .enumerate()
        {
            let (name, perm) = name;
            let is_last = index == parents.len();
            let existing = match &self.node(at)?.content {
                Content::Dir(entries) => entries.get(name).copied(),
                Content::File(_) => return Err(Error::NOT_DIR),
            };
            match existing {
                Some(path) if !is_last || dir => {
                    let node = self.node_mut(path)?;
                    if !matches!(node.content, Content::Dir(_)) {
                        return Err(Error::NOT_DIR);
                    }
                    if is_last {
                        node.mode =
                            FileMode::from_bits_retain(FileMode::DMDIR.bits() | (perm & 0o777));
                    }
                    at = path;
                }
                Some(_) => return Err(Error::EXISTS),
                None => {
                    let make_dir = !is_last || dir;
                    let length = if make_dir { 0 } else { data.len() as u64 };
                    self.check_growth(0, length)?;
                    let now = self.clock.now();
                    let root = self.node(ROOT)?;
                    let (uid, gid) = (root.uid.clone(), root.gid.clone());
                    let bits = perm & 0o777 | if make_dir { FileMode::DMDIR.bits() } else { 0 };
                    let node = Node {
                        name: String::from(name),
                        parent: at,
                        mode: FileMode::from_bits_retain(bits),
                        muid: uid.clone(),
                        uid,
                        gid,
                        atime: now,
                        mtime: now,
                        version: 0,
                        content: if make_dir {
                            Content::Dir(BTreeMap::new())
                        } else {
                            Content::File(data.to_vec())
                        },
                        opens: 0,
                    };
                    let path = self.next_path;
                    self.next_path += 1;
                    self.nodes.insert(path, node);
                    self.used_bytes += length;
                    if let Some(Node {
                        content: Content::Dir(entries),
                        ..
                    }) = self.nodes.get_mut(&at)
                    {
                        entries.insert(String::from(name), path);
                    }
                    at = path;
                }
            }
        }
        Ok(())
    }

    fn touch_dir(&mut self, path: u64, uname: &str, now: u32) {
        if let Some(dir) = self.nodes.get_mut(&path) {
            dir.version = dir.version.wrapping_add(1);
            dir.mtime = now;
            dir.muid = String::from(uname);
        }
    }
}

impl<C: Clock> FileServer for RamFs<C> {
    type Node = u64;

    fn attach(&mut self, _uname: &str, aname: &str) -> Result<(u64, Qid), Error> {
        if !aname.is_empty() && aname != "/" {
            return Err(Error::NOT_FOUND);
        }
        let root = self.node(ROOT)?;
        Ok((ROOT, Self::qid(ROOT, root)))
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &u64, name: &str) -> Result<(u64, Qid), Error> {
        let node = self.node(*dir)?;
        let next = match (&node.content, name) {
            (Content::Dir(_), "..") => node.parent,
            (Content::Dir(entries), _) => *entries.get(name).ok_or(Error::NOT_FOUND)?,
            (Content::File(_), _) => return Err(Error::NOT_DIR),
        };
        let found = self.node(next)?;
        Ok((next, Self::qid(next, found)))
    }

    fn stat(&mut self, node: &u64) -> Result<Stat, Error> {
        Ok(Self::stat_of(*node, self.node(*node)?))
    }

    fn open(&mut self, caller: &Caller<'_>, node: &u64, mode: OpenMode) -> Result<Qid, Error> {
        let now = self.clock.now();
        let path = *node;
        let entry = self.node(path)?;
        if entry.mode.contains(FileMode::DMEXCL) && entry.opens > 0 {
            return Err(Error::EXCLUSIVE);
        }
        let truncate = mode.contains(OpenMode::OTRUNC) && entry.length() > 0;
        if truncate {
            self.set_length(path, 0);
        }
        let entry = self.node_mut(path)?;
        if truncate {
            entry.version = entry.version.wrapping_add(1);
            entry.mtime = now;
            entry.muid = String::from(caller.uname);
        }
        entry.opens += 1;
        Ok(Self::qid(path, entry))
    }

    fn create(
        &mut self,
        caller: &Caller<'_>,
        dir: &u64,
        name: &str,
        perm: FileMode,
        _mode: OpenMode,
    ) -> Result<(u64, Qid), Error> {
        let now = self.clock.now();
        let parent = self.node(*dir)?;
        let Content::Dir(entries) = &parent.content else {
            return Err(Error::NOT_DIR);
        };
        if entries.contains_key(name) {
            return Err(Error::EXISTS);
        }
        let gid = parent.gid.clone();
        let path = self.next_path;
        self.next_path += 1;
        let content = if perm.is_dir() {
            Content::Dir(BTreeMap::new())
        } else {
            Content::File(Vec::new())
        };
        let node = Node {
            name: String::from(name),
            parent: *dir,
            mode: perm,
            uid: String::from(caller.uname),
            gid,
            muid: String::from(caller.uname),
            atime: now,
            mtime: now,
            version: 0,
            content,
            // The creating fid is open on the new file.
            opens: 1,
        };
        let qid = Self::qid(path, &node);
        self.nodes.insert(path, node);
        if let Some(Node {
            content: Content::Dir(entries),
            ..
        }) = self.nodes.get_mut(dir)
        {
            entries.insert(String::from(name), path);
        }
        self.touch_dir(*dir, caller.uname, now);
        Ok((path, qid))
    }

    fn read(
        &mut self,
        caller: &Caller<'_>,
        node: &u64,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        let mut data = Vec::new();
        self.read_into(caller, node, offset, count, &mut data)?;
        Ok(Reply::Now(data))
    }

    fn read_into(
        &mut self,
        _caller: &Caller<'_>,
        node: &u64,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<Reply<()>, Error> {
        let now = self.clock.now();
        let entry = self.node_mut(*node)?;
        entry.atime = now;
        let Content::File(data) = &entry.content else {
            return Err(Error::IS_DIR);
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(count as usize).min(data.len());
        out.extend_from_slice(&data[start..end]);
        Ok(Reply::Now(()))
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &u64) -> Result<Vec<Stat>, Error> {
        let now = self.clock.now();
        let entry = self.node_mut(*dir)?;
        entry.atime = now;
        let Content::Dir(entries) = &entry.content else {
            return Err(Error::NOT_DIR);
        };
        let paths: Vec<u64> = entries.values().copied().collect();
        let mut stats = Vec::with_capacity(paths.len());
        for path in paths {
            if let Some(child) = self.nodes.get(&path) {
                stats.push(Self::stat_of(path, child));
            }
        }
        Ok(stats)
    }

    fn write(
        &mut self,
        caller: &Caller<'_>,
        node: &u64,
        offset: u64,
        data: &[u8],
    ) -> Result<Reply<u32>, Error> {
        let now = self.clock.now();
        let path = *node;
        let entry = self.node(path)?;
        let length = entry.length();
        if !matches!(entry.content, Content::File(_)) {
            return Err(Error::IS_DIR);
        }
        // DMAPPEND: every write goes to the end, whatever the offset.
        let offset = if entry.mode.contains(FileMode::DMAPPEND) {
            length
        } else {
            offset
        };
        let count = u32::try_from(data.len()).map_err(|_| Error::FILE_TOO_BIG)?;
        let end = offset
            .checked_add(u64::from(count))
            .ok_or(Error::FILE_TOO_BIG)?;
        self.check_growth(length, end)?;
        if end > length {
            self.set_length(path, end);
        }
        let entry = self.node_mut(path)?;
        if let Content::File(bytes) = &mut entry.content {
            // end <= length <= max_file_size, so these fit in usize.
            let start = usize::try_from(offset).map_err(|_| Error::FILE_TOO_BIG)?;
            bytes[start..start + data.len()].copy_from_slice(data);
        }
        entry.version = entry.version.wrapping_add(1);
        entry.mtime = now;
        entry.atime = now;
        entry.muid = String::from(caller.uname);
        Ok(Reply::Now(count))
    }

    fn remove(&mut self, caller: &Caller<'_>, node: &u64) -> Result<(), Error> {
        let path = *node;
        if path == ROOT {
            return Err(Error::CANNOT_REMOVE_ROOT);
        }
        let entry = self.node(path)?;
        self.may_write_parent(caller, entry)?;
        if let Content::Dir(entries) = &entry.content {
            if !entries.is_empty() {
                return Err(Error::NOT_EMPTY);
            }
        }
        let parent = entry.parent;
        let Some(removed) = self.nodes.remove(&path) else {
            return Err(Error::REMOVED);
        };
        self.used_bytes -= removed.length();
        if let Some(Node {
            content: Content::Dir(entries),
            ..
        }) = self.nodes.get_mut(&parent)
        {
            entries.remove(&removed.name);
        }
        let now = self.clock.now();
        self.touch_dir(parent, caller.uname, now);
        Ok(())
    }

    fn wstat(
        &mut self,
        caller: &Caller<'_>,
        node: &u64,
        changes: &StatChanges,
    ) -> Result<(), Error> {
        let path = *node;
        let now = self.clock.now();
        let entry = self.node(path)?;
        // Check everything first: all or nothing (stat(5)).
        if let Some(name) = &changes.name {
            if path == ROOT {
                return Err(Error::PERMISSION_DENIED);
            }
            self.may_write_parent(caller, entry)?;
            let parent = self.node(entry.parent)?;
            if let Content::Dir(entries) = &parent.content {
                if entries.contains_key(name) {
                    return Err(Error::EXISTS);
                }
            }
        }
        if let Some(length) = changes.length {
            if !matches!(entry.content, Content::File(_)) {
                return Err(Error::IS_DIR);
            }
            self.check_growth(entry.length(), length)?;
        }
        // Apply.
        let parent = entry.parent;
        let old_name = entry.name.clone();
        if let Some(length) = changes.length {
            self.set_length(path, length);
        }
        if let Some(name) = &changes.name {
            if let Some(Node {
                content: Content::Dir(entries),
                ..
            }) = self.nodes.get_mut(&parent)
            {
                entries.remove(&old_name);
                entries.insert(name.clone(), path);
            }
            self.touch_dir(parent, caller.uname, now);
        }
        let entry = self.node_mut(path)?;
        if let Some(name) = &changes.name {
            entry.name = name.clone();
        }
        if changes.length.is_some() {
            entry.version = entry.version.wrapping_add(1);
            entry.mtime = now;
            entry.muid = String::from(caller.uname);
        }
        if let Some(mode) = changes.mode {
            entry.mode = mode;
        }
        if let Some(mtime) = changes.mtime {
            entry.mtime = mtime;
        }
        if let Some(atime) = changes.atime {
            entry.atime = atime;
        }
        if let Some(gid) = &changes.gid {
            entry.gid = gid.clone();
        }
        Ok(())
    }

    fn clunk(&mut self, node: &u64, opened: Option<OpenMode>) {
        if opened.is_some() {
            if let Some(entry) = self.nodes.get_mut(node) {
                entry.opens = entry.opens.saturating_sub(1);
            }
        }
    }
}
