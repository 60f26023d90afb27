//! Where frames to the peer go, shared by the loop and the worker threads.
//!
//! Programs answer in their own time, from their own threads. Each frame
//! is written whole under one lock, so frames from different threads
//! never interleave on the link. System-call proxies, separate processes,
//! write their answers straight to the link's descriptor
//! ([`Outbox::descriptor`]), each frame in one `write`: a virtio console
//! port sends each write as one buffer, so whole frames do not
//! interleave there either.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use bridge_protocol::Frame;

/// A shared, locked writer of whole frames.
#[derive(Clone)]
pub struct Outbox(Arc<Inner>);

struct Inner {
    writer: Mutex<Box<dyn Write + Send>>,
    /// The link itself, for processes that answer on it directly.
    descriptor: Option<File>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl Outbox {
    /// Frames written to `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Outbox {
        Outbox(Arc::new(Inner {
            writer: Mutex::new(Box::new(writer)),
            descriptor: None,
        }))
    }

    /// Frames written to `link`, whose descriptor proxies may write to.
    pub fn on_descriptor(link: File) -> io::Result<Outbox> {
        Ok(Outbox(Arc::new(Inner {
            writer: Mutex::new(Box::new(link.try_clone()?)),
            descriptor: Some(link),
        })))
    }

    /// The link's descriptor, when the outbox writes to one.
    pub fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        self.0.descriptor.as_ref().map(AsFd::as_fd)
    }

    /// Encodes and writes one frame.
    pub fn send(&self, frame: &Frame<'_>) -> io::Result<()> {
        let (buffer, length) = frame
            .to_buffer()
            .map_err(|error| io::Error::other(format!("cannot encode a frame: {error:?}")))?;
        self.send_bytes(&buffer[..length])
    }

    /// Writes bytes that are one or more whole frames.
    pub fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        // A thread that panicked while holding the lock left no partial
        // frame behind it worth protecting: write_all is the only use.
        let mut writer = self
            .0
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.write_all(bytes)?;
        writer.flush()
    }
}
