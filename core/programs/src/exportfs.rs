//! exportfs's file server: a process namespace served as 9P2000.
//!
//! Plan 9's exportfs(4) serves the namespace of the process that runs it
//! to a 9P client on the other end of a file descriptor. Here the 9P rules
//! (fids, tags, walks, open and create modes, permission checks, directory
//! reads as stat entries) are `ninep_server::Session`'s; this module is the
//! backend: a fid's node is a path in the namespace, and each operation
//! is a system call on it through [`Namespace`], which the program
//! implements with `core_user::sys` and the tests with a map.
//!
//! - **Walks** (walk(5)) join names to the path; `..` drops the last
//!   element and stays at the attach root. A name with `/` never reaches
//!   here (the session refuses it), and `.` is refused as a name.
//! - **Open** (open(5)) opens the path in the namespace and keeps the
//!   descriptor in the fid's node, as exportfs keeps a chan per fid;
//!   reads and writes are `pread`/`pwrite` on it and the clunk closes it.
//! - **Create** creates and opens (`DMDIR` makes a directory).
//! - **wstat** (stat(5)): a rename (Kasane's wstat serves only that) and
//!   a truncation to length 0 (an open with `OTRUNC`). Other changes are
//!   refused with [`WSTAT_REFUSED`].
//!
//! Stats come from `stat(2)`: the qid path is the file's, the group is the
//! owner (Kasane's stat has no group) and the times are 0.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ninep::{Error, FileMode, OpenMode, Qid, QidType, Stat};
use ninep_server::{Caller, FileServer, Reply, StatChanges};

/// `DMDIR` in a mode word.
pub const DMDIR: u32 = 0x8000_0000;

/// The error of a wstat exportfs cannot carry out.
pub const WSTAT_REFUSED: &str = "exportfs: wstat serves only a rename or a truncation to 0";

/// What exportfs needs to know of a file (a `core_abi::FileInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub length: u64,
    /// Permission bits, with [`DMDIR`] for a directory.
    pub mode: u32,
    pub qid_path: u64,
    pub uid: String,
}

/// A descriptor of the namespace.
pub type Fd = u32;

/// The system calls exportfs makes, on paths of its own namespace.
pub trait Namespace {
    fn stat(&mut self, path: &str) -> Result<Info, String>;
    fn read_dir(&mut self, path: &str) -> Result<Vec<Info>, String>;
    /// open(2) with a Plan 9 mode (`OREAD`... and `OTRUNC`).
    fn open(&mut self, path: &str, mode: u8) -> Result<Fd, String>;
    /// create(2): `perm` with [`DMDIR`] makes a directory.
    fn create(&mut self, path: &str, mode: u8, perm: u32) -> Result<Fd, String>;
    fn pread(&mut self, fd: Fd, offset: u64, count: u32) -> Result<Vec<u8>, String>;
    fn pwrite(&mut self, fd: Fd, offset: u64, data: &[u8]) -> Result<u32, String>;
    fn close(&mut self, fd: Fd);
    fn remove(&mut self, path: &str) -> Result<(), String>;
    /// Renames `path` to `name` within its directory.
    fn rename(&mut self, path: &str, name: &str) -> Result<(), String>;
}

/// A fid's node: its path and, once opened, its descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: String,
    pub fd: Option<Fd>,
}

/// The file server over a namespace, rooted at a directory of it.
#[derive(Debug)]
pub struct ExportFs<N> {
    ns: N,
    root: String,
}

/// `name` joined to `dir`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// `path` less its last element, but never above `root`.
pub fn parent<'a>(root: &str, path: &'a str) -> &'a str {
    if path == root || path.len() <= root.len() {
        return &path[..root.len().min(path.len())];
    }
    match path.rfind('/') {
        Some(0) => "/",
        Some(at) if at >= root.len() => &path[..at],
        _ => &path[..root.len()],
    }
}

fn qid_of(info: &Info) -> Qid {
    let kind = if info.mode & DMDIR != 0 {
        QidType::DIR
    } else {
        QidType::FILE
    };
    Qid {
        kind,
        version: 0,
        path: info.qid_path,
    }
}

fn stat_of(info: Info) -> Stat {
    Stat {
        kind: 0,
        dev: 0,
        qid: qid_of(&info),
        mode: FileMode::from_bits_retain(info.mode),
        atime: 0,
        mtime: 0,
        length: if info.mode & DMDIR != 0 {
            0
        } else {
            info.length
        },
        name: info.name,
        gid: info.uid.clone(),
        muid: info.uid.clone(),
        uid: info.uid,
    }
}

/// A namespace's error as a 9P error: the text goes through unchanged
/// (Plan 9's exportfs passes the errstr on), but a missing file is the
/// session's [`Error::NOT_FOUND`] (core says `'PATH' file does not
/// exist`), which it needs to tell "not there" from a failure.
fn error(text: String) -> Error {
    if text.ends_with(Error::NOT_FOUND.as_str()) {
        Error::NOT_FOUND
    } else {
        Error::new(text)
    }
}

impl<N: Namespace> ExportFs<N> {
    /// Serves `ns` from `root` (an absolute path, e.g. `/`).
    pub fn new(ns: N, root: &str) -> Self {
        let root = if root.len() > 1 {
            String::from(root.trim_end_matches('/'))
        } else {
            String::from("/")
        };
        ExportFs { ns, root }
    }

    /// The namespace (for the program's shutdown and for tests).
    pub fn namespace(&mut self) -> &mut N {
        &mut self.ns
    }

    fn opened(node: &Node) -> Result<Fd, Error> {
        node.fd.ok_or(Error::new("exportfs: fid not open"))
    }
}

impl<N: Namespace> FileServer for ExportFs<N> {
    type Node = Node;

    fn attach(&mut self, _uname: &str, aname: &str) -> Result<(Node, Qid), Error> {
        let path = match aname {
            "" => self.root.clone(),
            name if name.starts_with('/') && !name.split('/').any(|e| e == "..") => {
                join(&self.root, name.trim_start_matches('/'))
                    .trim_end_matches('/')
                    .into()
            }
            _ => return Err(Error::new("bad attach specifier")),
        };
        let path = if path.is_empty() {
            String::from("/")
        } else {
            path
        };
        let info = self
            .ns
            .stat(&path)
            .map_err(|_| Error::new("bad attach specifier"))?;
        if info.mode & DMDIR == 0 {
            return Err(Error::new("bad attach specifier"));
        }
        Ok((Node { path, fd: None }, qid_of(&info)))
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &Node, name: &str) -> Result<(Node, Qid), Error> {
        let path = match name {
            ".." => String::from(parent(&self.root, &dir.path)),
            "." | "" => return Err(Error::NOT_FOUND),
            name => join(&dir.path, name),
        };
        let info = self.ns.stat(&path).map_err(error)?;
        Ok((Node { path, fd: None }, qid_of(&info)))
    }

    fn stat(&mut self, node: &Node) -> Result<Stat, Error> {
        let mut info = self.ns.stat(&node.path).map_err(error)?;
        if node.path == self.root {
            info.name = String::from("/");
        }
        Ok(stat_of(info))
    }

    fn open(&mut self, caller: &Caller<'_>, node: &Node, mode: OpenMode) -> Result<Qid, Error> {
        self.open_as(caller, node, mode).map(|(_, qid)| qid)
    }

    fn open_as(
        &mut self,
        _caller: &Caller<'_>,
        node: &Node,
        mode: OpenMode,
    ) -> Result<(Node, Qid), Error> {
        let info = self.ns.stat(&node.path).map_err(error)?;
        // Directories are read by path (read_dir); only files keep a
        // descriptor.
        if info.mode & DMDIR != 0 {
            return Ok((node.clone(), qid_of(&info)));
        }
        let bits = mode.bits() & (0x03 | OpenMode::OTRUNC.bits());
        let fd = self.ns.open(&node.path, bits).map_err(error)?;
        let opened = Node {
            path: node.path.clone(),
            fd: Some(fd),
        };
        Ok((opened, qid_of(&info)))
    }

    fn create(
        &mut self,
        _caller: &Caller<'_>,
        dir: &Node,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<(Node, Qid), Error> {
        if name == "." {
            return Err(Error::BAD_ARG);
        }
        let path = join(&dir.path, name);
        let bits = mode.bits() & (0x03 | OpenMode::OTRUNC.bits());
        let fd = self.ns.create(&path, bits, perm.bits()).map_err(error)?;
        let info = match self.ns.stat(&path) {
            Ok(info) => info,
            Err(why) => {
                self.ns.close(fd);
                return Err(error(why));
            }
        };
        let fd = if info.mode & DMDIR != 0 {
            self.ns.close(fd);
            None
        } else {
            Some(fd)
        };
        Ok((Node { path, fd }, qid_of(&info)))
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        node: &Node,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        let fd = Self::opened(node)?;
        self.ns
            .pread(fd, offset, count)
            .map(Reply::Now)
            .map_err(error)
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &Node) -> Result<Vec<Stat>, Error> {
        let entries = self.ns.read_dir(&dir.path).map_err(error)?;
        Ok(entries.into_iter().map(stat_of).collect())
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        node: &Node,
        offset: u64,
        data: &[u8],
    ) -> Result<Reply<u32>, Error> {
        let fd = Self::opened(node)?;
        self.ns
            .pwrite(fd, offset, data)
            .map(Reply::Now)
            .map_err(error)
    }

    fn remove(&mut self, _caller: &Caller<'_>, node: &Node) -> Result<(), Error> {
        if node.path == self.root {
            return Err(Error::PERMISSION_DENIED);
        }
        if let Some(fd) = node.fd {
            self.ns.close(fd);
        }
        self.ns.remove(&node.path).map_err(error)
    }

    fn wstat(
        &mut self,
        _caller: &Caller<'_>,
        node: &Node,
        changes: &StatChanges,
    ) -> Result<(), Error> {
        let served = StatChanges {
            name: changes.name.clone(),
            length: changes.length,
            ..StatChanges::default()
        };
        if served != *changes || changes.length.is_some_and(|length| length != 0) {
            return Err(Error::new(WSTAT_REFUSED));
        }
        if changes.length == Some(0) {
            let fd = self
                .ns
                .open(&node.path, 0x01 | OpenMode::OTRUNC.bits())
                .map_err(error)?;
            self.ns.close(fd);
        }
        if let Some(name) = &changes.name {
            if node.path == self.root {
                return Err(Error::PERMISSION_DENIED);
            }
            self.ns.rename(&node.path, name).map_err(error)?;
        }
        Ok(())
    }

    fn clunk(&mut self, node: &Node, _opened: Option<OpenMode>) {
        if let Some(fd) = node.fd {
            self.ns.close(fd);
        }
    }
}

/// The largest 9P message exportfs takes: 8 KiB of data and its header
/// (core's reads and writes move at most 8 KiB).
pub const MSIZE: u32 = 8192 + ninep::IOHDRSZ;

/// One 9P connection: bytes of T-messages in, bytes of R-messages out.
/// The transport is the caller's (a link file, a pipe, a TCP conversation):
/// 9P's `size[4]` cuts the stream into messages, whatever pieces it came in.
pub struct Exporter<N: Namespace> {
    fs: ExportFs<N>,
    session: ninep_server::Session<ExportFs<N>>,
    buffer: Vec<u8>,
}

impl<N: Namespace + core::fmt::Debug> core::fmt::Debug for Exporter<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Exporter")
            .field("fs", &self.fs)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl<N: Namespace> Exporter<N> {
    /// Serves `ns` from `root`.
    pub fn new(ns: N, root: &str) -> Self {
        Exporter {
            fs: ExportFs::new(ns, root),
            session: ninep_server::Session::new(MSIZE),
            buffer: Vec::new(),
        }
    }

    /// Takes bytes of the client's stream; returns the replies to send.
    /// A stream whose framing breaks cannot go on: the error says why,
    /// and the caller should [`reset`](Self::reset) or hang up.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut replies = Vec::new();
        let mut start = 0;
        let result = loop {
            let rest = &self.buffer[start..];
            match ninep::frame_length(rest, self.session.msize()) {
                Ok(Some(size)) if size <= rest.len() => {
                    if let Err(e) = self
                        .session
                        .handle(&mut self.fs, &rest[..size], &mut replies)
                    {
                        break Err(format!("exportfs: {e}"));
                    }
                    start += size;
                }
                Ok(_) => break Ok(replies),
                Err(e) => break Err(format!("exportfs: broken 9P framing: {e}")),
            }
        };
        self.buffer.drain(..start);
        result
    }

    /// The client went away (or a new one comes): every fid is clunked
    /// and half a message is dropped.
    pub fn reset(&mut self) {
        self.session.close(&mut self.fs);
        self.buffer.clear();
    }

    /// The namespace served.
    pub fn namespace(&mut self) -> &mut N {
        self.fs.namespace()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec;
    use ninep::{Frame, Message};

    /// A namespace of paths in a map: directories have no bytes.
    #[derive(Debug, Default)]
    struct Fake {
        files: BTreeMap<String, (u32, Vec<u8>)>,
        fds: BTreeMap<Fd, String>,
        next: Fd,
    }

    impl Fake {
        fn new() -> Self {
            let mut fake = Fake::default();
            fake.files.insert("/".into(), (DMDIR | 0o775, vec![]));
            fake.files.insert("/tmp".into(), (DMDIR | 0o777, vec![]));
            fake.files
                .insert("/tmp/hello".into(), (0o664, b"hello world".to_vec()));
            fake
        }
        fn info(&self, path: &str) -> Result<Info, String> {
            let (mode, bytes) = self
                .files
                .get(path)
                .ok_or_else(|| format!("'{path}' file does not exist"))?;
            let qid_path = self.files.keys().position(|k| k == path).unwrap_or(0) as u64;
            Ok(Info {
                name: path.rsplit('/').next().unwrap_or("/").to_string(),
                length: bytes.len() as u64,
                mode: *mode,
                qid_path: 100 + qid_path,
                uid: "eve".into(),
            })
        }
        fn fd_path(&self, fd: Fd) -> Result<String, String> {
            self.fds.get(&fd).cloned().ok_or_else(|| "bad fd".into())
        }
    }

    impl Namespace for Fake {
        fn stat(&mut self, path: &str) -> Result<Info, String> {
            self.info(path)
        }
        fn read_dir(&mut self, path: &str) -> Result<Vec<Info>, String> {
            let prefix = join(path, "");
            let names: Vec<String> = self
                .files
                .keys()
                .filter(|k| k.starts_with(&prefix) && k.len() > prefix.len())
                .filter(|k| !k[prefix.len()..].contains('/'))
                .cloned()
                .collect();
            names.iter().map(|k| self.info(k)).collect()
        }
        fn open(&mut self, path: &str, mode: u8) -> Result<Fd, String> {
            let entry = self.files.get_mut(path).ok_or("file does not exist")?;
            if mode & 0x10 != 0 {
                entry.1.clear();
            }
            self.next += 1;
            self.fds.insert(self.next, path.into());
            Ok(self.next)
        }
        fn create(&mut self, path: &str, _mode: u8, perm: u32) -> Result<Fd, String> {
            if self.files.contains_key(path) {
                return Err("file already exists".into());
            }
            self.files.insert(path.into(), (perm, vec![]));
            self.open(path, 0)
        }
        fn pread(&mut self, fd: Fd, offset: u64, count: u32) -> Result<Vec<u8>, String> {
            let path = self.fd_path(fd)?;
            let bytes = &self.files[&path].1;
            let start = (offset as usize).min(bytes.len());
            let end = (start + count as usize).min(bytes.len());
            Ok(bytes[start..end].to_vec())
        }
        fn pwrite(&mut self, fd: Fd, offset: u64, data: &[u8]) -> Result<u32, String> {
            let path = self.fd_path(fd)?;
            let bytes = &mut self.files.get_mut(&path).ok_or("gone")?.1;
            let end = offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset as usize..end].copy_from_slice(data);
            Ok(data.len() as u32)
        }
        fn close(&mut self, fd: Fd) {
            self.fds.remove(&fd);
        }
        fn remove(&mut self, path: &str) -> Result<(), String> {
            self.files.remove(path).map(|_| ()).ok_or("no file".into())
        }
        fn rename(&mut self, path: &str, name: &str) -> Result<(), String> {
            let entry = self.files.remove(path).ok_or("no file")?;
            let to = join(parent("/", path), name);
            self.files.insert(to, entry);
            Ok(())
        }
    }

    fn rpc(e: &mut Exporter<Fake>, tag: u16, message: Message) -> Message {
        let bytes = Frame::new(tag, message).to_bytes().unwrap();
        // Fed in two pieces: the stream may be cut anywhere.
        let (a, b) = bytes.split_at(bytes.len() / 2);
        assert!(e.feed(a).unwrap().is_empty());
        let reply = e.feed(b).unwrap();
        let frame = Frame::decode(&reply, MSIZE).unwrap();
        assert_eq!(frame.tag, tag);
        frame.message
    }

    fn attach(e: &mut Exporter<Fake>) {
        let version = Message::Tversion {
            msize: MSIZE,
            version: "9P2000".into(),
        };
        assert!(matches!(
            rpc(e, ninep::NOTAG, version),
            Message::Rversion { .. }
        ));
        let attach = Message::Tattach {
            fid: 0,
            afid: ninep::NOFID,
            uname: "eve".into(),
            aname: "".into(),
        };
        assert!(matches!(rpc(e, 1, attach), Message::Rattach { .. }));
    }

    fn walk(e: &mut Exporter<Fake>, fid: u32, newfid: u32, names: &[&str]) -> Message {
        let wnames = names.iter().map(|n| n.to_string()).collect();
        rpc(
            e,
            2,
            Message::Twalk {
                fid,
                newfid,
                wnames,
            },
        )
    }

    #[test]
    fn paths_join_and_dotdot_stays_under_the_root() {
        assert_eq!(join("/", "tmp"), "/tmp");
        assert_eq!(join("/tmp", "x"), "/tmp/x");
        assert_eq!(parent("/", "/tmp/x"), "/tmp");
        assert_eq!(parent("/", "/tmp"), "/");
        assert_eq!(parent("/", "/"), "/");
        assert_eq!(parent("/tmp", "/tmp"), "/tmp");
        assert_eq!(parent("/tmp", "/tmp/a"), "/tmp");
    }

    #[test]
    fn a_client_reads_creates_writes_renames_truncates_and_removes() {
        let mut e = Exporter::new(Fake::new(), "/");
        attach(&mut e);
        match walk(&mut e, 0, 1, &["tmp", "hello"]) {
            Message::Rwalk { wqids } => assert_eq!(wqids.len(), 2),
            other => panic!("{other:?}"),
        }
        let open = Message::Topen {
            fid: 1,
            mode: OpenMode::OREAD,
        };
        assert!(matches!(rpc(&mut e, 3, open), Message::Ropen { .. }));
        let read = Message::Tread {
            fid: 1,
            offset: 6,
            count: 100,
        };
        assert_eq!(
            rpc(&mut e, 4, read),
            Message::Rread {
                data: b"world".to_vec()
            }
        );
        // `..` from the root stays there; a missing name fails the walk.
        assert!(matches!(walk(&mut e, 0, 2, &[".."]), Message::Rwalk { .. }));
        assert!(matches!(
            walk(&mut e, 0, 3, &["nothing"]),
            Message::Rerror { .. }
        ));
        // Create a file in /tmp, write it, read the directory.
        walk(&mut e, 0, 4, &["tmp"]);
        let create = Message::Tcreate {
            fid: 4,
            name: "x".into(),
            perm: FileMode::from_bits_retain(0o644),
            mode: OpenMode::OWRITE,
        };
        let created = rpc(&mut e, 5, create);
        assert!(matches!(created, Message::Rcreate { .. }), "{created:?}");
        let write = Message::Twrite {
            fid: 4,
            offset: 0,
            data: b"hi\n".to_vec(),
        };
        assert_eq!(rpc(&mut e, 6, write), Message::Rwrite { count: 3 });
        assert_eq!(e.namespace().files["/tmp/x"].1, b"hi\n");
        rpc(&mut e, 7, Message::Tclunk { fid: 4 });
        assert!(e.namespace().fds.len() == 1, "the clunk closed x");
        walk(&mut e, 0, 5, &["tmp"]);
        rpc(
            &mut e,
            8,
            Message::Topen {
                fid: 5,
                mode: OpenMode::OREAD,
            },
        );
        let Message::Rread { data } = rpc(
            &mut e,
            9,
            Message::Tread {
                fid: 5,
                offset: 0,
                count: 4096,
            },
        ) else {
            panic!("no directory read");
        };
        let names: Vec<String> = Stat::decode_directory(&data)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["hello", "x"]);
        // Rename and truncate go through; other wstats are refused.
        walk(&mut e, 0, 6, &["tmp", "x"]);
        let mut stat = Stat::dont_touch();
        stat.name = "y".into();
        assert_eq!(
            rpc(&mut e, 10, Message::Twstat { fid: 6, stat }),
            Message::Rwstat
        );
        assert!(e.namespace().files.contains_key("/tmp/y"));
        walk(&mut e, 0, 7, &["tmp", "hello"]);
        let mut stat = Stat::dont_touch();
        stat.length = 0;
        assert_eq!(
            rpc(&mut e, 11, Message::Twstat { fid: 7, stat }),
            Message::Rwstat
        );
        assert!(e.namespace().files["/tmp/hello"].1.is_empty());
        let mut stat = Stat::dont_touch();
        stat.mode = FileMode::from_bits_retain(0o600);
        match rpc(&mut e, 12, Message::Twstat { fid: 7, stat }) {
            Message::Rerror { ename } => assert_eq!(ename, WSTAT_REFUSED),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            rpc(&mut e, 13, Message::Tremove { fid: 7 }),
            Message::Rremove
        );
        assert!(!e.namespace().files.contains_key("/tmp/hello"));
        // A new client: the old fids are gone and their files closed.
        e.reset();
        assert!(e.namespace().fds.is_empty());
        attach(&mut e);
    }

    #[test]
    fn broken_framing_is_an_error_and_a_reset_recovers() {
        let mut e = Exporter::new(Fake::new(), "/");
        assert!(e.feed(&[3, 0, 0, 0, 100, 0, 0]).is_err());
        e.reset();
        attach(&mut e);
        let mut bad = Exporter::new(Fake::new(), "/tmp");
        let attach = Message::Tattach {
            fid: 0,
            afid: ninep::NOFID,
            uname: "eve".into(),
            aname: "/../etc".into(),
        };
        let version = Message::Tversion {
            msize: MSIZE,
            version: "9P2000".into(),
        };
        rpc(&mut bad, ninep::NOTAG, version);
        assert!(matches!(rpc(&mut bad, 1, attach), Message::Rerror { .. }));
    }
}
