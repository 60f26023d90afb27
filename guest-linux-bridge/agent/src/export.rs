//! The export channel's Linux end: 9P requests of the FUSE mount to the
//! peer, in `Ninep` frames of id `EXPORT_CHANNEL`, and its answers back.
//!
//! The FUSE thread ([`ExportLink`], a [`Transport`]) sends a T-message
//! and waits for the R-message; the service loop hands it the bytes of
//! the peer's `Ninep` frames of that id ([`ExportHub::deliver`]) and tells
//! it when the peer went away ([`ExportHub::peer_gone`]). The link's
//! writer changes when the service loop opens the port again, so the hub
//! holds the current one.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_protocol::{Frame, Message, EXPORT_CHANNEL, MAX_PAYLOAD_LEN};
use ninep::frame_length;

use crate::fuse::{Transport, MSIZE};
use crate::outbox::Outbox;

/// How long a 9P request may wait for Kasane's answer. Without exportfs
/// on the other side nothing answers, and the file operation fails with
/// EIO instead of hanging.
pub const ANSWER_TIME: Duration = Duration::from_secs(20);

/// How long a Tversion may wait (it is sent again: fuse.rs).
pub const VERSION_TIME: Duration = Duration::from_secs(5);

enum Event {
    Bytes(Vec<u8>),
    PeerGone,
}

/// What the service loop and the FUSE thread share.
#[derive(Debug)]
pub struct ExportHub {
    outbox: Mutex<Option<Outbox>>,
    events: Mutex<Sender<Event>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Bytes(bytes) => write!(f, "Bytes({})", bytes.len()),
            Event::PeerGone => f.write_str("PeerGone"),
        }
    }
}

impl ExportHub {
    /// The hub and the FUSE thread's end of it.
    pub fn new() -> (Arc<ExportHub>, ExportLink) {
        let (sender, receiver) = channel();
        let hub = Arc::new(ExportHub {
            outbox: Mutex::new(None),
            events: Mutex::new(sender),
        });
        let link = ExportLink {
            hub: hub.clone(),
            events: receiver,
            answer_time: ANSWER_TIME,
        };
        (hub, link)
    }

    /// The link's writer from now on.
    pub fn set_outbox(&self, outbox: Outbox) {
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(outbox);
    }

    fn send(&self, event: Event) {
        let _ = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(event);
    }

    /// Bytes of the peer's 9P answers.
    pub fn deliver(&self, data: &[u8]) {
        self.send(Event::Bytes(data.to_vec()));
    }

    /// The peer went away: a request waiting fails now.
    pub fn peer_gone(&self) {
        self.send(Event::PeerGone);
    }
}

/// The FUSE thread's 9P transport over the link.
#[derive(Debug)]
pub struct ExportLink {
    hub: Arc<ExportHub>,
    events: Receiver<Event>,
    answer_time: Duration,
}

impl ExportLink {
    /// Changes how long an answer may take (tests).
    pub fn set_answer_time(&mut self, answer_time: Duration) {
        self.answer_time = answer_time;
    }
}

/// The 9P tag of a message.
fn tag_of(message: &[u8]) -> Option<u16> {
    message.get(5..7).map(|t| u16::from_le_bytes([t[0], t[1]]))
}

impl Transport for ExportLink {
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        // A Tversion starts a session: whatever came before is stale.
        let version = request.get(4) == Some(&(ninep::MessageType::Tversion as u8));
        if version {
            while self.events.try_recv().is_ok() {}
        }
        let outbox = self
            .hub
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or("no link yet")?;
        for piece in request.chunks(MAX_PAYLOAD_LEN - 2) {
            let frame = Frame {
                request_id: EXPORT_CHANNEL,
                message: Message::Ninep { data: piece },
            };
            outbox.send(&frame).map_err(|e| format!("link: {e}"))?;
        }
        let tag = tag_of(request);
        let wait = if version {
            self.answer_time.min(VERSION_TIME)
        } else {
            self.answer_time
        };
        let deadline = Instant::now() + wait;
        let mut buffer = Vec::new();
        loop {
            // Whole messages first: one of another tag is a stale answer
            // (of a request that timed out) and is dropped.
            while let Ok(Some(size)) = frame_length(&buffer, MSIZE) {
                if size > buffer.len() {
                    break;
                }
                let message: Vec<u8> = buffer.drain(..size).collect();
                if tag_of(&message) == tag {
                    return Ok(message);
                }
            }
            if frame_length(&buffer, MSIZE).is_err() {
                return Err("broken 9P framing from the peer".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Bytes(bytes)) => buffer.extend(bytes),
                Ok(Event::PeerGone) => return Err("the peer went away".into()),
                Err(RecvTimeoutError::Timeout) => return Err("Kasane did not answer".into()),
                Err(RecvTimeoutError::Disconnected) => return Err("no service loop".into()),
            }
        }
    }
}
