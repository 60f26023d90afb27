//! One client connection: split the byte stream into frames, run a session.
//!
//! The tree is shared by all connections behind one mutex, held for one
//! request at a time; each connection has its own session (fids, tags).

use std::io::{ErrorKind, Read, Write};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ninep::frame_length;
use ninep_server::Session;
use ramfs::{Clock, RamFs};

/// The wall clock, in the seconds 9P counts.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u32 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }
}

pub type SharedTree = Mutex<RamFs<SystemClock>>;

/// How a connection ended, for its log line.
#[derive(Debug)]
pub struct Outcome {
    pub messages: u64,
    pub error: Option<String>,
}

/// Serves one connection until the peer hangs up or breaks the protocol.
pub fn serve(stream: &mut (impl Read + Write), tree: &SharedTree, max_msize: u32) -> Outcome {
    let mut session: Session<RamFs<SystemClock>> = Session::new(max_msize);
    let mut input: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut output: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut messages = 0u64;
    let error = loop {
        let mut start = 0;
        let mut broken = None;
        loop {
            let available = &input[start..];
            match frame_length(available, session.msize()) {
                Ok(Some(len)) if available.len() >= len => {
                    let mut fs = tree.lock().unwrap_or_else(|e| e.into_inner());
                    let result = session.handle(&mut *fs, &available[..len], &mut output);
                    drop(fs);
                    messages += 1;
                    start += len;
                    if let Err(e) = result {
                        broken = Some(e.to_string());
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    broken = Some(format!("unrecoverable 9P framing error: {e}"));
                    break;
                }
            }
        }
        input.drain(..start);
        if !output.is_empty() {
            if let Err(e) = stream.write_all(&output) {
                break Some(format!("write failed: {e}"));
            }
            output.clear();
        }
        if broken.is_some() {
            break broken;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Some(format!("read failed: {e}")),
        }
    };
    let mut fs = tree.lock().unwrap_or_else(|e| e.into_inner());
    session.close(&mut *fs);
    Outcome { messages, error }
}
