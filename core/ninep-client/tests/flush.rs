//! Tflush for interrupted requests, in both orders flush(5) allows.

mod common;

use common::Link;
use ninep::{FileMode, Frame, Message, MessageType, OpenMode};
use ninep_client::{Error, Fid, Outcome};

/// A link with a root fid and an open file of `name` holding "hello".
fn with_file(name: &str) -> (Link, Fid, Fid) {
    let mut link = Link::new();
    let root = link.attach();
    let file = link.walk(root, "").unwrap();
    let perm = FileMode::from_bits_retain(0o664);
    link.call(|c, out| c.create(file, name, perm, OpenMode::ORDWR, out))
        .unwrap();
    link.call(|c, out| c.write(file, 0, b"hello", out)).unwrap();
    (link, root, file)
}

#[test]
fn a_reply_before_the_rflush_counts() {
    let (mut link, _, file) = with_file("fast");
    let mut out = Vec::new();
    let op = link.client.read(file, 0, 5, &mut out).unwrap();
    link.client.flush(op, &mut out).unwrap();
    link.record(out);
    // The ramfs answers the Tread at once, then the Tflush.
    while link.server_step() {}
    assert_eq!(link.to_client.len(), 2);
    // The Rread arrives first: the read completed, so its data stands.
    assert!(link.client_step());
    assert_eq!(link.take(op), Some(Ok(Outcome::Read(b"hello".to_vec()))));
    // Its tag stays reserved until the Rflush.
    assert_eq!(link.client.tags_in_use(), 2);
    assert!(link.client_step());
    assert!(link.done.is_empty());
    assert_eq!(link.client.tags_in_use(), 0);
}

#[test]
fn an_rflush_first_means_the_request_never_ran() {
    let (mut link, _, file) = with_file("slow");
    let mut out = Vec::new();
    let op = link.client.read(file, 0, 5, &mut out).unwrap();
    link.record(out);
    link.settle();
    assert_eq!(link.fs.waiting.len(), 1);
    assert!(link.done.is_empty());

    let mut out = Vec::new();
    link.client.flush(op, &mut out).unwrap();
    // A second interrupt sends nothing more.
    link.client.flush(op, &mut out).unwrap();
    link.record(out);
    link.settle();
    assert_eq!(link.take(op), Some(Err(Error::Interrupted)));
    assert_eq!(link.fs.flushed.len(), 1);
    assert_eq!(link.count_sent(MessageType::Tflush), 1);
    assert_eq!(link.client.tags_in_use(), 0);
    // The link goes on working.
    let read = link.call(|c, out| c.stat(file, out));
    assert!(matches!(read, Ok(Outcome::Stat(_))), "{read:?}");
}

#[test]
fn a_flushed_tag_is_not_reused_before_the_rflush() {
    let (mut link, root, file) = with_file("fast");
    let mut out = Vec::new();
    let op = link.client.read(file, 0, 5, &mut out).unwrap();
    link.client.flush(op, &mut out).unwrap();
    link.record(out);
    while link.server_step() {}
    // Deliver only the Rread, then start many requests: `record` panics
    // if one of them takes the flushed tag.
    assert!(link.client_step());
    for _ in 0..300 {
        let mut out = Vec::new();
        let stat = link.client.stat(root, &mut out).unwrap();
        link.record(out);
        while link.server_step() {}
        // Deliver the Rstat ahead of the Rflush that is still queued.
        let rstat = link.to_client.pop_back().unwrap();
        link.to_client.push_front(rstat);
        assert!(link.client_step());
        assert_eq!(link.to_client.len(), 1);
        assert!(matches!(link.take(stat), Some(Ok(Outcome::Stat(_)))));
    }
    link.settle();
    assert_eq!(link.client.tags_in_use(), 0);
}

#[test]
fn clunk_and_remove_cannot_be_flushed() {
    let (mut link, _, file) = with_file("fast");
    let mut out = Vec::new();
    let op = link.client.clunk(file, &mut out).unwrap();
    assert_eq!(
        link.client.flush(op, &mut out),
        Err(Error::NotInterruptible)
    );
    link.record(out);
    link.settle();
    assert_eq!(link.take(op), Some(Ok(Outcome::Clunked)));
    assert_eq!(
        link.client.flush(op, &mut Vec::new()),
        Err(Error::UnknownOp)
    );
}

#[test]
fn a_flushed_long_read_keeps_what_it_read() {
    let mut link = Link::with_msize(512, 512);
    let root = link.attach();
    let file = link.walk(root, "").unwrap();
    let perm = FileMode::from_bits_retain(0o664);
    link.call(|c, out| c.create(file, "big", perm, OpenMode::ORDWR, out))
        .unwrap();
    let data = vec![7u8; 2000];
    link.call(|c, out| c.write(file, 0, &data, out)).unwrap();
    let mut out = Vec::new();
    let op = link.client.read(file, 0, 2000, &mut out).unwrap();
    link.record(out);
    // First Tread answered, then the interrupt: the client sends the
    // Tflush for the second Tread, and the second Rread comes first.
    assert!(link.server_step());
    assert!(link.client_step());
    let mut out = Vec::new();
    link.client.flush(op, &mut out).unwrap();
    link.record(out);
    link.settle();
    match link.take(op) {
        Some(Ok(Outcome::Read(got))) => assert_eq!(got.len(), 2 * (512 - 24)),
        other => panic!("read: {other:?}"),
    }
    assert_eq!(link.client.tags_in_use(), 0);
}

#[test]
fn a_flushed_long_walk_clunks_its_half_walked_fid() {
    // Scripted server: the first Twalk of 20 names succeeds, then the
    // caller is interrupted and the Rflush beats the second Rwalk.
    let mut client = ninep_client::Client::new(8192);
    let mut out = Vec::new();
    client.version(&mut out).unwrap();
    feed(
        &mut client,
        0xFFFF,
        Message::Rversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    );
    let mut out = Vec::new();
    client.attach("glenda", "", &mut out).unwrap();
    let root = match feed(&mut client, tag_of(&out), Message::Rattach { qid: qid(1) }) {
        Some(Ok(Outcome::Attached { fid, .. })) => fid,
        other => panic!("{other:?}"),
    };
    let names: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    let op = client.walk(root, &names, &mut out).unwrap();
    let first = tag_of(&out);
    let wqids = (0..16).map(qid).collect();
    let mut next = Vec::new();
    assert!(client
        .receive(&frame(first, Message::Rwalk { wqids }), &mut next)
        .unwrap()
        .is_none());
    let second = tag_of(&next);
    let mut flush = Vec::new();
    client.flush(op, &mut flush).unwrap();
    let flush_tag = tag_of(&flush);
    let mut cleanup = Vec::new();
    let done = client
        .receive(&frame(flush_tag, Message::Rflush), &mut cleanup)
        .unwrap();
    assert_eq!(done.map(|c| c.result), Some(Err(Error::Interrupted)));
    // The client clunks the newfid the first Twalk made.
    let clunk = Frame::decode(&cleanup, 8192).unwrap();
    assert!(matches!(clunk.message, Message::Tclunk { .. }));
    // The Rflush freed the second Twalk's tag, so the clunk may take it.
    assert_eq!(clunk.tag, second);
    assert_eq!(client.fids_in_use(), 2);
    assert!(client
        .receive(&frame(clunk.tag, Message::Rclunk), &mut Vec::new())
        .unwrap()
        .is_none());
    assert_eq!(client.fids_in_use(), 1);
    assert_eq!(client.tags_in_use(), 0);
    assert_eq!(client.outstanding(), 0);
}

fn qid(path: u64) -> ninep::Qid {
    ninep::Qid {
        kind: ninep::QidType::DIR,
        version: 0,
        path,
    }
}

fn frame(tag: u16, message: Message) -> Vec<u8> {
    Frame::new(tag, message).to_bytes().unwrap()
}

fn tag_of(bytes: &[u8]) -> u16 {
    Frame::decode(bytes, u32::MAX).unwrap().tag
}

fn feed(
    client: &mut ninep_client::Client,
    tag: u16,
    message: Message,
) -> Option<Result<Outcome, Error>> {
    client
        .receive(&frame(tag, message), &mut Vec::new())
        .unwrap()
        .map(|c| c.result)
}
