//! The agent's services behind the link: 9P channels, proxies and runs.
//!
//! `service::respond` answers the link's own messages (Hello, Ping, ...)
//! and hands the rest here. Every frame is untrusted: a bad one is
//! answered with an `Error` carrying its request id and the agent carries
//! on. Answers that come later (a proxy's result, a program's output) go
//! out through the same [`Outbox`] from worker threads.

use std::path::PathBuf;
use std::sync::Arc;

use bridge_protocol::{ErrorCode, Frame, Message, EXPORT_CHANNEL};

use crate::channels::{Channels, PIECE};
use crate::export::ExportHub;
use crate::linuxfs::Names;
use crate::outbox::Outbox;
use crate::proxy::Proxies;
use crate::runs::Runs;

/// Everything the agent serves besides the link's own messages.
#[derive(Debug)]
pub struct Services {
    outbox: Outbox,
    channels: Option<Channels>,
    proxies: Proxies,
    runs: Runs,
    /// The export channel's FUSE mount, when there is one.
    export: Option<Arc<ExportHub>>,
}

fn error(request_id: u32, code: ErrorCode, detail: &str) -> Frame<'_> {
    Frame {
        request_id,
        message: Message::Error { code, detail },
    }
}

impl Services {
    /// Services over the file tree `top` (`/` in the guest), starting
    /// proxies from `program`, answering through `outbox`.
    pub fn new(top: &std::path::Path, program: PathBuf, outbox: Outbox) -> Services {
        // Without a tree (it cannot happen for `/`) 9P is answered with an
        // error and the rest still works.
        let channels = Channels::new(top, Names::load(top)).ok();
        Services {
            proxies: Proxies::new(program, outbox.clone()),
            runs: Runs::new(outbox.clone()),
            outbox,
            channels,
            export: None,
        }
    }

    /// Leaves `path` out of the 9P tree served (the FUSE mount of Kasane).
    pub fn hide(&mut self, path: &std::path::Path) {
        if let Some(channels) = self.channels.as_mut() {
            channels.hide(path);
        }
    }

    /// Hands the export channel's answers (`Ninep` of id
    /// `EXPORT_CHANNEL`) to the FUSE mount's hub.
    pub fn set_export(&mut self, hub: Arc<ExportHub>) {
        self.export = Some(hub);
    }

    /// The running programs (for tests and logs).
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// Serves one frame. An `Err` is a failure to write to the link.
    pub fn handle(&mut self, frame: &Frame<'_>) -> std::io::Result<()> {
        let id = frame.request_id;
        let done = Frame {
            request_id: id,
            message: Message::Done,
        };
        match frame.message {
            // The export channel carries the peer's 9P answers to the
            // agent's FUSE mount: the roles are reversed.
            Message::Ninep { data } if id == EXPORT_CHANNEL => {
                if let Some(hub) = &self.export {
                    hub.deliver(data);
                }
                Ok(())
            }
            Message::Ninep { data } => {
                let Some(channels) = self.channels.as_mut() else {
                    let detail = "the agent has no file tree to serve";
                    return self.outbox.send(&error(id, ErrorCode::Internal, detail));
                };
                match channels.feed(id, data) {
                    Ok(replies) => {
                        for piece in replies.chunks(PIECE) {
                            let message = Message::Ninep { data: piece };
                            self.outbox.send(&Frame {
                                request_id: id,
                                message,
                            })?;
                        }
                        Ok(())
                    }
                    Err(why) => self.outbox.send(&error(id, ErrorCode::BadPayload, &why)),
                }
            }
            Message::NinepHangup => {
                if let Some(channels) = self.channels.as_mut() {
                    channels.hang_up(id);
                }
                self.outbox.send(&done)
            }
            Message::Syscall { .. } => match self.proxies.call(id, frame) {
                Ok(()) => Ok(()),
                Err((code, detail)) => self.outbox.send(&error(id, code, &detail)),
            },
            Message::ProcessExited { process } => {
                self.proxies.exited(process);
                self.outbox.send(&done)
            }
            Message::Exec {
                path,
                arguments,
                environment,
                directory,
            } => match self.runs.exec(id, path, arguments, environment, directory) {
                Ok(pid) => self.outbox.send(&Frame {
                    request_id: id,
                    message: Message::ExecStarted { pid },
                }),
                Err((code, detail)) => self.outbox.send(&error(id, code, &detail)),
            },
            Message::Stdin { data } => match self.runs.stdin(id, data) {
                Ok(()) => Ok(()),
                Err((code, detail)) => self.outbox.send(&error(id, code, &detail)),
            },
            Message::Kill { signal } => match self.runs.kill(id, signal) {
                Ok(()) => self.outbox.send(&done),
                Err((code, detail)) => self.outbox.send(&error(id, code, &detail)),
            },
            _ => {
                let detail = "not a request the agent serves";
                self.outbox.send(&error(id, ErrorCode::Unsupported, detail))
            }
        }
    }

    /// The peer went away: its channels, proxies and runs go too, since
    /// nobody is left to read their answers.
    pub fn reset(&mut self) {
        if let Some(channels) = self.channels.as_mut() {
            channels.hang_up_all();
        }
        self.proxies.end_all();
        self.runs.kill_all();
        if let Some(hub) = &self.export {
            hub.peer_gone();
        }
    }
}
