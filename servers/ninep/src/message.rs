//! The 9P2000 message enum and its frame codec (intro(5) and friends).
//!
//! A frame is `size[4] type[1] tag[2]` then the message's fields, all
//! little-endian. [`Frame::decode`] takes exactly one frame and the maximum
//! size the caller accepts; [`frame_length`] finds frame boundaries in a
//! byte stream. Each arm cites the manual page that defines the message.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{DecodeError, EncodeError};
use crate::types::{FileMode, OpenMode, Qid, Stat};
use crate::wire::{Reader, Writer};
use crate::{HEADER_SIZE, MAXWELEM, QID_SIZE};

/// The type byte of every 9P2000 message (intro(5), fcall.h numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Tversion = 100,
    Rversion = 101,
    Tauth = 102,
    Rauth = 103,
    Tattach = 104,
    Rattach = 105,
    // 106 would be Terror, which intro(5) says does not exist.
    Rerror = 107,
    Tflush = 108,
    Rflush = 109,
    Twalk = 110,
    Rwalk = 111,
    Topen = 112,
    Ropen = 113,
    Tcreate = 114,
    Rcreate = 115,
    Tread = 116,
    Rread = 117,
    Twrite = 118,
    Rwrite = 119,
    Tclunk = 120,
    Rclunk = 121,
    Tremove = 122,
    Rremove = 123,
    Tstat = 124,
    Rstat = 125,
    Twstat = 126,
    Rwstat = 127,
}

impl MessageType {
    pub fn from_byte(kind: u8) -> Result<Self, DecodeError> {
        use MessageType::*;
        Ok(match kind {
            100 => Tversion,
            101 => Rversion,
            102 => Tauth,
            103 => Rauth,
            104 => Tattach,
            105 => Rattach,
            106 => return Err(DecodeError::Terror),
            107 => Rerror,
            108 => Tflush,
            109 => Rflush,
            110 => Twalk,
            111 => Rwalk,
            112 => Topen,
            113 => Ropen,
            114 => Tcreate,
            115 => Rcreate,
            116 => Tread,
            117 => Rread,
            118 => Twrite,
            119 => Rwrite,
            120 => Tclunk,
            121 => Rclunk,
            122 => Tremove,
            123 => Rremove,
            124 => Tstat,
            125 => Rstat,
            126 => Twstat,
            127 => Rwstat,
            kind => return Err(DecodeError::UnknownType { kind }),
        })
    }

    /// T-messages have even numbers, their replies the next odd one.
    pub fn is_request(self) -> bool {
        (self as u8) % 2 == 0
    }

    pub fn name(self) -> &'static str {
        use MessageType::*;
        match self {
            Tversion => "Tversion",
            Rversion => "Rversion",
            Tauth => "Tauth",
            Rauth => "Rauth",
            Tattach => "Tattach",
            Rattach => "Rattach",
            Rerror => "Rerror",
            Tflush => "Tflush",
            Rflush => "Rflush",
            Twalk => "Twalk",
            Rwalk => "Rwalk",
            Topen => "Topen",
            Ropen => "Ropen",
            Tcreate => "Tcreate",
            Rcreate => "Rcreate",
            Tread => "Tread",
            Rread => "Rread",
            Twrite => "Twrite",
            Rwrite => "Rwrite",
            Tclunk => "Tclunk",
            Rclunk => "Rclunk",
            Tremove => "Tremove",
            Rremove => "Rremove",
            Tstat => "Tstat",
            Rstat => "Rstat",
            Twstat => "Twstat",
            Rwstat => "Rwstat",
        }
    }
}

/// Every 9P2000 message, requests (T) and replies (R).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Tversion {
        msize: u32,
        version: String,
    },
    Rversion {
        msize: u32,
        version: String,
    },
    Tauth {
        afid: u32,
        uname: String,
        aname: String,
    },
    Rauth {
        aqid: Qid,
    },
    Tattach {
        fid: u32,
        afid: u32,
        uname: String,
        aname: String,
    },
    Rattach {
        qid: Qid,
    },
    Rerror {
        ename: String,
    },
    Tflush {
        oldtag: u16,
    },
    Rflush,
    Twalk {
        fid: u32,
        newfid: u32,
        wnames: Vec<String>,
    },
    Rwalk {
        wqids: Vec<Qid>,
    },
    Topen {
        fid: u32,
        mode: OpenMode,
    },
    Ropen {
        qid: Qid,
        iounit: u32,
    },
    Tcreate {
        fid: u32,
        name: String,
        perm: FileMode,
        mode: OpenMode,
    },
    Rcreate {
        qid: Qid,
        iounit: u32,
    },
    Tread {
        fid: u32,
        offset: u64,
        count: u32,
    },
    Rread {
        data: Vec<u8>,
    },
    Twrite {
        fid: u32,
        offset: u64,
        data: Vec<u8>,
    },
    Rwrite {
        count: u32,
    },
    Tclunk {
        fid: u32,
    },
    Rclunk,
    Tremove {
        fid: u32,
    },
    Rremove,
    Tstat {
        fid: u32,
    },
    Rstat {
        stat: Stat,
    },
    Twstat {
        fid: u32,
        stat: Stat,
    },
    Rwstat,
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        use Message as M;
        use MessageType as T;
        match self {
            M::Tversion { .. } => T::Tversion,
            M::Rversion { .. } => T::Rversion,
            M::Tauth { .. } => T::Tauth,
            M::Rauth { .. } => T::Rauth,
            M::Tattach { .. } => T::Tattach,
            M::Rattach { .. } => T::Rattach,
            M::Rerror { .. } => T::Rerror,
            M::Tflush { .. } => T::Tflush,
            M::Rflush => T::Rflush,
            M::Twalk { .. } => T::Twalk,
            M::Rwalk { .. } => T::Rwalk,
            M::Topen { .. } => T::Topen,
            M::Ropen { .. } => T::Ropen,
            M::Tcreate { .. } => T::Tcreate,
            M::Rcreate { .. } => T::Rcreate,
            M::Tread { .. } => T::Tread,
            M::Rread { .. } => T::Rread,
            M::Twrite { .. } => T::Twrite,
            M::Rwrite { .. } => T::Rwrite,
            M::Tclunk { .. } => T::Tclunk,
            M::Rclunk => T::Rclunk,
            M::Tremove { .. } => T::Tremove,
            M::Rremove => T::Rremove,
            M::Tstat { .. } => T::Tstat,
            M::Rstat { .. } => T::Rstat,
            M::Twstat { .. } => T::Twstat,
            M::Rwstat => T::Rwstat,
        }
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        use Message as M;
        match self {
            // version(5): size[4] Tversion tag[2] msize[4] version[s]
            M::Tversion { msize, version } | M::Rversion { msize, version } => {
                w.u32(*msize);
                w.string(version, "version")?;
            }
            // attach(5): size[4] Tauth tag[2] afid[4] uname[s] aname[s]
            M::Tauth { afid, uname, aname } => {
                w.u32(*afid);
                w.string(uname, "uname")?;
                w.string(aname, "aname")?;
            }
            // attach(5): size[4] Rauth tag[2] aqid[13]
            M::Rauth { aqid: qid } | M::Rattach { qid } => w.qid(qid),
            // attach(5): size[4] Tattach tag[2] fid[4] afid[4] uname[s] aname[s]
            M::Tattach {
                fid,
                afid,
                uname,
                aname,
            } => {
                w.u32(*fid);
                w.u32(*afid);
                w.string(uname, "uname")?;
                w.string(aname, "aname")?;
            }
            // error(5): size[4] Rerror tag[2] ename[s]
            M::Rerror { ename } => w.string(ename, "ename")?,
            // flush(5): size[4] Tflush tag[2] oldtag[2]
            M::Tflush { oldtag } => w.u16(*oldtag),
            // flush(5), clunk(5), remove(5), stat(5): replies with no fields
            M::Rflush | M::Rclunk | M::Rremove | M::Rwstat => {}
            // walk(5): size[4] Twalk tag[2] fid[4] newfid[4] nwname[2] nwname*(wname[s])
            M::Twalk {
                fid,
                newfid,
                wnames,
            } => {
                let count = walk_count(wnames.len())?;
                w.u32(*fid);
                w.u32(*newfid);
                w.u16(count);
                for name in wnames {
                    w.string(name, "wname")?;
                }
            }
            // walk(5): size[4] Rwalk tag[2] nwqid[2] nwqid*(wqid[13])
            M::Rwalk { wqids } => {
                w.u16(walk_count(wqids.len())?);
                for qid in wqids {
                    w.qid(qid);
                }
            }
            // open(5): size[4] Topen tag[2] fid[4] mode[1]
            M::Topen { fid, mode } => {
                w.u32(*fid);
                w.u8(mode.bits());
            }
            // open(5): size[4] Ropen tag[2] qid[13] iounit[4], Rcreate alike
            M::Ropen { qid, iounit } | M::Rcreate { qid, iounit } => {
                w.qid(qid);
                w.u32(*iounit);
            }
            // open(5): size[4] Tcreate tag[2] fid[4] name[s] perm[4] mode[1]
            M::Tcreate {
                fid,
                name,
                perm,
                mode,
            } => {
                w.u32(*fid);
                w.string(name, "name")?;
                w.u32(perm.bits());
                w.u8(mode.bits());
            }
            // read(5): size[4] Tread tag[2] fid[4] offset[8] count[4]
            M::Tread { fid, offset, count } => {
                w.u32(*fid);
                w.u64(*offset);
                w.u32(*count);
            }
            // read(5): size[4] Rread tag[2] count[4] data[count]
            M::Rread { data } => w.data(data)?,
            // read(5): size[4] Twrite tag[2] fid[4] offset[8] count[4] data[count]
            M::Twrite { fid, offset, data } => {
                w.u32(*fid);
                w.u64(*offset);
                w.data(data)?;
            }
            // read(5): size[4] Rwrite tag[2] count[4]
            M::Rwrite { count } => w.u32(*count),
            // clunk(5), remove(5), stat(5): size[4] Txxx tag[2] fid[4]
            M::Tclunk { fid } | M::Tremove { fid } | M::Tstat { fid } => w.u32(*fid),
            // stat(5): size[4] Rstat tag[2] stat[n] — n[2], then the stat,
            // which opens with its own size[2] (the doubled size).
            M::Rstat { stat } => encode_counted_stat(w, stat)?,
            // stat(5): size[4] Twstat tag[2] fid[4] stat[n]
            M::Twstat { fid, stat } => {
                w.u32(*fid);
                encode_counted_stat(w, stat)?;
            }
        }
        Ok(())
    }

    fn decode_body(kind: MessageType, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        use Message as M;
        use MessageType as T;
        Ok(match kind {
            // version(5)
            T::Tversion => M::Tversion {
                msize: r.u32("msize")?,
                version: r.string("version")?,
            },
            T::Rversion => M::Rversion {
                msize: r.u32("msize")?,
                version: r.string("version")?,
            },
            // attach(5)
            T::Tauth => M::Tauth {
                afid: r.u32("afid")?,
                uname: r.string("uname")?,
                aname: r.string("aname")?,
            },
            T::Rauth => M::Rauth {
                aqid: r.qid("aqid")?,
            },
            T::Tattach => M::Tattach {
                fid: r.u32("fid")?,
                afid: r.u32("afid")?,
                uname: r.string("uname")?,
                aname: r.string("aname")?,
            },
            T::Rattach => M::Rattach { qid: r.qid("qid")? },
            // error(5)
            T::Rerror => M::Rerror {
                ename: r.string("ename")?,
            },
            // flush(5)
            T::Tflush => M::Tflush {
                oldtag: r.u16("oldtag")?,
            },
            T::Rflush => M::Rflush,
            // walk(5): the count is checked against MAXWELEM before any
            // allocation, and each name against the bytes that remain.
            T::Twalk => {
                let fid = r.u32("fid")?;
                let newfid = r.u32("newfid")?;
                let count = r.u16("nwname")?;
                check_walk_count(count)?;
                let mut wnames = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    wnames.push(r.string("wname")?);
                }
                M::Twalk {
                    fid,
                    newfid,
                    wnames,
                }
            }
            T::Rwalk => {
                let count = r.u16("nwqid")?;
                check_walk_count(count)?;
                if r.remaining() < usize::from(count) * QID_SIZE {
                    return Err(DecodeError::Truncated { field: "wqid" });
                }
                let mut wqids = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    wqids.push(r.qid("wqid")?);
                }
                M::Rwalk { wqids }
            }
            // open(5)
            T::Topen => M::Topen {
                fid: r.u32("fid")?,
                mode: OpenMode::from_bits_retain(r.u8("mode")?),
            },
            T::Ropen => M::Ropen {
                qid: r.qid("qid")?,
                iounit: r.u32("iounit")?,
            },
            T::Tcreate => M::Tcreate {
                fid: r.u32("fid")?,
                name: r.string("name")?,
                perm: FileMode::from_bits_retain(r.u32("perm")?),
                mode: OpenMode::from_bits_retain(r.u8("mode")?),
            },
            T::Rcreate => M::Rcreate {
                qid: r.qid("qid")?,
                iounit: r.u32("iounit")?,
            },
            // read(5)
            T::Tread => M::Tread {
                fid: r.u32("fid")?,
                offset: r.u64("offset")?,
                count: r.u32("count")?,
            },
            T::Rread => M::Rread {
                data: read_data(r)?,
            },
            T::Twrite => M::Twrite {
                fid: r.u32("fid")?,
                offset: r.u64("offset")?,
                data: read_data(r)?,
            },
            T::Rwrite => M::Rwrite {
                count: r.u32("count")?,
            },
            // clunk(5)
            T::Tclunk => M::Tclunk { fid: r.u32("fid")? },
            T::Rclunk => M::Rclunk,
            // remove(5)
            T::Tremove => M::Tremove { fid: r.u32("fid")? },
            T::Rremove => M::Rremove,
            // stat(5)
            T::Tstat => M::Tstat { fid: r.u32("fid")? },
            T::Rstat => M::Rstat {
                stat: decode_counted_stat(r)?,
            },
            T::Twstat => M::Twstat {
                fid: r.u32("fid")?,
                stat: decode_counted_stat(r)?,
            },
            T::Rwstat => M::Rwstat,
        })
    }
}

fn walk_count(len: usize) -> Result<u16, EncodeError> {
    if len > MAXWELEM {
        return Err(EncodeError::TooManyWalkElements { count: len });
    }
    // MAXWELEM is 16, so the length fits.
    Ok(len as u16)
}

fn check_walk_count(count: u16) -> Result<(), DecodeError> {
    if usize::from(count) > MAXWELEM {
        return Err(DecodeError::TooManyWalkElements { count });
    }
    Ok(())
}

/// `count[4] data[count]`, with count checked against what remains.
fn read_data(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let count = r.u32("count")?;
    let count = usize::try_from(count).map_err(|_| DecodeError::Truncated { field: "data" })?;
    Ok(r.take(count, "data")?.to_vec())
}

/// stat(5): `n[2]` then a stat whose own size[2] must be exactly n - 2.
fn encode_counted_stat(w: &mut Writer<'_>, stat: &Stat) -> Result<(), EncodeError> {
    let len = stat.encoded_len();
    let n = u16::try_from(len).map_err(|_| EncodeError::StatTooLong { len })?;
    w.u16(n);
    stat.encode(w.out)
}

fn decode_counted_stat(r: &mut Reader<'_>) -> Result<Stat, DecodeError> {
    let outer = r.u16("stat count")?;
    let body = r.take(usize::from(outer), "stat")?;
    let inner = match body {
        [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
        _ => return Err(DecodeError::Truncated { field: "stat.size" }),
    };
    if u32::from(inner) + 2 != u32::from(outer) {
        return Err(DecodeError::StatSizeMismatch { outer, inner });
    }
    Stat::decode(body)
}

/// One message with its tag: what travels in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u16,
    pub message: Message,
}

impl Frame {
    pub fn new(tag: u16, message: Message) -> Self {
        Self { tag, message }
    }

    /// Appends `size[4] type[1] tag[2]` and the message (intro(5)).
    /// On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_unchecked(out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_unchecked(&self, out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
        // One allocation for the usual frame, not one per field that
        // outgrows the buffer: the fixed fields fit in 64 bytes.
        let bulk = match &self.message {
            Message::Twrite { data, .. } | Message::Rread { data } => data.len(),
            _ => 0,
        };
        out.reserve(64 + bulk);
        let mut w = Writer { out };
        w.u32(0);
        w.u8(self.message.message_type() as u8);
        w.u16(self.tag);
        self.message.encode_body(&mut w)?;
        let len = out.len() - start;
        let size = u32::try_from(len).map_err(|_| EncodeError::FrameTooLong { len })?;
        out[start..start + 4].copy_from_slice(&size.to_le_bytes());
        Ok(())
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Decodes exactly one frame. `max_size` is the largest frame the caller
    /// accepts: the negotiated msize, or the server's limit before Tversion.
    pub fn decode(frame: &[u8], max_size: u32) -> Result<Self, DecodeError> {
        let size = match frame_length(frame, max_size)? {
            Some(size) => size,
            None => return Err(DecodeError::ShortHeader { have: frame.len() }),
        };
        if size != frame.len() {
            return Err(DecodeError::SizeMismatch {
                size: u32::try_from(size).unwrap_or(u32::MAX),
                have: frame.len(),
            });
        }
        let mut r = Reader::new(&frame[4..]);
        let kind = MessageType::from_byte(r.u8("type")?)?;
        let tag = r.u16("tag")?;
        let message = Message::decode_body(kind, &mut r)?;
        r.finish(kind.name())?;
        Ok(Self { tag, message })
    }

    /// The tag of a frame whose header is intact, even if its body is not:
    /// lets a server answer a malformed request with an Rerror.
    pub fn peek_tag(frame: &[u8]) -> Option<u16> {
        let bytes = frame.get(5..HEADER_SIZE)?;
        Some(u16::from_le_bytes([bytes[0], bytes[1]]))
    }
}

/// How long the frame at the start of `stream` is, once its size field
/// has arrived: `Ok(None)` if fewer than 4 bytes are there yet, an error
/// if the size is impossible (below the 7-byte header) or above
/// `max_size`. The size is judged as soon as its 4 bytes are in, so a peer
/// that sends a bad size and then nothing is caught at once. The frame
/// itself, even its header, may not have arrived in full yet.
pub fn frame_length(stream: &[u8], max_size: u32) -> Result<Option<usize>, DecodeError> {
    // intro(5): "size[4]", the message's length in bytes including the
    // size field itself, little-endian.
    let Some(header) = stream.get(..4) else {
        return Ok(None);
    };
    let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if size < HEADER_SIZE as u32 {
        return Err(DecodeError::SizeTooSmall { size });
    }
    if size > max_size {
        return Err(DecodeError::TooLarge {
            size,
            max: max_size,
        });
    }
    usize::try_from(size)
        .map(Some)
        .map_err(|_| DecodeError::TooLarge {
            size,
            max: max_size,
        })
}
