//! #|, pipes: two bidirectional ends joined by bounded queues.
//!
//! pipe(3): each attach makes a new pipe, a directory holding `data` and
//! `data1`; "data written to one channel becomes available for reading at
//! the other", and "write boundaries are preserved: each read terminates
//! when the read buffer is full or after reading the last byte of a write".
//! Nothing here blocks: a read of an empty queue whose writer is still
//! there, or a write into a full queue, answers [`Io::WouldBlock`], and the
//! key comes back from `take_wakeups` once data, room or a hangup arrives.
//! Once every open of one end is closed, reads at the other end return the
//! data left and then end of file, and writes there fail with Plan 9's
//! hangup error.
//!
//! Invariants: a pipe lives while any chan on it does (counted through
//! attach, walk, parent and close); a queue holds at most its capacity
//! plus one write's worth, since a write is taken whole up to the capacity
//! once there is any room.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use ninep::{OpenMode, Stat};

use crate::dir::{self, EVE};
use crate::servant::{Caller, File, Io, Opened, Servant, WaitKey};
use crate::Error;

const LETTER: char = '|';
const DIR: u64 = 0;
const DATA: [u64; 2] = [1, 2];
const NAMES: [&str; 2] = ["data", "data1"];
/// Bytes a direction queues before writers wait; Plan 9's default pipe
/// queue is of this order.
pub const DEFAULT_CAPACITY: usize = 32 * 1024;

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Pipe {
    chans: u32,
    /// Opens of each end.
    opens: [u32; 2],
    /// Whether each end has been opened and then closed by all its opens.
    hungup: [bool; 2],
    /// `queues[end]` holds what is readable at `end`.
    queues: [Queue; 2],
}

/// Every pipe core has.
#[derive(Debug)]
pub struct Pipes {
    pipes: BTreeMap<u32, Pipe>,
    next: u32,
    capacity: usize,
    wakeups: Vec<WaitKey>,
}

impl Default for Pipes {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// The key a reader at `end` of pipe `id` waits on.
pub fn readable(id: u32, end: usize) -> WaitKey {
    WaitKey {
        letter: LETTER,
        key: (u64::from(id) << 2) | ((end as u64) << 1),
    }
}

/// The key a writer at `end` of pipe `id` waits on.
pub fn writable(id: u32, end: usize) -> WaitKey {
    WaitKey {
        letter: LETTER,
        key: (u64::from(id) << 2) | ((end as u64) << 1) | 1,
    }
}

fn end_of(file: &File) -> Option<usize> {
    DATA.iter().position(|&path| path == file.qid.path)
}

impl Pipes {
    /// Whether a pipe woke a waiter since the last `take_wakeups`.
    pub fn has_wakeups(&self) -> bool {
        !self.wakeups.is_empty()
    }

    /// Pipes whose directions each queue up to `capacity` bytes (at least
    /// one).
    pub fn new(capacity: usize) -> Self {
        Self {
            pipes: BTreeMap::new(),
            next: 0,
            capacity: capacity.max(1),
            wakeups: Vec::new(),
        }
    }

    /// How many pipes exist.
    pub fn len(&self) -> usize {
        self.pipes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pipes.is_empty()
    }

    fn pipe(&mut self, file: &File) -> Result<&mut Pipe, Error> {
        self.pipes.get_mut(&file.dev).ok_or(Error::NOT_FOUND)
    }

    fn new_chan(&mut self, dev: u32, path: u64) -> Result<File, Error> {
        let pipe = self.pipes.get_mut(&dev).ok_or(Error::NOT_FOUND)?;
        pipe.chans += 1;
        let qid = if path == DIR {
            dir::dir_qid(path)
        } else {
            dir::file_qid(path)
        };
        Ok(File { dev, qid })
    }

    fn entry(&self, dev: u32, path: u64) -> Result<Stat, Error> {
        let pipe = self.pipes.get(&dev).ok_or(Error::NOT_FOUND)?;
        if path == DIR {
            return Ok(dir::stat(
                LETTER,
                dev,
                dir::dir_qid(DIR),
                "#|",
                0o555,
                0,
                EVE,
            ));
        }
        let end = DATA
            .iter()
            .position(|&p| p == path)
            .ok_or(Error::NOT_FOUND)?;
        let queued = pipe.queues[end].bytes as u64;
        Ok(dir::stat(
            LETTER,
            dev,
            dir::file_qid(path),
            NAMES[end],
            0o666,
            queued,
            EVE,
        ))
    }
}

impl Servant for Pipes {
    fn letter(&self) -> char {
        LETTER
    }

    /// pipe(3): "each attach creates a new pipe".
    fn attach(&mut self, _caller: &Caller<'_>, _spec: &str) -> Result<File, Error> {
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        self.pipes.insert(id, Pipe::default());
        self.new_chan(id, DIR)
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &File, name: &str) -> Result<File, Error> {
        if dir.qid.path != DIR {
            return Err(Error::NOT_FOUND);
        }
        let end = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or(Error::NOT_FOUND)?;
        self.new_chan(dir.dev, DATA[end])
    }

    fn clone_file(&mut self, _caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        self.new_chan(file.dev, file.qid.path)
    }

    fn parent(&mut self, _caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        self.new_chan(file.dev, DIR)
    }

    fn stat(&mut self, _caller: &Caller<'_>, file: &File) -> Result<Stat, Error> {
        self.entry(file.dev, file.qid.path)
    }

    fn open(&mut self, _caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        let pipe = self.pipe(file)?;
        match end_of(file) {
            None => dir::check_open(true, mode, true, false)?,
            Some(end) => {
                dir::check_open(false, mode, true, true)?;
                pipe.opens[end] += 1;
            }
        }
        Ok(Opened::File(file.qid))
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        _offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        let end = end_of(file).ok_or(Error::IS_DIR)?;
        let id = file.dev;
        let pipe = self.pipes.get_mut(&id).ok_or(Error::NOT_FOUND)?;
        let queue = &mut pipe.queues[end];
        let Some(message) = queue.messages.front_mut() else {
            // pipe(3): with the other end gone, an empty pipe is at its end.
            if pipe.hungup[1 - end] {
                return Ok(Io::Ready(Vec::new()));
            }
            return Ok(Io::WouldBlock(readable(id, end)));
        };
        // pipe(3): a read ends at the end of a write.
        let data = if message.len() <= count as usize {
            queue.messages.pop_front().unwrap_or_default()
        } else {
            let rest = message.split_off(count as usize);
            core::mem::replace(message, rest)
        };
        queue.bytes -= data.len();
        self.wakeups.push(writable(id, 1 - end));
        Ok(Io::Ready(data))
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        if dir.qid.path != DIR {
            return Err(Error::NOT_DIR);
        }
        DATA.iter().map(|&path| self.entry(dir.dev, path)).collect()
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        _offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        let end = end_of(file).ok_or(Error::IS_DIR)?;
        let id = file.dev;
        let capacity = self.capacity;
        let pipe = self.pipes.get_mut(&id).ok_or(Error::NOT_FOUND)?;
        let other = 1 - end;
        // Plan 9's pipewrite: no reader left is a hangup error.
        if pipe.hungup[other] {
            return Err(Error::HUNGUP);
        }
        let queue = &mut pipe.queues[other];
        if queue.bytes >= capacity {
            return Ok(Io::WouldBlock(writable(id, end)));
        }
        let taken = data.len().min(capacity);
        queue.messages.push_back(data[..taken].to_vec());
        queue.bytes += taken;
        self.wakeups.push(readable(id, other));
        // `taken` is at most the capacity, a usize the caller chose; a
        // capacity beyond u32 is cut to what one write can say.
        Ok(Io::Ready(u32::try_from(taken).unwrap_or(u32::MAX)))
    }

    fn close(&mut self, file: &File, opened: Option<OpenMode>) {
        let id = file.dev;
        let Some(pipe) = self.pipes.get_mut(&id) else {
            return;
        };
        if let (Some(end), Some(_)) = (end_of(file), opened) {
            pipe.opens[end] = pipe.opens[end].saturating_sub(1);
            if pipe.opens[end] == 0 && !pipe.hungup[end] {
                pipe.hungup[end] = true;
                // The other end's reader sees end of file, its writer the
                // hangup.
                self.wakeups.push(readable(id, 1 - end));
                self.wakeups.push(writable(id, 1 - end));
            }
        }
        pipe.chans = pipe.chans.saturating_sub(1);
        if pipe.chans == 0 {
            self.pipes.remove(&id);
        }
    }

    fn take_wakeups(&mut self) -> Vec<WaitKey> {
        core::mem::take(&mut self.wakeups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Ends {
        pipes: Pipes,
        dir: File,
        ends: [File; 2],
    }

    fn pipe(capacity: usize) -> Ends {
        let caller = Caller::new(1, "glenda");
        let mut pipes = Pipes::new(capacity);
        let dir = pipes.attach(&caller, "").unwrap();
        let zero = pipes.walk(&caller, &dir, "data").unwrap();
        let one = pipes.walk(&caller, &dir, "data1").unwrap();
        pipes.open(&caller, &zero, OpenMode::ORDWR).unwrap();
        pipes.open(&caller, &one, OpenMode::ORDWR).unwrap();
        Ends {
            pipes,
            dir,
            ends: [zero, one],
        }
    }

    fn caller() -> Caller<'static> {
        Caller::new(1, "glenda")
    }

    #[test]
    fn data_crosses_in_both_directions_keeping_write_boundaries() {
        let mut p = pipe(1024);
        let [zero, one] = p.ends;
        assert_eq!(
            p.pipes.write(&caller(), &zero, 0, b"hello"),
            Ok(Io::Ready(5))
        );
        assert_eq!(
            p.pipes.write(&caller(), &zero, 0, b"world"),
            Ok(Io::Ready(5))
        );
        assert_eq!(
            p.pipes.read(&caller(), &one, 0, 100),
            Ok(Io::Ready(b"hello".to_vec()))
        );
        assert_eq!(
            p.pipes.read(&caller(), &one, 0, 3),
            Ok(Io::Ready(b"wor".to_vec()))
        );
        assert_eq!(
            p.pipes.read(&caller(), &one, 0, 3),
            Ok(Io::Ready(b"ld".to_vec()))
        );
        assert_eq!(p.pipes.write(&caller(), &one, 0, b"back"), Ok(Io::Ready(4)));
        assert_eq!(
            p.pipes.read(&caller(), &zero, 0, 10),
            Ok(Io::Ready(b"back".to_vec()))
        );
    }

    #[test]
    fn an_empty_pipe_blocks_and_a_write_wakes_it() {
        let mut p = pipe(1024);
        let [zero, one] = p.ends;
        let id = one.dev;
        assert_eq!(
            p.pipes.read(&caller(), &one, 0, 10),
            Ok(Io::WouldBlock(readable(id, 1)))
        );
        p.pipes.take_wakeups();
        p.pipes.write(&caller(), &zero, 0, b"x").unwrap();
        assert_eq!(p.pipes.take_wakeups(), [readable(id, 1)]);
        assert_eq!(
            p.pipes.read(&caller(), &one, 0, 10),
            Ok(Io::Ready(b"x".to_vec()))
        );
        assert_eq!(p.pipes.take_wakeups(), [writable(id, 0)]);
    }

    #[test]
    fn a_full_pipe_blocks_writers_until_a_read() {
        let mut p = pipe(4);
        let [zero, one] = p.ends;
        let id = zero.dev;
        // A write larger than the capacity is taken a capacity at a time.
        assert_eq!(
            p.pipes.write(&caller(), &zero, 0, b"abcdef"),
            Ok(Io::Ready(4))
        );
        assert_eq!(
            p.pipes.write(&caller(), &zero, 0, b"ef"),
            Ok(Io::WouldBlock(writable(id, 0)))
        );
        p.pipes.take_wakeups();
        assert_eq!(
            p.pipes.read(&caller(), &one, 0, 2),
            Ok(Io::Ready(b"ab".to_vec()))
        );
        assert_eq!(p.pipes.take_wakeups(), [writable(id, 0)]);
        assert_eq!(p.pipes.write(&caller(), &zero, 0, b"ef"), Ok(Io::Ready(2)));
    }

    #[test]
    fn closing_one_end_gives_eof_and_hangup_at_the_other() {
        let mut p = pipe(1024);
        let [zero, one] = p.ends;
        let id = zero.dev;
        p.pipes.write(&caller(), &zero, 0, b"last").unwrap();
        p.pipes.take_wakeups();
        p.pipes.close(&zero, Some(OpenMode::ORDWR));
        assert_eq!(p.pipes.take_wakeups(), [readable(id, 1), writable(id, 1)]);
        assert_eq!(
            p.pipes.read(&caller(), &one, 0, 10),
            Ok(Io::Ready(b"last".to_vec()))
        );
        assert_eq!(
            p.pipes.read(&caller(), &one, 0, 10),
            Ok(Io::Ready(Vec::new()))
        );
        assert_eq!(p.pipes.write(&caller(), &one, 0, b"x"), Err(Error::HUNGUP));
    }

    #[test]
    fn the_pipe_goes_with_its_last_chan() {
        let mut p = pipe(1024);
        let [zero, one] = p.ends;
        let names: Vec<_> = p
            .pipes
            .read_dir(&caller(), &p.dir)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["data", "data1"]);
        p.pipes.close(&zero, Some(OpenMode::ORDWR));
        p.pipes.close(&one, Some(OpenMode::ORDWR));
        assert_eq!(p.pipes.len(), 1);
        p.pipes.close(&p.dir, None);
        assert!(p.pipes.is_empty());
        assert_eq!(p.pipes.read(&caller(), &one, 0, 1), Err(Error::NOT_FOUND));
    }

    #[test]
    fn each_attach_is_a_new_pipe() {
        let mut pipes = Pipes::default();
        let a = pipes.attach(&caller(), "").unwrap();
        let b = pipes.attach(&caller(), "").unwrap();
        assert_ne!(a.dev, b.dev);
        assert_eq!(
            pipes.open(&caller(), &a, OpenMode::OWRITE),
            Err(Error::IS_DIR)
        );
        assert_eq!(pipes.read(&caller(), &a, 0, 1), Err(Error::IS_DIR));
    }

    proptest! {
        /// Whatever the write and read sizes, bytes come out in order,
        /// none lost, none invented, and the queue stays bounded.
        #[test]
        fn bytes_arrive_in_order(
            writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
            reads in proptest::collection::vec(1u32..50, 1..40),
        ) {
            let mut p = pipe(64);
            let [zero, one] = p.ends;
            let sent: Vec<u8> = writes.concat();
            let mut received = Vec::new();
            let mut pending: VecDeque<Vec<u8>> = writes.into_iter().collect();
            let mut reads = reads.into_iter().cycle();
            let mut closed = false;
            for _ in 0..10_000 {
                if let Some(next) = pending.pop_front() {
                    match p.pipes.write(&caller(), &zero, 0, &next).unwrap() {
                        Io::Ready(n) => {
                            if (n as usize) < next.len() {
                                pending.push_front(next[n as usize..].to_vec());
                            }
                        }
                        Io::WouldBlock(_) => pending.push_front(next),
                    }
                } else if !closed {
                    p.pipes.close(&zero, Some(OpenMode::ORDWR));
                    closed = true;
                }
                prop_assert!(p.pipes.pipes[&one.dev].queues[1].bytes <= 2 * 64);
                let count = reads.next().unwrap_or(1);
                match p.pipes.read(&caller(), &one, 0, count).unwrap() {
                    Io::Ready(data)
                        if data.is_empty()
                            && closed
                            && p.pipes.pipes[&one.dev].queues[1].messages.is_empty() =>
                    {
                        break
                    }
                    Io::Ready(data) => {
                        prop_assert!(data.len() <= count as usize);
                        received.extend(data);
                    }
                    Io::WouldBlock(_) => {}
                }
            }
            prop_assert_eq!(received, sent);
        }
    }
}
