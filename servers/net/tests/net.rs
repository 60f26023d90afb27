//! `/net` over 9P between two smoltcp stacks on a simulated wire: dial,
//! announce, listen, data both ways, cs, UDP headers, hostile ctl text and
//! hostile frames.

mod common;

use common::{Net, A, B};
use ninep::{Message, OpenMode};

/// A listens on 564, B dials it; returns (A's call conversation, B's).
fn call(net: &mut Net) -> (u32, u32) {
    let n = net.clone_conv(A, 1, "tcp");
    net.write_ok(A, 1, b"announce 564");
    net.open(A, 2, &format!("tcp/{n}/listen"), OpenMode::ORDWR);
    let (listen_tag, early) = net.send(
        A,
        Message::Tread {
            fid: 2,
            offset: 0,
            count: 32,
        },
    );
    assert!(
        early.is_none(),
        "listen answered before any call: {early:?}"
    );

    let b = net.clone_conv(B, 1, "tcp");
    net.write_ok(B, 1, b"connect 10.0.0.1!564");
    let got = net
        .wait(A, listen_tag, 500)
        .expect("the listen read ends with the call");
    let Message::Rread { data } = got else {
        panic!("listen: {got:?}")
    };
    let m: u32 = String::from_utf8(data).unwrap().trim().parse().unwrap();
    assert_ne!(m, n, "the call is a new conversation");
    (m, b)
}

#[test]
fn tcp_dial_listen_and_exchange_both_ways() {
    let mut net = Net::new();
    let (m, b) = call(&mut net);
    net.open(A, 3, &format!("tcp/{m}/data"), OpenMode::ORDWR);
    net.open(B, 2, &format!("tcp/{b}/data"), OpenMode::ORDWR);

    net.write_ok(B, 2, b"hello, A");
    assert_eq!(net.read(A, 3, 100), b"hello, A");

    // More than a window: the write waits for the reader to drain.
    let big: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    let mut write_tag: Option<u16> = None;
    let mut waited_writes = 0;
    while got.len() < big.len() {
        if let Some(t) = write_tag {
            if let Some(reply) = net.hosts[A].late.remove(&t) {
                assert!(
                    matches!(
                        reply,
                        Message::Rwrite { count: 7000 } | Message::Rwrite { .. }
                    ),
                    "{reply:?}"
                );
                write_tag = None;
            }
        }
        if write_tag.is_none() && sent < big.len() {
            let end = (sent + 7000).min(big.len());
            let (t, now) = net.send(
                A,
                Message::Twrite {
                    fid: 3,
                    offset: 0,
                    data: big[sent..end].to_vec(),
                },
            );
            match now {
                None => {
                    write_tag = Some(t);
                    waited_writes += 1;
                }
                Some(reply) => assert_eq!(
                    reply,
                    Message::Rwrite {
                        count: (end - sent) as u32
                    }
                ),
            }
            sent = end;
        }
        let (t, now) = net.send(
            B,
            Message::Tread {
                fid: 2,
                offset: 0,
                count: 8000,
            },
        );
        let reply = match now {
            Some(r) => r,
            None => net.wait(B, t, 500).expect("data arrives"),
        };
        let Message::Rread { data } = reply else {
            panic!("{reply:?}")
        };
        got.extend_from_slice(&data);
    }
    assert!(waited_writes > 0, "some write had to wait for the window");
    assert_eq!(got, big, "every byte, in order");

    // The conversation's files say who talks to whom.
    net.open(A, 4, &format!("tcp/{m}/remote"), OpenMode::OREAD);
    assert!(net.read_text(A, 4).starts_with("10.0.0.2!"));
    net.open(A, 5, &format!("tcp/{m}/local"), OpenMode::OREAD);
    assert_eq!(net.read_text(A, 5), "10.0.0.1!564\n");
    net.open(A, 6, &format!("tcp/{m}/status"), OpenMode::OREAD);
    assert!(net.read_text(A, 6).contains("Established"));

    // B hangs up: A's next read is the end of the file.
    net.write_ok(B, 1, b"hangup");
    assert_eq!(
        net.read(A, 3, 100),
        b"",
        "end of file after the peer's hangup"
    );
    let reply = net.write(B, 2, b"too late");
    assert!(Net::error(&reply).contains("hangup"), "{reply:?}");
}

#[test]
fn a_connect_to_a_closed_port_is_refused() {
    let mut net = Net::new();
    net.clone_conv(B, 1, "tcp");
    let reply = net.write(B, 1, b"connect 10.0.0.1!9");
    assert_eq!(Net::error(&reply), "connection refused");
    net.clunk(B, 1);
    // The stacks carry on: a real call still works.
    call(&mut net);
}

#[test]
fn conversations_are_listed_and_released_with_their_last_file() {
    let mut net = Net::new();
    let n = net.clone_conv(A, 1, "tcp");
    net.open(A, 9, "tcp", OpenMode::OREAD);
    let listing = net.read(A, 9, 4096);
    let names = stat_names(&listing);
    assert!(
        names.contains(&"clone".to_string()) && names.contains(&n.to_string()),
        "{names:?}"
    );
    net.clunk(A, 9);
    net.clunk(A, 1);
    // walk(5): the first name walks, the second does not.
    let walked = net.walk(A, 2, &format!("tcp/{n}"));
    assert!(
        matches!(&walked, Message::Rwalk { wqids } if wqids.len() == 1),
        "{walked:?}"
    );
    // The number is free again.
    assert_eq!(net.clone_conv(A, 3, "tcp"), n);
}

#[test]
fn cs_translates_dial_strings() {
    let mut net = Net::new();
    net.open(A, 1, "cs", OpenMode::ORDWR);
    net.write_ok(A, 1, b"tcp!10.0.0.2!9fs");
    assert_eq!(net.read_text(A, 1), "/net/tcp/clone 10.0.0.2!564\n");
    assert_eq!(net.read_text(A, 1), "", "a read takes the answer");
    net.clunk(A, 1);
    net.open(A, 1, "cs", OpenMode::ORDWR);
    net.write_ok(A, 1, b"net!gateway!http");
    assert_eq!(net.read_text(A, 1), "/net/tcp/clone 10.0.0.254!80\n");
    let reply = net.write(A, 1, b"tcp!nowhere.example!80");
    assert!(Net::error(&reply).contains("unknown host"), "{reply:?}");
}

#[test]
fn udp_with_headers_answers_the_sender() {
    let mut net = Net::new();
    net.clone_conv(A, 1, "udp");
    net.write_ok(A, 1, b"announce 7");
    net.write_ok(A, 1, b"headers");
    let a = net.read_text(A, 1).trim().parse::<u32>().unwrap();
    net.open(A, 2, &format!("udp/{a}/data"), OpenMode::ORDWR);

    let b = net.clone_conv(B, 1, "udp");
    net.write_ok(B, 1, b"connect 10.0.0.1!7");
    net.open(B, 2, &format!("udp/{b}/data"), OpenMode::ORDWR);
    net.write_ok(B, 2, b"ping");

    let datagram = net.read(A, 2, 1000);
    assert_eq!(datagram.len(), netfs::UDP_HEADER + 4);
    assert_eq!(&datagram[netfs::UDP_HEADER..], b"ping");
    // The remote address, IPv4-mapped, is B's.
    assert_eq!(&datagram[12..16], &[10, 0, 0, 2]);
    let mut answer = datagram[..netfs::UDP_HEADER].to_vec();
    answer.extend_from_slice(b"pong");
    net.write_ok(A, 2, &answer);
    assert_eq!(net.read(B, 2, 1000), b"pong");

    let reply = net.write(A, 2, b"short");
    assert!(Net::error(&reply).contains("52-byte header"), "{reply:?}");
}

#[test]
fn nonsense_on_ctl_files_gets_clear_errors() {
    let mut net = Net::new();
    net.clone_conv(A, 1, "tcp");
    for (text, why) in [
        (&b"frobnicate"[..], "unknown control request"),
        (b"", "empty control request"),
        (b"connect nonsense", "bad address"),
        (b"connect 10.0.0.2", "bad address"),
        (b"connect *!80", "cannot connect"),
        (b"announce 0", "in use or invalid"),
        (b"announce 99999", "unknown service"),
        (b"\xff\xfe", "not UTF-8"),
    ] {
        let reply = net.write(A, 1, text);
        assert!(Net::error(&reply).contains(why), "{text:?}: {reply:?}");
    }
    net.open(A, 2, "ipifc/0/ctl", OpenMode::ORDWR);
    for (text, why) in [
        (&b"add 1.2.3 255.0.0.0"[..], "bad address"),
        (b"add 10.0.0.9 255.0.255.0", "bad mask"),
        (b"reboot", "unknown ipifc request"),
    ] {
        let reply = net.write(A, 2, text);
        assert!(Net::error(&reply).contains(why), "{text:?}: {reply:?}");
    }
    // Data on a conversation that is not connected.
    net.open(A, 3, "tcp/0/data", OpenMode::ORDWR);
    let reply = net.write(A, 3, b"x");
    assert!(Net::error(&reply).contains("not connected"), "{reply:?}");
    // After all of it, the server still serves calls.
    let mut net2 = net;
    for fid in [1, 2, 3] {
        net2.clunk(A, fid);
    }
    call(&mut net2);
}

/// Garbage and oversized writes to cs and every kind of ctl file: each is
/// refused with its reason, none quotes an oversized write back, and the
/// server still serves a call after all of it.
#[test]
fn garbage_and_huge_writes_to_cs_and_ctl_files_are_refused() {
    let mut net = Net::new();
    let huge = vec![b'x'; 8000];
    let limit = format!(
        "control request too long (8000 bytes; at most {})",
        netfs::MAX_CONTROL
    );
    net.open(A, 1, "cs", OpenMode::ORDWR);
    for (text, why) in [
        (&b"!!!"[..], "bad dial string"),
        (b"tcp", "bad dial string"),
        (b"tcp!10.0.0.2!80!81!82", "bad dial string"),
        (b"ipx!10.0.0.2!80", "unknown network 'ipx'"),
        (b"tcp!10.0.0.2!", "unknown service"),
        (b"tcp!999.0.0.2!80", "unknown host"),
        (b"\xc3\x28", "not UTF-8"),
        (&huge, &limit),
    ] {
        let reply = net.write(A, 1, text);
        let error = Net::error(&reply);
        assert!(error.contains(why), "{text:?}: {reply:?}");
        assert!(error.len() < 200, "{error}");
    }
    assert_eq!(net.read_text(A, 1), "", "no answer after refused writes");
    net.clone_conv(A, 2, "tcp");
    net.open(A, 3, "ipifc/0/ctl", OpenMode::ORDWR);
    for fid in [2, 3] {
        let reply = net.write(A, fid, &huge);
        assert_eq!(Net::error(&reply), limit, "{reply:?}");
    }
    let mut just = vec![b' '; netfs::MAX_CONTROL - 6];
    just.extend_from_slice(b"bogus!");
    let reply = net.write(A, 2, &just);
    assert!(
        Net::error(&reply).contains("unknown control request"),
        "a request of exactly the limit is parsed: {reply:?}"
    );
    for fid in [1, 2, 3] {
        net.clunk(A, fid);
    }
    call(&mut net);
}

#[test]
fn the_interface_can_be_reconfigured() {
    let mut net = Net::new();
    net.open(A, 1, "ipifc/0/status", OpenMode::OREAD);
    let status = net.read_text(A, 1);
    assert!(status.contains("addr 10.0.0.1 255.255.255.0"), "{status}");
    assert!(status.contains("mac 02-00-00-00-00-01"), "{status}");
    net.open(A, 2, "ipifc/0/ctl", OpenMode::ORDWR);
    net.write_ok(A, 2, b"remove");
    net.clone_conv(A, 3, "tcp");
    let reply = net.write(A, 3, b"connect 10.0.0.2!564");
    assert!(Net::error(&reply).contains("unconfigured"), "{reply:?}");
    net.write_ok(A, 2, b"add 10.0.0.1 255.255.255.0 10.0.0.254");
    let status = {
        net.clunk(A, 1);
        net.open(A, 1, "ipifc/0/status", OpenMode::OREAD);
        net.read_text(A, 1)
    };
    assert!(status.contains("gateway 10.0.0.254"), "{status}");
    // Another network, no gateway named: the old one is off the link and
    // goes; one on the new network stays.
    let status = |net: &mut Net| {
        net.clunk(A, 1);
        net.open(A, 1, "ipifc/0/status", OpenMode::OREAD);
        net.read_text(A, 1)
    };
    net.write_ok(A, 2, b"add 192.168.7.1 255.255.255.0");
    let now = status(&mut net);
    assert!(
        now.contains("addr 192.168.7.1 255.255.255.0 gateway none"),
        "{now}"
    );
    net.write_ok(A, 2, b"add 10.0.0.1 255.255.255.0 10.0.0.254");
    net.write_ok(A, 2, b"add 10.0.0.9 255.255.255.0");
    let now = status(&mut net);
    assert!(
        now.contains("addr 10.0.0.9 255.255.255.0 gateway 10.0.0.254"),
        "{now}"
    );
}

/// A peer that vanishes (the wire cut, a node powered off) is given up
/// once what was sent to it stays unacknowledged for 100 s (RFC 1122's
/// R2): the read that waited on the connection ends, rather than waiting
/// for ever, and the conversation shows Closed.
#[test]
fn a_vanished_peer_is_given_up_and_the_waiting_read_ends() {
    let mut net = Net::new();
    let (_, b) = call(&mut net);
    net.open(B, 2, &format!("tcp/{b}/data"), OpenMode::ORDWR);
    let (tag, now) = net.send(
        B,
        Message::Tread {
            fid: 2,
            offset: 0,
            count: 10,
        },
    );
    assert!(now.is_none(), "nothing to read yet");
    net.cut(true);
    // Sent into the void: the write is taken (it is in the send window),
    // but nothing acknowledges it.
    net.write_ok(B, 2, b"anyone there?");
    assert!(
        net.wait(B, tag, 9_000).is_none(),
        "given up within 90 s: too soon"
    );
    let ended = net.wait(B, tag, 2_000).expect("the read ends within 110 s");
    assert_eq!(ended, Message::Rread { data: Vec::new() });
    net.open(B, 3, &format!("tcp/{b}/status"), OpenMode::OREAD);
    let status = net.read_text(B, 3);
    assert!(
        status.ends_with(" Closed") || status.contains(" Closed\n"),
        "{status}"
    );
}

#[test]
fn a_flushed_read_is_forgotten() {
    let mut net = Net::new();
    let (m, _) = call(&mut net);
    net.open(A, 3, &format!("tcp/{m}/data"), OpenMode::ORDWR);
    let (tag, now) = net.send(
        A,
        Message::Tread {
            fid: 3,
            offset: 0,
            count: 10,
        },
    );
    assert!(now.is_none());
    let (_, flushed) = net.send(A, Message::Tflush { oldtag: tag });
    assert_eq!(flushed, Some(Message::Rflush));
    assert!(
        net.wait(A, tag, 50).is_none(),
        "no answer for a flushed read"
    );
}

#[test]
fn hostile_frames_are_dropped_and_the_stack_carries_on() {
    let mut net = Net::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mac_a = [2u8, 0, 0, 0, 0, 1];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for len in 0..200usize {
        frames.push((0..len).map(|_| next() as u8).collect());
    }
    // Ethernet + IPv4 headers that lie: total length past the frame, a
    // header length below 20, a truncated header, TCP to a closed port.
    let ipv4 = |total: u16, ihl: u8, proto: u8, cut: usize| {
        let mut f = mac_a.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x00]);
        let mut ip = vec![
            0x40 | ihl,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            64,
            proto,
            0,
            0,
            10,
            0,
            0,
            2,
            10,
            0,
            0,
            1,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[
            0x13, 0x88, 0x00, 0x09, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f.truncate(cut);
        f
    };
    frames.push(ipv4(1500, 5, 6, 54));
    frames.push(ipv4(40, 3, 6, 54));
    frames.push(ipv4(40, 5, 6, 20));
    for _ in 0..500 {
        frames.push(ipv4(40, 5, 6, 54));
    }
    net.hosts[A].rx.borrow_mut().extend(frames);
    for _ in 0..20 {
        net.step();
    }
    call(&mut net);
}

fn stat_names(mut bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while bytes.len() >= 2 {
        let size = u16::from_le_bytes([bytes[0], bytes[1]]) as usize + 2;
        let stat = ninep::Stat::decode(&bytes[..size]).expect("a stat entry");
        names.push(stat.name);
        bytes = &bytes[size..];
    }
    names
}
