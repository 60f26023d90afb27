//! 9P channels on the link: 9P2000 streams carried in `Ninep` frames.
//!
//! A channel is named by the request id of the frames that carry it, and
//! is opened by its first bytes. Its bytes are one 9P stream cut anywhere:
//! this module joins them into 9P messages by their `size[4]` field, hands
//! each to the channel's `Session`, and cuts the replies back into pieces
//! that fit a frame. A stream whose framing breaks (a size below 7 or above
//! the msize) cannot be resynchronised: the channel is closed and the peer
//! told so; other channels carry on.
//!
//! Memory is bounded: at most `MAX_CHANNELS` channels, each buffering at
//! most one message of its msize.

use std::collections::BTreeMap;
use std::path::Path;

use ninep::frame_length;
use ninep_server::Session;

use crate::linuxfs::{LinuxFs, Names};

/// How many channels may be open at once.
pub const MAX_CHANNELS: usize = 64;

/// The largest 9P message a channel takes: 8 KiB of data and its header.
pub const MSIZE: u32 = 8192 + ninep::IOHDRSZ;

/// The most 9P bytes one `Ninep` frame carries (its payload has a `u16`
/// count before them).
pub const PIECE: usize = bridge_protocol::MAX_PAYLOAD_LEN - 2;

struct Channel {
    session: Session<LinuxFs>,
    buffer: Vec<u8>,
}

/// Every open channel, over one Linux file tree.
#[derive(Debug)]
pub struct Channels {
    fs: LinuxFs,
    open: BTreeMap<u32, Channel>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("session", &self.session)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl Channels {
    /// Channels serving the tree under `top`, owners named from `names`.
    pub fn new(top: &Path, names: Names) -> std::io::Result<Channels> {
        Ok(Channels {
            fs: LinuxFs::new(top, names)?,
            open: BTreeMap::new(),
        })
    }

    /// Leaves `path` out of the tree served (`LinuxFs::hide`).
    pub fn hide(&mut self, path: &Path) {
        self.fs.hide(path);
    }

    /// How many channels are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no channel is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Takes `data` for `channel` and returns the 9P reply bytes to send
    /// on it, or why the channel was closed.
    pub fn feed(&mut self, channel: u32, data: &[u8]) -> Result<Vec<u8>, String> {
        if !self.open.contains_key(&channel) {
            if self.open.len() >= MAX_CHANNELS {
                return Err(format!("too many 9P channels (at most {MAX_CHANNELS})"));
            }
            let opened = Channel {
                session: Session::new(MSIZE),
                buffer: Vec::new(),
            };
            self.open.insert(channel, opened);
        }
        let Some(state) = self.open.get_mut(&channel) else {
            return Err("9P channel vanished".into());
        };
        state.buffer.extend_from_slice(data);
        let mut replies = Vec::new();
        let mut failure = None;
        let mut start = 0;
        loop {
            let rest = &state.buffer[start..];
            match frame_length(rest, state.session.msize()) {
                Ok(Some(size)) if size <= rest.len() => {
                    let message = &rest[..size];
                    if let Err(error) = state.session.handle(&mut self.fs, message, &mut replies) {
                        failure = Some(error.to_string());
                        break;
                    }
                    start += size;
                }
                Ok(_) => break,
                Err(error) => {
                    failure = Some(format!("unrecoverable 9P framing error: {error}"));
                    break;
                }
            }
        }
        if let Some(why) = failure {
            self.hang_up(channel);
            return Err(format!("9P channel {channel} closed: {why}"));
        }
        state.buffer.drain(..start);
        Ok(replies)
    }

    /// Closes `channel`: every fid is clunked. Unknown channels are fine.
    pub fn hang_up(&mut self, channel: u32) {
        if let Some(mut state) = self.open.remove(&channel) {
            state.session.close(&mut self.fs);
        }
    }

    /// Closes every channel (the peer went away).
    pub fn hang_up_all(&mut self) {
        let channels: Vec<u32> = self.open.keys().copied().collect();
        for channel in channels {
            self.hang_up(channel);
        }
    }
}
