//! `faulty`: a tiny read-only 9P server for failure-injection tests.
//!
//! Its root holds four files: `hello`, which reads `alive\n`; `slow`,
//! whose read answers `slow answer\n` after a pause of one second (the
//! pause is the runtime's: a task waits without using the CPU); `sleepy`,
//! whose *walk* takes that second (a server slow to answer something other
//! than a read), and which reads `awake\n`; and `crash`, whose read makes
//! the server panic in the middle of the request. As the
//! task `faulty-task` that panic ends the task (the runtime's panic handler
//! faults), so core sees a server die with a request outstanding: the
//! client's read fails, the link hangs up, and core restarts the server.
//! The host tests below check the tree and that `crash` does panic.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use ninep::{FileMode, OpenMode, Qid, QidType, Stat};
use ninep_server::{Caller, Error, FileServer, Reply};

/// The server. Nodes are qid paths: 0 the root, 1 `hello`, 2 `crash`,
/// 3 `slow`, 4 `sleepy`.
pub struct Faulty {
    /// Waits the given microseconds (a read of `slow`, a walk to
    /// `sleepy`).
    pause: Box<dyn FnMut(u64)>,
}

impl Faulty {
    pub fn new(pause: Box<dyn FnMut(u64)>) -> Self {
        Faulty { pause }
    }
}

impl Default for Faulty {
    fn default() -> Self {
        Faulty::new(Box::new(|_| {}))
    }
}

const FILES: [(&str, u64); 4] = [("hello", 1), ("crash", 2), ("slow", 3), ("sleepy", 4)];
const HELLO: &[u8] = b"alive\n";
const SLOW: &[u8] = b"slow answer\n";
const SLEEPY: &[u8] = b"awake\n";
/// How long a read of `slow`, or a walk to `sleepy`, takes.
pub const SLOW_MICROSECONDS: u64 = 1_000_000;

fn read_at(bytes: &[u8], offset: u64, count: u32) -> Vec<u8> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start.saturating_add(count as usize).min(bytes.len());
    bytes[start..end].to_vec()
}

fn qid(path: u64) -> Qid {
    Qid {
        kind: if path == 0 {
            QidType::DIR
        } else {
            QidType::empty()
        },
        version: 0,
        path,
    }
}

impl FileServer for Faulty {
    type Node = u64;

    fn attach(&mut self, _uname: &str, aname: &str) -> Result<(u64, Qid), Error> {
        if !aname.is_empty() {
            return Err(Error::new("no such tree"));
        }
        Ok((0, qid(0)))
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &u64, name: &str) -> Result<(u64, Qid), Error> {
        match FILES.iter().find(|(n, _)| *n == name) {
            Some(&(_, path)) if *dir == 0 => {
                if path == 4 {
                    (self.pause)(SLOW_MICROSECONDS);
                }
                Ok((path, qid(path)))
            }
            _ if name == ".." => Ok((0, qid(0))),
            _ => Err(Error::NOT_FOUND),
        }
    }

    fn stat(&mut self, node: &u64) -> Result<Stat, Error> {
        let (name, mode, length) = match *node {
            0 => ("/", FileMode::DMDIR.bits() | 0o555, 0),
            1 => ("hello", 0o444, HELLO.len() as u64),
            2 => ("crash", 0o444, 0),
            3 => ("slow", 0o444, SLOW.len() as u64),
            4 => ("sleepy", 0o444, SLEEPY.len() as u64),
            _ => return Err(Error::NOT_FOUND),
        };
        Ok(Stat {
            kind: 0,
            dev: 0,
            qid: qid(*node),
            mode: FileMode::from_bits_retain(mode),
            atime: 0,
            mtime: 0,
            length,
            name: String::from(name),
            uid: String::from("eve"),
            gid: String::from("eve"),
            muid: String::from("eve"),
        })
    }

    fn open(&mut self, _caller: &Caller<'_>, node: &u64, _mode: OpenMode) -> Result<Qid, Error> {
        Ok(qid(*node))
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        node: &u64,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        match *node {
            1 => Ok(Reply::Now(read_at(HELLO, offset, count))),
            2 => panic!("faulty: crash requested by a read of /crash"),
            3 => {
                if offset == 0 {
                    (self.pause)(SLOW_MICROSECONDS);
                }
                Ok(Reply::Now(read_at(SLOW, offset, count)))
            }
            4 => Ok(Reply::Now(read_at(SLEEPY, offset, count))),
            _ => Err(Error::NOT_FOUND),
        }
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &u64) -> Result<Vec<Stat>, Error> {
        if *dir != 0 {
            return Err(Error::new("not a directory"));
        }
        FILES.iter().map(|(_, path)| self.stat(path)).collect()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use ninep_server::RequestId;

    fn caller() -> Caller<'static> {
        Caller {
            uname: "eve",
            request: RequestId(1),
        }
    }

    #[test]
    fn hello_reads_alive_and_the_root_lists_the_files() {
        let mut fs = Faulty::default();
        let (root, _) = fs.attach("eve", "").unwrap();
        let (hello, _) = fs.walk(&caller(), &root, "hello").unwrap();
        assert_eq!(
            fs.read(&caller(), &hello, 0, 100).unwrap(),
            Reply::Now(HELLO.to_vec())
        );
        assert_eq!(
            fs.read(&caller(), &hello, 4, 100).unwrap(),
            Reply::Now(b"e\n".to_vec())
        );
        let names: Vec<String> = fs
            .read_dir(&caller(), &root)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["hello", "crash", "slow", "sleepy"]);
        assert_eq!(fs.walk(&caller(), &root, "nothing"), Err(Error::NOT_FOUND));
        assert!(fs.attach("eve", "other").is_err());
    }

    #[test]
    fn slow_pauses_once_then_answers() {
        let paused = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let seen = paused.clone();
        let mut fs = Faulty::new(Box::new(move |us| seen.set(seen.get() + us)));
        let (slow, _) = fs.walk(&caller(), &0, "slow").unwrap();
        assert_eq!(
            fs.read(&caller(), &slow, 0, 100).unwrap(),
            Reply::Now(SLOW.to_vec())
        );
        assert_eq!(
            fs.read(&caller(), &slow, 100, 100).unwrap(),
            Reply::Now(Vec::new())
        );
        assert_eq!(paused.get(), SLOW_MICROSECONDS);
    }

    #[test]
    fn the_walk_to_sleepy_pauses_and_its_read_does_not() {
        let paused = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let seen = paused.clone();
        let mut fs = Faulty::new(Box::new(move |us| seen.set(seen.get() + us)));
        let (sleepy, _) = fs.walk(&caller(), &0, "sleepy").unwrap();
        assert_eq!(paused.get(), SLOW_MICROSECONDS);
        assert_eq!(
            fs.read(&caller(), &sleepy, 0, 100).unwrap(),
            Reply::Now(SLEEPY.to_vec())
        );
        assert_eq!(paused.get(), SLOW_MICROSECONDS);
    }

    #[test]
    #[should_panic(expected = "crash requested")]
    fn reading_crash_panics() {
        let mut fs = Faulty::default();
        let (crash, _) = fs.walk(&caller(), &0, "crash").unwrap();
        let _ = fs.read(&caller(), &crash, 0, 10);
    }
}
