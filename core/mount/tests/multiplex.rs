//! `#M` on a multiplexing link (a server VM's): several requests out at
//! once, answers in any order, Tflush for a process that went, hang-ups
//! and restarts with several requests outstanding, and a property test of
//! all of it interleaved.
//!
//! The far end is a `ninep-server` session serving the ramfs with one
//! twist: a read of a file whose name starts with "slow" waits until the
//! test completes it (`Reply::Later`), as `/net`'s `listen` or a read for
//! data does. The link holds every answer until the test delivers it, in
//! whatever order the test picks; the one rule a real link keeps is kept
//! too: an Rflush never overtakes the answer to the request it flushed
//! (flush(5): the server answers the old request first, if at all).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use kasane_mount::{attach_spec, MountDriver, Transport};
use kasane_servant::{Caller, Error, File, Io, LinkId, Servant};
use ninep::{FileMode, OpenMode, Qid, Stat};
use ninep_server::{Caller as FsCaller, Completion, Error as FsError, FileServer, Reply};
use ninep_server::{RequestId, Session};
use proptest::prelude::*;
use ramfs::{Clock, RamFs};

struct Zero;

impl Clock for Zero {
    fn now(&self) -> u32 {
        0
    }
}

/// The ramfs, whose "slow…" files' reads wait for the test.
struct SlowFs {
    ram: RamFs<Zero>,
    /// Reads waiting: request, offset.
    waiting: Vec<(RequestId, u64)>,
    flushed: usize,
}

impl FileServer for SlowFs {
    type Node = u64;

    fn attach(&mut self, uname: &str, aname: &str) -> Result<(u64, Qid), FsError> {
        self.ram.attach(uname, aname)
    }
    fn walk(&mut self, c: &FsCaller<'_>, dir: &u64, name: &str) -> Result<(u64, Qid), FsError> {
        self.ram.walk(c, dir, name)
    }
    fn stat(&mut self, node: &u64) -> Result<Stat, FsError> {
        self.ram.stat(node)
    }
    fn open(&mut self, c: &FsCaller<'_>, node: &u64, mode: OpenMode) -> Result<Qid, FsError> {
        self.ram.open(c, node, mode)
    }
    fn create(
        &mut self,
        c: &FsCaller<'_>,
        dir: &u64,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<(u64, Qid), FsError> {
        self.ram.create(c, dir, name, perm, mode)
    }
    fn read(
        &mut self,
        c: &FsCaller<'_>,
        node: &u64,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, FsError> {
        if self.ram.stat(node)?.name.starts_with("slow") {
            self.waiting.push((c.request, offset));
            return Ok(Reply::Later);
        }
        self.ram.read(c, node, offset, count)
    }
    fn write(
        &mut self,
        c: &FsCaller<'_>,
        node: &u64,
        offset: u64,
        data: &[u8],
    ) -> Result<Reply<u32>, FsError> {
        self.ram.write(c, node, offset, data)
    }
    fn clunk(&mut self, node: &u64, opened: Option<OpenMode>) {
        self.ram.clunk(node, opened)
    }
    fn flush(&mut self, request: RequestId) {
        self.waiting.retain(|(r, _)| *r != request);
        self.flushed += 1;
    }
}

/// The server behind the link, and the answers it sent that the test has
/// not delivered yet.
struct Far {
    session: Session<SlowFs>,
    fs: SlowFs,
    held: Vec<Vec<u8>>,
    /// Whether the link is probed (a multiplexing task server's), and
    /// whether the server answers a probe; `None`: not probed (a VM's).
    alive: Option<bool>,
    /// Probes asked.
    probes: usize,
}

type Shared = Rc<RefCell<Far>>;

/// What a slow read at `offset` is answered with: the caller can tell
/// whose answer it got.
fn slow_answer(offset: u64) -> Vec<u8> {
    format!("at{offset}").into_bytes()
}

/// The bytes of file "a".
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl Far {
    /// A fresh server holding "a" (the alphabet) and "slow".
    fn new() -> Shared {
        let far = Rc::new(RefCell::new(Far {
            session: Session::new(kasane_mount::MSIZE),
            fs: SlowFs {
                ram: RamFs::new(Zero, "eve", "eve", 0o775),
                waiting: Vec::new(),
                flushed: 0,
            },
            held: Vec::new(),
            alive: None,
            probes: 0,
        }));
        // Made through a driver of its own, on a link that answers at once.
        let mut m = MountDriver::new();
        m.add_link(LinkId(9), Direct(far.clone()));
        let c = Caller::new(1, "eve");
        let root = m.attach(&c, &attach_spec(LinkId(9), "")).unwrap();
        let rw = FileMode::from_bits_retain(0o664);
        let a = m.create(&c, &root, "a", rw, OpenMode::OWRITE).unwrap();
        assert_eq!(m.write(&c, &a, 0, ALPHABET), Ok(Io::Ready(62)));
        m.close(&a, Some(OpenMode::OWRITE));
        let slow = m.create(&c, &root, "slow", rw, OpenMode::OWRITE).unwrap();
        m.close(&slow, Some(OpenMode::OWRITE));
        m.close(&root, None);
        assert!(far.borrow().held.is_empty());
        far
    }

    fn handle(&mut self, frame: &[u8]) -> Result<(), String> {
        let mut out = Vec::new();
        let Far { session, fs, .. } = self;
        session
            .handle(fs, frame, &mut out)
            .map_err(|e| format!("{e:?}"))?;
        self.hold(&out);
        Ok(())
    }

    fn hold(&mut self, mut out: &[u8]) {
        while let Some(size) = ninep::frame_length(out, u32::MAX).unwrap() {
            self.held.push(out[..size].to_vec());
            out = &out[size..];
        }
    }

    /// Completes the waiting read at `index` (of those waiting) with its
    /// answer.
    fn complete(&mut self, index: usize) {
        let (request, offset) = self.fs.waiting.remove(index);
        let mut out = Vec::new();
        let late = Completion::Read(Ok(slow_answer(offset)));
        self.session.complete(request, late, &mut out);
        self.hold(&out);
    }
}

/// A server VM's link as `#M` sees it: posts, multiplexes, and its
/// answers come later, through `deliver`. Outside the tests' own
/// driver (which is handed answers by `collect`), nothing answers at once.
struct MuxLink(Shared);

impl Transport for MuxLink {
    fn name(&self) -> &str {
        "slowfs"
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        let mut far = self.0.borrow_mut();
        let before = far.held.len();
        far.handle(frame)?;
        let reply = far.held.remove(before);
        answer[..reply.len()].copy_from_slice(&reply);
        Ok(reply.len())
    }

    fn posts(&self) -> bool {
        true
    }

    fn multiplexes(&self) -> bool {
        true
    }

    fn post(&mut self, frame: &[u8], _answer: &mut [u8]) -> Result<Option<usize>, String> {
        self.0.borrow_mut().handle(frame).map(|()| None)
    }

    fn probes(&self) -> bool {
        self.0.borrow().alive.is_some()
    }

    fn probe(&mut self) -> Result<(), String> {
        let mut far = self.0.borrow_mut();
        far.probes += 1;
        match far.alive {
            Some(false) => Err("slowfs: takes no probe (hung)".into()),
            _ => Ok(()),
        }
    }

    fn collect(&mut self, answer: &mut [u8]) -> Result<usize, String> {
        let mut far = self.0.borrow_mut();
        if far.held.is_empty() {
            return Err("slowfs: no answer".into());
        }
        let reply = far.held.remove(0);
        answer[..reply.len()].copy_from_slice(&reply);
        Ok(reply.len())
    }
}

/// The same server on a link of plain exchanges, to set it up.
struct Direct(Shared);

impl Transport for Direct {
    fn name(&self) -> &str {
        "slowfs"
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        MuxLink(self.0.clone()).exchange(frame, answer)
    }
}

/// Delivers the held answer at `index`; an Rflush goes with every answer
/// held before it, in order.
fn deliver(m: &mut MountDriver<MuxLink>, far: &Shared, index: usize) {
    let rflush = far.borrow().held[index][4] == ninep::MessageType::Rflush as u8;
    let answers: Vec<Vec<u8>> = if rflush {
        far.borrow_mut().held.drain(..=index).collect()
    } else {
        vec![far.borrow_mut().held.remove(index)]
    };
    for answer in answers {
        m.deliver(LinkId(1), &answer);
    }
}

fn deliver_all(m: &mut MountDriver<MuxLink>, far: &Shared) {
    while !far.borrow().held.is_empty() {
        deliver(m, far, 0);
    }
}

/// A driver with a server mounted over a multiplexing link, and "a" and
/// "slow" opened for reading.
struct Setup {
    m: MountDriver<MuxLink>,
    far: Shared,
    root: File,
    a: File,
    slow: File,
}

fn setup(recovering: bool) -> Setup {
    let far = Far::new();
    let mut m = MountDriver::new();
    m.recover_links(recovering);
    m.add_link(LinkId(1), MuxLink(far.clone()));
    let c = Caller::new(1, "eve");
    // Outside a call: posted, and its answer collected.
    let root = m.attach(&c, &attach_spec(LinkId(1), "")).unwrap();
    let open = |m: &mut MountDriver<MuxLink>, name: &str| {
        let walked = m.walk(&c, &root, name).unwrap();
        let chan = m.clone_file(&c, &walked).unwrap();
        m.open(&c, &chan, OpenMode::OREAD).unwrap();
        m.close(&walked, None);
        chan
    };
    let a = open(&mut m, "a");
    let slow = open(&mut m, "slow");
    deliver_all(&mut m, &far); // the walked chans' clunks
    Setup {
        m,
        far,
        root,
        a,
        slow,
    }
}

impl Setup {
    fn read(&mut self, pid: u32, file: File, offset: u64) -> Result<Io<Vec<u8>>, Error> {
        self.m.read(&Caller::new(pid, "eve"), &file, offset, 4)
    }

    fn waiting(&self) -> usize {
        self.far.borrow().fs.waiting.len()
    }

    fn held(&self) -> usize {
        self.far.borrow().held.len()
    }

    /// Closes every chan; the server must hold no fid afterwards.
    fn close_all(mut self) {
        self.m.close(&self.a, Some(OpenMode::OREAD));
        self.m.close(&self.slow, Some(OpenMode::OREAD));
        self.m.close(&self.root, None);
        deliver_all(&mut self.m, &self.far);
        assert_eq!(self.far.borrow().session.fid_count(), 0, "a fid left");
    }
}

fn blocked<T: std::fmt::Debug>(result: Result<Io<T>, Error>) {
    assert!(matches!(result, Ok(Io::WouldBlock(_))), "{result:?}");
}

/// A multiplexing task server's link has no answer deadline either, but
/// core asks the server, once per limit while a request waits, whether it
/// still takes requests: a read may wait as long as it likes on a live
/// server, and the link hangs up when the server stops answering probes.
#[test]
fn a_probed_link_hangs_up_only_when_its_server_takes_no_probe() {
    let mut s = setup(false);
    s.far.borrow_mut().alive = Some(true);
    let slow = s.slow;
    assert!(!s.m.in_flight(), "nothing waits yet");
    blocked(s.read(1, slow, 10));
    assert!(s.m.in_flight(), "a probed link is watched");
    s.m.expire(0, 10);
    s.m.expire(10, 10);
    assert_eq!(s.far.borrow().probes, 0, "within the limit");
    s.m.expire(11, 10);
    assert_eq!(s.far.borrow().probes, 1, "late: the server is asked");
    s.m.expire(21, 10);
    assert_eq!(s.far.borrow().probes, 1, "its answer restarted the clock");
    s.m.expire(1_000, 10);
    assert_eq!(s.far.borrow().probes, 2);
    assert!(s.m.take_dead().is_empty(), "a live server's read waits on");
    // The read is answered; then nothing waits, and nobody is asked.
    s.far.borrow_mut().complete(0);
    deliver_all(&mut s.m, &s.far);
    assert_eq!(s.read(1, slow, 10), Ok(Io::Ready(slow_answer(10))));
    assert!(!s.m.in_flight());
    s.m.expire(100_000, 10);
    assert_eq!(s.far.borrow().probes, 2);
    // A server that stops answering probes is hung: the link hangs up.
    blocked(s.read(1, slow, 20));
    s.far.borrow_mut().alive = Some(false);
    s.m.expire(200_000, 10);
    s.m.expire(200_011, 10);
    let dead = s.m.take_dead();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("hung"), "{}", dead[0].reason);
    assert_eq!(s.read(1, slow, 20), Err(Error::HUNGUP));
}

#[test]
fn reads_wait_side_by_side_and_answers_come_in_any_order() {
    let mut s = setup(false);
    let (a, slow) = (s.a, s.slow);
    blocked(s.read(1, slow, 10));
    blocked(s.read(2, slow, 20));
    blocked(s.read(3, a, 4));
    // All three reached the server at once; two of them wait there.
    assert_eq!(s.waiting(), 2);
    assert_eq!(s.held(), 1);
    assert!(!s.m.in_flight(), "no deadline on a multiplexing link");
    s.m.expire(0, 10);
    s.m.expire(1_000_000, 10);
    assert!(s.m.take_dead().is_empty(), "a held read is no failure");

    deliver(&mut s.m, &s.far, 0);
    assert!(!s.m.take_wakeups().is_empty());
    assert_eq!(s.read(3, a, 4), Ok(Io::Ready(b"4567".to_vec())));
    // The later request is answered first.
    s.far.borrow_mut().complete(1);
    s.far.borrow_mut().complete(0);
    deliver(&mut s.m, &s.far, 0);
    assert_eq!(s.read(2, slow, 20), Ok(Io::Ready(slow_answer(20))));
    blocked(s.read(1, slow, 10));
    deliver(&mut s.m, &s.far, 0);
    assert_eq!(s.read(1, slow, 10), Ok(Io::Ready(slow_answer(10))));
    s.close_all();
}

#[test]
fn a_call_does_not_wait_behind_a_held_read() {
    let mut s = setup(false);
    let slow = s.slow;
    blocked(s.read(1, slow, 0));
    let two = Caller::new(2, "eve");
    let root = s.root;
    let stat = |m: &mut MountDriver<MuxLink>| {
        m.begin_call(2);
        let result = m.walk(&two, &root, "a").and_then(|a| {
            let stat = m.stat(&two, &a);
            m.close(&a, None);
            stat
        });
        let parked = m.call_blocked();
        m.end_call(2, parked);
        result
    };
    // The walk goes out beside the held read, and so does the stat.
    assert_eq!(stat(&mut s.m), Err(Error::PENDING));
    deliver(&mut s.m, &s.far, 0);
    assert!(!s.m.take_wakeups().is_empty());
    assert_eq!(stat(&mut s.m), Err(Error::PENDING));
    deliver(&mut s.m, &s.far, 0);
    assert_eq!(stat(&mut s.m).map(|s| s.length), Ok(62));
    assert_eq!(s.waiting(), 1, "the read still waits");
    s.far.borrow_mut().complete(0);
    deliver_all(&mut s.m, &s.far);
    assert_eq!(s.read(1, slow, 0), Ok(Io::Ready(slow_answer(0))));
    s.close_all();
}

#[test]
fn a_gone_reader_is_flushed_and_its_answer_dropped() {
    let mut s = setup(false);
    let (a, slow) = (s.a, s.slow);
    blocked(s.read(1, slow, 0));
    blocked(s.read(2, slow, 8));
    s.m.forget(1);
    // The server forgot the read and said so; the other one waits on.
    assert_eq!(s.far.borrow().fs.flushed, 1);
    assert_eq!(s.waiting(), 1);
    deliver_all(&mut s.m, &s.far);
    assert!(s.m.take_wakeups().is_empty(), "nobody to wake");
    assert!(s.m.take_dead().is_empty());

    // A read answered before its Tflush arrived: the answer, then the
    // Rflush; both are dropped.
    blocked(s.read(3, a, 0));
    s.m.forget(3);
    assert_eq!(s.held(), 2);
    deliver_all(&mut s.m, &s.far);
    assert!(s.m.take_wakeups().is_empty());
    assert!(s.m.take_dead().is_empty());

    s.far.borrow_mut().complete(0);
    deliver_all(&mut s.m, &s.far);
    assert_eq!(s.read(2, slow, 8), Ok(Io::Ready(slow_answer(8))));
    s.close_all();
}

#[test]
fn a_hang_up_fails_everything_under_way() {
    let mut s = setup(false);
    let (a, slow) = (s.a, s.slow);
    blocked(s.read(1, slow, 0));
    blocked(s.read(2, slow, 4));
    blocked(s.read(3, a, 0));
    let four = Caller::new(4, "eve");
    s.m.begin_call(4);
    assert_eq!(s.m.stat(&four, &s.root), Err(Error::PENDING));
    s.m.end_call(4, true);
    s.m.fail_link(LinkId(1), &"died");
    assert_eq!(s.m.take_dead().len(), 1);
    assert!(!s.m.take_wakeups().is_empty());
    for (pid, file, offset) in [(1, slow, 0), (2, slow, 4), (3, a, 0)] {
        assert_eq!(s.read(pid, file, offset), Err(Error::HUNGUP));
    }
    s.m.begin_call(4);
    assert_eq!(s.m.stat(&four, &s.root), Err(Error::HUNGUP));
    s.m.end_call(4, false);
}

#[test]
fn a_restart_sends_every_read_under_way_again() {
    let mut s = setup(true);
    let (a, slow) = (s.a, s.slow);
    blocked(s.read(1, slow, 0));
    blocked(s.read(2, slow, 4));
    blocked(s.read(3, a, 0));
    s.m.fail_link(LinkId(1), &"died");
    let dead = s.m.take_dead();
    assert_eq!(dead.len(), 1);
    // The new server gets the chans back, then the three reads.
    let far = Far::new();
    s.m.revive(LinkId(1), MuxLink(far.clone())).unwrap();
    s.far = far;
    assert_eq!(s.waiting(), 2);
    s.far.borrow_mut().complete(1);
    s.far.borrow_mut().complete(0);
    deliver_all(&mut s.m, &s.far);
    assert_eq!(s.read(3, a, 0), Ok(Io::Ready(b"0123".to_vec())));
    assert_eq!(s.read(2, slow, 4), Ok(Io::Ready(slow_answer(4))));
    assert_eq!(s.read(1, slow, 0), Ok(Io::Ready(slow_answer(0))));
    s.close_all();
}

/// What a step of the property test does.
#[derive(Debug, Clone)]
enum Step {
    /// Process `pid` reads "a" (or "slow") at its own offset.
    Read { pid: u32, slow: bool },
    /// Process `pid` stats "a" in a call (walk, stat, close).
    Stat { pid: u32 },
    /// The server answers the waiting slow read at `index`.
    Complete { index: usize },
    /// The answer held at `index` reaches core.
    Deliver { index: usize },
    /// Process `pid` is killed.
    Kill { pid: u32 },
    /// The server dies with whatever it holds.
    Die,
    /// A dead server is restarted.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u32..5, any::<bool>()).prop_map(|(pid, slow)| Step::Read { pid, slow }),
        2 => (1u32..5).prop_map(|pid| Step::Stat { pid }),
        3 => (0usize..4).prop_map(|index| Step::Complete { index }),
        6 => (0usize..6).prop_map(|index| Step::Deliver { index }),
        1 => (1u32..5).prop_map(|pid| Step::Kill { pid }),
        1 => Just(Step::Die),
        2 => Just(Step::Restart),
    ]
}

/// What process `pid`'s read of a file answers: its own offset's bytes.
fn expected(pid: u32, slow: bool) -> Vec<u8> {
    let offset = u64::from(pid) * 4;
    if slow {
        slow_answer(offset)
    } else {
        ALPHABET[offset as usize..offset as usize + 4].to_vec()
    }
}

/// Runs process `pid`'s stat call once; `None` while it is parked.
fn stat_call(m: &mut MountDriver<MuxLink>, root: &File, pid: u32) -> Option<Result<u64, Error>> {
    let caller = Caller::new(pid, "eve");
    m.begin_call(pid);
    let result = m.walk(&caller, root, "a").and_then(|a| {
        let stat = m.stat(&caller, &a);
        m.close(&a, None);
        stat
    });
    let parked = m.call_blocked();
    m.end_call(pid, parked);
    (!parked).then(|| result.map(|s| s.length))
}

proptest! {
    /// Reads that wait and reads that do not, calls, answers in any
    /// order, kills and server deaths, interleaved: every read and call
    /// gets its own answer or one of the hang-up's errors, never another's
    /// bytes; the link is never hung up but by a death; and once all is
    /// answered and closed, the server holds no fid.
    #[test]
    fn several_requests_in_flight_keep_to_their_owners(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let mut s = setup(true);
        // Reads and calls under way: (pid, slow) and pid.
        let mut reads: BTreeMap<(u32, bool), ()> = BTreeMap::new();
        let mut calls: BTreeMap<u32, ()> = BTreeMap::new();
        let mut dead = false;
        let check_read = |s: &mut Setup, pid: u32, slow: bool| -> Result<bool, TestCaseError> {
            let file = if slow { s.slow } else { s.a };
            match s.read(pid, file, u64::from(pid) * 4) {
                Ok(Io::Ready(bytes)) => {
                    prop_assert_eq!(bytes, expected(pid, slow));
                    Ok(true)
                }
                Ok(Io::WouldBlock(_)) => Ok(false),
                Err(e) => {
                    prop_assert!(e == Error::HUNGUP || e == Error::RESTARTED, "read: {e:?}");
                    Ok(true)
                }
            }
        };
        for step in steps {
            match step {
                Step::Read { pid, slow } => {
                    if !check_read(&mut s, pid, slow)? {
                        reads.insert((pid, slow), ());
                    } else {
                        reads.remove(&(pid, slow));
                    }
                }
                Step::Stat { pid } => match stat_call(&mut s.m, &s.root, pid) {
                    None => {
                        calls.insert(pid, ());
                    }
                    Some(result) => {
                        calls.remove(&pid);
                        match result {
                            Ok(length) => prop_assert_eq!(length, 62),
                            Err(e) => prop_assert!(e == Error::HUNGUP, "stat: {e:?}"),
                        }
                    }
                },
                Step::Complete { index } => {
                    let waiting = s.waiting();
                    if waiting > 0 {
                        s.far.borrow_mut().complete(index % waiting);
                    }
                }
                Step::Deliver { index } => {
                    let held = s.held();
                    if held > 0 && !dead {
                        deliver(&mut s.m, &s.far, index % held);
                    }
                }
                Step::Kill { pid } => {
                    s.m.forget(pid);
                    reads.retain(|(p, _), _| *p != pid);
                    calls.remove(&pid);
                }
                Step::Die => {
                    if !dead {
                        s.m.fail_link(LinkId(1), &"died");
                        dead = true;
                    }
                }
                Step::Restart => {
                    for gone in s.m.take_dead() {
                        let far = Far::new();
                        prop_assert!(s.m.revive(gone.link, MuxLink(far.clone())).is_ok());
                        s.far = far;
                        dead = false;
                    }
                }
            }
            if !dead {
                prop_assert!(s.m.take_dead().is_empty(), "hung up without a death");
            }
        }
        // Restart if dead, then let everything finish.
        for gone in s.m.take_dead() {
            let far = Far::new();
            prop_assert!(s.m.revive(gone.link, MuxLink(far.clone())).is_ok());
            s.far = far;
        }
        for _ in 0..10 {
            while s.waiting() > 0 {
                s.far.borrow_mut().complete(0);
            }
            deliver_all(&mut s.m, &s.far);
            for (pid, slow) in reads.keys().copied().collect::<Vec<_>>() {
                if check_read(&mut s, pid, slow)? {
                    reads.remove(&(pid, slow));
                }
            }
            for pid in calls.keys().copied().collect::<Vec<_>>() {
                if let Some(result) = stat_call(&mut s.m, &s.root, pid) {
                    calls.remove(&pid);
                    match result {
                        Ok(length) => prop_assert_eq!(length, 62),
                        Err(e) => prop_assert!(e == Error::HUNGUP || e == Error::RESTARTED, "stat: {e:?}"),
                    }
                }
            }
        }
        prop_assert!(reads.is_empty(), "reads never answered: {reads:?}");
        prop_assert!(calls.is_empty(), "calls never finished: {calls:?}");
        s.close_all();
    }
}

#[test]
fn past_the_limit_requests_queue_until_one_ends() {
    let mut s = setup(false);
    let slow = s.slow;
    // 32 readers fill the link; the 33rd waits in the queue, not on it.
    for pid in 1..=33 {
        blocked(s.read(pid, slow, u64::from(pid)));
    }
    assert_eq!(s.waiting(), 32);
    // A call finds no room either: it is parked, not failed.
    let caller = Caller::new(40, "eve");
    s.m.begin_call(40);
    assert_eq!(s.m.stat(&caller, &s.root), Err(Error::PENDING));
    s.m.end_call(40, true);
    assert_eq!(s.held(), 0);
    // One answer makes room: the queued read goes out, and the call is
    // woken to try again.
    s.far.borrow_mut().complete(0);
    deliver(&mut s.m, &s.far, 0);
    assert!(!s.m.take_wakeups().is_empty());
    assert_eq!(s.read(1, slow, 1), Ok(Io::Ready(slow_answer(1))));
    assert_eq!(s.waiting(), 32, "the 33rd read reached the server");
    s.m.begin_call(40);
    assert_eq!(s.m.stat(&caller, &s.root), Err(Error::PENDING));
    s.m.end_call(40, true);
    assert_eq!(s.held(), 0, "still full: the call waits again");
    // Drain: everyone gets their own answer, then the call runs.
    while s.waiting() > 0 {
        s.far.borrow_mut().complete(0);
        deliver_all(&mut s.m, &s.far);
    }
    for pid in 2..=33 {
        assert_eq!(
            s.read(pid, slow, u64::from(pid)),
            Ok(Io::Ready(slow_answer(u64::from(pid))))
        );
    }
    let (result, _) = (0..5)
        .map(|_| {
            s.m.begin_call(40);
            let result = s.m.stat(&caller, &s.root);
            let parked = s.m.call_blocked();
            s.m.end_call(40, parked);
            deliver_all(&mut s.m, &s.far);
            (result, parked)
        })
        .find(|(_, parked)| !parked)
        .expect("the call finished");
    assert!(result.is_ok(), "{result:?}");
    s.close_all();
}
