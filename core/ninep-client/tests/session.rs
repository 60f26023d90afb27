//! Whole sessions through the client against the ramfs server framework.

mod common;

use common::{Link, MSIZE};
use ninep::{FileMode, MessageType, OpenMode, Stat};
use ninep_client::{Error, Outcome};

#[test]
fn version_settles_on_the_smaller_msize() {
    let link = Link::with_msize(65536, 8192);
    assert_eq!(link.client.msize(), 8192);
    assert!(link.client.is_negotiated());
    let link = Link::with_msize(4096, 8192);
    assert_eq!(link.client.msize(), 4096);
}

#[test]
fn create_write_read_walk_stat_remove() {
    let mut link = Link::new();
    let root = link.attach();
    link.make(root, "dir", 0x8000_0000 | 0o775);

    // Create a file through a clone of the directory and write more than
    // one iounit to it.
    let dir = link.walk(root, "dir").unwrap();
    let created = link.call(|c, out| {
        c.create(
            dir,
            "file",
            FileMode::from_bits_retain(0o664),
            OpenMode::ORDWR,
            out,
        )
    });
    let Ok(Outcome::Created { iounit, .. }) = created else {
        panic!("create: {created:?}");
    };
    assert_eq!(iounit, MSIZE - ninep::IOHDRSZ);
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let before = link.count_sent(MessageType::Twrite);
    let wrote = link.call(|c, out| c.write(dir, 0, &data, out));
    assert_eq!(wrote, Ok(Outcome::Wrote(20_000)));
    assert_eq!(link.count_sent(MessageType::Twrite) - before, 3);
    assert_eq!(link.call(|c, out| c.clunk(dir, out)), Ok(Outcome::Clunked));

    // Walk to it again, open it and read it back in several Treads.
    let file = link.walk(root, "/dir//file").unwrap();
    let opened = link.call(|c, out| c.open(file, OpenMode::OREAD, out));
    assert!(matches!(opened, Ok(Outcome::Opened { .. })), "{opened:?}");
    assert_eq!(link.client.iounit(file), Some(MSIZE - ninep::IOHDRSZ));
    let before = link.count_sent(MessageType::Tread);
    let read = link.call(|c, out| c.read(file, 0, 100_000, out));
    assert_eq!(read, Ok(Outcome::Read(data.clone())));
    // Three full reads, then a short one that says "end of file".
    assert_eq!(link.count_sent(MessageType::Tread) - before, 3);
    let read = link.call(|c, out| c.read(file, 19_990, 100, out));
    assert_eq!(read, Ok(Outcome::Read(data[19_990..].to_vec())));

    // Stat, then rename with a wstat.
    let Ok(Outcome::Stat(stat)) = link.call(|c, out| c.stat(file, out)) else {
        panic!("stat");
    };
    assert_eq!((stat.name.as_str(), stat.length), ("file", 20_000));
    let mut rename = Stat::dont_touch();
    rename.name = "renamed".into();
    assert_eq!(
        link.call(|c, out| c.wstat(file, &rename, out)),
        Ok(Outcome::Wstat)
    );
    assert_eq!(link.call(|c, out| c.clunk(file, out)), Ok(Outcome::Clunked));

    // The old name is gone, with the server's own words.
    assert_eq!(
        link.walk(root, "dir/file"),
        Err(Error::NotFound {
            name: "file".into()
        })
    );
    assert_eq!(
        link.walk(root, "nothing"),
        Err(Error::Server("file does not exist".into()))
    );

    // Remove the file, then the directory.
    let file = link.walk(root, "dir/renamed").unwrap();
    assert_eq!(
        link.call(|c, out| c.remove(file, out)),
        Ok(Outcome::Removed)
    );
    let dir = link.walk(root, "dir").unwrap();
    assert_eq!(link.call(|c, out| c.remove(dir, out)), Ok(Outcome::Removed));
    assert_eq!(link.fs.ram.node_count(), 1);

    // Only the root fid is left, on both sides, and no tag is in use.
    assert_eq!(link.client.fids_in_use(), 1);
    assert_eq!(link.session.fid_count(), 1);
    assert_eq!(link.client.tags_in_use(), 0);
    assert_eq!(link.client.outstanding(), 0);
}

#[test]
fn a_directory_read_returns_whole_entries() {
    let mut link = Link::new();
    let root = link.attach();
    for name in ["a", "b", "c"] {
        link.make(root, name, 0o644);
    }
    let dir = link.walk(root, "").unwrap();
    link.call(|c, out| c.open(dir, OpenMode::OREAD, out))
        .unwrap();
    let Ok(Outcome::Read(bytes)) = link.call(|c, out| c.read(dir, 0, 65536, out)) else {
        panic!("directory read");
    };
    let names: Vec<String> = Stat::decode_directory(&bytes)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

/// A chain of `depth` nested directories d0/d1/...
fn deep(link: &mut Link, depth: usize) -> ninep_client::Fid {
    let root = link.attach();
    let mut path = String::new();
    for i in 0..depth {
        let parent = link.walk(root, &path).unwrap();
        link.make(parent, &format!("d{i}"), 0x8000_0000 | 0o775);
        link.call(|c, out| c.clunk(parent, out)).unwrap();
        path.push_str(&format!("d{i}/"));
    }
    root
}

#[test]
fn a_long_walk_is_split_at_maxwelem() {
    let mut link = Link::new();
    let root = deep(&mut link, 40);
    let names: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = link.count_sent(MessageType::Twalk);
    let walked = link.call(|c, out| c.walk(root, &names, out));
    let Ok(Outcome::Walked { fid, qids }) = walked else {
        panic!("walk: {walked:?}");
    };
    assert_eq!(qids.len(), 40);
    assert_eq!(link.count_sent(MessageType::Twalk) - before, 3);
    let Ok(Outcome::Stat(stat)) = link.call(|c, out| c.stat(fid, out)) else {
        panic!("stat");
    };
    assert_eq!(stat.name, "d39");
    assert_eq!(stat.qid, qids[39]);
    assert_eq!(link.client.fids_in_use(), link.session.fid_count());
}

#[test]
fn a_long_walk_that_fails_late_clunks_its_newfid() {
    let mut link = Link::new();
    let root = deep(&mut link, 20);
    let mut names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    names[18] = "missing".into();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let clunks = link.count_sent(MessageType::Tclunk);
    let walked = link.call(|c, out| c.walk(root, &names, out));
    assert_eq!(
        walked,
        Err(Error::NotFound {
            name: "missing".into()
        })
    );
    assert_eq!(walked.unwrap_err().to_string(), "file does not exist");
    // The first Twalk made newfid; the client clunked it on its own.
    assert_eq!(link.count_sent(MessageType::Tclunk) - clunks, 1);
    assert_eq!(link.client.fids_in_use(), 1);
    assert_eq!(link.session.fid_count(), 1);
    assert_eq!(link.client.outstanding(), 0);
}

#[test]
fn server_errors_arrive_unchanged() {
    let mut link = Link::new();
    let root = link.attach();
    link.make(root, "d", 0x8000_0000 | 0o775);
    let d = link.walk(root, "d").unwrap();
    link.make(d, "f", 0o644);

    // Creating what exists.
    let clone = link.walk(root, "").unwrap();
    let again = link.call(|c, out| {
        c.create(
            clone,
            "d",
            FileMode::from_bits_retain(0o644),
            OpenMode::OREAD,
            out,
        )
    });
    assert_eq!(again, Err(Error::Server("file already exists".into())));
    // Writing a directory.
    let opened = link.call(|c, out| c.open(d, OpenMode::OWRITE, out));
    assert_eq!(opened, Err(Error::Server("Is a directory".into())));
    // Reading a fid that is not open.
    let read = link.call(|c, out| c.read(clone, 0, 10, out));
    assert_eq!(read, Err(Error::Server("bad use of fid".into())));

    // A failed remove still releases the fid (remove(5)).
    let fids = link.client.fids_in_use();
    let removed = link.call(|c, out| c.remove(d, out));
    assert_eq!(removed, Err(Error::Server("directory is not empty".into())));
    assert_eq!(link.client.fids_in_use(), fids - 1);
    assert_eq!(link.session.fid_count(), link.client.fids_in_use());
    // The fid is gone on our side too: using it fails without a message.
    let sent = link.sent.len();
    assert_eq!(
        link.call(|c, out| c.stat(d, out)),
        Err(Error::UnknownFid(d.number()))
    );
    assert_eq!(link.sent.len(), sent);
}

#[test]
fn attach_to_an_unknown_tree_frees_the_fid() {
    let mut link = Link::new();
    let result = link.call(|c, out| c.attach("glenda", "nosuch", out));
    assert_eq!(result, Err(Error::Server("file does not exist".into())));
    assert_eq!(link.client.fids_in_use(), 0);
}

#[test]
fn several_requests_are_outstanding_at_once() {
    let mut link = Link::new();
    let root = link.attach();
    for name in ["a", "b", "c", "d"] {
        link.make(root, name, 0o644);
    }
    let mut out = Vec::new();
    let ops: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| link.client.walk(root, &[name], &mut out).unwrap())
        .collect();
    assert_eq!(link.client.tags_in_use(), 4);
    link.record(out);
    // The server answers them all before the client reads any reply;
    // `record` has already checked the four tags are distinct.
    while link.server_step() {}
    // Deliver the replies in reverse order: tags, not order, match them.
    link.to_client.make_contiguous().reverse();
    link.settle();
    let mut fids = Vec::new();
    for op in ops {
        match link.take(op) {
            Some(Ok(Outcome::Walked { fid, qids })) if qids.len() == 1 => fids.push(fid),
            other => panic!("walk: {other:?}"),
        }
    }
    fids.sort();
    fids.dedup();
    assert_eq!(fids.len(), 4);
    assert_eq!(link.client.tags_in_use(), 0);
}

#[test]
fn requests_before_version_are_refused() {
    let mut client = ninep_client::Client::new(8192);
    let mut out = Vec::new();
    assert_eq!(
        client.attach("glenda", "", &mut out),
        Err(Error::NotNegotiated)
    );
    assert!(out.is_empty());
    client.version(&mut out).unwrap();
    assert_eq!(client.version(&mut out), Err(Error::Busy));
}

#[test]
fn a_request_larger_than_msize_is_refused() {
    let mut link = Link::with_msize(256, 256);
    let root = link.attach();
    let long = "x".repeat(300);
    let mut out = Vec::new();
    let result = link.client.walk(root, &[&long], &mut out);
    assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
    assert!(out.is_empty());
    assert_eq!(link.client.fids_in_use(), 1);
    assert_eq!(link.client.tags_in_use(), 0);
}
