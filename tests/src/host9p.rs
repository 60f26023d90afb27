//! A 9P2000 client on the host, over TCP: the tests' own peer of a 9P
//! server reached through the loopback (Kasane's exportfs through
//! slirp's forwarding, or the host's `kasane-ramfs`).
//!
//! One request at a time, each on a tag of its own (intro(5): a tag is
//! never NOTAG except a Tversion's). `rpc` hands back whatever the server
//! answered, an Rerror included, so hostile-input tests can check it; the
//! file helpers turn an Rerror into an error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ninep::{FileMode, Frame, Message, OpenMode, NOFID, NOTAG};

/// The fid the file helpers walk to and release again.
const SCRATCH_FID: u32 = 0xFFFF_0000;

/// Bytes of file data a helper reads or writes with one request.
const PIECE: u32 = 4096;

/// A 9P session with a server on the host's loopback.
#[derive(Debug)]
pub struct HostClient {
    stream: TcpStream,
    tag: u16,
    msize: u32,
}

impl HostClient {
    /// Connects to `127.0.0.1:port` and negotiates 9P2000 with `msize`,
    /// waiting at most `patience` for each answer.
    pub fn connect(port: u16, msize: u32, patience: Duration) -> Result<HostClient, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(patience))
            .map_err(|e| e.to_string())?;
        let mut client = HostClient {
            stream,
            tag: NOTAG,
            msize,
        };
        // version(5): a Tversion goes with NOTAG.
        let version = Message::Tversion {
            msize,
            version: "9P2000".into(),
        };
        let frame = Frame::new(NOTAG, version)
            .to_bytes()
            .map_err(|e| format!("{e:?}"))?;
        match client.exchange(&frame)? {
            Message::Rversion { msize, version } if version == "9P2000" => {
                client.msize = client.msize.min(msize);
                Ok(client)
            }
            other => Err(format!("version: {other:?}")),
        }
    }

    /// How long each later answer may take.
    pub fn set_patience(&mut self, patience: Duration) -> Result<(), String> {
        self.stream
            .set_read_timeout(Some(patience))
            .map_err(|e| e.to_string())
    }

    /// A fresh tag for the next request (never NOTAG).
    pub fn next_tag(&mut self) -> u16 {
        self.tag = self.tag.wrapping_add(1) % NOTAG;
        self.tag
    }

    /// Sends `message` on a fresh tag; the server's answer, whatever it is.
    pub fn rpc(&mut self, message: Message) -> Result<Message, String> {
        let tag = self.next_tag();
        let frame = Frame::new(tag, message)
            .to_bytes()
            .map_err(|e| format!("{e:?}"))?;
        self.exchange(&frame)
    }

    /// Sends the bytes `frame` as they are (a test may send a malformed
    /// message) and reads one answer, which must carry the last tag
    /// [`next_tag`](Self::next_tag) gave.
    pub fn exchange(&mut self, frame: &[u8]) -> Result<Message, String> {
        self.stream.write_all(frame).map_err(|e| e.to_string())?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| e.to_string())?;
        // intro(5): size[4] counts itself; at least size, type and tag.
        let size = u32::from_le_bytes(size);
        if !(ninep::HEADER_SIZE as u32..=self.msize).contains(&size) {
            return Err(format!("a reply of {size} bytes"));
        }
        let mut reply = size.to_le_bytes().to_vec();
        reply.resize(size as usize, 0);
        self.stream
            .read_exact(&mut reply[4..])
            .map_err(|e| e.to_string())?;
        let reply = Frame::decode(&reply, self.msize).map_err(|e| format!("{e:?}"))?;
        if reply.tag != self.tag {
            return Err(format!("tag {} for {}", reply.tag, self.tag));
        }
        Ok(reply.message)
    }

    /// `rpc`, with an Rerror as an error naming `what`.
    fn call(&mut self, what: &str, message: Message) -> Result<Message, String> {
        match self.rpc(message)? {
            Message::Rerror { ename } => Err(format!("{what}: {ename}")),
            answer => Ok(answer),
        }
    }

    /// Attaches `fid` to the root of the tree `aname` as `uname`.
    pub fn attach(&mut self, fid: u32, uname: &str, aname: &str) -> Result<(), String> {
        let attach = Message::Tattach {
            fid,
            afid: NOFID,
            uname: uname.into(),
            aname: aname.into(),
        };
        match self.call("attach", attach)? {
            Message::Rattach { .. } => Ok(()),
            other => Err(format!("attach: {other:?}")),
        }
    }

    /// The whole file `name` of the directory `dir` (a fid).
    pub fn read_file(&mut self, dir: u32, name: &str) -> Result<Vec<u8>, String> {
        self.walk_to(dir, name)?;
        let result = self.read_scratch(name);
        self.call("clunk", Message::Tclunk { fid: SCRATCH_FID })?;
        result
    }

    fn read_scratch(&mut self, name: &str) -> Result<Vec<u8>, String> {
        let open = Message::Topen {
            fid: SCRATCH_FID,
            mode: OpenMode::OREAD,
        };
        self.call(&format!("open {name}"), open)?;
        let mut data = Vec::new();
        loop {
            let read = Message::Tread {
                fid: SCRATCH_FID,
                offset: data.len() as u64,
                count: PIECE,
            };
            match self.call(&format!("read {name}"), read)? {
                Message::Rread { data: piece } if piece.is_empty() => return Ok(data),
                Message::Rread { data: piece } => data.extend_from_slice(&piece),
                other => return Err(format!("read {name}: {other:?}")),
            }
        }
    }

    /// Creates `name` in the directory `dir` (a fid) holding `data`.
    pub fn write_file(&mut self, dir: u32, name: &str, data: &[u8]) -> Result<(), String> {
        let clone = Message::Twalk {
            fid: dir,
            newfid: SCRATCH_FID,
            wnames: Vec::new(),
        };
        self.call("walk", clone)?;
        let result = self.write_scratch(name, data);
        self.call("clunk", Message::Tclunk { fid: SCRATCH_FID })?;
        result
    }

    fn write_scratch(&mut self, name: &str, data: &[u8]) -> Result<(), String> {
        let create = Message::Tcreate {
            fid: SCRATCH_FID,
            name: name.into(),
            perm: FileMode::from_bits_retain(0o664),
            mode: OpenMode::OWRITE,
        };
        self.call(&format!("create {name}"), create)?;
        for (n, piece) in data.chunks(PIECE as usize).enumerate() {
            let write = Message::Twrite {
                fid: SCRATCH_FID,
                offset: (n * PIECE as usize) as u64,
                data: piece.to_vec(),
            };
            self.call(&format!("write {name}"), write)?;
        }
        Ok(())
    }

    /// Walks the scratch fid from `dir` to `name`.
    fn walk_to(&mut self, dir: u32, name: &str) -> Result<(), String> {
        let walk = Message::Twalk {
            fid: dir,
            newfid: SCRATCH_FID,
            wnames: vec![name.into()],
        };
        match self.call(&format!("walk to {name}"), walk)? {
            Message::Rwalk { wqids } if wqids.len() == 1 => Ok(()),
            other => Err(format!("walk to {name}: {other:?}")),
        }
    }
}
