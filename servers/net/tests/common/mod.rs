//! Two `/net` servers on a simulated Ethernet wire, each behind a 9P
//! session, and a client that speaks 9P to either and waits for late
//! answers by running both stacks.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use netfs::NetFs;
use ninep::{Frame, Message, OpenMode, NOFID};
use ninep_server::Session;
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::Ipv4Cidr;

pub type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of the wire: frames it sends go to `tx`, frames for it wait in
/// `rx`. `drop_next` loses that many frames it sends, for loss tests.
pub struct WireEnd {
    pub rx: Queue,
    pub tx: Queue,
}

pub struct Rx(Vec<u8>);
pub struct Tx(Queue);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.borrow_mut().push_back(frame);
        r
    }
}

impl Device for WireEnd {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _t: Instant) -> Option<(Rx, Tx)> {
        let frame = self.rx.borrow_mut().pop_front()?;
        Some((Rx(frame), Tx(self.tx.clone())))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Tx> {
        Some(Tx(self.tx.clone()))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

pub const MSIZE: u32 = 8192;

pub struct Host {
    pub fs: NetFs<WireEnd>,
    pub session: Session<NetFs<WireEnd>>,
    /// Late answers by tag.
    pub late: HashMap<u16, Message>,
    pub rx: Queue,
}

impl Host {
    fn new(rx: Queue, tx: Queue, mac: u8, address: [u8; 4]) -> Self {
        let end = WireEnd { rx: rx.clone(), tx };
        let mut fs = NetFs::new(end, [2, 0, 0, 0, 0, mac], "wire", u64::from(mac), 0);
        let [a, b, c, d] = address;
        fs.configure(
            Ipv4Cidr::new(std::net::Ipv4Addr::new(a, b, c, d), 24),
            Some(std::net::Ipv4Addr::new(10, 0, 0, 254)),
        );
        Self {
            fs,
            session: Session::new(MSIZE),
            late: HashMap::new(),
            rx,
        }
    }
}

/// A = 10.0.0.1, B = 10.0.0.2, on one wire.
pub struct Net {
    pub hosts: [Host; 2],
    pub now: i64,
    next_tag: u16,
    /// The wire is cut: frames are lost.
    cut: bool,
}

pub const A: usize = 0;
pub const B: usize = 1;

impl Net {
    pub fn new() -> Self {
        let ab: Queue = Rc::default();
        let ba: Queue = Rc::default();
        let mut net = Self {
            hosts: [
                Host::new(ba.clone(), ab.clone(), 1, [10, 0, 0, 1]),
                Host::new(ab, ba, 2, [10, 0, 0, 2]),
            ],
            now: 0,
            next_tag: 1,
            cut: false,
        };
        for h in [A, B] {
            net.version(h);
            net.attach(h, 0);
        }
        net
    }

    /// Sends a request; its answer if one came at once.
    pub fn send(&mut self, h: usize, message: Message) -> (u16, Option<Message>) {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        let bytes = Frame::new(tag, message).to_bytes().unwrap();
        let host = &mut self.hosts[h];
        let mut out = Vec::new();
        host.session
            .handle(&mut host.fs, &bytes, &mut out)
            .expect("the session survives every frame");
        if out.is_empty() {
            return (tag, None);
        }
        let reply = Frame::decode(&out, 1 << 20).expect("a well-formed reply");
        assert_eq!(reply.tag, tag);
        (tag, Some(reply.message))
    }

    /// Cuts the wire (`true`): every frame either host sends is lost.
    pub fn cut(&mut self, cut: bool) {
        self.cut = cut;
    }

    /// Runs both stacks for one 10 ms step and files late answers.
    pub fn step(&mut self) {
        self.now += 10;
        if self.cut {
            for host in &mut self.hosts {
                host.rx.borrow_mut().clear();
            }
        }
        for host in &mut self.hosts {
            host.fs.run(self.now);
            for (id, completion) in host.fs.completions() {
                let mut out = Vec::new();
                host.session.complete(id, completion, &mut out);
                if !out.is_empty() {
                    let reply = Frame::decode(&out, 1 << 20).expect("a well-formed late reply");
                    host.late.insert(reply.tag, reply.message);
                }
            }
        }
    }

    /// Waits (up to `steps` steps) for the answer to `tag`.
    pub fn wait(&mut self, h: usize, tag: u16, steps: usize) -> Option<Message> {
        for _ in 0..steps {
            if let Some(m) = self.hosts[h].late.remove(&tag) {
                return Some(m);
            }
            self.step();
        }
        self.hosts[h].late.remove(&tag)
    }

    /// A request and its answer, however long the stacks take (30 s of
    /// simulated time at most).
    pub fn rpc(&mut self, h: usize, message: Message) -> Message {
        let (tag, now) = self.send(h, message);
        match now {
            Some(m) => m,
            None => self.wait(h, tag, 3000).expect("an answer within 30 s"),
        }
    }

    pub fn version(&mut self, h: usize) {
        let (_, reply) = self.send(
            h,
            Message::Tversion {
                msize: MSIZE,
                version: "9P2000".into(),
            },
        );
        assert!(matches!(reply, Some(Message::Rversion { .. })), "{reply:?}");
    }

    pub fn attach(&mut self, h: usize, fid: u32) {
        let reply = self.rpc(
            h,
            Message::Tattach {
                fid,
                afid: NOFID,
                uname: "glenda".into(),
                aname: String::new(),
            },
        );
        assert!(matches!(reply, Message::Rattach { .. }), "{reply:?}");
    }

    /// Walks from the root to `path` (slash-separated) as `fid`.
    pub fn walk(&mut self, h: usize, fid: u32, path: &str) -> Message {
        let wnames = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        self.rpc(
            h,
            Message::Twalk {
                fid: 0,
                newfid: fid,
                wnames,
            },
        )
    }

    /// Walks to and opens `path` as `fid`; panics on failure.
    pub fn open(&mut self, h: usize, fid: u32, path: &str, mode: OpenMode) {
        let walked = self.walk(h, fid, path);
        assert!(
            matches!(walked, Message::Rwalk { .. }),
            "walk {path}: {walked:?}"
        );
        let opened = self.rpc(h, Message::Topen { fid, mode });
        assert!(
            matches!(opened, Message::Ropen { .. }),
            "open {path}: {opened:?}"
        );
    }

    pub fn write(&mut self, h: usize, fid: u32, data: &[u8]) -> Message {
        self.rpc(
            h,
            Message::Twrite {
                fid,
                offset: 0,
                data: data.to_vec(),
            },
        )
    }

    pub fn write_ok(&mut self, h: usize, fid: u32, data: &[u8]) {
        let reply = self.write(h, fid, data);
        assert_eq!(
            reply,
            Message::Rwrite {
                count: data.len() as u32
            },
            "write {:?}",
            String::from_utf8_lossy(data)
        );
    }

    pub fn read(&mut self, h: usize, fid: u32, count: u32) -> Vec<u8> {
        match self.rpc(
            h,
            Message::Tread {
                fid,
                offset: 0,
                count,
            },
        ) {
            Message::Rread { data } => data,
            other => panic!("read failed: {other:?}"),
        }
    }

    pub fn read_text(&mut self, h: usize, fid: u32) -> String {
        String::from_utf8(self.read(h, fid, 1024)).unwrap()
    }

    pub fn clunk(&mut self, h: usize, fid: u32) {
        let reply = self.rpc(h, Message::Tclunk { fid });
        assert_eq!(reply, Message::Rclunk);
    }

    /// Opens `/net/PROTO/clone` as `fid` and returns the conversation's
    /// number, read from it.
    pub fn clone_conv(&mut self, h: usize, fid: u32, proto: &str) -> u32 {
        self.open(h, fid, &format!("{proto}/clone"), OpenMode::ORDWR);
        self.read_text(h, fid).trim().parse().unwrap()
    }

    pub fn error(message: &Message) -> &str {
        match message {
            Message::Rerror { ename } => ename,
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
