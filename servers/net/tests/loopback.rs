//! One `/net` server on smoltcp's loopback device, as the net VM runs it
//! when no NIC is assigned: a call to 127.0.0.1 within the one stack.

use netfs::smoltcp::phy::Loopback;
use netfs::NetFs;
use ninep::{Frame, Message, OpenMode, NOFID};
use ninep_server::{FileServer, Session};

struct One {
    fs: NetFs<Loopback>,
    session: Session<NetFs<Loopback>>,
    now: u64,
    late: Vec<(u16, Message)>,
}

impl One {
    fn new() -> Self {
        Self::started(0)
    }

    /// A server at its `start`th start (a server VM's link generation).
    fn started(start: u64) -> Self {
        // What both placements run without a card.
        let fs = NetFs::on_loopback(7, start);
        let mut one = Self {
            fs,
            session: Session::new(8192),
            now: 0,
            late: Vec::new(),
        };
        one.send(
            0xFFFF,
            Message::Tversion {
                msize: 8192,
                version: "9P2000".into(),
            },
        );
        let attach = Message::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "glenda".into(),
            aname: String::new(),
        };
        assert!(matches!(one.send(1, attach), Some(Message::Rattach { .. })));
        one
    }

    fn send(&mut self, tag: u16, message: Message) -> Option<Message> {
        let mut out = Vec::new();
        let bytes = Frame::new(tag, message).to_bytes().unwrap();
        self.session.handle(&mut self.fs, &bytes, &mut out).unwrap();
        // What a runtime does after every request: poll.
        self.now += 1;
        for (id, completion) in self.fs.poll(self.now) {
            let mut late = Vec::new();
            self.session.complete(id, completion, &mut late);
            if !late.is_empty() {
                let reply = Frame::decode(&late, 1 << 20).unwrap();
                self.late.push((reply.tag, reply.message));
            }
        }
        (!out.is_empty()).then(|| Frame::decode(&out, 1 << 20).unwrap().message)
    }

    fn late(&mut self, tag: u16) -> Option<Message> {
        let at = self.late.iter().position(|(t, _)| *t == tag)?;
        Some(self.late.remove(at).1)
    }

    fn open(&mut self, fid: u32, path: &str) {
        self.open_as(fid, path, OpenMode::ORDWR);
    }

    fn open_as(&mut self, fid: u32, path: &str, mode: OpenMode) {
        let wnames = path.split('/').map(String::from).collect();
        assert!(matches!(
            self.send(
                2,
                Message::Twalk {
                    fid: 0,
                    newfid: fid,
                    wnames
                }
            ),
            Some(Message::Rwalk { .. })
        ));
        let opened = self.send(2, Message::Topen { fid, mode });
        assert!(
            matches!(opened, Some(Message::Ropen { .. })),
            "{path}: {opened:?}"
        );
    }

    fn write(&mut self, tag: u16, fid: u32, data: &[u8]) -> Option<Message> {
        self.send(
            tag,
            Message::Twrite {
                fid,
                offset: 0,
                data: data.to_vec(),
            },
        )
    }
}

#[test]
fn a_call_to_localhost_within_one_stack() {
    let mut one = One::new();
    one.open(1, "tcp/clone");
    assert_eq!(
        one.write(3, 1, b"announce 564"),
        Some(Message::Rwrite { count: 12 })
    );
    one.open(2, "tcp/0/listen");
    assert_eq!(
        one.send(
            4,
            Message::Tread {
                fid: 2,
                offset: 0,
                count: 16
            }
        ),
        None
    );
    one.open(3, "tcp/clone");
    // The connect completes during the polls that follow the requests.
    let connect = one.write(5, 3, b"connect 127.0.0.1!564");
    let connect = connect.or_else(|| one.late(5));
    assert_eq!(connect, Some(Message::Rwrite { count: 21 }));
    let Some(Message::Rread { data }) = one.late(4) else {
        panic!("no call: {:?}", one.late)
    };
    assert_eq!(data, b"2");
    one.open(4, "tcp/1/data");
    one.open(5, "tcp/2/data");
    assert_eq!(
        one.write(6, 4, b"over loopback"),
        Some(Message::Rwrite { count: 13 })
    );
    let got = one
        .send(
            7,
            Message::Tread {
                fid: 5,
                offset: 0,
                count: 100,
            },
        )
        .or_else(|| one.late(7));
    assert_eq!(
        got,
        Some(Message::Rread {
            data: b"over loopback".to_vec()
        })
    );
}

/// Each start numbers its conversations apart: the numbers a client
/// kept from before a restart name no conversation of the new server, and
/// a walk to one says the connection was reset, rather than reach a
/// conversation made since (which core's recovery would take for the old).
#[test]
fn conversations_of_an_earlier_start_answer_connection_reset() {
    let mut one = One::started(2);
    one.open(1, "tcp/clone");
    let Some(Message::Rread { data }) = one.send(
        3,
        Message::Tread {
            fid: 1,
            offset: 0,
            count: 16,
        },
    ) else {
        panic!("no number")
    };
    assert_eq!(data, b"200", "start 2 numbers from 200");
    assert_eq!(
        one.write(4, 1, b"announce 564"),
        Some(Message::Rwrite { count: 12 })
    );
    one.open(2, "tcp/200/listen");
    walk_to(&mut one, 8, "tcp");
    for earlier in ["0", "100", "199", "264", "300"] {
        let walk = Message::Twalk {
            fid: 0,
            newfid: 9,
            wnames: vec!["tcp".into(), earlier.into()],
        };
        // walk(5): a failure past the first name is a short Rwalk, so the
        // reason is heard on the walk of that one name.
        let short = one.send(5, walk);
        assert!(
            matches!(&short, Some(Message::Rwalk { wqids }) if wqids.len() == 1),
            "tcp/{earlier}: {short:?}"
        );
        let walk = Message::Twalk {
            fid: 8,
            newfid: 9,
            wnames: vec![earlier.into()],
        };
        assert_eq!(
            one.send(6, walk),
            Some(Message::Rerror {
                ename: netfs::RESET.into()
            }),
            "tcp/{earlier}"
        );
    }
    // A number of this start that no conversation has is just absent.
    let walk = Message::Twalk {
        fid: 8,
        newfid: 9,
        wnames: vec!["201".into()],
    };
    assert_eq!(
        one.send(7, walk),
        Some(Message::Rerror {
            ename: "file does not exist".into()
        })
    );
}

/// Walks fid `fid` from the root to `name`.
fn walk_to(one: &mut One, fid: u32, name: &str) {
    let walk = Message::Twalk {
        fid: 0,
        newfid: fid,
        wnames: vec![name.into()],
    };
    let walked = one.send(91, walk);
    assert!(
        matches!(walked, Some(Message::Rwalk { .. })),
        "{name}: {walked:?}"
    );
}

#[test]
fn the_loopback_interface_reports_its_status() {
    let mut one = One::new();
    one.open_as(1, "ipifc/0/status", OpenMode::OREAD);
    let Some(Message::Rread { data }) = one.send(
        3,
        Message::Tread {
            fid: 1,
            offset: 0,
            count: 200,
        },
    ) else {
        panic!("no status");
    };
    let status = String::from_utf8(data).unwrap();
    assert!(
        status.starts_with("device loopback mtu 65535 addr 127.0.0.1 255.0.0.0"),
        "{status}"
    );
    assert!(status.contains("mac none"), "{status}");
}

#[test]
fn a_mac_is_written_as_the_boot_lines_write_it() {
    let mac = netfs::Mac([0x52, 0x54, 0, 0x4b, 0xac, 0x0a]);
    assert_eq!(mac.to_string(), "52:54:00:4b:ac:0a");
}
