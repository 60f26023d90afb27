//! Codec tests: exact bytes for each rule, and proptest round trips.

use ninep::{
    frame_length, DecodeError, EncodeError, FileMode, Frame, Message, OpenMode, Qid, QidType,
    Rread, Stat, Tread, NOFID,
};
use proptest::prelude::*;

const MAX: u32 = 1 << 20;

fn frame(kind: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let size = (7 + body.len()) as u32;
    let mut v = size.to_le_bytes().to_vec();
    v.push(kind);
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn tversion_bytes() {
    let bytes = frame(100, 0xFFFF, b"\x00\x20\x00\x00\x06\x009P2000");
    let decoded = Frame::decode(&bytes, MAX).unwrap();
    assert_eq!(
        decoded,
        Frame::new(
            0xFFFF,
            Message::Tversion {
                msize: 8192,
                version: "9P2000".into()
            }
        )
    );
    assert_eq!(decoded.to_bytes().unwrap(), bytes);
}

#[test]
fn terror_is_illegal() {
    let bytes = frame(106, 1, b"\x02\x00hi");
    assert_eq!(Frame::decode(&bytes, MAX), Err(DecodeError::Terror));
}

#[test]
fn unknown_types_are_rejected() {
    for kind in [0u8, 99, 128, 255] {
        assert_eq!(
            Frame::decode(&frame(kind, 1, b""), MAX),
            Err(DecodeError::UnknownType { kind })
        );
    }
}

#[test]
fn short_frames() {
    assert_eq!(
        Frame::decode(&[1, 0, 0], MAX),
        Err(DecodeError::ShortHeader { have: 3 })
    );
    assert_eq!(
        Frame::decode(&[3, 0, 0, 0, 120, 0, 0], MAX),
        Err(DecodeError::SizeTooSmall { size: 3 })
    );
    assert_eq!(frame_length(&[0, 1, 0], MAX), Ok(None));
    // The size is judged once its 4 bytes are in, before the rest of
    // the header: a peer that sends a bad size and stops is caught.
    assert_eq!(
        frame_length(&[3, 0, 0, 0], MAX),
        Err(DecodeError::SizeTooSmall { size: 3 })
    );
    assert_eq!(
        frame_length(&[0, 0, 1, 0], 8192),
        Err(DecodeError::TooLarge {
            size: 0x1_0000,
            max: 8192
        })
    );
    // A good size with the header still to come: the length, which the
    // caller waits for.
    assert_eq!(frame_length(&[9, 0, 0, 0], MAX), Ok(Some(9)));
    assert_eq!(
        Frame::decode(&[9, 0, 0, 0, 120], MAX),
        Err(DecodeError::SizeMismatch { size: 9, have: 5 })
    );
}

#[test]
fn oversized_frames() {
    let bytes = frame(120, 1, &[1, 0, 0, 0]);
    assert_eq!(
        Frame::decode(&bytes, 10),
        Err(DecodeError::TooLarge { size: 11, max: 10 })
    );
    // The size field alone is enough to refuse a huge frame.
    assert_eq!(
        frame_length(&[0xff, 0xff, 0xff, 0x7f, 100, 0, 0], 8192),
        Err(DecodeError::TooLarge {
            size: 0x7fff_ffff,
            max: 8192
        })
    );
}

#[test]
fn size_mismatch() {
    let mut bytes = frame(120, 1, &[1, 0, 0, 0]);
    bytes.push(0);
    assert_eq!(
        Frame::decode(&bytes, MAX),
        Err(DecodeError::SizeMismatch { size: 11, have: 12 })
    );
}

#[test]
fn trailing_garbage() {
    let bytes = frame(120, 1, &[1, 0, 0, 0, 9]);
    assert_eq!(
        Frame::decode(&bytes, MAX),
        Err(DecodeError::TrailingBytes {
            message: "Tclunk",
            extra: 1
        })
    );
}

#[test]
fn truncated_fields() {
    assert_eq!(
        Frame::decode(&frame(120, 1, &[1, 0]), MAX),
        Err(DecodeError::Truncated { field: "fid" })
    );
    // A string whose length runs past the end.
    assert_eq!(
        Frame::decode(&frame(107, 1, b"\x09\x00abc"), MAX),
        Err(DecodeError::Truncated { field: "ename" })
    );
    // A huge data count must not allocate: it is checked against the rest.
    assert_eq!(
        Frame::decode(&frame(117, 1, &[0xff, 0xff, 0xff, 0xff, 1]), MAX),
        Err(DecodeError::Truncated { field: "data" })
    );
    // An Rwalk claiming 16 qids with none present.
    assert_eq!(
        Frame::decode(&frame(111, 1, &[16, 0]), MAX),
        Err(DecodeError::Truncated { field: "wqid" })
    );
}

#[test]
fn walk_limit() {
    let mut body = vec![1, 0, 0, 0, 2, 0, 0, 0, 17, 0];
    for _ in 0..17 {
        body.extend_from_slice(b"\x01\x00a");
    }
    assert_eq!(
        Frame::decode(&frame(110, 1, &body), MAX),
        Err(DecodeError::TooManyWalkElements { count: 17 })
    );
    let names = vec!["a".to_string(); 17];
    let too_many = Frame::new(
        1,
        Message::Twalk {
            fid: 1,
            newfid: 2,
            wnames: names,
        },
    );
    assert_eq!(
        too_many.to_bytes(),
        Err(EncodeError::TooManyWalkElements { count: 17 })
    );
}

#[test]
fn strings_must_be_utf8_without_nul() {
    assert_eq!(
        Frame::decode(&frame(107, 1, b"\x02\x00a\x00"), MAX),
        Err(DecodeError::NulInString { field: "ename" })
    );
    assert_eq!(
        Frame::decode(&frame(107, 1, b"\x02\x00\xff\xfe"), MAX),
        Err(DecodeError::InvalidUtf8 { field: "ename" })
    );
    let nul = Frame::new(
        1,
        Message::Rerror {
            ename: "a\0".into(),
        },
    );
    assert_eq!(
        nul.to_bytes(),
        Err(EncodeError::NulInString { field: "ename" })
    );
}

fn sample_stat() -> Stat {
    Stat {
        kind: 0,
        dev: 0,
        qid: Qid {
            kind: QidType::FILE,
            version: 3,
            path: 42,
        },
        mode: FileMode::from_bits_retain(0o644),
        atime: 10,
        mtime: 20,
        length: 5,
        name: "f".into(),
        uid: "u".into(),
        gid: "g".into(),
        muid: "m".into(),
    }
}

#[test]
fn rstat_carries_the_doubled_size() {
    let stat = sample_stat();
    let bytes = Frame::new(7, Message::Rstat { stat: stat.clone() })
        .to_bytes()
        .unwrap();
    // size[4] type[1] tag[2] n[2] size[2] ...: n = stat size + 2.
    let n = u16::from_le_bytes([bytes[7], bytes[8]]);
    let inner = u16::from_le_bytes([bytes[9], bytes[10]]);
    assert_eq!(n, inner + 2);
    assert_eq!(usize::from(n), stat.encoded_len());
    assert_eq!(bytes.len(), 9 + usize::from(n));
}

#[test]
fn inconsistent_stat_sizes_are_rejected() {
    let stat = sample_stat();
    let mut bytes = Frame::new(7, Message::Rstat { stat }).to_bytes().unwrap();
    // Make the inner size disagree with n.
    bytes[9] = bytes[9].wrapping_sub(1);
    assert!(matches!(
        Frame::decode(&bytes, MAX),
        Err(DecodeError::StatSizeMismatch { .. })
    ));
    // A stat too short for its fixed fields.
    let short = frame(125, 1, &[4, 0, 2, 0, 0, 0]);
    assert_eq!(
        Frame::decode(&short, MAX),
        Err(DecodeError::StatTooShort { size: 2 })
    );
}

#[test]
fn directory_data_decodes_entry_by_entry() {
    let mut data = Vec::new();
    sample_stat().encode(&mut data).unwrap();
    sample_stat().encode(&mut data).unwrap();
    assert_eq!(Stat::decode_directory(&data).unwrap().len(), 2);
    data.pop();
    assert!(Stat::decode_directory(&data).is_err());
}

#[test]
fn open_mode_access() {
    assert!(OpenMode::OREAD.can_read() && !OpenMode::OREAD.can_write());
    assert!(OpenMode::OWRITE.can_write() && !OpenMode::OWRITE.can_read());
    assert!(OpenMode::ORDWR.can_write() && OpenMode::ORDWR.can_read());
    assert_eq!(OpenMode::OEXEC.bits(), 3);
    assert_eq!(FileMode::DMDIR.qid_type(), QidType::DIR);
    assert_eq!(NOFID, u32::MAX);
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._ é-]{0,24}"
}

fn qid() -> impl Strategy<Value = Qid> {
    (any::<u8>(), any::<u32>(), any::<u64>()).prop_map(|(k, version, path)| Qid {
        kind: QidType::from_bits_retain(k),
        version,
        path,
    })
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        (any::<u16>(), any::<u32>(), qid(), any::<u32>()),
        (any::<u32>(), any::<u32>(), any::<u64>()),
        (name(), name(), name(), name()),
    )
        .prop_map(
            |((kind, dev, qid, mode), (atime, mtime, length), (n, u, g, m))| Stat {
                kind,
                dev,
                qid,
                mode: FileMode::from_bits_retain(mode),
                atime,
                mtime,
                length,
                name: n,
                uid: u,
                gid: g,
                muid: m,
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    use Message as M;
    let data = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        (any::<u32>(), name()).prop_map(|(msize, version)| M::Tversion { msize, version }),
        (any::<u32>(), name()).prop_map(|(msize, version)| M::Rversion { msize, version }),
        (any::<u32>(), name(), name()).prop_map(|(afid, uname, aname)| M::Tauth {
            afid,
            uname,
            aname
        }),
        qid().prop_map(|aqid| M::Rauth { aqid }),
        (any::<u32>(), any::<u32>(), name(), name()).prop_map(|(fid, afid, uname, aname)| {
            M::Tattach {
                fid,
                afid,
                uname,
                aname,
            }
        }),
        qid().prop_map(|qid| M::Rattach { qid }),
        name().prop_map(|ename| M::Rerror { ename }),
        any::<u16>().prop_map(|oldtag| M::Tflush { oldtag }),
        Just(M::Rflush),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(name(), 0..=16)
        )
            .prop_map(|(fid, newfid, wnames)| M::Twalk {
                fid,
                newfid,
                wnames
            }),
        proptest::collection::vec(qid(), 0..=16).prop_map(|wqids| M::Rwalk { wqids }),
        (any::<u32>(), any::<u8>()).prop_map(|(fid, m)| M::Topen {
            fid,
            mode: OpenMode::from_bits_retain(m)
        }),
        (qid(), any::<u32>()).prop_map(|(qid, iounit)| M::Ropen { qid, iounit }),
        (any::<u32>(), name(), any::<u32>(), any::<u8>()).prop_map(|(fid, name, p, m)| {
            M::Tcreate {
                fid,
                name,
                perm: FileMode::from_bits_retain(p),
                mode: OpenMode::from_bits_retain(m),
            }
        }),
        (qid(), any::<u32>()).prop_map(|(qid, iounit)| M::Rcreate { qid, iounit }),
        (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(fid, offset, count)| M::Tread {
            fid,
            offset,
            count
        }),
        data.clone().prop_map(|data| M::Rread { data }),
        (any::<u32>(), any::<u64>(), data).prop_map(|(fid, offset, data)| M::Twrite {
            fid,
            offset,
            data
        }),
        any::<u32>().prop_map(|count| M::Rwrite { count }),
        any::<u32>().prop_map(|fid| M::Tclunk { fid }),
        Just(M::Rclunk),
        any::<u32>().prop_map(|fid| M::Tremove { fid }),
        Just(M::Rremove),
        any::<u32>().prop_map(|fid| M::Tstat { fid }),
        stat().prop_map(|stat| M::Rstat { stat }),
        (any::<u32>(), stat()).prop_map(|(fid, stat)| M::Twstat { fid, stat }),
        Just(M::Rwstat),
    ]
}

proptest! {
    #[test]
    fn round_trip(tag in any::<u16>(), msg in message()) {
        let frame = Frame::new(tag, msg);
        let bytes = frame.to_bytes().unwrap();
        prop_assert_eq!(frame_length(&bytes, MAX).unwrap(), Some(bytes.len()));
        prop_assert_eq!(Frame::decode(&bytes, MAX).unwrap(), frame);
    }

    #[test]
    fn every_truncation_is_an_error(tag in any::<u16>(), msg in message(), cut in any::<prop::sample::Index>()) {
        let bytes = Frame::new(tag, msg).to_bytes().unwrap();
        let cut = cut.index(bytes.len());
        // Keep the size field honest so the body itself is short.
        let mut short = bytes[..cut].to_vec();
        if short.len() >= 4 {
            let len = short.len() as u32;
            short[..4].copy_from_slice(&len.to_le_bytes());
        }
        prop_assert!(Frame::decode(&short, MAX).is_err());
    }

    #[test]
    fn trailing_bytes_are_an_error(tag in any::<u16>(), msg in message(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = Frame::new(tag, msg).to_bytes().unwrap();
        bytes.extend_from_slice(&extra);
        let len = bytes.len() as u32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        prop_assert!(Frame::decode(&bytes, MAX).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 0u32..2048) {
        let _ = Frame::decode(&bytes, max);
        let _ = frame_length(&bytes, max);
        let _ = Stat::decode_directory(&bytes);
    }

    #[test]
    fn framed_arbitrary_bodies_never_panic(kind in 100u8..128, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Frame::decode(&frame(kind, 1, &body), MAX);
    }

    // The in-place Tread and Rread (ninep::inplace) against Message.

    #[test]
    fn in_place_reads_agree_with_frame_decode(tag in any::<u16>(), msg in message(), max in 0u32..400) {
        let bytes = Frame::new(tag, msg.clone()).to_bytes().unwrap();
        let tread = match msg {
            Message::Tread { fid, offset, count } => Some(Tread { tag, fid, offset, count }),
            _ => None,
        };
        prop_assert_eq!(Tread::decode(&bytes), tread);
        let rread = match (&msg, Frame::decode(&bytes, max)) {
            (Message::Rread { data }, Ok(_)) => Some(Rread { tag, data }),
            _ => None,
        };
        prop_assert_eq!(Rread::decode(&bytes, max), rread);
    }

    #[test]
    fn in_place_reads_of_any_body_agree_with_frame_decode(kind in 115u8..=118, tag in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..40), max in 0u32..64) {
        let bytes = frame(kind, tag, &body);
        let tread = match Frame::decode(&bytes, MAX) {
            Ok(Frame { tag, message: Message::Tread { fid, offset, count } }) => {
                Some(Tread { tag, fid, offset, count })
            }
            _ => None,
        };
        prop_assert_eq!(Tread::decode(&bytes), tread);
        let decoded = Frame::decode(&bytes, max);
        let rread = match &decoded {
            Ok(Frame { tag, message: Message::Rread { data } }) => Some(Rread { tag: *tag, data }),
            _ => None,
        };
        prop_assert_eq!(Rread::decode(&bytes, max), rread);
    }

    #[test]
    fn a_tread_encodes_as_its_message(tag in any::<u16>(), fid in any::<u32>(), offset in any::<u64>(), count in any::<u32>()) {
        let mut out = Vec::new();
        Tread { tag, fid, offset, count }.encode(&mut out);
        let message = Message::Tread { fid, offset, count };
        prop_assert_eq!(out, Frame::new(tag, message).to_bytes().unwrap());
    }

    #[test]
    fn an_rread_written_in_place_encodes_as_its_message(tag in any::<u16>(), before in proptest::collection::vec(any::<u8>(), 0..16), data in proptest::collection::vec(any::<u8>(), 0..300), limit in 0u32..400) {
        let mut out = before.clone();
        let start = Rread::begin(&mut out);
        out.extend_from_slice(&data);
        let n = start.finish(&mut out, tag, limit);
        let kept = data[..data.len().min(limit as usize)].to_vec();
        prop_assert_eq!(n as usize, kept.len());
        prop_assert_eq!(&out[..before.len()], &before[..]);
        let expected = Frame::new(tag, Message::Rread { data: kept }).to_bytes().unwrap();
        prop_assert_eq!(&out[before.len()..], &expected[..]);
    }

    #[test]
    fn an_rread_in_place_is_bounded_by_the_msize(tag in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..300), slack in -2i64..=2) {
        let bytes = Frame::new(tag, Message::Rread { data: data.clone() }).to_bytes().unwrap();
        let max = (bytes.len() as i64 + slack) as u32;
        let expected = (slack >= 0).then_some(Rread { tag, data: &data });
        prop_assert_eq!(Rread::decode(&bytes, max), expected);
        prop_assert_eq!(Frame::decode(&bytes, max).is_ok(), slack >= 0);
    }
}
