//! 9P2000 conformance of the framework + ramfs, tested on the wire.
//!
//! Each test sends frames (some as explicit bytes) and checks the exact
//! reply. The manual page each rule comes from is named in the test.

mod common;

use common::{error, Wire, MSIZE};
use ninep::{FileMode, Frame, Message, OpenMode, QidType, Stat, NOFID};
use ninep_server::{Error, Session};
use ramfs::Limits;

fn bytes(kind: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let mut v = ((7 + body.len()) as u32).to_le_bytes().to_vec();
    v.push(kind);
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn rerror_bytes(tag: u16, text: &str) -> Vec<u8> {
    let mut body = (text.len() as u16).to_le_bytes().to_vec();
    body.extend_from_slice(text.as_bytes());
    bytes(107, tag, &body)
}

fn walked(n: usize) -> impl Fn(&Message) -> bool {
    move |m| matches!(m, Message::Rwalk { wqids } if wqids.len() == n)
}

// ---- version(5) ----

#[test]
fn version_exact_bytes() {
    let mut w = Wire::new();
    let reply = w.raw(&bytes(100, 0xFFFF, b"\x00\x20\x00\x00\x06\x009P2000"));
    assert_eq!(reply, bytes(101, 0xFFFF, b"\x00\x20\x00\x00\x06\x009P2000"));
}

#[test]
fn version_strips_suffix_and_clamps_msize() {
    let mut w = Wire::new();
    let reply = w.rpc(
        0xFFFF,
        Message::Tversion {
            msize: 1 << 30,
            version: "9P2000.u".into(),
        },
    );
    assert_eq!(
        reply,
        Message::Rversion {
            msize: MSIZE,
            version: "9P2000".into()
        }
    );
    assert_eq!(w.session.msize(), MSIZE);
    let reply = w.rpc(
        0xFFFF,
        Message::Tversion {
            msize: 4096,
            version: "9P2000.L".into(),
        },
    );
    assert_eq!(
        reply,
        Message::Rversion {
            msize: 4096,
            version: "9P2000".into()
        }
    );
}

#[test]
fn unknown_version_answers_unknown() {
    let mut w = Wire::new();
    let reply = w.raw(&bytes(100, 0xFFFF, b"\x00\x20\x00\x00\x04\x00styx"));
    assert_eq!(
        reply,
        bytes(101, 0xFFFF, b"\x00\x20\x00\x00\x07\x00unknown")
    );
    // Still not negotiated: an attach is refused.
    let reply = w.call(Message::Tattach {
        fid: 0,
        afid: NOFID,
        uname: "glenda".into(),
        aname: String::new(),
    });
    assert!(matches!(reply, Message::Rerror { .. }));
}

#[test]
fn tiny_msize_is_refused() {
    let mut w = Wire::new();
    let reply = w.rpc(
        0xFFFF,
        Message::Tversion {
            msize: 100,
            version: "9P2000".into(),
        },
    );
    assert!(matches!(reply, Message::Rerror { ename } if ename.contains("msize")));
}

#[test]
fn requests_before_version_are_refused() {
    let mut w = Wire::new();
    let reply = w.raw(&bytes(124, 3, &[0, 0, 0, 0]));
    assert_eq!(
        Frame::decode(&reply, MSIZE).unwrap().message,
        error("Tversion must come first (version(5))")
    );
}

#[test]
fn version_aborts_fids_and_removes_orclose_files() {
    let mut w = Wire::start("glenda");
    assert!(walked(0)(&w.walk(0, 1, &[])));
    assert!(matches!(
        w.create(1, "tmp", 0o644, OpenMode::ORDWR | OpenMode::ORCLOSE),
        Message::Rcreate { .. }
    ));
    assert_eq!(w.fs.node_count(), 2);
    w.version();
    assert_eq!(w.session.fid_count(), 0);
    assert_eq!(w.fs.node_count(), 1, "ORCLOSE file removed by Tversion");
    assert_eq!(
        w.call(Message::Tstat { fid: 0 }),
        error(Error::UNKNOWN_FID.as_str())
    );
}

// ---- intro(5): bad frames ----

#[test]
fn terror_and_unknown_types_get_rerror_on_their_tag() {
    let mut w = Wire::start("glenda");
    let reply = w.raw(&bytes(106, 9, b"\x00\x00"));
    assert_eq!(
        reply,
        rerror_bytes(9, "bad 9P message: message type 106 (Terror) is illegal")
    );
    let reply = w.raw(&bytes(200, 10, b""));
    assert_eq!(
        reply,
        rerror_bytes(10, "bad 9P message: unknown message type 200")
    );
    let reply = w.raw(&bytes(121, 11, b""));
    assert_eq!(reply, rerror_bytes(11, "Rclunk is a reply, not a request"));
}

#[test]
fn truncated_and_trailing_bodies_get_rerror() {
    let mut w = Wire::start("glenda");
    let reply = w.raw(&bytes(120, 4, &[0, 0]));
    assert_eq!(
        reply,
        rerror_bytes(4, "bad 9P message: frame ends inside field fid")
    );
    let reply = w.raw(&bytes(120, 5, &[0, 0, 0, 0, 0]));
    assert_eq!(
        reply,
        rerror_bytes(
            5,
            "bad 9P message: 1 unexpected bytes after the end of Tclunk"
        )
    );
}

#[test]
fn broken_framing_ends_the_session() {
    let mut w = Wire::start("glenda");
    let mut out = Vec::new();
    let mut big = bytes(120, 1, &[0, 0, 0, 0]);
    big[..4].copy_from_slice(&(MSIZE + 1).to_le_bytes());
    assert!(w.session.handle(&mut w.fs, &big, &mut out).is_err());
    let mut odd = bytes(120, 1, &[0, 0, 0, 0]);
    odd.push(0);
    assert!(w.session.handle(&mut w.fs, &odd, &mut out).is_err());
    assert!(w.session.handle(&mut w.fs, &[1, 0], &mut out).is_err());
    assert!(out.is_empty());
}

// ---- attach(5) ----

#[test]
fn attach_rules() {
    let mut w = Wire::new();
    w.version();
    let auth = w.call(Message::Tauth {
        afid: 5,
        uname: "glenda".into(),
        aname: String::new(),
    });
    assert_eq!(auth, error("authentication not required"));
    let with_afid = w.call(Message::Tattach {
        fid: 0,
        afid: 5,
        uname: "glenda".into(),
        aname: String::new(),
    });
    assert_eq!(with_afid, error("authentication not required"));
    let qid = w.attach(0, "glenda");
    assert!(qid.kind.contains(QidType::DIR));
    let again = w.call(Message::Tattach {
        fid: 0,
        afid: NOFID,
        uname: "glenda".into(),
        aname: String::new(),
    });
    assert_eq!(again, error("fid already in use"));
    let bad_tree = w.call(Message::Tattach {
        fid: 1,
        afid: NOFID,
        uname: "glenda".into(),
        aname: "other".into(),
    });
    assert_eq!(bad_tree, error("file does not exist"));
}

// ---- fids ----

#[test]
fn unknown_fids() {
    let mut w = Wire::start("glenda");
    for message in [
        Message::Tstat { fid: 77 },
        Message::Tclunk { fid: 77 },
        Message::Tremove { fid: 77 },
        Message::Topen {
            fid: 77,
            mode: OpenMode::OREAD,
        },
        Message::Tread {
            fid: 77,
            offset: 0,
            count: 1,
        },
    ] {
        assert_eq!(w.call(message), error("fid unknown or out of range"));
    }
    // Exact bytes: Tclunk tag 2 fid 77.
    assert_eq!(
        w.raw(&bytes(120, 2, &[77, 0, 0, 0])),
        rerror_bytes(2, "fid unknown or out of range")
    );
}

#[test]
fn clunk_frees_the_fid() {
    let mut w = Wire::start("glenda");
    assert!(walked(0)(&w.walk(0, 1, &[])));
    assert_eq!(w.walk(0, 1, &[]), error("fid already in use"));
    assert_eq!(w.raw(&bytes(120, 3, &[1, 0, 0, 0])), bytes(121, 3, b""));
    assert!(walked(0)(&w.walk(0, 1, &[])));
}

// ---- walk(5) ----

#[test]
fn walk_clone_and_partial_walks() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "file", 0o644);
    w.clunk(1);
    assert!(walked(0)(&w.walk(0, 1, &[])));
    assert!(matches!(
        w.create(1, "dir", 0o755 | FileMode::DMDIR.bits(), OpenMode::OREAD),
        Message::Rcreate { .. }
    ));
    w.clunk(1);

    // Partial: the first element exists, the second not.
    let reply = w.walk(0, 2, &["dir", "missing", "deeper"]);
    assert!(walked(1)(&reply), "{reply:?}");
    assert_eq!(
        w.call(Message::Tstat { fid: 2 }),
        error("fid unknown or out of range")
    );
    // First element failing is an error, with Linux's ENOENT spelling.
    assert_eq!(w.walk(0, 2, &["missing"]), error("file does not exist"));
    // Walking through a file stops there.
    assert!(walked(1)(&w.walk(0, 2, &["file", "x"])));
    assert_eq!(w.walk(0, 2, &[]), Message::Rwalk { wqids: vec![] });
    w.clunk(2);
    assert!(walked(1)(&w.walk(0, 2, &["file"])));
    assert_eq!(w.walk(2, 3, &["x"]), error("not a directory"));
    // Complete walk with newfid == fid moves the fid.
    assert!(walked(0)(&w.walk(0, 4, &[])));
    assert!(walked(1)(&w.walk(4, 4, &["dir"])));
    assert_eq!(w.stat(4).name, "dir");
    // A failed walk with newfid == fid leaves it where it was.
    assert!(walked(1)(&w.walk(4, 4, &["..", "nope"])));
    assert_eq!(w.stat(4).name, "dir");
}

#[test]
fn dotdot_at_root_stays_at_root() {
    let mut w = Wire::start("glenda");
    let root = w.stat(0).qid;
    let reply = w.walk(0, 1, &["..", "..", ".."]);
    assert_eq!(
        reply,
        Message::Rwalk {
            wqids: vec![root; 3]
        }
    );
    assert_eq!(w.stat(1).qid, root);
}

#[test]
fn walk_needs_search_permission() {
    let mut w = Wire::start("glenda");
    assert!(walked(0)(&w.walk(0, 1, &[])));
    w.create(
        1,
        "private",
        0o700 | FileMode::DMDIR.bits(),
        OpenMode::OREAD,
    );
    w.clunk(1);
    w.attach(10, "other");
    assert!(walked(1)(&w.walk(10, 11, &["private"])));
    assert_eq!(w.walk(11, 12, &["anything"]), error("permission denied"));
}

#[test]
fn walk_from_open_fid_is_refused() {
    let mut w = Wire::start("glenda");
    assert!(walked(0)(&w.walk(0, 1, &[])));
    assert!(matches!(w.open(1, OpenMode::OREAD), Message::Ropen { .. }));
    assert_eq!(w.walk(1, 2, &[]), error("bad use of fid"));
}

#[test]
fn walk_of_more_than_maxwelem_is_refused() {
    let mut w = Wire::start("glenda");
    let mut body = vec![0, 0, 0, 0, 1, 0, 0, 0, 17, 0];
    for _ in 0..17 {
        body.extend_from_slice(b"\x02\x00..");
    }
    assert_eq!(
        w.raw(&bytes(110, 6, &body)),
        rerror_bytes(
            6,
            "bad 9P message: walk of 17 elements exceeds MAXWELEM (16)"
        )
    );
}

// ---- open(5) ----

#[test]
fn open_rules() {
    let mut w = Wire::start("glenda");
    assert!(walked(0)(&w.walk(0, 1, &[])));
    for mode in [OpenMode::OWRITE, OpenMode::ORDWR, OpenMode::OTRUNC] {
        assert_eq!(w.open(1, mode), error("Is a directory"));
    }
    let illegal = OpenMode::from_bits_retain(0x80);
    assert_eq!(w.open(1, illegal), error("illegal mode"));
    let Message::Ropen { iounit, .. } = w.open(1, OpenMode::OREAD) else {
        panic!("open of the root for reading");
    };
    assert_eq!(iounit, MSIZE - 24);
    assert_eq!(
        w.open(1, OpenMode::OREAD),
        error("file already open for I/O")
    );
}

#[test]
fn open_checks_permissions_against_uname() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "secret", 0o640);
    w.write(1, 0, b"x");
    w.clunk(1);
    w.attach(10, "other");
    assert!(walked(1)(&w.walk(10, 11, &["secret"])));
    assert_eq!(w.open(11, OpenMode::OREAD), error("permission denied"));
    assert_eq!(w.open(11, OpenMode::OEXEC), error("permission denied"));
    // Group members get the group bits.
    w.attach(20, "glenda");
    assert!(walked(1)(&w.walk(20, 21, &["secret"])));
    assert!(matches!(w.open(21, OpenMode::OREAD), Message::Ropen { .. }));
}

#[test]
fn otrunc_truncates_and_bumps_the_version() {
    let mut w = Wire::start("glenda");
    let created = w.new_file(1, "f", 0o644);
    w.write(1, 0, b"hello");
    w.clunk(1);
    assert!(walked(1)(&w.walk(0, 2, &["f"])));
    let Message::Ropen { qid, .. } = w.open(2, OpenMode::OWRITE | OpenMode::OTRUNC) else {
        panic!("open with OTRUNC");
    };
    assert!(qid.version > created.version);
    assert_eq!(w.stat(2).length, 0);
}

#[test]
fn orclose_removes_at_clunk() {
    let mut w = Wire::start("glenda");
    assert!(walked(0)(&w.walk(0, 1, &[])));
    w.create(1, "t", 0o644, OpenMode::ORDWR | OpenMode::ORCLOSE);
    assert!(walked(1)(&w.walk(0, 2, &["t"])));
    w.clunk(1);
    assert_eq!(w.walk(0, 3, &["t"]), error("file does not exist"));
}

#[test]
fn exclusive_files_open_once() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "lock", 0o644 | FileMode::DMEXCL.bits());
    assert!(walked(1)(&w.walk(0, 2, &["lock"])));
    assert_eq!(
        w.open(2, OpenMode::OREAD),
        error("exclusive use file already open")
    );
    w.clunk(1);
    assert!(
        matches!(w.open(2, OpenMode::OREAD), Message::Ropen { qid, .. } if qid.kind.contains(QidType::EXCL))
    );
}

// ---- open(5), Tcreate ----

#[test]
fn create_rules() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o644);
    assert!(walked(0)(&w.walk(0, 2, &[])));
    assert_eq!(
        w.create(2, "f", 0o644, OpenMode::ORDWR),
        error("file already exists")
    );
    assert_eq!(
        w.create(2, ".", 0o644, OpenMode::ORDWR),
        error("illegal name")
    );
    assert_eq!(
        w.create(2, "..", 0o644, OpenMode::ORDWR),
        error("illegal name")
    );
    assert_eq!(
        w.create(2, "a/b", 0o644, OpenMode::ORDWR),
        error("illegal name")
    );
    let dir = 0o755 | FileMode::DMDIR.bits();
    assert_eq!(
        w.create(2, "d", dir, OpenMode::OWRITE),
        error("Is a directory")
    );
    // A create in a file.
    assert!(walked(1)(&w.walk(0, 3, &["f"])));
    assert_eq!(
        w.create(3, "x", 0o644, OpenMode::ORDWR),
        error("not a directory")
    );
    // An open fid cannot create.
    assert_eq!(
        w.create(1, "x", 0o644, OpenMode::ORDWR),
        error("file already open for I/O")
    );
    // Without write permission on the directory.
    w.attach(10, "other");
    assert_eq!(
        w.create(10, "x", 0o644, OpenMode::ORDWR),
        error("permission denied")
    );
}

#[test]
fn create_masks_permissions_with_the_directory() {
    let mut w = Wire::start("glenda");
    let dir = FileMode::DMDIR.bits();
    assert!(walked(0)(&w.walk(0, 1, &[])));
    w.create(1, "d", dir | 0o750, OpenMode::OREAD);
    w.clunk(1);
    assert!(walked(1)(&w.walk(0, 2, &["d"])));
    // file: perm & (~0666 | dir & 0666) = 0666 & 0640
    let Message::Rcreate { qid, .. } = w.create(2, "f", 0o666, OpenMode::OWRITE) else {
        panic!("create f");
    };
    assert_eq!(qid.kind, QidType::FILE);
    assert_eq!(w.stat(2).mode.bits(), 0o640);
    assert_eq!(w.stat(2).uid, "glenda");
    assert_eq!(w.stat(2).gid, "glenda");
    // dir: perm & (~0777 | dir & 0777) = 0777 & 0750, DMDIR kept
    assert!(walked(1)(&w.walk(0, 3, &["d"])));
    w.create(3, "sub", dir | 0o777, OpenMode::OREAD);
    assert_eq!(w.stat(3).mode.bits(), dir | 0o750);
    assert!(w.stat(3).qid.kind.contains(QidType::DIR));
}

// ---- read(5) ----

#[test]
fn read_and_write_need_the_right_open_mode() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o644);
    w.clunk(1);
    assert!(walked(1)(&w.walk(0, 2, &["f"])));
    assert_eq!(w.read(2, 0, 10), error("bad use of fid"));
    assert_eq!(w.write(2, 0, b"x"), error("bad use of fid"));
    w.open(2, OpenMode::OREAD);
    assert_eq!(w.write(2, 0, b"x"), error("bad use of fid"));
    assert!(walked(1)(&w.walk(0, 3, &["f"])));
    w.open(3, OpenMode::OWRITE);
    assert_eq!(w.read(3, 0, 1), error("bad use of fid"));
}

#[test]
fn writes_bump_qid_version_and_length() {
    let mut w = Wire::start("glenda");
    let q0 = w.new_file(1, "f", 0o644);
    assert_eq!(w.write(1, 0, b"hello"), Message::Rwrite { count: 5 });
    let s1 = w.stat(1);
    assert_eq!(s1.length, 5);
    assert!(s1.qid.version > q0.version);
    assert_eq!(w.write(1, 10, b"!"), Message::Rwrite { count: 1 });
    let s2 = w.stat(1);
    assert_eq!(s2.length, 11);
    assert!(s2.qid.version > s1.qid.version);
    assert_eq!(w.data(1, 0, 100), b"hello\0\0\0\0\0!");
    assert_eq!(w.data(1, 3, 2), b"lo");
    assert_eq!(w.data(1, 11, 10), b"");
    assert_eq!(w.data(1, 1 << 40, 10), b"");
}

#[test]
fn read_count_is_clamped_to_msize() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o644);
    let big = vec![7u8; MSIZE as usize];
    // One Twrite cannot carry more than msize - 23 bytes.
    let n = (MSIZE - 23) as usize;
    assert_eq!(
        w.write(1, 0, &big[..n]),
        Message::Rwrite { count: n as u32 }
    );
    w.write(1, n as u64, &big[..100]);
    let data = w.data(1, 0, u32::MAX);
    assert_eq!(data.len(), (MSIZE - 11) as usize);
}

#[test]
fn append_only_files_write_at_the_end() {
    let mut w = Wire::start("glenda");
    let q = w.new_file(1, "log", 0o644 | FileMode::DMAPPEND.bits());
    assert!(q.kind.contains(QidType::APPEND));
    w.write(1, 0, b"one ");
    w.write(1, 0, b"two");
    assert_eq!(w.data(1, 0, 100), b"one two");
}

#[test]
fn times_and_muid_follow_changes() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o666);
    let created = w.stat(1);
    assert_eq!(
        (created.atime, created.mtime, created.muid.as_str()),
        (100, 100, "glenda")
    );
    w.clock.0.set(200);
    w.attach(10, "other");
    assert!(walked(1)(&w.walk(10, 11, &["f"])));
    w.open(11, OpenMode::ORDWR);
    // 0666 masked by the root's 0775 leaves 0664: other cannot write.
    w.clunk(11);
    assert!(walked(1)(&w.walk(0, 12, &["f"])));
    w.write(1, 0, b"x");
    let written = w.stat(1);
    assert_eq!((written.mtime, written.muid.as_str()), (200, "glenda"));
    w.clock.0.set(300);
    w.data(1, 0, 1);
    assert_eq!(w.stat(1).atime, 300);
    assert_eq!(w.stat(1).mtime, 200);
}

// ---- read(5) of directories ----

fn make_files(w: &mut Wire, count: usize) {
    for i in 0..count {
        w.new_file(100, &format!("file-{i:03}"), 0o644);
        w.clunk(100);
    }
}

#[test]
fn directory_reads_return_whole_entries() {
    let mut w = Wire::start("glenda");
    make_files(&mut w, 5);
    assert!(walked(0)(&w.walk(0, 1, &[])));
    w.open(1, OpenMode::OREAD);
    let one = w.data(1, 0, 8192);
    let stats = Stat::decode_directory(&one).unwrap();
    assert_eq!(stats.len(), 5);
    let entry = stats[0].encoded_len() as u32;
    // A count of one and a half entries gets exactly one.
    let first = w.data(1, 0, entry + entry / 2);
    assert_eq!(first.len() as u32, entry);
    let second = w.data(1, u64::from(entry), entry * 2);
    assert_eq!(Stat::decode_directory(&second).unwrap().len(), 2);
    // Offsets other than 0 or the end of the previous read are refused.
    assert_eq!(w.read(1, 5, 100), error("bad offset in directory read"));
    let end = u64::from(entry * 3);
    let rest = w.data(1, end, 8192);
    assert_eq!(Stat::decode_directory(&rest).unwrap().len(), 2);
    let after = end + rest.len() as u64;
    assert_eq!(w.data(1, after, 8192), b"");
    // Offset 0 starts over.
    assert_eq!(
        Stat::decode_directory(&w.data(1, 0, 8192)).unwrap().len(),
        5
    );
    // A count too small for any entry is an error, not an empty read (EOF).
    assert!(matches!(w.read(1, 0, 10), Message::Rerror { .. }));
}

#[test]
fn large_directory_spans_many_reads() {
    let mut w = Wire::start("glenda");
    make_files(&mut w, 300);
    assert!(walked(0)(&w.walk(0, 1, &[])));
    w.open(1, OpenMode::OREAD);
    let mut offset = 0u64;
    let mut names = Vec::new();
    loop {
        let data = w.data(1, offset, MSIZE - 11);
        if data.is_empty() {
            break;
        }
        offset += data.len() as u64;
        names.extend(
            Stat::decode_directory(&data)
                .unwrap()
                .into_iter()
                .map(|s| s.name),
        );
    }
    assert_eq!(names.len(), 300);
    assert_eq!(names[299], "file-299");
}

// ---- remove(5) ----

#[test]
fn remove_clunks_even_when_it_fails() {
    let mut w = Wire::start("glenda");
    assert!(walked(0)(&w.walk(0, 1, &[])));
    w.create(1, "d", 0o755 | FileMode::DMDIR.bits(), OpenMode::OREAD);
    w.clunk(1);
    assert!(walked(1)(&w.walk(0, 2, &["d"])));
    w.create(2, "inner", 0o644, OpenMode::OWRITE);
    w.clunk(2);
    assert!(walked(1)(&w.walk(0, 3, &["d"])));
    assert_eq!(
        w.call(Message::Tremove { fid: 3 }),
        error("directory is not empty")
    );
    assert_eq!(
        w.call(Message::Tstat { fid: 3 }),
        error("fid unknown or out of range")
    );
    assert!(walked(2)(&w.walk(0, 4, &["d", "inner"])));
    assert_eq!(w.call(Message::Tremove { fid: 4 }), Message::Rremove);
    assert!(walked(1)(&w.walk(0, 5, &["d"])));
    assert_eq!(w.call(Message::Tremove { fid: 5 }), Message::Rremove);
    assert_eq!(w.walk(0, 6, &["d"]), error("file does not exist"));
}

#[test]
fn remove_needs_write_permission_on_the_parent() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o666);
    w.clunk(1);
    w.attach(10, "other");
    assert!(walked(1)(&w.walk(10, 11, &["f"])));
    assert_eq!(
        w.call(Message::Tremove { fid: 11 }),
        error("permission denied")
    );
    assert!(walked(0)(&w.walk(0, 12, &[])));
    assert_eq!(
        w.call(Message::Tremove { fid: 12 }),
        error("cannot remove root")
    );
}

#[test]
fn removed_file_through_another_fid() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o644);
    assert!(walked(1)(&w.walk(0, 2, &["f"])));
    assert_eq!(w.call(Message::Tremove { fid: 2 }), Message::Rremove);
    assert_eq!(w.write(1, 0, b"x"), error("file has been removed"));
}

// ---- stat(5) ----

#[test]
fn wstat_dont_touch_changes_nothing() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o644);
    w.write(1, 0, b"abc");
    let before = w.stat(1);
    assert_eq!(w.wstat(1, Stat::dont_touch()), Message::Rwstat);
    assert_eq!(w.stat(1), before);
    // Current values are "no change" too.
    assert_eq!(w.wstat(1, before.clone()), Message::Rwstat);
    assert_eq!(w.stat(1), before);
}

#[test]
fn wstat_rename_and_truncate_as_linux_sends_them() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "a", 0o644);
    w.write(1, 0, b"hello");
    w.clunk(1);
    assert!(walked(1)(&w.walk(0, 2, &["a"])));
    // Linux: every field "don't touch" but name, and muid set to its uname.
    let mut rename = Stat::dont_touch();
    rename.name = "b".into();
    rename.muid = "nobody".into();
    assert_eq!(w.wstat(2, rename), Message::Rwstat);
    assert_eq!(w.walk(0, 3, &["a"]), error("file does not exist"));
    assert!(walked(1)(&w.walk(0, 3, &["b"])));
    let v = w.stat(3).qid.version;
    let mut truncate = Stat::dont_touch();
    truncate.length = 2;
    assert_eq!(w.wstat(3, truncate), Message::Rwstat);
    let after = w.stat(3);
    assert_eq!(after.length, 2);
    assert!(after.qid.version > v);
}

#[test]
fn wstat_refusals() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o644);
    w.clunk(1);
    w.new_file(2, "g", 0o644);
    w.clunk(2);
    assert!(walked(1)(&w.walk(0, 3, &["f"])));
    let mut s = Stat::dont_touch();
    s.name = "g".into();
    assert_eq!(w.wstat(3, s), error("file already exists"));
    let mut s = Stat::dont_touch();
    s.name = "..".into();
    assert_eq!(w.wstat(3, s), error("illegal name"));
    let mut s = Stat::dont_touch();
    s.mode = FileMode::from_bits_retain(FileMode::DMDIR.bits() | 0o755);
    assert_eq!(
        w.wstat(3, s),
        error("wstat can't convert between files and directories")
    );
    let mut s = Stat::dont_touch();
    s.uid = "someone".into();
    assert_eq!(w.wstat(3, s), error("wstat prohibited"));
    let mut s = Stat::dont_touch();
    s.qid.path = 12345;
    assert_eq!(w.wstat(3, s), error("wstat prohibited"));
    let mut s = Stat::dont_touch();
    s.gid = "elsewhere".into();
    assert_eq!(w.wstat(3, s), error("not a member of proposed group"));
    // Directories have no length to set.
    let mut s = Stat::dont_touch();
    s.length = 5;
    assert_eq!(w.wstat(0, s), error("Is a directory"));
    // Not the owner.
    w.attach(10, "other");
    assert!(walked(1)(&w.walk(10, 11, &["f"])));
    let mut s = Stat::dont_touch();
    s.mode = FileMode::from_bits_retain(0o777);
    assert_eq!(w.wstat(11, s), error("not owner"));
    let mut s = Stat::dont_touch();
    s.mtime = 5;
    assert_eq!(w.wstat(11, s), error("not owner"));
    let mut s = Stat::dont_touch();
    s.length = 0;
    s.name = "h".into();
    assert!(matches!(w.wstat(11, s), Message::Rerror { .. }));
    let mut s = Stat::dont_touch();
    s.gid = "other".into();
    assert_eq!(
        w.wstat(11, s),
        error("only owner can change group in wstat")
    );
}

#[test]
fn wstat_changes_mode_and_times_for_the_owner() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "f", 0o644);
    let mut s = Stat::dont_touch();
    s.mode = FileMode::from_bits_retain(0o600 | FileMode::DMAPPEND.bits());
    s.mtime = 7;
    s.atime = 8;
    assert_eq!(w.wstat(1, s), Message::Rwstat);
    let after = w.stat(1);
    assert_eq!(after.mode.bits(), 0o600 | FileMode::DMAPPEND.bits());
    assert!(after.qid.kind.contains(QidType::APPEND));
    assert_eq!((after.mtime, after.atime), (7, 8));
}

#[test]
fn wstat_is_all_or_nothing() {
    let mut w = Wire::with_limits(Limits {
        max_file_size: 100,
        max_total_bytes: 1000,
    });
    w.version();
    w.attach(0, "glenda");
    w.new_file(1, "f", 0o644);
    let before = w.stat(1);
    let mut s = Stat::dont_touch();
    s.name = "renamed".into();
    s.mode = FileMode::from_bits_retain(0o600);
    s.length = 1000;
    assert_eq!(w.wstat(1, s), error("file too big"));
    assert_eq!(w.stat(1), before);
    assert!(walked(1)(&w.walk(0, 2, &["f"])));
}

#[test]
fn limits_are_enforced() {
    let mut w = Wire::with_limits(Limits {
        max_file_size: 100,
        max_total_bytes: 150,
    });
    w.version();
    w.attach(0, "glenda");
    w.new_file(1, "a", 0o644);
    assert_eq!(w.write(1, 95, b"0123456789"), error("file too big"));
    assert_eq!(w.write(1, 0, &[1; 100]), Message::Rwrite { count: 100 });
    w.new_file(2, "b", 0o644);
    assert_eq!(w.write(2, 0, &[1; 60]), error("file system is full"));
    assert_eq!(w.fs.used_bytes(), 100);
    assert_eq!(w.call(Message::Tremove { fid: 1 }), Message::Rremove);
    assert_eq!(w.fs.used_bytes(), 0);
}

// ---- flush(5) ----

#[test]
fn flush_of_an_answered_request_gets_rflush_with_its_own_tag() {
    let mut w = Wire::start("glenda");
    // Tflush tag 8, oldtag 3 (long answered).
    assert_eq!(w.raw(&bytes(108, 8, &[3, 0])), bytes(109, 8, b""));
}

// ---- sessions share the tree; hang-up clunks ----

#[test]
fn two_sessions_share_one_tree() {
    let mut w = Wire::start("glenda");
    w.new_file(1, "shared", 0o644);
    w.write(1, 0, b"from one");
    let mut other: Session<_> = Session::new(MSIZE);
    let mut out = Vec::new();
    let version = Frame::new(
        0xFFFF,
        Message::Tversion {
            msize: MSIZE,
            version: "9P2000".into(),
        },
    );
    other
        .handle(&mut w.fs, &version.to_bytes().unwrap(), &mut out)
        .unwrap();
    for message in [
        Message::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "glenda".into(),
            aname: String::new(),
        },
        Message::Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["shared".into()],
        },
        Message::Topen {
            fid: 1,
            mode: OpenMode::OREAD,
        },
    ] {
        other
            .handle(
                &mut w.fs,
                &Frame::new(1, message).to_bytes().unwrap(),
                &mut out,
            )
            .unwrap();
    }
    out.clear();
    let read = Frame::new(
        2,
        Message::Tread {
            fid: 1,
            offset: 0,
            count: 100,
        },
    );
    other
        .handle(&mut w.fs, &read.to_bytes().unwrap(), &mut out)
        .unwrap();
    assert_eq!(
        Frame::decode(&out, MSIZE).unwrap().message,
        Message::Rread {
            data: b"from one".to_vec()
        }
    );
    // Hang-up: the other session's ORCLOSE files go, its fids are clunked.
    other.close(&mut w.fs);
    assert_eq!(other.fid_count(), 0);
}

// ---- error(5): the strings Linux maps ----

#[test]
fn error_strings_are_ones_linux_maps() {
    for e in [
        Error::PERMISSION_DENIED,
        Error::NOT_FOUND,
        Error::EXISTS,
        Error::NOT_EMPTY,
        Error::UNKNOWN_FID,
        Error::FID_IN_USE,
        Error::IS_DIR,
        Error::NOT_DIR,
        Error::BAD_FID_USE,
        Error::ALREADY_OPEN,
        Error::BAD_DIR_OFFSET,
        Error::ILLEGAL_MODE,
        Error::ILLEGAL_NAME,
        Error::NOT_OWNER,
        Error::WSTAT_PROHIBITED,
        Error::WSTAT_DIR_BIT,
        Error::NOT_GROUP_MEMBER,
        Error::GROUP_CHANGE,
        Error::EXCLUSIVE,
        Error::REMOVED,
        Error::FILE_TOO_BIG,
        Error::FULL,
        Error::CANNOT_REMOVE_ROOT,
        Error::ILLEGAL_OFFSET,
        Error::NOT_SUPPORTED,
    ] {
        assert!(
            ninep::LINUX_MAPPED.contains(&e.as_str()),
            "{e} is not in Linux's table"
        );
    }
}
