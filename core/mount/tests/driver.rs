//! `#M` against the real ramfs over an in-process link, and against links
//! that die, answer late (calls parked and rerun from their journals, also
//! as a property test of interleaved calls) or answer nonsense.
//!
//! The transport hands each frame to a `ninep-server` session serving the
//! `ramfs` crate, the same code the task server and the host daemon run,
//! and counts the server's fids so the tests see every fid clunked.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use kasane_mount::{attach_spec, MountDriver, Transport};
use kasane_servant::{Caller, Error, File, Io, LinkId, Opened, Servant};
use ninep::{FileMode, OpenMode, Stat};
use ninep_server::Session;
use proptest::prelude::*;
use ramfs::{Clock, RamFs};

struct Zero;

impl Clock for Zero {
    fn now(&self) -> u32 {
        0
    }
}

/// What the test can see of the server behind a link.
#[derive(Default)]
struct Probe {
    fids: usize,
    exchanges: usize,
}

/// A ramfs session on the far end; fails every exchange after `budget`.
struct RamLink {
    name: String,
    session: Session<RamFs<Zero>>,
    fs: RamFs<Zero>,
    probe: Rc<RefCell<Probe>>,
    budget: usize,
    stopped: Rc<RefCell<bool>>,
    /// Takes posted requests; their answers wait here to be delivered,
    /// unless the link is `patient` enough to wait for them.
    posting: bool,
    patient: bool,
    answers: Rc<RefCell<VecDeque<Vec<u8>>>>,
    /// Says it still holds what was posted (a booting Linux agent's link).
    holding: Rc<RefCell<bool>>,
}

impl RamLink {
    fn new(name: &str) -> (Self, Rc<RefCell<Probe>>, Rc<RefCell<bool>>) {
        let probe = Rc::new(RefCell::new(Probe::default()));
        let stopped = Rc::new(RefCell::new(false));
        let link = RamLink {
            name: name.into(),
            session: Session::new(kasane_mount::MSIZE),
            fs: RamFs::new(Zero, "eve", "eve", 0o775),
            probe: probe.clone(),
            budget: usize::MAX,
            stopped: stopped.clone(),
            posting: false,
            patient: false,
            answers: Rc::default(),
            holding: Rc::default(),
        };
        (link, probe, stopped)
    }
}

impl Transport for RamLink {
    fn name(&self) -> &str {
        &self.name
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        if self.budget == 0 {
            return Err(format!("{}: the server died", self.name));
        }
        self.budget -= 1;
        let mut out = Vec::new();
        self.session
            .handle(&mut self.fs, frame, &mut out)
            .map_err(|e| format!("{e:?}"))?;
        let mut probe = self.probe.borrow_mut();
        probe.fids = self.session.fid_count();
        probe.exchanges += 1;
        answer[..out.len()].copy_from_slice(&out);
        Ok(out.len())
    }

    fn stop(&mut self) {
        *self.stopped.borrow_mut() = true;
    }

    fn posts(&self) -> bool {
        self.posting
    }

    fn post(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<Option<usize>, String> {
        if self.patient {
            return self.exchange(frame, answer).map(Some);
        }
        let mut later = vec![0u8; kasane_mount::MSIZE as usize];
        let n = self.exchange(frame, &mut later)?;
        later.truncate(n);
        self.answers.borrow_mut().push_back(later);
        Ok(None)
    }

    fn collect(&mut self, answer: &mut [u8]) -> Result<usize, String> {
        let Some(ready) = self.answers.borrow_mut().pop_front() else {
            return Err("collect with nothing posted".into());
        };
        answer[..ready.len()].copy_from_slice(&ready);
        Ok(ready.len())
    }

    fn peer(&self) -> u64 {
        77
    }

    fn holding(&self) -> bool {
        *self.holding.borrow()
    }
}

/// A link whose server answers with the bytes it is given.
struct Liar(Vec<u8>);

impl Transport for Liar {
    fn name(&self) -> &str {
        "liar"
    }

    fn exchange(&mut self, _frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        let n = self.0.len().min(answer.len());
        answer[..n].copy_from_slice(&self.0[..n]);
        Ok(n)
    }
}

fn caller() -> Caller<'static> {
    Caller::new(1, "eve")
}

fn rw() -> FileMode {
    FileMode::from_bits_retain(0o664)
}

fn ready<T>(io: Io<T>) -> T {
    match io {
        Io::Ready(value) => value,
        Io::WouldBlock(key) => panic!("#M blocked on {key:?}"),
    }
}

fn mounted() -> (MountDriver<RamLink>, File, Rc<RefCell<Probe>>) {
    let (link, probe, _) = RamLink::new("ramfs");
    let mut m = MountDriver::new();
    m.add_link(LinkId(1), link);
    let root = m.attach(&caller(), &attach_spec(LinkId(1), "")).unwrap();
    (m, root, probe)
}

fn names(entries: &[Stat]) -> Vec<&str> {
    entries.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn create_write_read_list_rename_remove_and_every_fid_is_clunked() {
    let (mut m, root, probe) = mounted();
    let c = caller();
    let baseline = probe.borrow().fids;
    assert_eq!(baseline, 1, "the attach fid");

    let file = m.create(&c, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    assert_eq!(ready(m.write(&c, &file, 0, b"hello mount").unwrap()), 11);
    assert_eq!(ready(m.read(&c, &file, 6, 100).unwrap()), b"mount");
    m.close(&file, Some(OpenMode::ORDWR));
    assert_eq!(probe.borrow().fids, baseline);

    // Walked chans share a fid per file; an open gets its own clone.
    let walked = m.walk(&c, &root, "f").unwrap();
    let again = m.walk(&c, &root, "f").unwrap();
    assert_eq!(walked, again);
    assert_eq!(probe.borrow().fids, baseline + 1);
    let opened = m.clone_file(&c, &walked).unwrap();
    assert_ne!(opened.dev, walked.dev);
    assert!(matches!(
        m.open(&c, &opened, OpenMode::OREAD),
        Ok(Opened::File(_))
    ));
    assert_eq!(ready(m.read(&c, &opened, 0, 5).unwrap()), b"hello");
    // An open of a shared walked chan is refused: its fid must stay unopened.
    assert!(m.open(&c, &walked, OpenMode::OREAD).is_err());

    let stat = m.stat(&c, &walked).unwrap();
    assert_eq!((stat.kind, stat.length), ('M' as u16, 11));
    assert_eq!(stat.dev, root.dev);
    assert_eq!(names(&m.read_dir(&c, &root).unwrap()), ["f"]);

    // wstat renames (stat(5): everything else "don't touch").
    let mut rename = Stat::dont_touch();
    rename.name = "g".into();
    m.wstat(&c, &walked, &rename).unwrap();
    assert_eq!(names(&m.read_dir(&c, &root).unwrap()), ["g"]);
    assert_eq!(m.walk(&c, &root, "f"), Err(Error::NOT_FOUND));

    m.close(&opened, Some(OpenMode::OREAD));
    m.close(&walked, None);
    assert_eq!(probe.borrow().fids, baseline + 1, "one walked chan left");
    m.remove(&c, &again).unwrap();
    m.close(&again, None);
    assert_eq!(probe.borrow().fids, baseline);
    assert!(m.read_dir(&c, &root).unwrap().is_empty());
    m.close(&root, None);
    assert_eq!(probe.borrow().fids, 0);
}

#[test]
fn errors_come_back_as_plan9_strings() {
    let (mut m, root, probe) = mounted();
    let c = caller();
    assert_eq!(m.walk(&c, &root, "missing"), Err(Error::NOT_FOUND));
    let dir = m
        .create(&c, &root, "d", FileMode::DMDIR | rw(), OpenMode::OREAD)
        .unwrap();
    m.close(&dir, Some(OpenMode::OREAD));
    let walked = m.walk(&c, &root, "d").unwrap();
    let inner = m.create(&c, &walked, "x", rw(), OpenMode::OWRITE).unwrap();
    m.close(&inner, Some(OpenMode::OWRITE));
    let err = m.remove(&c, &walked).unwrap_err();
    assert_eq!(err.as_str(), "directory is not empty");
    m.close(&walked, None);
    // A failed walk or remove leaves no fid behind.
    assert_eq!(probe.borrow().fids, 1);
    // Naming #M directly, or a link that is not there, is refused.
    assert_eq!(m.attach(&c, "no-space"), Err(Error::NO_ATTACH));
    assert_eq!(
        m.attach(&c, &attach_spec(LinkId(9), "")),
        Err(Error::HUNGUP)
    );
}

#[test]
fn a_dead_server_hangs_its_link_up_and_waits_to_be_restarted() {
    let (mut link, _, stopped) = RamLink::new("ramfs");
    link.budget = 4; // version, attach, then two more
    let mut m = MountDriver::new();
    m.add_link(LinkId(1), link);
    let c = caller();
    let root = m.attach(&c, &attach_spec(LinkId(1), "")).unwrap();
    let file = m.create(&c, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    // The third request after the attach finds the server dead.
    assert_eq!(m.write(&c, &file, 0, b"x"), Err(Error::HUNGUP));
    assert!(*stopped.borrow(), "the transport was stopped");
    let dead = m.take_dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].link, LinkId(1));
    assert!(dead[0].reason.contains("the server died"));
    assert!(m.take_dead().is_empty(), "reported once");
    // Every later operation on the old link answers at once; closes are
    // quiet.
    assert_eq!(m.walk(&c, &root, "f"), Err(Error::HUNGUP));
    assert_eq!(m.read_dir(&c, &root), Err(Error::HUNGUP));
    m.close(&file, Some(OpenMode::ORDWR));
    m.close(&root, None);
    // The owner restarts the server on a new link; a new mount works.
    let (fresh, _, _) = RamLink::new("ramfs");
    m.add_link(LinkId(2), fresh);
    let root = m.attach(&c, &attach_spec(LinkId(2), "")).unwrap();
    assert!(m.read_dir(&c, &root).unwrap().is_empty());
}

#[test]
fn nonsense_answers_are_errors_not_panics() {
    let answers: [Vec<u8>; 4] = [
        Vec::new(),
        vec![0xff; 64],
        // Rversion with a size field longer than the frame.
        vec![200, 0, 0, 0, 101, 0xff, 0xff, 0, 32, 0, 0],
        // A well-formed Rerror for a tag nobody used.
        {
            let mut frame = vec![0, 0, 0, 0, 107, 0x34, 0x12, 4, 0];
            frame.extend_from_slice(b"boom");
            let size = frame.len() as u32;
            frame[..4].copy_from_slice(&size.to_le_bytes());
            frame
        },
    ];
    for answer in answers {
        let mut m = MountDriver::new();
        m.add_link(LinkId(1), Liar(answer.clone()));
        let result = m.attach(&caller(), &attach_spec(LinkId(1), ""));
        assert!(result.is_err(), "{answer:?} gave {result:?}");
        // A server that answers with something else than 9P loses its link.
        let dead = m.take_dead();
        assert_eq!(dead.len(), 1, "{answer:?}");
        assert!(
            dead[0].reason.contains("9P botch") || dead[0].reason.contains("whole 9P frame"),
            "{}",
            dead[0].reason
        );
    }
}

/// A posting link and the queue its answers wait in.
/// Answers a posting test link holds until the test delivers them.
type Answers = Rc<RefCell<VecDeque<Vec<u8>>>>;

fn posting() -> (MountDriver<RamLink>, File, Answers) {
    let (mut link, _, _) = RamLink::new("ramfs");
    link.posting = true;
    let answers = link.answers.clone();
    let mut m = MountDriver::new();
    m.add_link(LinkId(1), link);
    let root = m.attach(&caller(), &attach_spec(LinkId(1), "")).unwrap();
    (m, root, answers)
}

fn deliver_one(m: &mut MountDriver<RamLink>, answers: &Answers) {
    let answer = answers
        .borrow_mut()
        .pop_front()
        .expect("an answer to deliver");
    m.deliver(LinkId(1), &answer);
}

#[test]
fn posted_reads_and_writes_wait_and_their_answers_wake_them() {
    let (mut m, root, answers) = posting();
    assert_eq!(m.link_of_peer(77), Some(LinkId(1)));
    let one = Caller::new(1, "eve");
    let two = Caller::new(2, "eve");
    let file = m.create(&one, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    assert!(answers.borrow().is_empty(), "create is a plain exchange");

    // The write is posted; its caller waits until the answer comes.
    assert!(matches!(
        m.write(&one, &file, 0, b"hello"),
        Ok(Io::WouldBlock(_))
    ));
    assert!(m.in_flight());
    assert!(m.take_wakeups().is_empty());
    assert!(matches!(
        m.write(&one, &file, 0, b"hello"),
        Ok(Io::WouldBlock(_))
    ));
    deliver_one(&mut m, &answers);
    assert!(!m.take_wakeups().is_empty());
    assert_eq!(m.write(&one, &file, 0, b"hello"), Ok(Io::Ready(5)));

    // Two readers: one request on the link at a time, the other queued.
    assert!(matches!(m.read(&one, &file, 0, 100), Ok(Io::WouldBlock(_))));
    assert!(matches!(m.read(&two, &file, 1, 100), Ok(Io::WouldBlock(_))));
    assert_eq!(answers.borrow().len(), 1);
    deliver_one(&mut m, &answers);
    assert_eq!(answers.borrow().len(), 1, "the queued read was posted");
    deliver_one(&mut m, &answers);
    assert!(!m.in_flight());
    assert_eq!(m.read(&two, &file, 1, 100), Ok(Io::Ready(b"ello".to_vec())));
    assert_eq!(
        m.read(&one, &file, 0, 100),
        Ok(Io::Ready(b"hello".to_vec()))
    );
}

#[test]
fn an_exchange_waits_for_the_posted_answer_first() {
    let (mut m, root, answers) = posting();
    let c = caller();
    let file = m.create(&c, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    assert!(matches!(m.read(&c, &file, 0, 10), Ok(Io::WouldBlock(_))));
    // The walk collects the read's answer before its own exchange.
    let walked = m.walk(&c, &root, "f").unwrap();
    assert!(answers.borrow().is_empty());
    assert!(!m.in_flight());
    assert!(!m.take_wakeups().is_empty());
    assert_eq!(m.read(&c, &file, 0, 10), Ok(Io::Ready(Vec::new())));
    m.close(&walked, None);
}

#[test]
fn a_gone_process_loses_its_answer_and_a_silent_server_is_hung_up() {
    let (mut m, root, answers) = posting();
    let five = Caller::new(5, "eve");
    let file = m.create(&five, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    assert!(matches!(m.read(&five, &file, 0, 10), Ok(Io::WouldBlock(_))));
    m.forget(5);
    deliver_one(&mut m, &answers);
    assert!(m.take_wakeups().is_empty(), "nobody to wake");
    // A retry by a pid that is not forgotten posts afresh.
    let six = Caller::new(6, "eve");
    assert!(matches!(m.read(&six, &file, 0, 10), Ok(Io::WouldBlock(_))));
    m.expire(1_000, 10);
    m.expire(1_005, 10);
    assert!(m.take_dead().is_empty(), "within the limit");
    m.expire(1_011, 10);
    let dead = m.take_dead();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("no answer in time"),
        "{}",
        dead[0].reason
    );
    assert!(!m.take_wakeups().is_empty());
    assert_eq!(m.read(&six, &file, 0, 10), Err(Error::HUNGUP));
    assert_eq!(m.link_of_peer(77), None);
}

/// A transport that still holds a posted request (the Linux link while
/// its agent boots) has sent nothing yet: no answer deadline runs for it
/// until the request goes out, and then the whole limit does.
#[test]
fn no_deadline_runs_while_the_transport_holds_the_request() {
    let (mut link, _, _) = RamLink::new("ramfs");
    link.posting = true;
    let holding = link.holding.clone();
    let mut m = MountDriver::new();
    m.add_link(LinkId(1), link);
    let root = m.attach(&caller(), &attach_spec(LinkId(1), "")).unwrap();
    let five = Caller::new(5, "eve");
    let file = m.create(&five, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    *holding.borrow_mut() = true;
    assert!(matches!(m.read(&five, &file, 0, 10), Ok(Io::WouldBlock(_))));
    m.expire(1_000, 10);
    m.expire(100_000, 10);
    assert!(m.take_dead().is_empty(), "held, not late");
    // Sent: the limit counts from the first look after that.
    *holding.borrow_mut() = false;
    m.expire(200_000, 10);
    m.expire(200_010, 10);
    assert!(m.take_dead().is_empty(), "within the limit");
    m.expire(200_011, 10);
    assert_eq!(m.take_dead().len(), 1);
}

#[test]
fn an_answer_nobody_posted_or_that_does_not_decode_hangs_the_link_up() {
    let (mut m, _, _) = posting();
    m.deliver(LinkId(1), b"\x07\0\0\0\x75\0\0");
    let dead = m.take_dead();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("nobody asked for"),
        "{}",
        dead[0].reason
    );

    let (mut m, root, answers) = posting();
    let c = caller();
    let file = m.create(&c, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    assert!(matches!(m.read(&c, &file, 0, 10), Ok(Io::WouldBlock(_))));
    answers.borrow_mut().clear();
    m.deliver(LinkId(1), &[0xff; 9]);
    let dead = m.take_dead();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("9P botch"), "{}", dead[0].reason);
    assert_eq!(m.read(&c, &file, 0, 10), Err(Error::HUNGUP));
}

#[test]
fn a_quick_answer_to_a_posted_request_is_taken_at_once() {
    let (mut link, probe, _) = RamLink::new("ramfs");
    link.posting = true;
    link.patient = true;
    let mut m = MountDriver::new();
    m.add_link(LinkId(1), link);
    let c = caller();
    let root = m.attach(&c, &attach_spec(LinkId(1), "")).unwrap();
    let file = m.create(&c, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    assert_eq!(m.write(&c, &file, 0, b"now"), Ok(Io::Ready(3)));
    assert_eq!(m.read(&c, &file, 0, 10), Ok(Io::Ready(b"now".to_vec())));
    assert!(!m.in_flight());
    m.close(&file, Some(OpenMode::ORDWR));
    m.close(&root, None);
    assert_eq!(probe.borrow().fids, 0);
}

/// A posting link whose answers wait for the test, with its probe.
fn posting_with_probe() -> (MountDriver<RamLink>, File, Answers, Rc<RefCell<Probe>>) {
    let (mut link, probe, _) = RamLink::new("ramfs");
    link.posting = true;
    let answers = link.answers.clone();
    let mut m = MountDriver::new();
    m.add_link(LinkId(1), link);
    let root = m.attach(&caller(), &attach_spec(LinkId(1), "")).unwrap();
    (m, root, answers, probe)
}

/// Delivers every answer, and those of the frames they let go out.
fn deliver_all(m: &mut MountDriver<RamLink>, answers: &Answers) {
    loop {
        let next = answers.borrow_mut().pop_front();
        let Some(answer) = next else { break };
        m.deliver(LinkId(1), &answer);
    }
}

/// Runs `call` as core does: in a call of `pid`, parked and run again
/// after each wakeup, until it is not blocked. Returns its result and how
/// many runs it took.
fn until_done<T>(
    m: &mut MountDriver<RamLink>,
    answers: &Answers,
    pid: u32,
    mut call: impl FnMut(&mut MountDriver<RamLink>) -> Result<T, Error>,
) -> (Result<T, Error>, usize) {
    for runs in 1..20 {
        m.begin_call(pid);
        let result = call(m);
        let blocked = m.call_blocked();
        assert_eq!(blocked, result.as_ref().err() == Some(&Error::PENDING));
        m.end_call(pid, blocked);
        if !blocked {
            return (result, runs);
        }
        assert!(m.take_wakeups().is_empty(), "no answer yet, no wakeup");
        // Answers come (the parts of a long read wake nobody until the
        // last); the call runs again on the wakeup.
        loop {
            let answer = answers.borrow_mut().pop_front().expect("something asked");
            m.deliver(LinkId(1), &answer);
            if !m.take_wakeups().is_empty() {
                break;
            }
        }
    }
    panic!("the call never finished");
}

#[test]
fn a_slow_walk_blocks_only_its_call_and_the_rerun_takes_the_answer() {
    let (mut m, root, answers, probe) = posting_with_probe();
    let c = caller();
    let file = m.create(&c, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    m.close(&file, Some(OpenMode::ORDWR));
    deliver_all(&mut m, &answers);
    let baseline = probe.borrow().fids;
    let exchanges = probe.borrow().exchanges;

    let (walked, runs) = until_done(&mut m, &answers, 1, |m| m.walk(&c, &root, "f"));
    let walked = walked.unwrap();
    assert_eq!(runs, 2, "blocked once, then answered from the journal");
    assert_eq!(probe.borrow().exchanges, exchanges + 1, "one Twalk");
    assert_eq!(probe.borrow().fids, baseline + 1);
    m.close(&walked, None);
    deliver_all(&mut m, &answers);
    assert_eq!(probe.borrow().fids, baseline);
}

#[test]
fn a_create_that_waits_is_made_once_and_keeps_no_stray_fid() {
    let (mut m, root, answers, probe) = posting_with_probe();
    let c = caller();
    let baseline = probe.borrow().fids;
    // create = clone the directory's fid, then Tcreate: each waits once.
    let (file, runs) = until_done(&mut m, &answers, 3, |m| {
        m.create(&c, &root, "f", rw(), OpenMode::ORDWR)
    });
    let file = file.unwrap();
    assert_eq!(runs, 3);
    assert_eq!(probe.borrow().fids, baseline + 1, "the created file's fid");
    // A second create of the same name is refused by the server: the
    // first was not made twice.
    let (again, _) = until_done(&mut m, &answers, 3, |m| {
        m.create(&c, &root, "f", rw(), OpenMode::ORDWR)
    });
    assert!(again.is_err());
    deliver_all(&mut m, &answers);
    assert_eq!(
        probe.borrow().fids,
        baseline + 1,
        "the failed create's clone went"
    );
    m.close(&file, Some(OpenMode::ORDWR));
    deliver_all(&mut m, &answers);
    assert_eq!(probe.borrow().fids, baseline);
    let (listing, _) = until_done(&mut m, &answers, 3, |m| m.read_dir(&c, &root));
    assert_eq!(names(&listing.unwrap()), ["f"]);
    deliver_all(&mut m, &answers);
    assert_eq!(probe.borrow().fids, baseline);
}

#[test]
fn a_busy_link_blocks_a_call_until_it_is_free() {
    let (mut m, root, answers, _) = posting_with_probe();
    let c = caller();
    let file = m.create(&c, &root, "f", rw(), OpenMode::ORDWR).unwrap();
    // Process 5's read is on the wire.
    let five = Caller::new(5, "eve");
    assert!(matches!(m.read(&five, &file, 0, 10), Ok(Io::WouldBlock(_))));
    // Process 6's stat finds the link busy and asks nothing yet.
    m.begin_call(6);
    assert_eq!(m.stat(&c, &root), Err(Error::PENDING));
    assert!(m.call_blocked());
    m.end_call(6, true);
    assert_eq!(answers.borrow().len(), 1, "only the read was sent");
    deliver_one(&mut m, &answers);
    assert!(!m.take_wakeups().is_empty(), "the free link wakes the stat");
    let (stat, runs) = until_done(&mut m, &answers, 6, |m| m.stat(&c, &root));
    assert!(stat.unwrap().mode.contains(FileMode::DMDIR));
    assert_eq!(runs, 2);
    assert_eq!(m.read(&five, &file, 0, 10), Ok(Io::Ready(Vec::new())));
}

#[test]
fn a_call_that_goes_another_way_or_whose_process_went_leaves_no_fid() {
    let (mut m, root, answers, probe) = posting_with_probe();
    let c = caller();
    for name in ["a", "b"] {
        let file = m.create(&c, &root, name, rw(), OpenMode::ORDWR).unwrap();
        m.close(&file, Some(OpenMode::ORDWR));
    }
    deliver_all(&mut m, &answers);
    let baseline = probe.borrow().fids;

    // The first run walks to a and waits; the rerun walks to b instead.
    m.begin_call(2);
    assert_eq!(m.walk(&c, &root, "a"), Err(Error::PENDING));
    m.end_call(2, true);
    deliver_one(&mut m, &answers);
    assert!(!m.take_wakeups().is_empty());
    let (b, _) = until_done(&mut m, &answers, 2, |m| m.walk(&c, &root, "b"));
    let b = b.unwrap();
    deliver_all(&mut m, &answers);
    assert_eq!(probe.borrow().fids, baseline + 1, "a's fid was clunked");
    m.close(&b, None);
    deliver_all(&mut m, &answers);
    assert!(m.take_wakeups().is_empty(), "clunks wake nobody");

    // A process that goes while its walk is on the wire.
    m.begin_call(4);
    assert_eq!(m.walk(&c, &root, "a"), Err(Error::PENDING));
    m.end_call(4, true);
    m.forget(4);
    deliver_all(&mut m, &answers);
    assert!(m.take_wakeups().is_empty(), "nobody to wake");
    assert_eq!(probe.borrow().fids, baseline, "the orphan walk's fid went");
}

#[test]
fn a_silent_server_fails_the_waiting_call_with_a_hangup() {
    let (mut m, root, _answers, _) = posting_with_probe();
    let c = caller();
    m.begin_call(1);
    assert_eq!(m.walk(&c, &root, "x"), Err(Error::PENDING));
    m.end_call(1, true);
    m.expire(0, 10);
    m.expire(11, 10);
    assert_eq!(m.take_dead().len(), 1);
    assert!(!m.take_wakeups().is_empty());
    m.begin_call(1);
    assert_eq!(m.walk(&c, &root, "x"), Err(Error::HUNGUP));
    assert!(!m.call_blocked());
    m.end_call(1, false);
}

#[test]
fn a_call_that_reads_after_walking_journals_its_reads_too() {
    // A spawn: walk to the program, open a clone, stat it, read it all.
    let (mut m, root, answers, probe) = posting_with_probe();
    let c = caller();
    let program: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    let file = m.create(&c, &root, "prog", rw(), OpenMode::ORDWR).unwrap();
    let mut written = 0;
    while written < program.len() {
        let end = (written + 4096).min(program.len());
        match m
            .write(&c, &file, written as u64, &program[written..end])
            .unwrap()
        {
            Io::Ready(n) => written += n as usize,
            Io::WouldBlock(_) => deliver_all(&mut m, &answers),
        }
    }
    m.close(&file, Some(OpenMode::ORDWR));
    deliver_all(&mut m, &answers);
    m.take_wakeups();
    let baseline = probe.borrow().fids;
    let before = probe.borrow().exchanges;
    let spawn = |m: &mut MountDriver<RamLink>| -> Result<Vec<u8>, Error> {
        let walked = m.walk(&c, &root, "prog")?;
        let opened = m.clone_file(&c, &walked);
        m.close(&walked, None);
        let opened = opened?;
        let result = (|| {
            m.open(&c, &opened, OpenMode::OREAD)?;
            let mut bytes = Vec::new();
            loop {
                match m.read(&c, &opened, bytes.len() as u64, 1 << 20)? {
                    Io::Ready(data) if data.is_empty() => return Ok(bytes),
                    Io::Ready(data) => bytes.extend_from_slice(&data),
                    Io::WouldBlock(_) => return Err(Error::new("would block")),
                }
            }
        })();
        m.close(&opened, Some(OpenMode::OREAD));
        result
    };
    let (bytes, runs) = until_done(&mut m, &answers, 9, spawn);
    assert_eq!(bytes.unwrap(), program);
    deliver_all(&mut m, &answers);
    // Each request went to the server once: walk, clone, open, three
    // parts of the long read and the empty read at the end, two clunks.
    let asked = probe.borrow().exchanges - before;
    assert_eq!(asked, 9, "{runs} runs");
    assert_eq!(probe.borrow().fids, baseline);
}

/// One call of a process, as core would make it: servant calls, every chan
/// it made closed before it ends, whether it succeeds, fails or blocks.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// Walk to a name and stat it.
    Stat(usize),
    /// Walk to a name, open a clone of it and read it.
    Read(usize),
    /// Create a name (it may exist) and close it.
    Create(usize),
    /// Remove a name (it may not exist).
    Remove(usize),
    /// List the root.
    List,
}

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Runs one attempt of `call`; `Ok(true)` if it must wait and run again.
fn attempt(m: &mut MountDriver<RamLink>, root: &File, pid: u32, call: Call) -> bool {
    let c = Caller::new(pid, "eve");
    m.begin_call(pid);
    let mut waits = false;
    match call {
        Call::Stat(n) => {
            if let Ok(file) = m.walk(&c, root, NAMES[n]) {
                let _ = m.stat(&c, &file);
                m.close(&file, None);
            }
        }
        Call::Read(n) => {
            if let Ok(file) = m.walk(&c, root, NAMES[n]) {
                if let Ok(opened) = m.clone_file(&c, &file) {
                    let mode = OpenMode::OREAD;
                    if m.open(&c, &opened, mode).is_ok() {
                        waits = matches!(m.read(&c, &opened, 0, 64), Ok(Io::WouldBlock(_)));
                        m.close(&opened, Some(mode));
                    } else {
                        m.close(&opened, None);
                    }
                }
                m.close(&file, None);
            }
        }
        Call::Create(n) => {
            if let Ok(file) = m.create(&c, root, NAMES[n], rw(), OpenMode::ORDWR) {
                m.close(&file, Some(OpenMode::ORDWR));
            }
        }
        Call::Remove(n) => {
            if let Ok(file) = m.walk(&c, root, NAMES[n]) {
                let _ = m.remove(&c, &file);
                m.close(&file, None);
            }
        }
        Call::List => {
            let _ = m.read_dir(&c, root);
        }
    }
    let parked = waits || m.call_blocked();
    m.end_call(pid, parked);
    parked
}

/// What happens next in a run: a process starts a call, the server's
/// oldest answer arrives, or a process goes.
#[derive(Clone, Copy, Debug)]
enum Step {
    Start(u32, Call),
    Answer,
    Exit(u32),
}

fn step() -> impl Strategy<Value = Step> {
    let call = prop_oneof![
        (0..3usize).prop_map(Call::Stat),
        (0..3usize).prop_map(Call::Read),
        (0..3usize).prop_map(Call::Create),
        (0..3usize).prop_map(Call::Remove),
        Just(Call::List),
    ];
    prop_oneof![
        3 => (1..4u32, call).prop_map(|(pid, call)| Step::Start(pid, call)),
        3 => Just(Step::Answer),
        1 => (1..4u32).prop_map(Step::Exit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Processes whose calls interleave on a slow server, some going away
    /// mid-call: every call finishes once the server has answered, and
    /// every fid the calls made is clunked in the end.
    #[test]
    fn interleaved_slow_calls_finish_and_leave_no_fid(steps in proptest::collection::vec(step(), 1..40)) {
        let (mut m, root, answers, probe) = posting_with_probe();
        let baseline = probe.borrow().fids;
        // Each process has at most one call, parked or not.
        let mut parked: std::collections::BTreeMap<u32, Call> = Default::default();
        let rerun = |m: &mut MountDriver<RamLink>, parked: &mut std::collections::BTreeMap<u32, Call>| {
            if m.take_wakeups().is_empty() {
                return;
            }
            // As core does: a wakeup runs every parked #M call again.
            for (pid, call) in std::mem::take(parked) {
                if attempt(m, &root, pid, call) {
                    parked.insert(pid, call);
                }
            }
        };
        for step in steps {
            match step {
                Step::Start(pid, call) if !parked.contains_key(&pid) => {
                    if attempt(&mut m, &root, pid, call) {
                        parked.insert(pid, call);
                    }
                }
                Step::Start(..) => {}
                Step::Answer => {
                    let next = answers.borrow_mut().pop_front();
                    if let Some(answer) = next {
                        m.deliver(LinkId(1), &answer);
                    }
                }
                Step::Exit(pid) => {
                    parked.remove(&pid);
                    m.forget(pid);
                }
            }
            rerun(&mut m, &mut parked);
        }
        // The server answers everything; every parked call finishes.
        for _ in 0..200 {
            if parked.is_empty() && answers.borrow().is_empty() {
                break;
            }
            let next = answers.borrow_mut().pop_front();
            if let Some(answer) = next {
                m.deliver(LinkId(1), &answer);
            }
            rerun(&mut m, &mut parked);
        }
        prop_assert!(parked.is_empty(), "calls still parked: {:?}", parked);
        prop_assert!(!m.in_flight());
        prop_assert_eq!(probe.borrow().fids, baseline, "fids left behind");
        prop_assert!(m.take_dead().is_empty(), "the link stayed up");
    }
}
