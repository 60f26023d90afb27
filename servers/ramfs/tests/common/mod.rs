//! A wire-level test fixture: a session over a ramfs, frames in and out.
#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;

use ninep::{FileMode, Frame, Message, OpenMode, Qid, Stat, NOFID};
use ninep_server::Session;
use ramfs::{Clock, Limits, RamFs};

#[derive(Clone, Default)]
pub struct TestClock(pub Rc<Cell<u32>>);

impl Clock for TestClock {
    fn now(&self) -> u32 {
        self.0.get()
    }
}

pub struct Wire {
    pub session: Session<RamFs<TestClock>>,
    pub fs: RamFs<TestClock>,
    pub clock: TestClock,
}

pub const MSIZE: u32 = 8192;

pub fn error(text: &str) -> Message {
    Message::Rerror { ename: text.into() }
}

impl Wire {
    /// A session with a root owned by glenda:glenda, mode 0775, at time 100.
    pub fn new() -> Self {
        let clock = TestClock::default();
        clock.0.set(100);
        let fs = RamFs::new(clock.clone(), "glenda", "glenda", 0o775);
        Self {
            session: Session::new(MSIZE),
            fs,
            clock,
        }
    }

    pub fn with_limits(limits: Limits) -> Self {
        let mut w = Self::new();
        w.fs = RamFs::new(w.clock.clone(), "glenda", "glenda", 0o775).with_limits(limits);
        w
    }

    /// Feeds raw bytes; returns the raw reply bytes (possibly empty).
    pub fn raw(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.session
            .handle(&mut self.fs, bytes, &mut out)
            .expect("the session should survive this frame");
        out
    }

    /// Sends a message; returns the decoded reply, checking its tag.
    pub fn rpc(&mut self, tag: u16, message: Message) -> Message {
        let bytes = Frame::new(tag, message).to_bytes().unwrap();
        let out = self.raw(&bytes);
        let reply = Frame::decode(&out, 1 << 20).expect("one well-formed reply");
        assert_eq!(reply.tag, tag, "reply tag");
        reply.message
    }

    pub fn call(&mut self, message: Message) -> Message {
        self.rpc(1, message)
    }

    /// Tversion 9P2000 and Tattach of fid 0 as `uname`.
    pub fn start(uname: &str) -> Self {
        let mut w = Self::new();
        w.version();
        w.attach(0, uname);
        w
    }

    pub fn version(&mut self) {
        let reply = self.rpc(
            0xFFFF,
            Message::Tversion {
                msize: MSIZE,
                version: "9P2000".into(),
            },
        );
        assert_eq!(
            reply,
            Message::Rversion {
                msize: MSIZE,
                version: "9P2000".into()
            }
        );
    }

    pub fn attach(&mut self, fid: u32, uname: &str) -> Qid {
        match self.call(Message::Tattach {
            fid,
            afid: NOFID,
            uname: uname.into(),
            aname: String::new(),
        }) {
            Message::Rattach { qid } => qid,
            other => panic!("attach failed: {other:?}"),
        }
    }

    pub fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Message {
        self.call(Message::Twalk {
            fid,
            newfid,
            wnames: names.iter().map(|s| s.to_string()).collect(),
        })
    }

    pub fn open(&mut self, fid: u32, mode: OpenMode) -> Message {
        self.call(Message::Topen { fid, mode })
    }

    pub fn create(&mut self, fid: u32, name: &str, perm: u32, mode: OpenMode) -> Message {
        self.call(Message::Tcreate {
            fid,
            name: name.into(),
            perm: FileMode::from_bits_retain(perm),
            mode,
        })
    }

    /// Creates `name` in the root through a fresh fid, leaving it open ORDWR.
    pub fn new_file(&mut self, fid: u32, name: &str, perm: u32) -> Qid {
        assert!(matches!(self.walk(0, fid, &[]), Message::Rwalk { .. }));
        match self.create(fid, name, perm, OpenMode::ORDWR) {
            Message::Rcreate { qid, .. } => qid,
            other => panic!("create {name} failed: {other:?}"),
        }
    }

    pub fn read(&mut self, fid: u32, offset: u64, count: u32) -> Message {
        self.call(Message::Tread { fid, offset, count })
    }

    pub fn write(&mut self, fid: u32, offset: u64, data: &[u8]) -> Message {
        self.call(Message::Twrite {
            fid,
            offset,
            data: data.to_vec(),
        })
    }

    pub fn clunk(&mut self, fid: u32) -> Message {
        self.call(Message::Tclunk { fid })
    }

    pub fn stat(&mut self, fid: u32) -> Stat {
        match self.call(Message::Tstat { fid }) {
            Message::Rstat { stat } => stat,
            other => panic!("stat failed: {other:?}"),
        }
    }

    pub fn wstat(&mut self, fid: u32, stat: Stat) -> Message {
        self.call(Message::Twstat { fid, stat })
    }

    pub fn data(&mut self, fid: u32, offset: u64, count: u32) -> Vec<u8> {
        match self.read(fid, offset, count) {
            Message::Rread { data } => data,
            other => panic!("read failed: {other:?}"),
        }
    }
}
