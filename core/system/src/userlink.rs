//! User-level 9P links: a file server that is a process, reached through
//! a pipe (srv(3), pipe(3)).
//!
//! A process posts one end of a pipe in /srv (create `/srv/NAME`, write
//! the descriptor's number) or mounts it directly (mount(2) of the
//! descriptor); core then makes the end a link of `#M`
//! ([`kasane_mount::UserLink`]) and holds the end open for it. Every pass
//! of core's loop, [`System::pump_user_links`] writes the T-messages `#M`
//! posted on the link into that end, as a write of the holder would, and
//! reads back what the server wrote at the other end, cut into whole 9P
//! frames for `#M` (`UserLink::received`, which refuses a size no 9P
//! message has). The server is untrusted as any peer: a bad frame or
//! message hangs the link up with the reason on the console, and so does
//! the server's end of the pipe being closed (the process exited or was
//! killed), after which the mounts answer "i/o on hungup channel". A user
//! link is not restarted by core: whoever runs the server watches it.

use alloc::format;
use alloc::vec::Vec;

use kasane_mount::{Transport, UserLink};
use kasane_servant::{Caller, Error, FdLinks, Io, LinkId, Servant};
use ninep::OpenMode;

use crate::{Kernel, System, USER};

/// The descriptor a /srv write names, already turned into its link.
pub(crate) struct PostedFd {
    pub(crate) fd: Option<u32>,
    pub(crate) link: Result<LinkId, Error>,
}

impl FdLinks for PostedFd {
    fn link(&self, fd: u32) -> Result<LinkId, Error> {
        if self.fd == Some(fd) {
            self.link.clone()
        } else {
            Err(Error::BAD_FD)
        }
    }
}

/// The most a pass moves on one link before it lets the others go: a
/// server that writes without end does not hold core.
const FRAMES_PER_PASS: usize = 64;

impl<K: Kernel> System<K> {
    /// The link descriptor `fd` of `pid` holds: the one it was opened on
    /// (a /srv file), or, for an open pipe end, a new user-level link
    /// named `name` on that end, which the chan keeps from then on.
    pub(crate) fn link_of_fd(&mut self, pid: u32, fd: u64, name: &str) -> Result<LinkId, Error> {
        let (handle, chan) = self.fd_chan(pid, fd)?;
        if let Some(link) = chan.link {
            return Ok(link);
        }
        if chan.letter != '|' || chan.mode.is_none() {
            return Err(Error::BAD_USE_FD);
        }
        // The link's own open of the end: the pipe lives, and its other
        // end sees no hangup, while the link does.
        let caller = Caller::new(pid, USER);
        let held = self.servants.pipes.clone_file(&caller, &chan.file())?;
        if let Err(e) = self.servants.pipes.open(&caller, &held, OpenMode::ORDWR) {
            self.servants.pipes.close(&held, None);
            return Err(e);
        }
        let link = LinkId(self.next_link);
        self.next_link += 1;
        let transport = K::Link::from(UserLink::new(name, held));
        self.servants.mount.add_link(link, transport);
        self.user_links.push(link);
        self.table.get_mut(handle)?.link = Some(link);
        Ok(link)
    }

    /// The /srv write of process `pid` through descriptor `srv_fd`, if
    /// its data names a descriptor: that descriptor's link, made if it is
    /// a pipe end, for srv(3)'s post.
    pub(crate) fn posted_fd(&mut self, pid: u32, srv_fd: u64, data: &[u8]) -> PostedFd {
        let fd = core::str::from_utf8(data)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        let Some(fd) = fd else {
            return PostedFd {
                fd: None,
                link: Err(Error::BAD_FD),
            };
        };
        let name = self
            .fd_chan(pid, srv_fd)
            .map(|(_, chan)| chan.name.rsplit('/').next().unwrap_or("").into())
            .unwrap_or_else(|_| alloc::string::String::from("srv"));
        let link = self.link_of_fd(pid, u64::from(fd), &name);
        if let Ok(link) = link {
            if let Some(user) = self
                .servants
                .mount
                .transport_mut(link)
                .and_then(|t| t.user())
            {
                user.rename(&name);
            }
        }
        PostedFd { fd: Some(fd), link }
    }

    /// Moves the frames of every user-level link between `#M` and its
    /// pipe (see the module docs); whether any moved.
    pub(crate) fn pump_user_links(&mut self) -> bool {
        let mut moved = false;
        for link in self.user_links.clone() {
            moved |= self.pump_user_link(link);
        }
        moved
    }

    fn pump_user_link(&mut self, link: LinkId) -> bool {
        let caller = Caller::new(0, USER);
        let servants = &mut self.servants;
        let Some(user) = servants.mount.transport_mut(link).and_then(|t| t.user()) else {
            return false;
        };
        let end = user.end();
        let mut moved = false;
        let mut failure = None;
        let mut frames: Vec<Vec<u8>> = Vec::new();
        // Out: the T-messages, each one write (pipe(3) keeps write
        // boundaries; a frame is below the pipe's capacity).
        while let Some(frame) = user.outgoing().front() {
            match servants.pipes.write(&caller, &end, 0, frame) {
                Ok(Io::Ready(_)) => {
                    user.outgoing().pop_front();
                    moved = true;
                }
                Ok(Io::WouldBlock(_)) => break,
                Err(e) => {
                    failure = Some(format!("{}: the server's pipe: {e}", user.name()));
                    break;
                }
            }
        }
        // In: what the server wrote, as whole frames.
        while failure.is_none() && frames.len() < FRAMES_PER_PASS {
            match servants.pipes.read(&caller, &end, 0, u32::MAX) {
                Ok(Io::Ready(bytes)) if bytes.is_empty() => {
                    failure = Some(format!(
                        "{}: the server closed its end of the pipe",
                        user.name()
                    ));
                }
                Ok(Io::Ready(bytes)) => match user.received(&bytes) {
                    Ok(mut more) => frames.append(&mut more),
                    Err(why) => failure = Some(why),
                },
                Ok(Io::WouldBlock(_)) => break,
                Err(e) => failure = Some(format!("{}: the server's pipe: {e}", user.name())),
            }
        }
        for frame in frames {
            moved = true;
            servants.mount.deliver(link, &frame);
        }
        if let Some(why) = failure {
            moved = true;
            servants.mount.hang_up(link, why);
        }
        moved
    }

    /// A user-level link that hung up: its pipe end goes, and what waited
    /// on it fails ("i/o on hungup channel"). Whether `link` was one.
    pub(crate) fn drop_user_link(&mut self, link: LinkId, transport: &mut K::Link) -> bool {
        let Some(user) = transport.user() else {
            return false;
        };
        self.servants
            .pipes
            .close(&user.end(), Some(OpenMode::ORDWR));
        self.user_links.retain(|l| *l != link);
        self.servants.mount.give_up(link);
        true
    }
}
