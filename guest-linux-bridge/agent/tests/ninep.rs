//! The Linux-filesystem 9P server driven with 9P messages over a temp tree.
//!
//! Each test builds a directory under the system's temp directory, serves
//! it through `Channels` (as the agent does for `Ninep` frames) and checks
//! the replies, including the walks that try to leave the attach root.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;

use bridge_agent::channels::{Channels, MSIZE};
use bridge_agent::linuxfs::Names;
use ninep::{FileMode, Frame, Message, OpenMode, Qid, Stat, NOFID};

struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let path = std::env::temp_dir().join(format!("kasane-9p-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("root/sub")).unwrap();
        fs::write(path.join("root/hello.txt"), b"hello, linux\n").unwrap();
        fs::write(path.join("secret"), b"outside").unwrap();
        fs::set_permissions(path.join("root"), fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(path.join("root/sub"), fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(
            path.join("root/hello.txt"),
            fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        Tree(path)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Client {
    channels: Channels,
    tag: u16,
    /// Feed requests in pieces of this many bytes, to test reassembly.
    piece: usize,
}

impl Client {
    fn new(tree: &Tree) -> Client {
        let uid = my_uid();
        let passwd = format!("me:x:{uid}:{uid}::/:/bin/sh\n");
        let group = format!("us:x:{uid}:\n");
        let channels = Channels::new(&tree.0, Names::parse(&passwd, &group)).unwrap();
        let mut client = Client {
            channels,
            tag: 0,
            piece: 5,
        };
        let reply = client.rpc(Message::Tversion {
            msize: MSIZE,
            version: "9P2000".into(),
        });
        assert!(matches!(reply, Message::Rversion { .. }), "{reply:?}");
        client
    }

    fn rpc(&mut self, message: Message) -> Message {
        self.tag = self.tag.wrapping_add(1) % 0xFFFF;
        let bytes = Frame::new(self.tag, message).to_bytes().unwrap();
        let mut out = Vec::new();
        for piece in bytes.chunks(self.piece) {
            out.extend(self.channels.feed(7, piece).unwrap());
        }
        let frame = Frame::decode(&out, MSIZE).unwrap();
        assert_eq!(frame.tag, self.tag);
        frame.message
    }

    fn attach(&mut self, fid: u32, aname: &str) -> Message {
        self.rpc(Message::Tattach {
            fid,
            afid: NOFID,
            uname: "me".into(),
            aname: aname.into(),
        })
    }

    fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Message {
        self.rpc(Message::Twalk {
            fid,
            newfid,
            wnames: names.iter().map(|name| name.to_string()).collect(),
        })
    }

    fn read_all(&mut self, fid: u32) -> Vec<u8> {
        let mut data = Vec::new();
        loop {
            let reply = self.rpc(Message::Tread {
                fid,
                offset: data.len() as u64,
                count: 4096,
            });
            let Message::Rread { data: piece } = reply else {
                panic!("{reply:?}")
            };
            if piece.is_empty() {
                return data;
            }
            data.extend(piece);
        }
    }
}

/// The uid the tests run as, so that "me" owns the files they make.
fn my_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

fn error_of(message: Message) -> String {
    match message {
        Message::Rerror { ename } => ename,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn reads_a_file_and_maps_its_stat() {
    let tree = Tree::new("read");
    let mut client = Client::new(&tree);
    assert!(matches!(client.attach(1, "root"), Message::Rattach { .. }));
    assert!(matches!(
        client.walk(1, 2, &["hello.txt"]),
        Message::Rwalk { .. }
    ));
    let Message::Rstat { stat } = client.rpc(Message::Tstat { fid: 2 }) else {
        panic!()
    };
    assert_eq!(stat.name, "hello.txt");
    assert_eq!(stat.length, 13);
    assert_eq!(stat.uid, "me");
    assert_eq!(stat.gid, "us");
    assert_eq!(stat.mode, FileMode::from_bits_retain(0o666));
    use std::os::unix::fs::MetadataExt;
    let metadata = fs::metadata(tree.0.join("root/hello.txt")).unwrap();
    assert_eq!(
        stat.qid.path,
        metadata.ino() ^ metadata.dev().rotate_left(40)
    );
    assert!(matches!(
        client.rpc(Message::Topen {
            fid: 2,
            mode: OpenMode::OREAD
        }),
        Message::Ropen { .. }
    ));
    assert_eq!(client.read_all(2), b"hello, linux\n");
    let Message::Rstat { stat } = client.rpc(Message::Tstat { fid: 1 }) else {
        panic!()
    };
    assert!(stat.mode.is_dir());
    assert_eq!(stat.name, "/");
}

#[test]
fn creates_writes_renames_truncates_and_removes() {
    let tree = Tree::new("write");
    let mut client = Client::new(&tree);
    client.piece = 4096;
    client.attach(1, "/root");
    client.walk(1, 2, &[]);
    let reply = client.rpc(Message::Tcreate {
        fid: 2,
        name: "new.txt".into(),
        perm: FileMode::from_bits_retain(0o644),
        mode: OpenMode::ORDWR,
    });
    assert!(matches!(reply, Message::Rcreate { .. }), "{reply:?}");
    let reply = client.rpc(Message::Twrite {
        fid: 2,
        offset: 0,
        data: b"written from kasane".to_vec(),
    });
    assert_eq!(reply, Message::Rwrite { count: 19 });
    assert_eq!(
        fs::read(tree.0.join("root/new.txt")).unwrap(),
        b"written from kasane"
    );
    // wstat: truncate, change the mode, then rename within the directory.
    let mut change = Stat::dont_touch();
    change.length = 7;
    change.mode = FileMode::from_bits_retain(0o600);
    assert_eq!(
        client.rpc(Message::Twstat {
            fid: 2,
            stat: change
        }),
        Message::Rwstat
    );
    let metadata = fs::metadata(tree.0.join("root/new.txt")).unwrap();
    assert_eq!(metadata.len(), 7);
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    let mut rename = Stat::dont_touch();
    rename.name = "renamed.txt".into();
    assert_eq!(
        client.rpc(Message::Twstat {
            fid: 2,
            stat: rename
        }),
        Message::Rwstat
    );
    assert_eq!(
        fs::read(tree.0.join("root/renamed.txt")).unwrap(),
        b"written"
    );
    // The fid follows its file to the new name.
    let Message::Rstat { stat } = client.rpc(Message::Tstat { fid: 2 }) else {
        panic!()
    };
    assert_eq!(stat.name, "renamed.txt");
    let reply = client.rpc(Message::Tread {
        fid: 2,
        offset: 0,
        count: 100,
    });
    assert_eq!(
        reply,
        Message::Rread {
            data: b"written".to_vec()
        }
    );
    client.rpc(Message::Tclunk { fid: 2 });
    // A directory, made and removed.
    client.walk(1, 3, &[]);
    let reply = client.rpc(Message::Tcreate {
        fid: 3,
        name: "dir".into(),
        perm: FileMode::DMDIR | FileMode::from_bits_retain(0o755),
        mode: OpenMode::OREAD,
    });
    assert!(matches!(reply, Message::Rcreate { .. }), "{reply:?}");
    assert!(tree.0.join("root/dir").is_dir());
    assert_eq!(client.rpc(Message::Tremove { fid: 3 }), Message::Rremove);
    assert!(!tree.0.join("root/dir").exists());
    client.walk(1, 4, &["renamed.txt"]);
    assert_eq!(client.rpc(Message::Tremove { fid: 4 }), Message::Rremove);
    assert!(!tree.0.join("root/renamed.txt").exists());
}

#[test]
fn directory_reads_list_every_entry() {
    let tree = Tree::new("dir");
    let mut client = Client::new(&tree);
    client.attach(1, "root");
    client.walk(1, 2, &[]);
    client.rpc(Message::Topen {
        fid: 2,
        mode: OpenMode::OREAD,
    });
    let bytes = client.read_all(2);
    let stats = Stat::decode_directory(&bytes).unwrap();
    let names: Vec<&str> = stats.iter().map(|stat| stat.name.as_str()).collect();
    assert_eq!(names, ["hello.txt", "sub"]);
    assert!(stats[1].mode.is_dir());
    assert_eq!(stats[1].qid.kind, ninep::QidType::DIR);
}

#[test]
fn walks_never_leave_the_root() {
    let tree = Tree::new("escape");
    symlink(tree.0.join("secret"), tree.0.join("root/out")).unwrap();
    symlink("hello.txt", tree.0.join("root/in")).unwrap();
    let mut client = Client::new(&tree);
    let Message::Rattach { qid: root_qid } = client.attach(1, "root") else {
        panic!()
    };
    // ".." at the root stays at the root.
    let Message::Rwalk { wqids } = client.walk(1, 2, &["..", ".."]) else {
        panic!()
    };
    assert_eq!(wqids, [root_qid, root_qid]);
    // A walk into "sub" and back out twice is still the root.
    let Message::Rwalk { wqids } = client.walk(1, 3, &["sub", "..", ".."]) else {
        panic!()
    };
    assert_eq!(wqids.last(), Some(&root_qid));
    // A link out of the root is refused; one inside it is followed.
    let ename = error_of(client.walk(1, 4, &["out"]));
    assert!(ename.contains("permission denied"), "{ename}");
    assert!(matches!(client.walk(1, 5, &["in"]), Message::Rwalk { .. }));
    client.rpc(Message::Topen {
        fid: 5,
        mode: OpenMode::OREAD,
    });
    assert_eq!(client.read_all(5), b"hello, linux\n");
    // Attach names cannot climb out of the top either.
    let ename = error_of(client.attach(6, "../../../../etc"));
    assert!(!ename.is_empty());
    let ename = error_of(client.attach(7, "nowhere"));
    assert!(!ename.is_empty());
    // A name with a slash is not a name.
    let ename = error_of(client.walk(1, 8, &["sub/../../secret"]));
    assert!(!ename.is_empty());
    let _: Qid = root_qid;
}

#[test]
fn broken_framing_closes_only_that_channel() {
    let tree = Tree::new("framing");
    let mut client = Client::new(&tree);
    // A size field of 3 is impossible: the stream cannot be trusted.
    let error = client
        .channels
        .feed(9, &[3, 0, 0, 0, 100, 0, 0])
        .unwrap_err();
    assert!(error.contains("closed"), "{error}");
    // Channel 7 is untouched.
    assert!(matches!(client.attach(1, ""), Message::Rattach { .. }));
    // Garbage of every length never panics.
    let mut seed = 1u64;
    for channel in 100..300u32 {
        let mut bytes = Vec::new();
        for _ in 0..(seed % 64) {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            bytes.push((seed >> 33) as u8);
        }
        let _ = client.channels.feed(channel % 50 + 100, &bytes);
    }
}

#[test]
fn names_come_from_passwd_and_group_or_numbers() {
    let names = Names::parse(
        "root:x:0:0:root:/root:/bin/sh\nbroken line\nglenda:x:1000:100::/:/bin/rc\n",
        "root:x:0:\nusers:x:100:\nsys:x:3:glenda,bin\n",
    );
    assert_eq!(names.user(0), "root");
    assert_eq!(names.user(1000), "glenda");
    assert_eq!(names.user(4242), "4242");
    assert_eq!(names.group(100), "users");
    assert_eq!(names.group(7), "7");
    assert!(names.is_member("glenda", "users"));
    assert!(names.is_member("glenda", "sys"));
    assert!(!names.is_member("root", "sys"));
    assert_eq!(names.group_id("sys"), Some(3));
    assert_eq!(names.group_id("12"), Some(12));
    assert_eq!(names.group_id("nobody-here"), None);
}
