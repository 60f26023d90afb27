//! Linux mounts Kasane: the FUSE wire protocol translated to 9P2000.
//!
//! The kernel's FUSE driver (`fuse.ko`, in Debian's cloud kernel) sends a
//! request on `/dev/fuse` for each file operation under the mount point;
//! [`Translator::handle`] turns each into 9P requests to Kasane's
//! `exportfs` through a [`Transport`] (the link, or a test's server) and
//! builds the answer. No libfuse: the structures are those of
//! `include/uapi/linux/fuse.h` (protocol 7.31 answered; Linux 6.1 speaks
//! 7.36 and accepts older minors), little-endian as the guest is.
//!
//! - **Nodes.** A FUSE node id names a path under the attach root (node 1
//!   is the root). Each node keeps a 9P fid walked to its path, made again
//!   after the 9P session was replaced (a new exportfs or a Kasane that
//!   restarted the link): the mount survives the other side going away.
//!   LOOKUP counts references and FORGET drops them; at zero the fid is
//!   clunked.
//! - **Files.** OPEN and CREATE give the kernel a 9P fid opened on the
//!   file as the file handle; reads and writes are Tread and Twrite on it
//!   (direct I/O: no page cache, so Kasane's changes show at once);
//!   RELEASE clunks it. A handle of a replaced session fails with EIO.
//! - **Directories.** OPENDIR reads the whole directory (9P directory
//!   reads are by byte offset, FUSE's by entry) and READDIR serves it.
//! - **Changes.** MKDIR is a Tcreate with `DMDIR`, UNLINK and RMDIR a
//!   Tremove, RENAME a Twstat of the name (within one directory; across
//!   directories it is EXDEV, which `mv` handles by copying), SETATTR of
//!   the size a Twstat of the length. Modes, owners and times are not
//!   carried (Kasane's wstat serves none of them): SETATTR of them
//!   answers the current attributes.
//! - **Errors.** Plan 9 error strings map to errno values; a transport
//!   failure is EIO and ends the session, so the next request starts a
//!   new one.

use std::collections::BTreeMap;

use ninep::{FileMode, Frame, Message, OpenMode, Qid, Stat, IOHDRSZ, MAXWELEM, NOFID, NOTAG};

/// FUSE opcodes (fuse.h, `enum fuse_opcode`).
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const RENAME2: u32 = 45;
}

/// The protocol version answered to INIT.
pub const MAJOR: u32 = 7;
pub const MINOR: u32 = 31;

/// `struct fuse_in_header`'s size.
pub const IN_HEADER: usize = 40;
/// `struct fuse_out_header`'s size.
pub const OUT_HEADER: usize = 16;

/// The 9P msize asked for: 8 KiB of data, as exportfs serves.
pub const MSIZE: u32 = 8192 + IOHDRSZ;

/// The most a WRITE carries (INIT's `max_write`).
pub const MAX_WRITE: u32 = 8192;

/// `FOPEN_DIRECT_IO`: reads and writes bypass the page cache.
const FOPEN_DIRECT_IO: u32 = 1;

/// SETATTR's `valid` bit for the size (`FATTR_SIZE`).
const FATTR_SIZE: u32 = 1 << 3;

/// How long the kernel may trust an entry or attributes, in seconds.
const VALID_SECONDS: u64 = 1;

/// The node id of the mount's root (`FUSE_ROOT_ID`).
pub const ROOT: u64 = 1;

/// The fid of the attach root in each 9P session.
const ROOT_FID: u32 = 0;

/// How many times a Tversion is sent before the operation fails.
const VERSION_TRIES: usize = 3;

/// Carries one 9P request to the server and brings its answer back.
pub trait Transport {
    /// Sends the T-message `request` and returns the R-message with the
    /// same tag. An `Err` means the session is gone (the peer went away
    /// or did not answer): the translator starts a new one next time.
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, String>;
}

/// The errno of a Plan 9 error string (as Linux's v9fs maps them).
pub fn errno_of(ename: &str) -> i32 {
    let table: [(&str, i32); 9] = [
        ("does not exist", libc::ENOENT),
        ("permission denied", libc::EACCES),
        ("already exists", libc::EEXIST),
        ("not empty", libc::ENOTEMPTY),
        ("is a directory", libc::EISDIR),
        ("not a directory", libc::ENOTDIR),
        ("not in use", libc::EBADF),
        ("in use", libc::EBUSY),
        ("wstat", libc::EPERM),
    ];
    table
        .iter()
        .find(|(text, _)| ename.contains(text))
        .map_or(libc::EIO, |&(_, errno)| errno)
}

/// Little-endian reads from a request body; short input is EINVAL.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], i32> {
        if self.0.len() < n {
            return Err(libc::EINVAL);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, i32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(
            bytes.try_into().map_err(|_| libc::EINVAL)?,
        ))
    }
    fn u64(&mut self) -> Result<u64, i32> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(
            bytes.try_into().map_err(|_| libc::EINVAL)?,
        ))
    }
    /// A NUL-terminated name; `/`, `.`, `..` and empty are EINVAL.
    fn name(&mut self) -> Result<String, i32> {
        let end = self.0.iter().position(|&b| b == 0).ok_or(libc::EINVAL)?;
        let name = std::str::from_utf8(&self.0[..end]).map_err(|_| libc::EINVAL)?;
        self.0 = &self.0[end + 1..];
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(libc::EINVAL);
        }
        Ok(name.to_string())
    }
}

/// A request's header (`struct fuse_in_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
}

impl InHeader {
    /// The header of `request`, checked against its length.
    pub fn parse(request: &[u8]) -> Option<InHeader> {
        let mut body = Body(request);
        let len = body.u32().ok()?;
        let opcode = body.u32().ok()?;
        let unique = body.u64().ok()?;
        let nodeid = body.u64().ok()?;
        (len as usize == request.len() && request.len() >= IN_HEADER).then_some(InHeader {
            len,
            opcode,
            unique,
            nodeid,
        })
    }
}

/// An answer: `fuse_out_header` and the body.
fn answer(unique: u64, error: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OUT_HEADER + body.len());
    out.extend_from_slice(&((OUT_HEADER + body.len()) as u32).to_le_bytes());
    out.extend_from_slice(&error.to_le_bytes());
    out.extend_from_slice(&unique.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn push32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn push64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// `struct fuse_attr` (88 bytes) of a 9P stat.
pub fn attr_of(stat: &Stat) -> Vec<u8> {
    let dir = stat.mode.is_dir();
    let kind = if dir { libc::S_IFDIR } else { libc::S_IFREG };
    let mut out = Vec::with_capacity(88);
    push64(&mut out, stat.qid.path.max(2)); // ino
    push64(&mut out, stat.length); // size
    push64(&mut out, stat.length.div_ceil(512)); // blocks
    push64(&mut out, u64::from(stat.atime));
    push64(&mut out, u64::from(stat.mtime));
    push64(&mut out, u64::from(stat.mtime)); // ctime
    for _ in 0..3 {
        push32(&mut out, 0); // atimensec, mtimensec, ctimensec
    }
    push32(&mut out, kind | (stat.mode.bits() & 0o777));
    push32(&mut out, if dir { 2 } else { 1 }); // nlink
    push32(&mut out, 0); // uid: Kasane's user is the guest's root
    push32(&mut out, 0); // gid
    push32(&mut out, 0); // rdev
    push32(&mut out, 4096); // blksize
    push32(&mut out, 0); // flags
    out
}

/// `struct fuse_entry_out` (128 bytes).
fn entry_out(nodeid: u64, stat: &Stat) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    push64(&mut out, nodeid);
    push64(&mut out, 0); // generation
    push64(&mut out, VALID_SECONDS); // entry_valid
    push64(&mut out, VALID_SECONDS); // attr_valid
    push32(&mut out, 0);
    push32(&mut out, 0);
    out.extend(attr_of(stat));
    out
}

/// `struct fuse_attr_out` (104 bytes).
fn attr_out(stat: &Stat) -> Vec<u8> {
    let mut out = Vec::with_capacity(104);
    push64(&mut out, VALID_SECONDS);
    push32(&mut out, 0);
    push32(&mut out, 0);
    out.extend(attr_of(stat));
    out
}

/// `struct fuse_open_out` (16 bytes).
fn open_out(fh: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    push64(&mut out, fh);
    push32(&mut out, FOPEN_DIRECT_IO);
    push32(&mut out, 0);
    out
}

/// A Linux open(2) access mode and O_TRUNC as a 9P open mode.
pub fn open_mode(flags: u32) -> OpenMode {
    let access = match flags & libc::O_ACCMODE as u32 {
        0 => OpenMode::OREAD,
        1 => OpenMode::OWRITE,
        _ => OpenMode::ORDWR,
    };
    if flags & libc::O_TRUNC as u32 != 0 {
        access | OpenMode::OTRUNC
    } else {
        access
    }
}

#[derive(Debug)]
struct Node {
    /// Names from the attach root.
    path: Vec<String>,
    /// A fid walked to it, and the session it belongs to.
    fid: Option<(u32, u64)>,
    lookups: u64,
}

#[derive(Debug)]
struct Handle {
    fid: u32,
    session: u64,
    /// A directory's entries, read at OPENDIR.
    entries: Option<Vec<Stat>>,
}

/// The FUSE file system over a 9P server.
#[derive(Debug)]
pub struct Translator<T> {
    transport: T,
    uname: String,
    aname: String,
    /// The current 9P session (0: none); bumped at each attach.
    session: u64,
    connected: bool,
    next_fid: u32,
    next_node: u64,
    nodes: BTreeMap<u64, Node>,
    /// Node ids by path, so that a path has one node.
    by_path: BTreeMap<Vec<String>, u64>,
    handles: BTreeMap<u64, Handle>,
    next_handle: u64,
}

type Answer = Result<Vec<u8>, i32>;

impl<T: Transport> Translator<T> {
    /// A file system attaching as `uname` to the tree `aname`.
    pub fn new(transport: T, uname: &str, aname: &str) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT,
            Node {
                path: Vec::new(),
                fid: None,
                lookups: u64::MAX,
            },
        );
        let mut by_path = BTreeMap::new();
        by_path.insert(Vec::new(), ROOT);
        Translator {
            transport,
            uname: uname.into(),
            aname: aname.into(),
            session: 0,
            connected: false,
            next_fid: 1,
            next_node: ROOT + 1,
            nodes,
            by_path,
            handles: BTreeMap::new(),
            next_handle: 1,
        }
    }

    /// The transport (for tests).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// How many nodes the kernel holds (the root included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Answers one request from `/dev/fuse`; `None` for those that get no
    /// answer (FORGET, BATCH_FORGET, INTERRUPT) and for garbage.
    pub fn handle(&mut self, request: &[u8]) -> Option<Vec<u8>> {
        let header = InHeader::parse(request)?;
        let body = Body(&request[IN_HEADER..]);
        let result = match header.opcode {
            op::FORGET => {
                let mut body = body;
                if let Ok(count) = body.u64() {
                    self.forget(header.nodeid, count);
                }
                return None;
            }
            op::BATCH_FORGET => {
                let mut body = body;
                let count = body.u32().unwrap_or(0);
                let _ = body.u32();
                for _ in 0..count {
                    let (Ok(nodeid), Ok(n)) = (body.u64(), body.u64()) else {
                        break;
                    };
                    self.forget(nodeid, n);
                }
                return None;
            }
            op::INTERRUPT => return None,
            op::INIT => self.init(body),
            op::LOOKUP => self.lookup(header.nodeid, body),
            op::GETATTR => self.getattr(header.nodeid),
            op::SETATTR => self.setattr(header.nodeid, body),
            op::OPEN => self.open(header.nodeid, body, false),
            op::OPENDIR => self.open(header.nodeid, body, true),
            op::READ => self.read(body),
            op::READDIR => self.readdir(body),
            op::WRITE => self.write(body),
            op::RELEASE | op::RELEASEDIR => self.release(body),
            op::CREATE => self.create(header.nodeid, body),
            op::MKDIR => self.mkdir(header.nodeid, body),
            op::UNLINK | op::RMDIR => self.remove(header.nodeid, body),
            op::RENAME => self.rename(header.nodeid, body, false),
            op::RENAME2 => self.rename(header.nodeid, body, true),
            op::STATFS => Ok(statfs_out()),
            op::FLUSH | op::FSYNC | op::FSYNCDIR | op::DESTROY => Ok(Vec::new()),
            // ACCESS, xattrs, links, locks...: ENOSYS tells the kernel
            // not to ask again (for ACCESS: to allow).
            _ => Err(libc::ENOSYS),
        };
        Some(match result {
            Ok(body) => answer(header.unique, 0, &body),
            Err(errno) => answer(header.unique, -errno, &[]),
        })
    }

    fn init(&mut self, mut body: Body<'_>) -> Answer {
        let major = body.u32()?;
        let _minor = body.u32()?;
        let max_readahead = body.u32()?;
        if major != MAJOR {
            return Err(libc::EPROTO);
        }
        let mut out = Vec::with_capacity(64);
        push32(&mut out, MAJOR);
        push32(&mut out, MINOR);
        push32(&mut out, max_readahead);
        push32(&mut out, 0); // flags: none asked for
        out.extend_from_slice(&0u16.to_le_bytes()); // max_background
        out.extend_from_slice(&0u16.to_le_bytes()); // congestion_threshold
        push32(&mut out, MAX_WRITE);
        push32(&mut out, 1_000_000_000); // time_gran: seconds
        out.extend_from_slice(&0u16.to_le_bytes()); // max_pages
        out.extend_from_slice(&0u16.to_le_bytes()); // map_alignment
        push32(&mut out, 0); // flags2
        out.extend_from_slice(&[0; 28]); // unused[7]
        Ok(out)
    }

    fn fresh_fid(&mut self) -> u32 {
        let fid = self.next_fid;
        self.next_fid = self.next_fid.wrapping_add(1).max(1);
        if self.next_fid == NOFID {
            self.next_fid = 1;
        }
        fid
    }

    /// One 9P exchange; an Rerror is its errno.
    fn rpc(&mut self, message: Message) -> Result<Message, i32> {
        let tag = if matches!(message, Message::Tversion { .. }) {
            NOTAG
        } else {
            1
        };
        let bytes = Frame::new(tag, message)
            .to_bytes()
            .map_err(|_| libc::EINVAL)?;
        let reply = match self.transport.exchange(&bytes) {
            Ok(reply) => reply,
            Err(_) => {
                self.connected = false;
                return Err(libc::EIO);
            }
        };
        match Frame::decode(&reply, MSIZE) {
            Ok(frame) if frame.tag == tag => match frame.message {
                Message::Rerror { ename } => Err(errno_of(&ename)),
                message => Ok(message),
            },
            _ => {
                self.connected = false;
                Err(libc::EIO)
            }
        }
    }

    /// A 9P session, made if there is none.
    fn connect(&mut self) -> Result<(), i32> {
        if self.connected {
            return Ok(());
        }
        let version = Message::Tversion {
            msize: MSIZE,
            version: "9P2000".into(),
        };
        // A Tversion sent while Kasane was still taking in a restart of
        // this cell may be dropped there: it is tried again.
        let mut answer = Err(libc::EIO);
        for _ in 0..VERSION_TRIES {
            answer = self.rpc(version.clone());
            if answer.is_ok() {
                break;
            }
        }
        match answer? {
            Message::Rversion { version, .. } if version == "9P2000" => {}
            _ => return Err(libc::EIO),
        }
        let attach = Message::Tattach {
            fid: ROOT_FID,
            afid: NOFID,
            uname: self.uname.clone(),
            aname: self.aname.clone(),
        };
        match self.rpc(attach)? {
            Message::Rattach { .. } => {}
            _ => return Err(libc::EIO),
        }
        self.session += 1;
        self.connected = true;
        Ok(())
    }

    /// Walks `from` by `names` to a new fid.
    fn walk(&mut self, from: u32, names: &[String]) -> Result<(u32, Option<Qid>), i32> {
        let newfid = self.fresh_fid();
        let mut at = from;
        let mut last = None;
        let chunks: Vec<&[String]> = if names.is_empty() {
            vec![&[][..]]
        } else {
            names.chunks(MAXWELEM).collect()
        };
        for chunk in chunks {
            let walk = Message::Twalk {
                fid: at,
                newfid,
                wnames: chunk.to_vec(),
            };
            let result = self.rpc(walk);
            let ok = matches!(&result, Ok(Message::Rwalk { wqids }) if wqids.len() == chunk.len());
            if !ok {
                if at == newfid {
                    let _ = self.rpc(Message::Tclunk { fid: newfid });
                }
                return Err(match result {
                    Err(errno) => errno,
                    _ => libc::ENOENT,
                });
            }
            if let Ok(Message::Rwalk { wqids }) = result {
                last = wqids.last().copied().or(last);
            }
            at = newfid;
        }
        Ok((newfid, last))
    }

    fn clunk(&mut self, fid: u32) {
        let _ = self.rpc(Message::Tclunk { fid });
    }

    /// The fid of a node in the current session, walked again if need be.
    fn node_fid(&mut self, nodeid: u64) -> Result<u32, i32> {
        self.connect()?;
        let node = self.nodes.get(&nodeid).ok_or(libc::ESTALE)?;
        if nodeid == ROOT {
            return Ok(ROOT_FID);
        }
        if let Some((fid, session)) = node.fid {
            if session == self.session {
                return Ok(fid);
            }
        }
        let path = node.path.clone();
        let (fid, _) = self.walk(ROOT_FID, &path)?;
        if let Some(node) = self.nodes.get_mut(&nodeid) {
            node.fid = Some((fid, self.session));
        }
        Ok(fid)
    }

    fn stat(&mut self, fid: u32) -> Result<Stat, i32> {
        match self.rpc(Message::Tstat { fid })? {
            Message::Rstat { stat } => Ok(stat),
            _ => Err(libc::EIO),
        }
    }

    fn child_path(&self, parent: u64, name: &str) -> Result<Vec<String>, i32> {
        let mut path = self.nodes.get(&parent).ok_or(libc::ESTALE)?.path.clone();
        path.push(name.to_string());
        Ok(path)
    }

    /// Finds `name` in `parent`: its node (one more reference) and entry.
    fn enter(&mut self, parent: u64, name: &str) -> Answer {
        let path = self.child_path(parent, name)?;
        let dir = self.node_fid(parent)?;
        let (fid, _) = self.walk(dir, std::slice::from_ref(&name.to_string()))?;
        let stat = match self.stat(fid) {
            Ok(stat) => stat,
            Err(errno) => {
                self.clunk(fid);
                return Err(errno);
            }
        };
        let nodeid = match self.by_path.get(&path).copied() {
            Some(nodeid) => {
                // The node has a fid already (or will walk one).
                self.clunk(fid);
                if let Some(node) = self.nodes.get_mut(&nodeid) {
                    node.lookups = node.lookups.saturating_add(1);
                }
                nodeid
            }
            None => {
                let nodeid = self.next_node;
                self.next_node += 1;
                self.by_path.insert(path.clone(), nodeid);
                self.nodes.insert(
                    nodeid,
                    Node {
                        path,
                        fid: Some((fid, self.session)),
                        lookups: 1,
                    },
                );
                nodeid
            }
        };
        Ok(entry_out(nodeid, &stat))
    }

    fn lookup(&mut self, parent: u64, mut body: Body<'_>) -> Answer {
        let name = body.name()?;
        self.enter(parent, &name)
    }

    fn forget(&mut self, nodeid: u64, count: u64) {
        if nodeid == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&nodeid) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups > 0 {
            return;
        }
        if let Some(node) = self.nodes.remove(&nodeid) {
            if self.by_path.get(&node.path) == Some(&nodeid) {
                self.by_path.remove(&node.path);
            }
            if let Some((fid, session)) = node.fid {
                if session == self.session && self.connected {
                    self.clunk(fid);
                }
            }
        }
    }

    fn getattr(&mut self, nodeid: u64) -> Answer {
        let fid = self.node_fid(nodeid)?;
        let stat = self.stat(fid)?;
        Ok(attr_out(&stat))
    }

    fn setattr(&mut self, nodeid: u64, mut body: Body<'_>) -> Answer {
        let valid = body.u32()?;
        let _padding = body.u32()?;
        let _fh = body.u64()?;
        let size = body.u64()?;
        let fid = self.node_fid(nodeid)?;
        if valid & FATTR_SIZE != 0 {
            let mut stat = Stat::dont_touch();
            stat.length = size;
            match self.rpc(Message::Twstat { fid, stat })? {
                Message::Rwstat => {}
                _ => return Err(libc::EIO),
            }
        }
        let stat = self.stat(fid)?;
        Ok(attr_out(&stat))
    }

    fn new_handle(&mut self, fid: u32, entries: Option<Vec<Stat>>) -> u64 {
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(
            fh,
            Handle {
                fid,
                session: self.session,
                entries,
            },
        );
        fh
    }

    fn open(&mut self, nodeid: u64, mut body: Body<'_>, dir: bool) -> Answer {
        let flags = body.u32()?;
        let node = self.node_fid(nodeid)?;
        let (fid, _) = self.walk(node, &[])?;
        let mode = if dir {
            OpenMode::OREAD
        } else {
            open_mode(flags)
        };
        match self.rpc(Message::Topen { fid, mode }) {
            Ok(Message::Ropen { .. }) => {}
            other => {
                self.clunk(fid);
                return Err(other.err().unwrap_or(libc::EIO));
            }
        }
        let entries = if dir {
            match self.read_directory(fid) {
                Ok(entries) => Some(entries),
                Err(errno) => {
                    self.clunk(fid);
                    return Err(errno);
                }
            }
        } else {
            None
        };
        let fh = self.new_handle(fid, entries);
        Ok(open_out(fh))
    }

    fn read_directory(&mut self, fid: u32) -> Result<Vec<Stat>, i32> {
        let mut bytes = Vec::new();
        loop {
            let read = Message::Tread {
                fid,
                offset: bytes.len() as u64,
                count: MSIZE - IOHDRSZ,
            };
            match self.rpc(read)? {
                Message::Rread { data } if data.is_empty() => break,
                Message::Rread { data } => bytes.extend(data),
                _ => return Err(libc::EIO),
            }
        }
        Stat::decode_directory(&bytes).map_err(|_| libc::EIO)
    }

    /// The fid of an open handle of the current session.
    fn handle_fid(&self, fh: u64) -> Result<u32, i32> {
        let handle = self.handles.get(&fh).ok_or(libc::EBADF)?;
        if handle.session != self.session || !self.connected {
            return Err(libc::EIO);
        }
        Ok(handle.fid)
    }

    fn read(&mut self, mut body: Body<'_>) -> Answer {
        let fh = body.u64()?;
        let offset = body.u64()?;
        let size = body.u32()?;
        let fid = self.handle_fid(fh)?;
        let read = Message::Tread {
            fid,
            offset,
            count: size.min(MSIZE - IOHDRSZ),
        };
        match self.rpc(read)? {
            Message::Rread { data } => Ok(data),
            _ => Err(libc::EIO),
        }
    }

    fn readdir(&mut self, mut body: Body<'_>) -> Answer {
        let fh = body.u64()?;
        let offset = body.u64()?;
        let size = body.u32()? as usize;
        let handle = self.handles.get(&fh).ok_or(libc::EBADF)?;
        let entries = handle.entries.as_ref().ok_or(libc::ENOTDIR)?;
        let mut out = Vec::new();
        for (index, stat) in entries.iter().enumerate().skip(offset as usize) {
            let name = stat.name.as_bytes();
            let length = (24 + name.len()).next_multiple_of(8);
            if out.len() + length > size {
                break;
            }
            let kind = if stat.mode.is_dir() {
                libc::DT_DIR
            } else {
                libc::DT_REG
            };
            push64(&mut out, stat.qid.path.max(2));
            push64(&mut out, index as u64 + 1); // the next entry's offset
            push32(&mut out, name.len() as u32);
            push32(&mut out, u32::from(kind));
            out.extend_from_slice(name);
            out.resize(out.len().next_multiple_of(8), 0);
        }
        Ok(out)
    }

    fn write(&mut self, mut body: Body<'_>) -> Answer {
        let fh = body.u64()?;
        let offset = body.u64()?;
        let size = body.u32()? as usize;
        body.take(4 + 8 + 4 + 4)?; // write_flags, lock_owner, flags, padding
        let data = body.take(size)?;
        let fid = self.handle_fid(fh)?;
        let mut written = 0usize;
        for piece in data.chunks((MSIZE - IOHDRSZ) as usize) {
            let write = Message::Twrite {
                fid,
                offset: offset + written as u64,
                data: piece.to_vec(),
            };
            match self.rpc(write)? {
                Message::Rwrite { count } => {
                    written += count as usize;
                    if (count as usize) < piece.len() {
                        break;
                    }
                }
                _ => return Err(libc::EIO),
            }
        }
        let mut out = Vec::with_capacity(8);
        push32(&mut out, written as u32);
        push32(&mut out, 0);
        Ok(out)
    }

    fn release(&mut self, mut body: Body<'_>) -> Answer {
        let fh = body.u64()?;
        if let Some(handle) = self.handles.remove(&fh) {
            if handle.session == self.session && self.connected {
                self.clunk(handle.fid);
            }
        }
        Ok(Vec::new())
    }

    /// Tcreate of `name` in `parent` with `perm` and `mode`; the fid it
    /// leaves open, then the new node's entry.
    fn make(
        &mut self,
        parent: u64,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<(u32, Vec<u8>), i32> {
        let dir = self.node_fid(parent)?;
        let (fid, _) = self.walk(dir, &[])?;
        let create = Message::Tcreate {
            fid,
            name: name.to_string(),
            perm,
            mode,
        };
        match self.rpc(create) {
            Ok(Message::Rcreate { .. }) => {}
            other => {
                self.clunk(fid);
                return Err(other.err().unwrap_or(libc::EIO));
            }
        }
        match self.enter(parent, name) {
            Ok(entry) => Ok((fid, entry)),
            Err(errno) => {
                self.clunk(fid);
                Err(errno)
            }
        }
    }

    fn create(&mut self, parent: u64, mut body: Body<'_>) -> Answer {
        let flags = body.u32()?;
        let mode = body.u32()?;
        let umask = body.u32()?;
        let _open_flags = body.u32()?;
        let name = body.name()?;
        let perm = FileMode::from_bits_retain(mode & !umask & 0o777);
        let (fid, mut entry) = self.make(parent, &name, perm, open_mode(flags))?;
        let fh = self.new_handle(fid, None);
        entry.extend(open_out(fh));
        Ok(entry)
    }

    fn mkdir(&mut self, parent: u64, mut body: Body<'_>) -> Answer {
        let mode = body.u32()?;
        let umask = body.u32()?;
        let name = body.name()?;
        let perm = FileMode::from_bits_retain((mode & !umask & 0o777) | FileMode::DMDIR.bits());
        let (fid, entry) = self.make(parent, &name, perm, OpenMode::OREAD)?;
        self.clunk(fid);
        Ok(entry)
    }

    fn remove(&mut self, parent: u64, mut body: Body<'_>) -> Answer {
        let name = body.name()?;
        let dir = self.node_fid(parent)?;
        let (fid, _) = self.walk(dir, &[name])?;
        // Tremove clunks the fid, whatever the outcome (remove(5)).
        match self.rpc(Message::Tremove { fid })? {
            Message::Rremove => Ok(Vec::new()),
            _ => Err(libc::EIO),
        }
    }

    fn rename(&mut self, parent: u64, mut body: Body<'_>, two: bool) -> Answer {
        let newdir = body.u64()?;
        if two {
            let flags = body.u32()?;
            let _padding = body.u32()?;
            if flags != 0 {
                return Err(libc::EINVAL);
            }
        }
        let old = body.name()?;
        let new = body.name()?;
        if newdir != parent {
            // 9P renames within a directory only (stat(5)).
            return Err(libc::EXDEV);
        }
        let dir = self.node_fid(parent)?;
        // rename(2) replaces a file there; 9P's wstat refuses to.
        if let Ok((target, _)) = self.walk(dir, std::slice::from_ref(&new)) {
            let _ = self.rpc(Message::Tremove { fid: target });
        }
        let (fid, _) = self.walk(dir, std::slice::from_ref(&old))?;
        let mut stat = Stat::dont_touch();
        stat.name = new.clone();
        let result = self.rpc(Message::Twstat { fid, stat });
        self.clunk(fid);
        match result? {
            Message::Rwstat => {}
            _ => return Err(libc::EIO),
        }
        // Nodes under the old path now live under the new one; their fids
        // name the old path on the server, so they are walked again.
        let from = self.child_path(parent, &old)?;
        let to = self.child_path(parent, &new)?;
        let moved: Vec<(Vec<String>, u64)> = self
            .by_path
            .iter()
            .filter(|(path, _)| path.starts_with(&from))
            .map(|(path, &id)| (path.clone(), id))
            .collect();
        for (path, nodeid) in moved {
            self.by_path.remove(&path);
            let mut renamed = to.clone();
            renamed.extend_from_slice(&path[from.len()..]);
            let stale = self.nodes.get_mut(&nodeid).and_then(|node| {
                node.path = renamed.clone();
                node.fid.take()
            });
            if let Some((fid, session)) = stale {
                if session == self.session {
                    self.clunk(fid);
                }
            }
            self.by_path.insert(renamed, nodeid);
        }
        Ok(Vec::new())
    }
}

/// `struct fuse_statfs_out` (80 bytes): sizes unknown, names up to 255.
fn statfs_out() -> Vec<u8> {
    let mut out = vec![0u8; 40]; // blocks, bfree, bavail, files, ffree
    push32(&mut out, 4096); // bsize
    push32(&mut out, 255); // namelen
    push32(&mut out, 4096); // frsize
    push32(&mut out, 0);
    out.extend_from_slice(&[0; 24]); // spare[6]
    out
}
