//! Tags, flush and deferred replies, and the default-deny trait methods.
//!
//! A tiny server with one "pipe" file whose reads wait until the test
//! completes them, so several requests can be outstanding (flush(5)).

use ninep::{Frame, Message, OpenMode, Qid, QidType, Stat, NOFID};
use ninep_server::{Caller, Completion, Error, FileServer, Reply, RequestId, Session};

#[derive(Default)]
struct Pipe {
    waiting: Vec<RequestId>,
    flushed: Vec<RequestId>,
}

fn qid(path: u64, dir: bool) -> Qid {
    Qid {
        kind: if dir { QidType::DIR } else { QidType::FILE },
        version: 0,
        path,
    }
}

impl FileServer for Pipe {
    type Node = u64;

    fn attach(&mut self, _: &str, _: &str) -> Result<(u64, Qid), Error> {
        Ok((0, qid(0, true)))
    }

    fn walk(&mut self, _: &Caller<'_>, _: &u64, name: &str) -> Result<(u64, Qid), Error> {
        match name {
            "pipe" => Ok((1, qid(1, false))),
            _ => Err(Error::NOT_FOUND),
        }
    }

    fn stat(&mut self, node: &u64) -> Result<Stat, Error> {
        let mut s = Stat::dont_touch();
        s.qid = qid(*node, *node == 0);
        s.mode = ninep::FileMode::from_bits_retain(if *node == 0 { 0x8000_01ff } else { 0o666 });
        s.uid = "u".into();
        s.gid = "u".into();
        Ok(s)
    }

    fn open(&mut self, _: &Caller<'_>, node: &u64, _: OpenMode) -> Result<Qid, Error> {
        Ok(qid(*node, *node == 0))
    }

    fn read(
        &mut self,
        caller: &Caller<'_>,
        _: &u64,
        _: u64,
        _: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        self.waiting.push(caller.request);
        Ok(Reply::Later)
    }

    fn flush(&mut self, request: RequestId) {
        self.flushed.push(request);
    }
}

struct Wire {
    session: Session<Pipe>,
    fs: Pipe,
}

impl Wire {
    fn new() -> Self {
        let mut w = Self {
            session: Session::new(8192),
            fs: Pipe::default(),
        };
        let v = w.send(
            0xFFFF,
            Message::Tversion {
                msize: 8192,
                version: "9P2000".into(),
            },
        );
        assert!(matches!(v, Some(Message::Rversion { .. })));
        w
    }

    fn send_raw(&mut self, tag: u16, message: Message) -> Vec<u8> {
        let mut out = Vec::new();
        let bytes = Frame::new(tag, message).to_bytes().unwrap();
        self.session.handle(&mut self.fs, &bytes, &mut out).unwrap();
        out
    }

    fn send(&mut self, tag: u16, message: Message) -> Option<Message> {
        let out = self.send_raw(tag, message);
        if out.is_empty() {
            return None;
        }
        let frame = Frame::decode(&out, 8192).unwrap();
        assert_eq!(frame.tag, tag);
        Some(frame.message)
    }

    fn open_pipe(&mut self, fid: u32) {
        self.send(
            1,
            Message::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "u".into(),
                aname: String::new(),
            },
        );
        let walk = self.send(
            1,
            Message::Twalk {
                fid: 0,
                newfid: fid,
                wnames: vec!["pipe".into()],
            },
        );
        assert!(matches!(walk, Some(Message::Rwalk { wqids }) if wqids.len() == 1));
        let open = self.send(
            1,
            Message::Topen {
                fid,
                mode: OpenMode::OREAD,
            },
        );
        assert!(matches!(open, Some(Message::Ropen { .. })));
    }

    fn read(&mut self, tag: u16, fid: u32) -> Option<Message> {
        self.send(
            tag,
            Message::Tread {
                fid,
                offset: 0,
                count: 4,
            },
        )
    }
}

#[test]
fn several_requests_outstanding_and_completed_out_of_order() {
    let mut w = Wire::new();
    w.open_pipe(1);
    assert_eq!(w.read(10, 1), None);
    assert_eq!(w.read(11, 1), None);
    assert_eq!(w.session.pending_count(), 2);
    let (first, second) = (w.fs.waiting[0], w.fs.waiting[1]);
    let mut out = Vec::new();
    w.session
        .complete(second, Completion::Read(Ok(b"second!".to_vec())), &mut out);
    let reply = Frame::decode(&out, 8192).unwrap();
    // Tag 11 answered, data clamped to the count of 4.
    assert_eq!(
        reply,
        Frame::new(
            11,
            Message::Rread {
                data: b"seco".to_vec()
            }
        )
    );
    out.clear();
    w.session
        .complete(first, Completion::Read(Err(Error::new("gone"))), &mut out);
    let reply = Frame::decode(&out, 8192).unwrap();
    assert_eq!(
        reply,
        Frame::new(
            10,
            Message::Rerror {
                ename: "gone".into()
            }
        )
    );
    assert_eq!(w.session.pending_count(), 0);
}

#[test]
fn duplicate_in_flight_tag_is_an_error() {
    let mut w = Wire::new();
    w.open_pipe(1);
    assert_eq!(w.read(10, 1), None);
    let dup = w.send(10, Message::Tstat { fid: 1 });
    assert!(matches!(dup, Some(Message::Rerror { ename }) if ename.contains("duplicate tag 10")));
    // The original is still outstanding.
    assert_eq!(w.session.pending_count(), 1);
}

#[test]
fn flush_answers_with_its_own_tag_and_silences_the_old_request() {
    let mut w = Wire::new();
    w.open_pipe(1);
    assert_eq!(w.read(10, 1), None);
    let flushed_id = w.fs.waiting[0];
    // Exact bytes: Rflush, tag 20.
    let out = w.send_raw(20, Message::Tflush { oldtag: 10 });
    assert_eq!(out, vec![7, 0, 0, 0, 109, 20, 0]);
    assert_eq!(w.fs.flushed, vec![flushed_id]);
    // Tag 10 is free again and reused at once.
    assert_eq!(w.read(10, 1), None);
    // A late answer to the flushed request produces nothing.
    let mut late = Vec::new();
    w.session.complete(
        flushed_id,
        Completion::Read(Ok(b"late".to_vec())),
        &mut late,
    );
    assert!(late.is_empty());
    // The new request with the reused tag still gets its own answer.
    let new_id = w.fs.waiting[1];
    w.session
        .complete(new_id, Completion::Read(Ok(b"new".to_vec())), &mut late);
    assert_eq!(
        Frame::decode(&late, 8192).unwrap(),
        Frame::new(
            10,
            Message::Rread {
                data: b"new".to_vec()
            }
        )
    );
}

#[test]
fn version_abandons_outstanding_requests() {
    let mut w = Wire::new();
    w.open_pipe(1);
    assert_eq!(w.read(10, 1), None);
    let id = w.fs.waiting[0];
    let v = w.send(
        0xFFFF,
        Message::Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    );
    assert!(matches!(v, Some(Message::Rversion { .. })));
    assert_eq!(w.fs.flushed, vec![id]);
    assert_eq!(w.session.pending_count(), 0);
    assert_eq!(w.session.fid_count(), 0);
}

/// A server that implements nothing.
struct Nothing;

impl FileServer for Nothing {
    type Node = ();
}

#[test]
fn default_methods_deny() {
    let mut session: Session<Nothing> = Session::new(8192);
    let mut fs = Nothing;
    let mut out = Vec::new();
    let v = Frame::new(
        0xFFFF,
        Message::Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    );
    session
        .handle(&mut fs, &v.to_bytes().unwrap(), &mut out)
        .unwrap();
    out.clear();
    let attach = Frame::new(
        1,
        Message::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "u".into(),
            aname: String::new(),
        },
    );
    session
        .handle(&mut fs, &attach.to_bytes().unwrap(), &mut out)
        .unwrap();
    assert_eq!(
        Frame::decode(&out, 8192).unwrap().message,
        Message::Rerror {
            ename: "permission denied".into()
        }
    );
}
