//! The FUSE-to-9P translator driven with FUSE requests, as the kernel
//! sends them, against the agent's own 9P server over a temporary tree
//! (in place of Kasane's exportfs, which speaks the same 9P2000).

use std::fs;
use std::path::PathBuf;

use bridge_agent::channels::Channels;
use bridge_agent::fuse::{op, InHeader, Translator, Transport, IN_HEADER, OUT_HEADER, ROOT};
use bridge_agent::linuxfs::Names;

struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let path = std::env::temp_dir().join(format!("kasane-fuse-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("tmp")).unwrap();
        fs::write(path.join("tmp/hello"), b"hello from kasane\n").unwrap();
        Tree(path)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The 9P server in process; `down` makes every exchange fail, as when
/// the peer went away.
struct Loopback {
    channels: Channels,
    down: bool,
    exchanges: usize,
}

impl Transport for Loopback {
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        if self.down {
            return Err("the peer went away".into());
        }
        self.exchanges += 1;
        self.channels.feed(1, request)
    }
}

fn translator(tree: &Tree) -> Translator<Loopback> {
    translator_hiding(tree, None)
}

fn translator_hiding(tree: &Tree, hidden: Option<&str>) -> Translator<Loopback> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let names = Names::parse(
        &format!("eve:x:{uid}:{gid}::/:/bin/sh\n"),
        &format!("eve:x:{gid}:\n"),
    );
    let mut channels = Channels::new(&tree.0, names).unwrap();
    if let Some(hidden) = hidden {
        channels.hide(&fs::canonicalize(&tree.0).unwrap().join(hidden));
    }
    let mut t = Translator::new(
        Loopback {
            channels,
            down: false,
            exchanges: 0,
        },
        "eve",
        "",
    );
    let init = request(
        op::INIT,
        0,
        &[
            7u32.to_le_bytes(),
            36u32.to_le_bytes(),
            65536u32.to_le_bytes(),
            0u32.to_le_bytes(),
        ]
        .concat(),
    );
    let (error, body) = call(&mut t, &init);
    assert_eq!(error, 0);
    assert_eq!(body.len(), 64);
    assert_eq!(&body[..4], &7u32.to_le_bytes());
    t
}

static UNIQUE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn request(opcode: u32, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(((IN_HEADER + body.len()) as u32).to_le_bytes());
    out.extend(opcode.to_le_bytes());
    out.extend(
        UNIQUE
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    out.extend(nodeid.to_le_bytes());
    out.extend([0u8; 16]); // uid, gid, pid, extension length, padding
    out.extend(body);
    out
}

/// Sends a request; returns the error (0 or -errno) and the body.
fn call(t: &mut Translator<Loopback>, request: &[u8]) -> (i32, Vec<u8>) {
    let header = InHeader::parse(request).unwrap();
    let reply = t.handle(request).expect("an answer");
    assert_eq!(
        u32::from_le_bytes(reply[..4].try_into().unwrap()) as usize,
        reply.len()
    );
    assert_eq!(
        u64::from_le_bytes(reply[8..16].try_into().unwrap()),
        header.unique
    );
    let error = i32::from_le_bytes(reply[4..8].try_into().unwrap());
    (error, reply[OUT_HEADER..].to_vec())
}

fn name(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    out.push(0);
    out
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// LOOKUP: the node id and the attributes' size and mode.
fn lookup(t: &mut Translator<Loopback>, parent: u64, text: &str) -> Result<(u64, u64, u32), i32> {
    let (error, body) = call(t, &request(op::LOOKUP, parent, &name(text)));
    if error != 0 {
        return Err(-error);
    }
    assert_eq!(body.len(), 128);
    // entry_out: nodeid, generation, valids (24), attr at 40: size at +8,
    // mode at +60.
    Ok((u64_at(&body, 0), u64_at(&body, 48), u32_at(&body, 100)))
}

fn open(t: &mut Translator<Loopback>, nodeid: u64, opcode: u32, flags: u32) -> u64 {
    let body = [flags.to_le_bytes(), 0u32.to_le_bytes()].concat();
    let (error, body) = call(t, &request(opcode, nodeid, &body));
    assert_eq!(error, 0);
    assert_eq!(u32_at(&body, 8), 1, "direct I/O");
    u64_at(&body, 0)
}

fn read_in(fh: u64, offset: u64, size: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(fh.to_le_bytes());
    body.extend(offset.to_le_bytes());
    body.extend(size.to_le_bytes());
    body.extend([0u8; 20]);
    body
}

fn readdir(t: &mut Translator<Loopback>, nodeid: u64) -> Vec<String> {
    let fh = open(t, nodeid, op::OPENDIR, 0);
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        // A small buffer: the entries come over several requests.
        let (error, body) = call(t, &request(op::READDIR, nodeid, &read_in(fh, offset, 64)));
        assert_eq!(error, 0);
        if body.is_empty() {
            break;
        }
        let mut at = 0;
        while at < body.len() {
            offset = u64_at(&body, at + 8);
            let length = u32_at(&body, at + 16) as usize;
            names.push(String::from_utf8(body[at + 24..at + 24 + length].to_vec()).unwrap());
            at += (24 + length).next_multiple_of(8);
        }
    }
    let (error, _) = call(t, &request(op::RELEASEDIR, nodeid, &read_in(fh, 0, 0)));
    assert_eq!(error, 0);
    names
}

#[test]
fn ls_cat_and_a_write_through_the_mount() {
    let tree = Tree::new("basic");
    let mut t = translator(&tree);
    // getattr of the root: a directory.
    let (error, body) = call(&mut t, &request(op::GETATTR, ROOT, &[0u8; 16]));
    assert_eq!(error, 0);
    assert_eq!(u32_at(&body, 16 + 60) & libc::S_IFMT, libc::S_IFDIR);
    // ls /kasane/tmp
    let (tmp, _, mode) = lookup(&mut t, ROOT, "tmp").unwrap();
    assert_eq!(mode & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(readdir(&mut t, tmp), ["hello"]);
    // cat /kasane/tmp/hello
    let (hello, size, mode) = lookup(&mut t, tmp, "hello").unwrap();
    assert_eq!(size, 18);
    assert_eq!(mode & libc::S_IFMT, libc::S_IFREG);
    let fh = open(&mut t, hello, op::OPEN, libc::O_RDONLY as u32);
    let (error, data) = call(&mut t, &request(op::READ, hello, &read_in(fh, 0, 4096)));
    assert_eq!(error, 0);
    assert_eq!(data, b"hello from kasane\n");
    call(&mut t, &request(op::RELEASE, hello, &read_in(fh, 0, 0)));
    // The same path is the same node.
    assert_eq!(lookup(&mut t, tmp, "hello").unwrap().0, hello);
    assert_eq!(lookup(&mut t, tmp, "nothing"), Err(libc::ENOENT));
    // sh -c 'echo hi > /kasane/tmp/x': CREATE, WRITE, RELEASE.
    let mut create = Vec::new();
    create.extend(((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32).to_le_bytes());
    create.extend(0o666u32.to_le_bytes());
    create.extend(0o022u32.to_le_bytes());
    create.extend(0u32.to_le_bytes());
    create.extend(name("x"));
    let (error, body) = call(&mut t, &request(op::CREATE, tmp, &create));
    assert_eq!(error, 0);
    assert_eq!(body.len(), 128 + 16);
    let x = u64_at(&body, 0);
    let fh = u64_at(&body, 128);
    let mut write = Vec::new();
    write.extend(fh.to_le_bytes());
    write.extend(0u64.to_le_bytes());
    write.extend(3u32.to_le_bytes());
    write.extend([0u8; 20]);
    write.extend(b"hi\n");
    let (error, body) = call(&mut t, &request(op::WRITE, x, &write));
    assert_eq!(error, 0);
    assert_eq!(u32_at(&body, 0), 3);
    call(&mut t, &request(op::RELEASE, x, &read_in(fh, 0, 0)));
    assert_eq!(fs::read(tree.0.join("tmp/x")).unwrap(), b"hi\n");
    let metadata = fs::metadata(tree.0.join("tmp/x")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777,
        0o644
    );
    // Truncate (SETATTR size 0), rename, mkdir, rmdir, unlink.
    let mut setattr = vec![0u8; 88];
    setattr[..4].copy_from_slice(&8u32.to_le_bytes());
    let (error, body) = call(&mut t, &request(op::SETATTR, x, &setattr));
    assert_eq!(error, 0);
    assert_eq!(u64_at(&body, 16 + 8), 0, "size 0");
    let mut rename = tmp.to_le_bytes().to_vec();
    rename.extend(name("x"));
    rename.extend(name("y"));
    assert_eq!(call(&mut t, &request(op::RENAME, tmp, &rename)).0, 0);
    assert!(tree.0.join("tmp/y").exists());
    let (error, _) = call(&mut t, &request(op::GETATTR, x, &[0u8; 16]));
    assert_eq!(error, 0, "the renamed node follows its file");
    let mut across = ROOT.to_le_bytes().to_vec();
    across.extend(name("y"));
    across.extend(name("z"));
    assert_eq!(
        call(&mut t, &request(op::RENAME, tmp, &across)).0,
        -libc::EXDEV
    );
    let mut mkdir = 0o755u32.to_le_bytes().to_vec();
    mkdir.extend(0u32.to_le_bytes());
    mkdir.extend(name("d"));
    assert_eq!(call(&mut t, &request(op::MKDIR, tmp, &mkdir)).0, 0);
    assert!(tree.0.join("tmp/d").is_dir());
    assert_eq!(readdir(&mut t, tmp), ["d", "hello", "y"]);
    assert_eq!(call(&mut t, &request(op::RMDIR, tmp, &name("d"))).0, 0);
    assert_eq!(call(&mut t, &request(op::UNLINK, tmp, &name("y"))).0, 0);
    assert_eq!(
        call(&mut t, &request(op::UNLINK, tmp, &name("y"))).0,
        -libc::ENOENT
    );
    assert_eq!(readdir(&mut t, tmp), ["hello"]);
    // Bad names never reach the server; unknown requests are ENOSYS;
    // FORGET is not answered.
    assert_eq!(
        call(&mut t, &request(op::LOOKUP, tmp, &name(".."))).0,
        -libc::EINVAL
    );
    assert_eq!(call(&mut t, &request(34, tmp, &[0u8; 8])).0, -libc::ENOSYS);
    assert!(t
        .handle(&request(op::FORGET, x, &1u64.to_le_bytes()))
        .is_none());
    assert!(t.handle(b"garbage").is_none());
}

#[test]
fn the_mount_comes_back_with_a_new_session() {
    let tree = Tree::new("restart");
    let mut t = translator(&tree);
    let (tmp, _, _) = lookup(&mut t, ROOT, "tmp").unwrap();
    let (hello, _, _) = lookup(&mut t, tmp, "hello").unwrap();
    let fh = open(&mut t, hello, op::OPEN, 0);
    // The peer goes away: requests fail with EIO...
    t.transport().down = true;
    assert_eq!(
        call(&mut t, &request(op::GETATTR, hello, &[0u8; 16])).0,
        -libc::EIO
    );
    // ...and a new server (a new exportfs, its fids gone) serves them.
    t.transport().channels.hang_up_all();
    t.transport().down = false;
    let (error, body) = call(&mut t, &request(op::GETATTR, hello, &[0u8; 16]));
    assert_eq!(error, 0, "the node is walked again in the new session");
    assert_eq!(u64_at(&body, 16 + 8), 18);
    // A file opened in the old session is lost.
    assert_eq!(
        call(&mut t, &request(op::READ, hello, &read_in(fh, 0, 10))).0,
        -libc::EIO
    );
    assert_eq!(readdir(&mut t, tmp), ["hello"]);
    // FORGET clunks: the nodes go.
    t.handle(&request(op::FORGET, hello, &1u64.to_le_bytes()));
    t.handle(&request(op::FORGET, tmp, &1u64.to_le_bytes()));
    assert_eq!(t.node_count(), 1);
}

#[test]
fn a_hidden_path_is_neither_listed_nor_walked() {
    // The agent hides its own FUSE mount from the 9P tree it serves.
    let tree = Tree::new("hidden");
    let mut t = translator_hiding(&tree, Some("tmp"));
    assert_eq!(lookup(&mut t, ROOT, "tmp"), Err(libc::ENOENT));
    assert!(readdir(&mut t, ROOT).is_empty());
}
