//! A server that breaks the rules: errors, never panics, never confusion.

use ninep::{Frame, Message, Qid, QidType, Stat};
use ninep_client::{Client, Error, Fid, Outcome, ProtocolError};
use proptest::prelude::*;

fn frame(tag: u16, message: Message) -> Vec<u8> {
    Frame::new(tag, message).to_bytes().unwrap()
}

fn tag_of(bytes: &[u8]) -> u16 {
    Frame::decode(bytes, u32::MAX).unwrap().tag
}

fn qid(path: u64) -> Qid {
    Qid {
        kind: QidType::DIR,
        version: 0,
        path,
    }
}

/// A negotiated client with an attached root fid.
fn ready() -> (Client, Fid) {
    let mut client = Client::new(8192);
    client.version(&mut Vec::new()).unwrap();
    let reply = Message::Rversion {
        msize: 8192,
        version: "9P2000".into(),
    };
    client
        .receive(&frame(0xFFFF, reply), &mut Vec::new())
        .unwrap();
    let mut out = Vec::new();
    client.attach("glenda", "", &mut out).unwrap();
    let reply = frame(tag_of(&out), Message::Rattach { qid: qid(1) });
    match client.receive(&reply, &mut Vec::new()).unwrap() {
        Some(c) => match c.result {
            Ok(Outcome::Attached { fid, .. }) => (client, fid),
            other => panic!("{other:?}"),
        },
        None => panic!("no completion"),
    }
}

fn answer(client: &mut Client, tag: u16, message: Message) -> Option<Result<Outcome, Error>> {
    client
        .receive(&frame(tag, message), &mut Vec::new())
        .unwrap()
        .map(|c| c.result)
}

#[test]
fn a_reply_on_an_unknown_tag_is_an_error_and_changes_nothing() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    client.stat(root, &mut out).unwrap();
    let tag = tag_of(&out);
    let wrong = tag.wrapping_add(1);
    let result = client.receive(&frame(wrong, Message::Rclunk), &mut Vec::new());
    assert_eq!(result, Err(ProtocolError::UnknownTag(wrong)));
    assert_eq!(client.outstanding(), 1);
    let stat = Stat {
        name: "/".into(),
        ..Stat::dont_touch()
    };
    let done = answer(&mut client, tag, Message::Rstat { stat });
    assert!(matches!(done, Some(Ok(Outcome::Stat(_)))));
}

#[test]
fn a_reply_of_the_wrong_type_fails_its_operation() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    client.stat(root, &mut out).unwrap();
    let done = answer(&mut client, tag_of(&out), Message::Rclunk);
    assert_eq!(
        done,
        Some(Err(Error::Protocol(ProtocolError::UnexpectedReply {
            expected: ninep::MessageType::Rstat,
            got: ninep::MessageType::Rclunk,
        })))
    );
    assert_eq!(client.tags_in_use(), 0);
    // A wrong answer to a walk frees the fid it had reserved.
    let mut out = Vec::new();
    client.walk(root, &["a"], &mut out).unwrap();
    assert_eq!(client.fids_in_use(), 2);
    answer(&mut client, tag_of(&out), Message::Rremove);
    assert_eq!(client.fids_in_use(), 1);
}

#[test]
fn a_t_message_as_a_reply_is_an_error() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    client.stat(root, &mut out).unwrap();
    let result = client.receive(
        &frame(tag_of(&out), Message::Tclunk { fid: 0 }),
        &mut Vec::new(),
    );
    assert_eq!(
        result,
        Err(ProtocolError::NotAReply(ninep::MessageType::Tclunk))
    );
    assert_eq!(client.outstanding(), 1);
}

#[test]
fn a_malformed_reply_on_a_known_tag_fails_its_operation() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    client.stat(root, &mut out).unwrap();
    let tag = tag_of(&out);
    // An Rstat whose stat is cut short.
    let mut bad = frame(
        tag,
        Message::Rstat {
            stat: Stat::dont_touch(),
        },
    );
    bad.truncate(bad.len() - 3);
    let size = bad.len() as u32;
    bad[..4].copy_from_slice(&size.to_le_bytes());
    let done = client.receive(&bad, &mut Vec::new()).unwrap().unwrap();
    assert!(matches!(
        done.result,
        Err(Error::Protocol(ProtocolError::Decode(_)))
    ));
    assert_eq!(client.tags_in_use(), 0);
    // Garbage with no usable tag is an error of its own.
    let result = client.receive(&[1, 2, 3], &mut Vec::new());
    assert!(matches!(result, Err(ProtocolError::Decode(_))));
}

#[test]
fn more_data_or_qids_than_asked_is_an_error() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    client.walk(root, &["a"], &mut out).unwrap();
    let wqids = vec![qid(2), qid(3)];
    let done = answer(&mut client, tag_of(&out), Message::Rwalk { wqids });
    assert!(matches!(
        done,
        Some(Err(Error::Protocol(ProtocolError::TooMuch { .. })))
    ));
    assert_eq!(client.fids_in_use(), 1);

    let mut out = Vec::new();
    client.walk(root, &[], &mut out).unwrap();
    let Some(Ok(Outcome::Walked { fid, .. })) =
        answer(&mut client, tag_of(&out), Message::Rwalk { wqids: vec![] })
    else {
        panic!("clone");
    };
    let mut out = Vec::new();
    client.read(fid, 0, 4, &mut out).unwrap();
    let data = vec![0; 5];
    let done = answer(&mut client, tag_of(&out), Message::Rread { data });
    assert!(matches!(
        done,
        Some(Err(Error::Protocol(ProtocolError::TooMuch { .. })))
    ));
    let mut out = Vec::new();
    client.write(fid, 0, b"abc", &mut out).unwrap();
    let done = answer(&mut client, tag_of(&out), Message::Rwrite { count: 9 });
    assert!(matches!(
        done,
        Some(Err(Error::Protocol(ProtocolError::TooMuch { .. })))
    ));
}

#[test]
fn an_rread_whose_count_disagrees_with_its_size_fails_the_read() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    client.read(root, 0, 10, &mut out).unwrap();
    let mut bytes = frame(tag_of(&out), Message::Rread { data: vec![7; 4] });
    bytes[7] = 3; // count[4] says 3; the frame carries 4
    let done = client
        .receive(&bytes, &mut Vec::new())
        .unwrap()
        .map(|c| c.result);
    assert!(matches!(done, Some(Err(Error::Protocol(_)))), "{done:?}");
    assert_eq!(client.tags_in_use(), 0);
}

#[test]
fn a_clunk_answered_with_an_error_still_frees_the_fid() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    client.clunk(root, &mut out).unwrap();
    // The fid is unusable at once.
    assert_eq!(
        client.stat(root, &mut Vec::new()),
        Err(Error::UnknownFid(root.number()))
    );
    let done = answer(
        &mut client,
        tag_of(&out),
        Message::Rerror {
            ename: "odd".into(),
        },
    );
    assert_eq!(done, Some(Err(Error::Server("odd".into()))));
    assert_eq!(client.fids_in_use(), 0);
}

#[test]
fn a_bad_rversion_is_refused() {
    let mut client = Client::new(8192);
    client.version(&mut Vec::new()).unwrap();
    let done = answer(
        &mut client,
        0xFFFF,
        Message::Rversion {
            msize: 8192,
            version: "unknown".into(),
        },
    );
    assert_eq!(
        done,
        Some(Err(Error::VersionRejected {
            version: "unknown".into()
        }))
    );
    assert!(!client.is_negotiated());
    client.version(&mut Vec::new()).unwrap();
    let done = answer(
        &mut client,
        0xFFFF,
        Message::Rversion {
            msize: 9000,
            version: "9P2000".into(),
        },
    );
    assert!(matches!(
        done,
        Some(Err(Error::Protocol(ProtocolError::BadMsize { .. })))
    ));
    assert!(!client.is_negotiated());
}

#[test]
fn an_error_to_a_tflush_leaves_the_request_waiting() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    let op = client.stat(root, &mut out).unwrap();
    let tag = tag_of(&out);
    let mut flush = Vec::new();
    client.flush(op, &mut flush).unwrap();
    let odd = Message::Rerror {
        ename: "no flush".into(),
    };
    assert_eq!(answer(&mut client, tag_of(&flush), odd), None);
    let stat = Stat {
        name: "/".into(),
        ..Stat::dont_touch()
    };
    let done = answer(&mut client, tag, Message::Rstat { stat });
    assert!(matches!(done, Some(Ok(Outcome::Stat(_)))));
    assert_eq!(client.tags_in_use(), 0);
}

#[test]
fn hanging_up_fails_everything_outstanding() {
    let (mut client, root) = ready();
    let mut out = Vec::new();
    let a = client.stat(root, &mut out).unwrap();
    let b = client.walk(root, &["x"], &mut out).unwrap();
    let mut done = client.hang_up();
    done.sort_by_key(|c| c.op);
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].op, done[1].op), (a, b));
    assert!(done.iter().all(|c| c.result == Err(Error::HungUp)));
    assert_eq!((client.tags_in_use(), client.fids_in_use()), (0, 0));
    assert!(!client.is_negotiated());
}

proptest! {
    /// An Rread of any length ends a one-part read with its bytes, or
    /// fails it if it carries more than was asked (read(5)).
    #[test]
    fn an_rread_ends_a_read_with_its_bytes(asked in 0u32..64, n in 0usize..70, fill: u8) {
        let (mut client, root) = ready();
        let mut out = Vec::new();
        client.read(root, 0, asked, &mut out).unwrap();
        let data = vec![fill; n];
        let done = answer(&mut client, tag_of(&out), Message::Rread { data: data.clone() });
        if n > asked as usize {
            let too_much = matches!(
                done,
                Some(Err(Error::Protocol(ProtocolError::TooMuch { .. })))
            );
            prop_assert!(too_much, "{:?}", done);
        } else {
            prop_assert_eq!(done, Some(Ok(Outcome::Read(data))));
        }
        prop_assert_eq!(client.tags_in_use(), 0);
    }

    /// Arbitrary bytes never panic the client, whatever is outstanding.
    #[test]
    fn random_bytes_never_panic(frames in prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..64), 1..8)
    ) {
        let (mut client, root) = ready();
        let mut out = Vec::new();
        client.stat(root, &mut out).unwrap();
        client.walk(root, &["a", "b"], &mut out).unwrap();
        for bytes in frames {
            let _ = client.receive(&bytes, &mut out);
        }
    }

    /// Well-formed replies of any type on any tag never panic the client
    /// and never leave it with more tags than requests.
    #[test]
    fn random_replies_never_panic(replies in prop::collection::vec(
        (0u16..4, 0usize..8, 0usize..4), 1..16)
    ) {
        let (mut client, root) = ready();
        let mut out = Vec::new();
        let op = client.read(root, 0, 100, &mut out).unwrap();
        client.walk(root, &["a", "b"], &mut out).unwrap();
        let _ = client.flush(op, &mut out);
        for (tag, kind, size) in replies {
            let message = match kind {
                0 => Message::Rflush,
                1 => Message::Rread { data: vec![1; size * 40] },
                2 => Message::Rwalk { wqids: (0..size as u64).map(qid).collect() },
                3 => Message::Rerror { ename: "no".into() },
                4 => Message::Rclunk,
                5 => Message::Rwrite { count: size as u32 },
                6 => Message::Rattach { qid: qid(9) },
                _ => Message::Rversion { msize: 100, version: "9P2000".into() },
            };
            let _ = client.receive(&frame(tag, message), &mut out);
            prop_assert!(client.tags_in_use() <= 3 + client.outstanding());
        }
    }
}
