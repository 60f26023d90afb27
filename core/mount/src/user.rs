//! A user-level link: 9P to a file server that is a process of cell 0.
//!
//! Plan 9 writes file servers in user space this way (srv(3), pipe(3)):
//! the server makes a pipe, posts one end in /srv and serves 9P on the
//! other; a mount of the /srv file then speaks 9P through the pipe. Here
//! the transport is only a queue: [`Transport::post`] puts a T-message in
//! [`UserLink::outgoing`], and its owner (core, `core_system`'s pump)
//! writes it into the posted end and reads what the server writes back,
//! which [`UserLink::received`] cuts into whole frames for
//! [`MountDriver::deliver`](crate::MountDriver::deliver).
//!
//! What the server writes is untrusted: a frame whose size field is below
//! 9P's smallest message (7 bytes: size, type, tag, intro(5)) or above the
//! link's msize hangs the link up, naming the size. The link multiplexes
//! (tags, answers in any order) and has no answer deadline: its server is
//! a process that may block (a read of a network connection), and whoever
//! runs that process watches it; closing the server's end of the pipe
//! (the process exits or is killed) hangs the link up.
//!
//! The link never waits itself: a server that is a process runs only when
//! core serves its calls, so [`Transport::exchange`] and
//! [`Transport::collect`] refuse, and every operation on the link is
//! posted during a call (which parks until the answer comes). A hang-up is
//! final: the link is not restarted by core (a server process that comes
//! back posts a new link).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kasane_servant::File;
use ninep_client::FrameReader;

use crate::{Transport, MSIZE};

/// A link to a server process through the pipe end `end`.
#[derive(Debug)]
pub struct UserLink {
    name: String,
    end: File,
    outgoing: VecDeque<Vec<u8>>,
    /// Bytes the server wrote that do not make a whole frame yet.
    partial: FrameReader,
}

impl UserLink {
    /// A link named `name` (its /srv name, for messages) over the pipe
    /// end `end`, which its owner holds open for it.
    pub fn new(name: &str, end: File) -> Self {
        UserLink {
            name: String::from(name),
            end,
            outgoing: VecDeque::new(),
            partial: FrameReader::new(),
        }
    }

    /// The pipe end the link is written and read through.
    pub fn end(&self) -> File {
        self.end
    }

    /// Names the link (when it is posted in /srv).
    pub fn rename(&mut self, name: &str) {
        self.name = String::from(name);
    }

    /// The T-messages posted and not yet written to the pipe, oldest
    /// first; the owner pops each once the pipe took it.
    pub fn outgoing(&mut self) -> &mut VecDeque<Vec<u8>> {
        &mut self.outgoing
    }

    /// Takes `bytes` the server wrote; the whole R-messages they complete,
    /// or why the link must hang up (a size no 9P message has).
    pub fn received(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        self.partial.push(bytes);
        let mut frames = Vec::new();
        loop {
            match self.partial.next_frame(MSIZE) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return Ok(frames),
                Err(why) => {
                    self.partial = FrameReader::new();
                    return Err(format!("{}: a broken 9P stream: {why}", self.name));
                }
            }
        }
    }
}

impl Transport for UserLink {
    fn name(&self) -> &str {
        &self.name
    }

    fn exchange(&mut self, _frame: &[u8], _answer: &mut [u8]) -> Result<usize, String> {
        Err(format!(
            "{}: a server process cannot answer while core waits",
            self.name
        ))
    }

    fn posts(&self) -> bool {
        true
    }

    fn post(&mut self, frame: &[u8], _answer: &mut [u8]) -> Result<Option<usize>, String> {
        self.outgoing.push_back(frame.to_vec());
        Ok(None)
    }

    fn collect(&mut self, _answer: &mut [u8]) -> Result<usize, String> {
        Err(format!(
            "{}: a server process cannot answer while core waits",
            self.name
        ))
    }

    fn multiplexes(&self) -> bool {
        true
    }

    fn placement(&self) -> &'static str {
        "process"
    }

    fn user(&mut self) -> Option<&mut UserLink> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn link() -> UserLink {
        let end = File {
            dev: 3,
            qid: kasane_servant::dir::file_qid(2),
        };
        UserLink::new("host", end)
    }

    fn frame(size: u32) -> Vec<u8> {
        let mut bytes = size.to_le_bytes().to_vec();
        bytes.resize(size as usize, 0x6b);
        bytes
    }

    #[test]
    fn frames_are_cut_whatever_the_writes_were() {
        let mut link = link();
        let (a, b) = (frame(11), frame(7));
        let mut both = a.clone();
        both.extend_from_slice(&b);
        // Two frames in one write, then one in three pieces.
        assert_eq!(link.received(&both), Ok(vec![a.clone(), b.clone()]));
        assert_eq!(link.received(&a[..2]), Ok(vec![]));
        assert_eq!(link.received(&a[2..9]), Ok(vec![]));
        assert_eq!(link.received(&a[9..]), Ok(vec![a]));
    }

    #[test]
    fn a_size_no_9p_message_has_hangs_up_naming_it() {
        let mut link = link();
        assert_eq!(
            link.received(&frame(6)),
            Err("host: a broken 9P stream: size field 6 is below the 7-byte minimum".into())
        );
        let mut big = link.clone_empty();
        assert_eq!(
            big.received(&(MSIZE + 1).to_le_bytes()),
            Err("host: a broken 9P stream: frame of 8217 bytes exceeds the msize of 8216".into())
        );
    }

    #[test]
    fn posts_queue_and_waiting_is_refused() {
        let mut link = link();
        let mut answer = [0u8; 16];
        assert!(link.posts() && link.multiplexes());
        assert_eq!(link.post(&frame(9), &mut answer), Ok(None));
        assert_eq!(link.outgoing().pop_front(), Some(frame(9)));
        assert!(link.collect(&mut answer).is_err());
        assert!(link.exchange(&frame(9), &mut answer).is_err());
        link.rename("other");
        assert_eq!(link.name(), "other");
        assert_eq!(link.placement(), "process");
    }

    impl UserLink {
        fn clone_empty(&self) -> UserLink {
            UserLink::new(&self.name, self.end)
        }
    }
}
