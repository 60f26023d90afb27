//! Test helpers: an outbox whose frames a test reads back, owned.
//!
//! The outbox writes to a pipe, as the agent's writes to its link
//! descriptor (system-call proxies write to it themselves); a thread
//! hands what comes out to the [`Inbox`]. Frames borrow the decoder's
//! buffer, so each is copied into [`Got`].

#![allow(dead_code)]

use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use std::io::Read;

use bridge_agent::outbox::Outbox;
use bridge_protocol::{Decoder, Message};

/// A frame the agent sent, copied out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    Result(i64, Vec<u8>),
    Error(u16, String),
    Started(u32),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exited(i32, u8),
    Done,
    Ninep(Vec<u8>),
    Other(String),
}

/// Reads the frames an outbox wrote.
pub struct Inbox {
    receiver: Receiver<Vec<u8>>,
    decoder: Decoder,
    pending: Vec<u8>,
    ready: std::collections::VecDeque<(u32, Got)>,
}

pub fn outbox() -> (Outbox, Inbox) {
    let (sender, receiver) = mpsc::channel();
    let inbox = Inbox {
        receiver,
        decoder: Decoder::new(),
        pending: Vec::new(),
        ready: Default::default(),
    };
    let (reader, writer) = rustix::pipe::pipe().expect("a pipe");
    let mut reader = std::fs::File::from(reader);
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 8192];
        while let Ok(count) = reader.read(&mut buffer) {
            if count == 0 || sender.send(buffer[..count].to_vec()).is_err() {
                break;
            }
        }
    });
    let link = std::fs::File::from(writer);
    (Outbox::on_descriptor(link).expect("an outbox"), inbox)
}

fn own(message: Message<'_>) -> Got {
    match message {
        Message::SyscallResult { result, output } => Got::Result(result, output.to_vec()),
        Message::Error { code, detail } => Got::Error(code.as_u16(), detail.to_string()),
        Message::ExecStarted { pid } => Got::Started(pid),
        Message::Stdout { data } => Got::Stdout(data.to_vec()),
        Message::Stderr { data } => Got::Stderr(data.to_vec()),
        Message::Exited { code, signal } => Got::Exited(code, signal),
        Message::Done => Got::Done,
        Message::Ninep { data } => Got::Ninep(data.to_vec()),
        other => Got::Other(format!("{other:?}")),
    }
}

impl Inbox {
    /// The next frame, waiting up to ten seconds.
    pub fn next(&mut self) -> (u32, Got) {
        loop {
            if let Some(got) = self.ready.pop_front() {
                return got;
            }
            let bytes = self
                .receiver
                .recv_timeout(Duration::from_secs(10))
                .expect("a frame from the agent within 10 s");
            self.pending.extend(bytes);
            let mut rest = &self.pending[..];
            loop {
                let (taken, event) = self.decoder.feed(rest);
                rest = &rest[taken..];
                match event {
                    None => break,
                    Some(Ok(frame)) => self.ready.push_back((frame.request_id, own(frame.message))),
                    Some(Err(error)) => panic!("the agent sent a bad frame: {error:?}"),
                }
            }
            self.pending.clear();
        }
    }
}
