//! A 9P2000 file server over the Linux file system (u9fs's role).
//!
//! [`LinuxFs`] is a backend for `ninep_server::Session`: the session does
//! the protocol (fids, tags, open rules, permission checks from our stats),
//! and this module turns each step into Linux file operations.
//!
//! Invariants:
//! - A node is an absolute path that lies under its attach root, always;
//!   fids cloned from one another share it, so a rename moves them all.
//!   A walk step names one entry (never `/`, `.` or an empty name); `..`
//!   stops at the root; a symbolic link is followed only when its
//!   canonical target is still under the root, otherwise the walk fails
//!   with "permission denied". (A link changed between the check and the
//!   use can still race; the agent is the only writer in the guest.)
//! - Qids come from the inode (path) and the mtime (version), so a file
//!   changed by a Linux program is seen as changed by a 9P client.
//! - Owner and group names come from `/etc/passwd` and `/etc/group`; an id
//!   with no name is shown as its number.
//! - Permission checks are Plan 9's, against the attach uname as a Linux
//!   user name (the session makes them); Linux's own checks then apply to
//!   the agent, which runs as root.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use ninep::{FileMode, OpenMode, Qid, Stat};
use ninep_server::{Caller, Error, FileServer, Reply, StatChanges};

/// Numeric ids to names, read from `/etc/passwd` and `/etc/group`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    users: BTreeMap<u32, String>,
    /// Each user's primary group id, by name.
    primary_groups: BTreeMap<String, u32>,
    groups: BTreeMap<u32, String>,
    /// Each group's supplementary members, by group name.
    members: BTreeMap<String, Vec<String>>,
}

impl Names {
    /// Reads the tables of the system under `top` (`top/etc/passwd`,
    /// `top/etc/group`); missing files give empty tables.
    pub fn load(top: &Path) -> Names {
        let passwd = fs::read_to_string(top.join("etc/passwd")).unwrap_or_default();
        let group = fs::read_to_string(top.join("etc/group")).unwrap_or_default();
        Names::parse(&passwd, &group)
    }

    /// Parses passwd(5) and group(5) text; malformed lines are skipped.
    pub fn parse(passwd: &str, group: &str) -> Names {
        let mut names = Names::default();
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, uid, gid, ..] = fields[..] {
                if let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse()) {
                    names.users.entry(uid).or_insert_with(|| name.to_string());
                    names.primary_groups.insert(name.to_string(), gid);
                }
            }
        }
        for line in group.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, gid, members] = fields[..] {
                if let Ok(gid) = gid.parse() {
                    names.groups.entry(gid).or_insert_with(|| name.to_string());
                    let list = members
                        .split(',')
                        .filter(|member| !member.is_empty())
                        .map(str::to_string)
                        .collect();
                    names.members.insert(name.to_string(), list);
                }
            }
        }
        names
    }

    /// The name of user `uid`, or its number.
    pub fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// The name of group `gid`, or its number.
    pub fn group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }

    /// The id of the group called `name` (a name or a number).
    pub fn group_id(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|(_, group)| group.as_str() == name)
            .map(|(&gid, _)| gid)
            .or_else(|| name.parse().ok())
    }

    /// Whether `user` belongs to `group`: its primary group or a member.
    pub fn is_member(&self, user: &str, group: &str) -> bool {
        if user == group {
            return true;
        }
        let primary = self
            .primary_groups
            .get(user)
            .is_some_and(|&gid| self.group(gid) == group);
        primary
            || self
                .members
                .get(group)
                .is_some_and(|list| list.iter().any(|member| member == user))
    }
}

/// A file as a fid knows it: where it is and the root it may not leave.
///
/// The path is shared by the fids cloned from one another, as a Plan 9
/// chan is, so that a rename through one of them (wstat) moves them all.
#[derive(Clone, Debug)]
pub struct Node {
    root: Arc<PathBuf>,
    path: Arc<Mutex<PathBuf>>,
}

impl Node {
    fn new(root: Arc<PathBuf>, path: PathBuf) -> Node {
        Node {
            root,
            path: Arc::new(Mutex::new(path)),
        }
    }

    /// The Linux path of this file now.
    pub fn current(&self) -> PathBuf {
        self.path
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn moved_to(&self, path: PathBuf) {
        *self
            .path
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = path;
    }

    fn is_root(&self) -> bool {
        self.current() == *self.root
    }
}

/// The Linux-filesystem backend.
#[derive(Debug)]
pub struct LinuxFs {
    /// What an empty attach name serves, and what every attach stays in.
    top: PathBuf,
    names: Names,
    /// Paths not served: the agent's FUSE mount of Kasane. Serving it
    /// would loop Kasane's requests back to itself, and a stat of it from
    /// the agent's service loop would wait on that same loop.
    hidden: Vec<PathBuf>,
}

/// The 9P error for a Linux error, in the words Plan 9 clients expect.
fn error_from(error: &io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::NotFound => Error::NOT_FOUND,
        io::ErrorKind::PermissionDenied => Error::PERMISSION_DENIED,
        io::ErrorKind::AlreadyExists => Error::EXISTS,
        io::ErrorKind::DirectoryNotEmpty => Error::NOT_EMPTY,
        io::ErrorKind::NotADirectory => Error::NOT_DIR,
        io::ErrorKind::IsADirectory => Error::IS_DIR,
        _ => Error::new(error.to_string()),
    }
}

fn io_error(error: io::Error) -> Error {
    error_from(&error)
}

/// Plan 9's truncating 32-bit times; a time before 1970 or after 2106 is 0.
fn seconds(time: i64) -> u32 {
    u32::try_from(time).unwrap_or(0)
}

/// The qid of a file: inode for the path, mtime for the version.
pub fn qid_of(metadata: &Metadata) -> Qid {
    let mode = plan9_mode(metadata);
    // Folding the nanoseconds in makes two changes within a second differ.
    let version = seconds(metadata.mtime()) ^ (metadata.mtime_nsec() as u32);
    Qid {
        kind: mode.qid_type(),
        version,
        // The inode alone repeats across file systems (rootfs's and
        // procfs's roots are both inode 1), and Kasane's mount table keys
        // on qid.path: the device is folded into the high bits.
        path: metadata.ino() ^ metadata.dev().rotate_left(40),
    }
}

/// The Plan 9 mode of a Linux file: the nine permission bits, and DMDIR.
pub fn plan9_mode(metadata: &Metadata) -> FileMode {
    let mut mode = FileMode::from_bits_retain(metadata.mode() & FileMode::PERMISSIONS);
    if metadata.is_dir() {
        mode |= FileMode::DMDIR;
    }
    mode
}

impl LinuxFs {
    /// Serves the tree under `top` (`/` in the guest), with `names` for
    /// owners and groups.
    pub fn new(top: &Path, names: Names) -> io::Result<LinuxFs> {
        Ok(LinuxFs {
            top: fs::canonicalize(top)?,
            names,
            hidden: Vec::new(),
        })
    }

    /// Leaves `path` (absolute) out of walks and directory reads, without
    /// a system call on it.
    pub fn hide(&mut self, path: &Path) {
        self.hidden.push(path.to_path_buf());
    }

    fn is_hidden(&self, path: &Path) -> bool {
        self.hidden.iter().any(|hidden| path.starts_with(hidden))
    }

    fn stat_of(&self, name: String, metadata: &Metadata) -> Stat {
        let uid = self.names.user(metadata.uid());
        Stat {
            kind: 0,
            dev: 0,
            qid: qid_of(metadata),
            mode: plan9_mode(metadata),
            atime: seconds(metadata.atime()),
            mtime: seconds(metadata.mtime()),
            length: if metadata.is_dir() { 0 } else { metadata.len() },
            name,
            muid: uid.clone(),
            uid,
            gid: self.names.group(metadata.gid()),
        }
    }

    /// `path` made canonical, or a denial when that leaves `root`.
    fn confined(root: &Path, path: &Path) -> Result<PathBuf, Error> {
        let real = fs::canonicalize(path).map_err(io_error)?;
        if real.starts_with(root) {
            Ok(real)
        } else {
            Err(Error::PERMISSION_DENIED)
        }
    }

    fn child(dir: &Node, name: &str) -> Result<PathBuf, Error> {
        let mut components = Path::new(name).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(_)), None) if !name.contains('/') => {
                Ok(dir.current().join(name))
            }
            _ => Err(Error::ILLEGAL_NAME),
        }
    }

    fn name_of(node: &Node) -> String {
        if node.is_root() {
            return "/".into();
        }
        node.current()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into())
    }
}

impl FileServer for LinuxFs {
    type Node = Node;

    // attach(5): the attach name is a path under the top, default the top.
    fn attach(&mut self, _uname: &str, aname: &str) -> Result<(Node, Qid), Error> {
        let relative = aname.trim_start_matches('/');
        let wanted = self.top.join(relative);
        if self.is_hidden(&wanted) {
            return Err(Error::BAD_SPEC);
        }
        let root = Self::confined(&self.top, &wanted).map_err(|_| Error::BAD_SPEC)?;
        let metadata = fs::metadata(&root).map_err(io_error)?;
        if !metadata.is_dir() {
            return Err(Error::NOT_DIR);
        }
        let node = Node::new(Arc::new(root.clone()), root);
        Ok((node, qid_of(&metadata)))
    }

    // walk(5): one name; `..` stops at the root, links stay inside it.
    fn walk(&mut self, _caller: &Caller<'_>, dir: &Node, name: &str) -> Result<(Node, Qid), Error> {
        let path = if name == ".." {
            let here = dir.current();
            if dir.is_root() {
                here
            } else {
                here.parent().map(Path::to_path_buf).unwrap_or(here)
            }
        } else {
            let joined = Self::child(dir, name)?;
            if self.is_hidden(&joined) {
                return Err(Error::NOT_FOUND);
            }
            let link = fs::symlink_metadata(&joined).map_err(io_error)?;
            if link.file_type().is_symlink() {
                Self::confined(&dir.root, &joined)?
            } else {
                joined
            }
        };
        if self.is_hidden(&path) {
            return Err(Error::NOT_FOUND);
        }
        let metadata = fs::metadata(&path).map_err(io_error)?;
        let node = Node::new(dir.root.clone(), path);
        Ok((node, qid_of(&metadata)))
    }

    fn stat(&mut self, node: &Node) -> Result<Stat, Error> {
        let metadata = fs::metadata(node.current()).map_err(io_error)?;
        Ok(self.stat_of(Self::name_of(node), &metadata))
    }

    // open(5): OTRUNC empties the file; the qid is the current one.
    fn open(&mut self, _caller: &Caller<'_>, node: &Node, mode: OpenMode) -> Result<Qid, Error> {
        let metadata = fs::metadata(node.current()).map_err(io_error)?;
        if mode.contains(OpenMode::OTRUNC) && !metadata.is_dir() {
            let file = OpenOptions::new()
                .write(true)
                .open(node.current())
                .map_err(io_error)?;
            file.set_len(0).map_err(io_error)?;
            return Ok(qid_of(&file.metadata().map_err(io_error)?));
        }
        Ok(qid_of(&metadata))
    }

    // open(5), Tcreate: DMDIR in perm makes a directory.
    fn create(
        &mut self,
        _caller: &Caller<'_>,
        dir: &Node,
        name: &str,
        perm: FileMode,
        _mode: OpenMode,
    ) -> Result<(Node, Qid), Error> {
        let path = Self::child(dir, name)?;
        let permissions = perm.bits() & FileMode::PERMISSIONS;
        if perm.is_dir() {
            fs::create_dir(&path).map_err(io_error)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(permissions))
                .map_err(io_error)?;
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(permissions)
                .open(&path)
                .map_err(io_error)?;
        }
        let metadata = fs::metadata(&path).map_err(io_error)?;
        let node = Node::new(dir.root.clone(), path);
        Ok((node, qid_of(&metadata)))
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        node: &Node,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        let file = File::open(node.current()).map_err(io_error)?;
        let mut data = vec![0u8; count as usize];
        let mut filled = 0;
        // A short read is not the end for a regular file; /proc files give
        // one record a read, which is fine to return as it is.
        while filled < data.len() {
            match file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(read) => {
                    filled += read;
                    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error(error)),
            }
        }
        data.truncate(filled);
        Ok(Reply::Now(data))
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &Node) -> Result<Vec<Stat>, Error> {
        let mut stats = Vec::new();
        for entry in fs::read_dir(dir.current()).map_err(io_error)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.is_hidden(&entry.path()) {
                continue;
            }
            // A dangling link has no stat to show; the entry is left out.
            let metadata = match fs::metadata(entry.path()) {
                Ok(metadata) => metadata,
                Err(_) => match entry.metadata() {
                    Ok(metadata) => metadata,
                    Err(_) => continue,
                },
            };
            stats.push(self.stat_of(name, &metadata));
        }
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(stats)
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        node: &Node,
        offset: u64,
        data: &[u8],
    ) -> Result<Reply<u32>, Error> {
        let file = OpenOptions::new()
            .write(true)
            .open(node.current())
            .map_err(io_error)?;
        let written = if file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            file.write_all_at(data, offset).map_err(io_error)?;
            data.len()
        } else {
            // A device or a /proc file takes one write as one request.
            file.write_at(data, offset).map_err(io_error)?
        };
        Ok(Reply::Now(u32::try_from(written).unwrap_or(u32::MAX)))
    }

    fn remove(&mut self, _caller: &Caller<'_>, node: &Node) -> Result<(), Error> {
        if node.is_root() {
            return Err(Error::CANNOT_REMOVE_ROOT);
        }
        let metadata = fs::symlink_metadata(node.current()).map_err(io_error)?;
        if metadata.is_dir() {
            fs::remove_dir(node.current()).map_err(io_error)
        } else {
            fs::remove_file(node.current()).map_err(io_error)
        }
    }

    // stat(5), Twstat: everything is checked before anything changes.
    fn wstat(
        &mut self,
        _caller: &Caller<'_>,
        node: &Node,
        changes: &StatChanges,
    ) -> Result<(), Error> {
        let new_path = match &changes.name {
            Some(name) => {
                if node.is_root() {
                    return Err(Error::WSTAT_PROHIBITED);
                }
                let here = node.current();
                let parent = here.parent().ok_or(Error::WSTAT_PROHIBITED)?;
                let parent = Node::new(node.root.clone(), parent.to_path_buf());
                let path = Self::child(&parent, name)?;
                if fs::symlink_metadata(&path).is_ok() {
                    return Err(Error::EXISTS);
                }
                Some(path)
            }
            None => None,
        };
        let gid = match &changes.gid {
            Some(name) => Some(
                self.names
                    .group_id(name)
                    .ok_or_else(|| Error::new(format!("unknown group '{name}'")))?,
            ),
            None => None,
        };
        if let Some(length) = changes.length {
            let file = OpenOptions::new()
                .write(true)
                .open(node.current())
                .map_err(io_error)?;
            file.set_len(length).map_err(io_error)?;
        }
        if let Some(mode) = changes.mode {
            let permissions = fs::Permissions::from_mode(mode.bits() & FileMode::PERMISSIONS);
            fs::set_permissions(node.current(), permissions).map_err(io_error)?;
        }
        if let Some(gid) = gid {
            std::os::unix::fs::chown(node.current(), None, Some(gid)).map_err(io_error)?;
        }
        if changes.mtime.is_some() || changes.atime.is_some() {
            let file = File::open(node.current()).map_err(io_error)?;
            let mut times = fs::FileTimes::new();
            let at =
                |secs: u32| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.into());
            if let Some(mtime) = changes.mtime {
                times = times.set_modified(at(mtime));
            }
            if let Some(atime) = changes.atime {
                times = times.set_accessed(at(atime));
            }
            file.set_times(times).map_err(io_error)?;
        }
        if let Some(path) = new_path {
            fs::rename(node.current(), &path).map_err(io_error)?;
            node.moved_to(path);
        }
        Ok(())
    }

    fn is_member(&self, uname: &str, group: &str) -> bool {
        self.names.is_member(uname, group)
    }
}
