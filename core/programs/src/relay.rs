//! What `srv`'s relay remembers of a 9P session, to dial again.
//!
//! The relay carries one request at a time from core's pipe to a TCP
//! connection and its answer back. When the connection fails (the network
//! VM restarted: `connection reset: network restarted`), the relay dials
//! again, and the new connection is a new 9P session with none of the old
//! one's fids. [`Tracker`] follows every request and answer, and
//! [`Tracker::replay`] gives the requests that rebuild the session on the
//! new connection by the rules core's own recovery follows (docs/core.md,
//! "Recovery"; version(5), attach(5), walk(5), open(5)):
//!
//! 1. Tversion with the client's msize and version;
//! 2. for every fid the client holds, in fid order, a Tattach of the same
//!    fid with the user and attach name it was attached with, a Twalk of
//!    it to itself along the names it was walked by (at most 16 a Twalk,
//!    walk(5)'s MAXWELEM), and a Topen with its open mode less OTRUNC and
//!    ORCLOSE (a truncation or remove-on-close was done once);
//! 3. the request under way when the connection failed is sent again if
//!    sending it twice does what sending it once does (a read, a write at
//!    its offset, a walk, a stat, a clunk, an open that changes nothing);
//!    otherwise (create, remove, wstat, an open with OTRUNC or ORCLOSE)
//!    the client gets Rerror `server restarted` for it, once.
//!
//! The client keeps its fids, so core's mounts go on as if nothing
//! happened. A fid whose file the new server lacks (its step fails) is
//! forgotten, and the server's "unknown fid" answers its later use.
//! Limits: a renamed file is walked by its new name only if the rename
//! was a wstat on the fid itself; a file the old server had in memory
//! only (a ramfs restarted) is gone.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use ninep::{Frame, Message, OpenMode, MAXWELEM};

/// The tag the relay's own requests use (the client's are answered
/// before any of them is sent).
pub const REPLAY_TAG: u16 = 0;

/// Why a request under way when the connection failed is not sent again.
pub const RESTARTED: &str = "server restarted";

/// How a client fid was made.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FidPath {
    uname: String,
    aname: String,
    names: Vec<String>,
    open: Option<OpenMode>,
}

/// A 9P session as the client built it, request by request.
#[derive(Debug, Default)]
pub struct Tracker {
    version: Option<(u32, String)>,
    fids: BTreeMap<u32, FidPath>,
    /// The request under way, decoded.
    pending: Option<Frame>,
}

/// What becomes of the request under way after the connection was made
/// again.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    /// Send it again.
    Send,
    /// Answer the client with this frame (Rerror `server restarted`).
    Answer(Vec<u8>),
    /// Nothing was under way.
    Nothing,
}

fn decode(frame: &[u8]) -> Result<Frame, String> {
    Frame::decode(frame, u32::MAX).map_err(|e| alloc::format!("not 9P: {e}"))
}

/// An open mode as a reopen uses it: less OTRUNC and ORCLOSE.
fn reopened(mode: OpenMode) -> OpenMode {
    mode - (OpenMode::OTRUNC | OpenMode::ORCLOSE)
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the client's T-message `frame`, now under way.
    pub fn request(&mut self, frame: &[u8]) -> Result<(), String> {
        self.pending = Some(decode(frame)?);
        Ok(())
    }

    /// Notes the server's answer to the request under way.
    pub fn answer(&mut self, frame: &[u8]) -> Result<(), String> {
        let answer = decode(frame)?.message;
        let Some(request) = self.pending.take() else {
            return Ok(());
        };
        let failed = matches!(answer, Message::Rerror { .. });
        match request.message {
            Message::Tversion { msize, version } if !failed => {
                self.fids.clear();
                self.version = Some((msize, version));
            }
            Message::Tattach {
                fid, uname, aname, ..
            } if !failed => {
                let path = FidPath {
                    uname,
                    aname,
                    names: Vec::new(),
                    open: None,
                };
                self.fids.insert(fid, path);
            }
            Message::Twalk {
                fid,
                newfid,
                wnames,
            } => {
                let whole =
                    matches!(&answer, Message::Rwalk { wqids } if wqids.len() == wnames.len());
                if let (true, Some(from)) = (whole, self.fids.get(&fid)) {
                    let mut path = from.clone();
                    for name in wnames {
                        if name == ".." {
                            path.names.pop();
                        } else {
                            path.names.push(name);
                        }
                    }
                    self.fids.insert(newfid, path);
                }
            }
            Message::Topen { fid, mode } if !failed => {
                if let Some(path) = self.fids.get_mut(&fid) {
                    path.open = Some(reopened(mode));
                }
            }
            Message::Tcreate {
                fid, name, mode, ..
            } if !failed => {
                if let Some(path) = self.fids.get_mut(&fid) {
                    path.names.push(name);
                    path.open = Some(reopened(mode));
                }
            }
            Message::Twstat { fid, stat } if !failed && !stat.name.is_empty() => {
                if let Some(last) = self.fids.get_mut(&fid).and_then(|p| p.names.last_mut()) {
                    *last = stat.name;
                }
            }
            // clunk(5), remove(5): the fid goes whatever the answer.
            Message::Tclunk { fid } | Message::Tremove { fid } => {
                self.fids.remove(&fid);
            }
            _ => {}
        }
        Ok(())
    }

    /// The requests that rebuild the session on a new connection, in
    /// order, with the fid each one's failure makes gone (none for the
    /// Tversion).
    pub fn replay(&self) -> Vec<(Option<u32>, Vec<u8>)> {
        let mut out = Vec::new();
        let Some((msize, version)) = &self.version else {
            return out;
        };
        let mut push = |fid: Option<u32>, message: Message| {
            if let Ok(bytes) = Frame::new(REPLAY_TAG, message).to_bytes() {
                out.push((fid, bytes));
            }
        };
        push(
            None,
            Message::Tversion {
                msize: *msize,
                version: version.clone(),
            },
        );
        for (&fid, path) in &self.fids {
            push(
                Some(fid),
                Message::Tattach {
                    fid,
                    afid: !0,
                    uname: path.uname.clone(),
                    aname: path.aname.clone(),
                },
            );
            for names in path.names.chunks(MAXWELEM) {
                push(
                    Some(fid),
                    Message::Twalk {
                        fid,
                        newfid: fid,
                        wnames: names.to_vec(),
                    },
                );
            }
            if let Some(mode) = path.open {
                push(Some(fid), Message::Topen { fid, mode });
            }
        }
        out
    }

    /// Whether `answer`, to a step of [`replay`](Self::replay) for `fid`,
    /// failed; the fid is then forgotten (its file is gone).
    pub fn replayed(&mut self, fid: Option<u32>, answer: &[u8]) -> bool {
        let failed = match decode(answer).map(|f| f.message) {
            Ok(Message::Rerror { .. }) | Err(_) => true,
            Ok(Message::Rwalk { wqids }) => wqids.is_empty(),
            Ok(_) => false,
        };
        if let (true, Some(fid)) = (failed, fid) {
            self.fids.remove(&fid);
        }
        failed
    }

    /// What to do with the request under way once the session is
    /// rebuilt.
    pub fn retry(&mut self) -> Retry {
        let Some(request) = &self.pending else {
            return Retry::Nothing;
        };
        let again = match &request.message {
            Message::Tcreate { .. } | Message::Tremove { .. } | Message::Twstat { .. } => false,
            Message::Topen { mode, .. } => !mode.intersects(OpenMode::OTRUNC | OpenMode::ORCLOSE),
            _ => true,
        };
        if again {
            return Retry::Send;
        }
        let tag = request.tag;
        self.pending = None;
        let error = Message::Rerror {
            ename: String::from(RESTARTED),
        };
        match Frame::new(tag, error).to_bytes() {
            Ok(bytes) => Retry::Answer(bytes),
            Err(_) => Retry::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ninep::{FileMode, Qid, QidType};

    fn bytes(tag: u16, message: Message) -> Vec<u8> {
        Frame::new(tag, message).to_bytes().unwrap()
    }

    fn qid(path: u64) -> Qid {
        Qid {
            kind: QidType::FILE,
            version: 0,
            path,
        }
    }

    /// The client's request and the server's answer.
    fn exchange(tracker: &mut Tracker, request: Message, answer: Message) {
        tracker.request(&bytes(7, request)).unwrap();
        tracker.answer(&bytes(7, answer)).unwrap();
    }

    /// A Tversion for 8216 bytes, answered with 8192.
    fn version(tracker: &mut Tracker) {
        exchange(
            tracker,
            Message::Tversion {
                msize: 8216,
                version: "9P2000".into(),
            },
            Message::Rversion {
                msize: 8192,
                version: "9P2000".into(),
            },
        );
    }

    fn session() -> Tracker {
        let mut t = Tracker::new();
        version(&mut t);
        exchange(
            &mut t,
            Message::Tattach {
                fid: 1,
                afid: !0,
                uname: "eve".into(),
                aname: "/".into(),
            },
            Message::Rattach { qid: qid(0) },
        );
        exchange(
            &mut t,
            Message::Twalk {
                fid: 1,
                newfid: 2,
                wnames: vec!["a".into(), "b".into()],
            },
            Message::Rwalk {
                wqids: vec![qid(1), qid(2)],
            },
        );
        exchange(
            &mut t,
            Message::Topen {
                fid: 2,
                mode: OpenMode::OREAD | OpenMode::OTRUNC,
            },
            Message::Ropen {
                qid: qid(2),
                iounit: 0,
            },
        );
        t
    }

    fn messages(replay: &[(Option<u32>, Vec<u8>)]) -> Vec<(Option<u32>, Message)> {
        replay
            .iter()
            .map(|(fid, b)| (*fid, Frame::decode(b, u32::MAX).unwrap().message))
            .collect()
    }

    #[test]
    fn the_replay_attaches_walks_and_opens_every_fid_again() {
        let t = session();
        let replay = messages(&t.replay());
        let attach = |fid| Message::Tattach {
            fid,
            afid: !0,
            uname: "eve".into(),
            aname: "/".into(),
        };
        assert_eq!(
            replay,
            vec![
                (
                    None,
                    Message::Tversion {
                        msize: 8216,
                        version: "9P2000".into()
                    }
                ),
                (Some(1), attach(1)),
                (Some(2), attach(2)),
                (
                    Some(2),
                    Message::Twalk {
                        fid: 2,
                        newfid: 2,
                        wnames: vec!["a".into(), "b".into()]
                    }
                ),
                (
                    Some(2),
                    Message::Topen {
                        fid: 2,
                        mode: OpenMode::OREAD
                    }
                ),
            ]
        );
    }

    #[test]
    fn failed_walks_clunks_and_a_version_change_the_fids() {
        let mut t = session();
        // A partial walk makes no fid.
        exchange(
            &mut t,
            Message::Twalk {
                fid: 1,
                newfid: 3,
                wnames: vec!["a".into(), "x".into()],
            },
            Message::Rwalk {
                wqids: vec![qid(1)],
            },
        );
        exchange(
            &mut t,
            Message::Tclunk { fid: 1 },
            Message::Rerror {
                ename: "whatever".into(),
            },
        );
        let fids: Vec<_> = messages(&t.replay())
            .into_iter()
            .filter_map(|(fid, _)| fid)
            .collect();
        assert_eq!(fids, [2, 2, 2]);
        // A created file is walked to by its name and opened again.
        exchange(
            &mut t,
            Message::Tcreate {
                fid: 2,
                name: "c".into(),
                perm: FileMode::from_bits_retain(0o644),
                mode: OpenMode::ORDWR,
            },
            Message::Rcreate {
                qid: qid(9),
                iounit: 0,
            },
        );
        let replay = messages(&t.replay());
        assert!(replay.contains(&(
            Some(2),
            Message::Twalk {
                fid: 2,
                newfid: 2,
                wnames: vec!["a".into(), "b".into(), "c".into()]
            }
        )));
        version(&mut t);
        assert_eq!(t.replay().len(), 1);
    }

    #[test]
    fn a_reply_that_failed_forgets_its_fid() {
        let mut t = session();
        let error = bytes(
            0,
            Message::Rerror {
                ename: "gone".into(),
            },
        );
        assert!(t.replayed(Some(2), &error));
        assert!(!t.replayed(Some(1), &bytes(0, Message::Rclunk)));
        assert!(messages(&t.replay()).iter().all(|(fid, _)| *fid != Some(2)));
    }

    #[test]
    fn reads_are_sent_again_and_creates_fail_once() {
        let mut t = session();
        assert_eq!(t.retry(), Retry::Nothing);
        let read = Message::Tread {
            fid: 2,
            offset: 4096,
            count: 4096,
        };
        t.request(&bytes(5, read)).unwrap();
        assert_eq!(t.retry(), Retry::Send);
        let create = Message::Tcreate {
            fid: 1,
            name: "n".into(),
            perm: FileMode::from_bits_retain(0o644),
            mode: OpenMode::OWRITE,
        };
        t.request(&bytes(6, create)).unwrap();
        assert_eq!(
            t.retry(),
            Retry::Answer(bytes(
                6,
                Message::Rerror {
                    ename: RESTARTED.into()
                }
            ))
        );
        assert_eq!(t.retry(), Retry::Nothing);
        assert!(t.request(&[1, 2, 3]).is_err());
    }
}
