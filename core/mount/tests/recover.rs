//! `#M`'s transparent recovery against a real ramfs that dies and is
//! restarted from the same image (docs/core.md, "Recovery").
//!
//! The server behind the link is a `ninep-server` session over the
//! `ramfs` crate. A restart is a fresh ramfs with the image's files, put
//! there over 9P by a driver of its own, handed to `MountDriver::revive`
//! on the same link; the test checks what the chans made before the
//! failure do afterwards, and that every fid is clunked in the end.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use kasane_mount::{attach_spec, MountDriver, Transport};
use kasane_servant::{Caller, Error, File, Io, LinkId, Opened, Servant};
use ninep::{FileMode, OpenMode};
use ninep_server::Session;
use ramfs::{Clock, RamFs};

struct Zero;

impl Clock for Zero {
    fn now(&self) -> u32 {
        0
    }
}

struct Server {
    session: Session<RamFs<Zero>>,
    fs: RamFs<Zero>,
}

/// A link to a server; it dies when its shared budget runs out, as a
/// task server does when it faults. It posts and answers within the
/// post, as core's task-server link does for a quick server.
struct Link {
    server: Rc<RefCell<Server>>,
    budget: Rc<Cell<usize>>,
    /// While set, answers are held here for the test to deliver, as a
    /// slow server's come later to core's loop.
    held: Option<Rc<RefCell<Vec<Vec<u8>>>>>,
    /// What its requests under way at a death fail with, if the server
    /// comes back with nothing of the old one's (as a Linux cell does).
    lost: Option<&'static str>,
}

impl Transport for Link {
    fn name(&self) -> &str {
        "ramfs"
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        if self.budget.get() == 0 {
            return Err("ramfs: the server died".into());
        }
        self.budget.set(self.budget.get() - 1);
        let mut out = Vec::new();
        let mut server = self.server.borrow_mut();
        let Server { session, fs } = &mut *server;
        session
            .handle(fs, frame, &mut out)
            .map_err(|e| format!("{e:?}"))?;
        answer[..out.len()].copy_from_slice(&out);
        Ok(out.len())
    }

    fn posts(&self) -> bool {
        true
    }

    fn restart_error(&self) -> Option<&'static str> {
        self.lost
    }

    fn post(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<Option<usize>, String> {
        let Some(held) = self.held.clone() else {
            return self.exchange(frame, answer).map(Some);
        };
        let mut later = vec![0u8; kasane_mount::MSIZE as usize];
        let n = self.exchange(frame, &mut later)?;
        later.truncate(n);
        held.borrow_mut().push(later);
        Ok(None)
    }
}

fn caller() -> Caller<'static> {
    Caller::new(1, "eve")
}

fn ready<T: std::fmt::Debug>(io: Result<Io<T>, Error>) -> T {
    match io {
        Ok(Io::Ready(value)) => value,
        other => panic!("not ready: {other:?}"),
    }
}

/// A fresh server holding the image: `a` ("alpha") and `d/b` ("beta").
fn server_from_image() -> Rc<RefCell<Server>> {
    let server = Rc::new(RefCell::new(Server {
        session: Session::new(kasane_mount::MSIZE),
        fs: RamFs::new(Zero, "eve", "eve", 0o775),
    }));
    let budget = Rc::new(Cell::new(usize::MAX));
    let mut m = MountDriver::new();
    m.add_link(
        LinkId(1),
        Link {
            server: server.clone(),
            budget,
            held: None,
            lost: None,
        },
    );
    let c = caller();
    let root = m.attach(&c, &attach_spec(LinkId(1), "")).unwrap();
    let rw = FileMode::from_bits_retain(0o664);
    let a = m.create(&c, &root, "a", rw, OpenMode::OWRITE).unwrap();
    ready(m.write(&c, &a, 0, b"alpha"));
    m.close(&a, Some(OpenMode::OWRITE));
    let dir = FileMode::DMDIR | FileMode::from_bits_retain(0o775);
    let d = m.create(&c, &root, "d", dir, OpenMode::OREAD).unwrap();
    m.close(&d, Some(OpenMode::OREAD));
    let d = m.walk(&c, &root, "d").unwrap();
    let b = m.create(&c, &d, "b", rw, OpenMode::OWRITE).unwrap();
    ready(m.write(&c, &b, 0, b"beta"));
    m.close(&b, Some(OpenMode::OWRITE));
    m.close(&d, None);
    m.close(&root, None);
    server
}

fn fids(server: &Rc<RefCell<Server>>) -> usize {
    server.borrow().session.fid_count()
}

/// A recovering driver with the image mounted; the budget kills it.
type Mounted = (
    MountDriver<Link>,
    File,
    Rc<Cell<usize>>,
    Rc<RefCell<Server>>,
);

fn mounted() -> Mounted {
    let server = server_from_image();
    let budget = Rc::new(Cell::new(usize::MAX));
    let mut m = MountDriver::new();
    m.recover_links(true);
    m.add_link(
        LinkId(1),
        Link {
            server: server.clone(),
            budget: budget.clone(),
            held: None,
            lost: None,
        },
    );
    let root = m.attach(&caller(), &attach_spec(LinkId(1), "")).unwrap();
    (m, root, budget, server)
}

/// Opens `file` (a clone, as core does) for `mode`.
fn open(m: &mut MountDriver<Link>, file: &File, mode: OpenMode) -> File {
    let opened = m.clone_file(&caller(), file).unwrap();
    assert!(matches!(
        m.open(&caller(), &opened, mode),
        Ok(Opened::File(_))
    ));
    opened
}

/// A link to `server` with no limit on its answers, holding none back.
fn live_link(server: &Rc<RefCell<Server>>) -> Link {
    Link {
        server: server.clone(),
        budget: Rc::new(Cell::new(usize::MAX)),
        held: None,
        lost: None,
    }
}

/// The server restarts from its image; its new link is revived.
fn restart(m: &mut MountDriver<Link>) -> Rc<RefCell<Server>> {
    let dead = m.take_dead();
    assert_eq!(dead.len(), 1, "one dead link");
    assert_eq!(dead[0].link, LinkId(1));
    let server = server_from_image();
    let link = live_link(&server);
    m.revive(LinkId(1), link).expect("the new server answers");
    server
}

#[test]
fn a_read_under_way_is_sent_again_and_chans_come_back() {
    let (mut m, root, budget, _) = mounted();
    let c = caller();
    let d = m.walk(&c, &root, "d").unwrap();
    let b = m.walk(&c, &d, "b").unwrap();
    let reader = open(&mut m, &b, OpenMode::OREAD);
    assert_eq!(ready(m.read(&c, &reader, 0, 100)), b"beta");
    let rw = FileMode::from_bits_retain(0o664);
    let made = m.create(&c, &root, "new", rw, OpenMode::ORDWR).unwrap();
    ready(m.write(&c, &made, 0, b"lost"));

    // The server dies under the next read: the reader waits, no error.
    budget.set(0);
    let Ok(Io::WouldBlock(_)) = m.read(&c, &reader, 1, 100) else {
        panic!("the read under way must wait for the restart");
    };
    let server = restart(&mut m);
    // Its retry takes the answer the new server gave to the read sent again.
    assert_eq!(ready(m.read(&c, &reader, 1, 100)), b"eta");
    assert_eq!(ready(m.read(&c, &reader, 0, 2)), b"be");
    // Walked chans work as before: stat, walks from them, listings.
    assert_eq!(m.stat(&c, &b).unwrap().length, 4);
    let up = m.walk(&c, &d, "..").unwrap();
    assert_eq!(up.qid.path, root.qid.path);
    m.close(&up, None);
    let a = m.walk(&c, &root, "a").unwrap();
    let a_reader = open(&mut m, &a, OpenMode::OREAD);
    assert_eq!(ready(m.read(&c, &a_reader, 0, 100)), b"alpha");
    // The file made after the server started is gone: a clear error,
    // never another file's bytes.
    assert_eq!(m.read(&c, &made, 0, 100), Err(Error::GONE));
    assert_eq!(Error::GONE.as_str(), "server restarted: file is gone");
    assert_eq!(m.write(&c, &made, 0, b"x"), Err(Error::GONE));
    // Every fid goes with its chan on the new server.
    for (file, mode) in [
        (a_reader, Some(OpenMode::OREAD)),
        (reader, Some(OpenMode::OREAD)),
        (made, Some(OpenMode::ORDWR)),
        (a, None),
        (b, None),
        (d, None),
    ] {
        m.close(&file, mode);
    }
    m.close(&root, None);
    assert_eq!(fids(&server), 0, "every fid clunked");
}

/// A restarted server whose `a` is another file of that name (a new qid
/// path) and whose `d` is a plain file, so `d/b` fails at its second name.
fn restart_changed(m: &mut MountDriver<Link>) -> Rc<RefCell<Server>> {
    assert_eq!(m.take_dead().len(), 1, "one dead link");
    let server = server_from_image();
    let mut other = MountDriver::new();
    other.add_link(LinkId(2), live_link(&server));
    let c = caller();
    let root = other.attach(&c, &attach_spec(LinkId(2), "")).unwrap();
    let rw = FileMode::from_bits_retain(0o664);
    for path in [&["a"][..], &["d", "b"], &["d"]] {
        let mut file = root;
        for name in path {
            file = other.walk(&c, &file, name).unwrap();
        }
        other.remove(&c, &file).unwrap();
    }
    for (name, data) in [("a", &b"other"[..]), ("d", b"plain")] {
        let made = other.create(&c, &root, name, rw, OpenMode::OWRITE).unwrap();
        ready(other.write(&c, &made, 0, data));
        other.close(&made, Some(OpenMode::OWRITE));
    }
    other.close(&root, None);
    let link = live_link(&server);
    m.revive(LinkId(1), link).expect("the new server answers");
    server
}

/// A qid path names one file of a server (walk(5)): a chan whose name
/// leads to another file after the restart is gone, never that file's
/// bytes; and a chan whose walk the new server refuses fails with the
/// server's reason for it.
#[test]
fn another_file_by_the_same_name_is_not_the_chans_file() {
    let (mut m, root, budget, _) = mounted();
    let c = caller();
    let a = m.walk(&c, &root, "a").unwrap();
    let reader = open(&mut m, &a, OpenMode::OREAD);
    let d = m.walk(&c, &root, "d").unwrap();
    let b = m.walk(&c, &d, "b").unwrap();
    let b_reader = open(&mut m, &b, OpenMode::OREAD);
    budget.set(0);
    let Ok(Io::WouldBlock(_)) = m.read(&c, &reader, 0, 100) else {
        panic!("the read under way must wait for the restart");
    };
    let server = restart_changed(&mut m);
    assert_eq!(m.read(&c, &reader, 0, 100), Err(Error::GONE));
    assert_eq!(m.stat(&c, &a).map(|s| s.length), Err(Error::GONE));
    let refused = m.read(&c, &b_reader, 0, 100).unwrap_err();
    assert_ne!(refused, Error::GONE, "the server's own reason");
    assert_eq!(refused, Error::NOT_DIR);
    assert_eq!(m.stat(&c, &b).map(|s| s.length), Err(Error::NOT_DIR));
    // The name itself leads to the new file.
    let again = m.walk(&c, &root, "a").unwrap();
    let again_reader = open(&mut m, &again, OpenMode::OREAD);
    assert_eq!(ready(m.read(&c, &again_reader, 0, 100)), b"other");
    for (file, mode) in [
        (again_reader, Some(OpenMode::OREAD)),
        (again, None),
        (reader, Some(OpenMode::OREAD)),
        (b_reader, Some(OpenMode::OREAD)),
        (a, None),
        (b, None),
        (d, None),
    ] {
        m.close(&file, mode);
    }
    m.close(&root, None);
    assert_eq!(fids(&server), 0, "every fid clunked");
}

#[test]
fn a_write_at_its_offset_is_sent_again() {
    let (mut m, root, budget, _) = mounted();
    let c = caller();
    let a = m.walk(&c, &root, "a").unwrap();
    let writer = open(&mut m, &a, OpenMode::ORDWR);
    budget.set(0);
    let Ok(Io::WouldBlock(_)) = m.write(&c, &writer, 5, b"-beta") else {
        panic!("the write under way must wait for the restart");
    };
    restart(&mut m);
    assert_eq!(ready(m.write(&c, &writer, 5, b"-beta")), 5);
    assert_eq!(ready(m.read(&c, &writer, 0, 100)), b"alpha-beta");
}

#[test]
fn a_request_that_kills_its_server_twice_fails_once() {
    let (mut m, root, budget, _) = mounted();
    let c = caller();
    let a = m.walk(&c, &root, "a").unwrap();
    let reader = open(&mut m, &a, OpenMode::OREAD);
    budget.set(0);
    assert!(matches!(m.read(&c, &reader, 0, 10), Ok(Io::WouldBlock(_))));
    // The new server dies on the same read, sent again.
    let dead = m.take_dead();
    let poisoned = Link {
        server: server_from_image(),
        // version, attach, walk a, walk a again for the open, open,
        // clunk of the attach fid (seven): then the read kills it.
        budget: Rc::new(Cell::new(7)),
        held: None,
        lost: None,
    };
    assert_eq!(dead.len(), 1);
    m.revive(LinkId(1), poisoned).unwrap();
    assert_eq!(m.read(&c, &reader, 0, 10), Err(Error::RESTARTED));
    assert_eq!(Error::RESTARTED.as_str(), "server restarted");
    // Restarted again, the next read works.
    restart(&mut m);
    assert_eq!(ready(m.read(&c, &reader, 0, 10)), b"alpha");
}

#[test]
fn a_server_not_restarted_fails_what_waited() {
    let (mut m, root, budget, _) = mounted();
    let c = caller();
    let a = m.walk(&c, &root, "a").unwrap();
    let reader = open(&mut m, &a, OpenMode::OREAD);
    budget.set(0);
    assert!(matches!(m.read(&c, &reader, 0, 10), Ok(Io::WouldBlock(_))));
    assert_eq!(m.take_dead().len(), 1);
    m.give_up(LinkId(1));
    assert_eq!(m.read(&c, &reader, 0, 10), Err(Error::HUNGUP));
    assert_eq!(m.read(&c, &reader, 0, 10), Err(Error::HUNGUP));
}

#[test]
fn a_new_server_that_dies_in_recovery_hangs_up_again() {
    let (mut m, root, budget, _) = mounted();
    let c = caller();
    let a = m.walk(&c, &root, "a").unwrap();
    let reader = open(&mut m, &a, OpenMode::OREAD);
    budget.set(0);
    assert!(matches!(m.read(&c, &reader, 0, 10), Ok(Io::WouldBlock(_))));
    assert_eq!(m.take_dead().len(), 1);
    let dying = Link {
        server: server_from_image(),
        budget: Rc::new(Cell::new(2)),
        held: None,
        lost: None,
    };
    assert_eq!(m.revive(LinkId(1), dying), Err(Error::HUNGUP));
    // The reader's one error, and the link waits for another restart.
    assert_eq!(m.read(&c, &reader, 0, 10), Err(Error::HUNGUP));
    restart(&mut m);
    assert_eq!(ready(m.read(&c, &reader, 0, 10)), b"alpha");
}

#[test]
fn a_change_under_way_is_not_sent_again() {
    let (mut m, root, budget, _) = mounted();
    let c = caller();
    // Outside a call operations are exchanges: a create that finds the
    // server dead fails at once, and is not made again.
    budget.set(0);
    let rw = FileMode::from_bits_retain(0o664);
    assert_eq!(
        m.create(&c, &root, "x", rw, OpenMode::ORDWR),
        Err(Error::HUNGUP)
    );
    restart(&mut m);
    assert_eq!(m.walk(&c, &root, "x"), Err(Error::NOT_FOUND));
    let x = m.create(&c, &root, "x", rw, OpenMode::ORDWR).unwrap();
    assert_eq!(ready(m.write(&c, &x, 0, b"ok")), 2);
}

/// A server that comes back with none of the old one's state (a Linux
/// cell booted again from its image, issue 13): the read under way when
/// it died fails once with its clear error, not `i/o on hungup channel`
/// and not sent again; while it is down a call's walk waits (core parks
/// it) and a read of a chan opened before waits too; after the revive
/// both are answered by the new server, and reads work as before.
#[test]
fn a_server_that_loses_its_state_fails_the_read_under_way_once() {
    let server = server_from_image();
    let budget = Rc::new(Cell::new(usize::MAX));
    let mut m = MountDriver::new();
    m.recover_links(true);
    let lost = Some("linux cell restarted");
    m.add_link(
        LinkId(1),
        Link {
            server,
            budget: budget.clone(),
            held: None,
            lost,
        },
    );
    let c = caller();
    let root = m.attach(&c, &attach_spec(LinkId(1), "")).unwrap();
    let a = m.walk(&c, &root, "a").unwrap();
    let reader = open(&mut m, &a, OpenMode::OREAD);
    let other = open(&mut m, &a, OpenMode::OREAD);
    budget.set(0);
    let failed = Error::new("linux cell restarted");
    assert_eq!(m.read(&c, &reader, 0, 10), Err(failed.clone()));
    assert_eq!(m.take_dead().len(), 1);
    // While the server is down: a call's walk is parked, not failed...
    m.begin_call(2);
    assert_eq!(
        m.walk(&Caller::new(2, "eve"), &root, "d"),
        Err(Error::PENDING)
    );
    assert!(m.call_blocked());
    m.end_call(2, true);
    // ... and so is a read of a chan opened before.
    let Ok(Io::WouldBlock(_)) = m.read(&c, &other, 1, 10) else {
        panic!("a read while the server is down must wait for it");
    };
    let link = Link {
        server: server_from_image(),
        budget: Rc::new(Cell::new(usize::MAX)),
        held: None,
        lost,
    };
    m.revive(LinkId(1), link).unwrap();
    assert!(!m.take_wakeups().is_empty(), "the parked call is woken");
    assert_eq!(ready(m.read(&c, &other, 1, 10)), b"lpha");
    m.begin_call(2);
    let d = m.walk(&Caller::new(2, "eve"), &root, "d").unwrap();
    m.end_call(2, false);
    // The failure was once: the reader's chan works on the new server.
    assert_eq!(ready(m.read(&c, &reader, 0, 10)), b"alpha");
    // A call whose walk was under way (the server slow) fails once with
    // the clear error when its rerun finds it in its journal; its next
    // call waits for the new server.
    let held = Rc::new(RefCell::new(Vec::new()));
    let slow = Link {
        server: server_from_image(),
        budget: Rc::new(Cell::new(usize::MAX)),
        held: Some(held.clone()),
        lost,
    };
    m.fail_link(LinkId(1), &"made slow");
    assert_eq!(m.take_dead().len(), 1);
    m.revive(LinkId(1), slow).unwrap();
    let three = Caller::new(3, "eve");
    m.begin_call(3);
    assert_eq!(m.walk(&three, &root, "a"), Err(Error::PENDING));
    m.end_call(3, true);
    held.borrow_mut().clear();
    m.fail_link(LinkId(1), &"died");
    m.begin_call(3);
    assert_eq!(m.walk(&three, &root, "a"), Err(failed.clone()));
    m.end_call(3, false);
    m.begin_call(3);
    assert_eq!(m.walk(&three, &root, "a"), Err(Error::PENDING));
    m.end_call(3, true);
    restart(&mut m);
    m.begin_call(3);
    let again = m.walk(&three, &root, "a").unwrap();
    m.end_call(3, false);
    m.close(&again, None);
    // A server that is not restarted fails what waits, as before.
    budget.set(0);
    m.fail_link(LinkId(1), &"died");
    assert_eq!(m.take_dead().len(), 1);
    m.give_up(LinkId(1));
    assert_eq!(m.read(&c, &other, 0, 10), Err(Error::HUNGUP));
    m.begin_call(2);
    assert_eq!(
        m.walk(&Caller::new(2, "eve"), &root, "d"),
        Err(Error::HUNGUP)
    );
    m.end_call(2, false);
    m.close(&d, None);
}

/// A server that is slow, then dies, under calls (core parks each and
/// runs it again from its journal): a stat under way is asked again of
/// the new server; a create under way fails once with "server
/// restarted", and the process's next call works.
#[test]
fn calls_parked_on_a_dead_server_rerun_or_fail_once() {
    let server = server_from_image();
    let held = Rc::new(RefCell::new(Vec::new()));
    let mut m = MountDriver::new();
    m.recover_links(true);
    m.add_link(
        LinkId(1),
        Link {
            server,
            budget: Rc::new(Cell::new(usize::MAX)),
            held: None,
            lost: None,
        },
    );
    let root = m.attach(&caller(), &attach_spec(LinkId(1), "")).unwrap();
    let a = m.walk(&caller(), &root, "a").unwrap();
    let slow = Link {
        server: server_from_image(),
        budget: Rc::new(Cell::new(usize::MAX)),
        held: Some(held.clone()),
        lost: None,
    };
    // Make the link slow: a restart onto a server that holds its answers.
    m.fail_link(LinkId(1), &"made slow");
    assert_eq!(m.take_dead().len(), 1);
    m.revive(LinkId(1), slow).unwrap();
    assert!(held.borrow().is_empty(), "recovery is exchanges");

    let (one, two) = (Caller::new(1, "eve"), Caller::new(2, "eve"));
    m.begin_call(1);
    assert_eq!(m.stat(&one, &a), Err(Error::PENDING));
    m.end_call(1, true);
    m.begin_call(2);
    let rw = FileMode::from_bits_retain(0o664);
    // The link is busy with the stat: the create waits for it.
    assert_eq!(
        m.create(&two, &root, "x", rw, OpenMode::ORDWR),
        Err(Error::PENDING)
    );
    m.end_call(2, true);
    let answer = held.borrow_mut().remove(0);
    m.deliver(LinkId(1), &answer);
    m.begin_call(2);
    // The create goes out now (a clone walk first, answered late).
    assert_eq!(
        m.create(&two, &root, "x", rw, OpenMode::ORDWR),
        Err(Error::PENDING)
    );
    m.end_call(2, true);
    let answer = held.borrow_mut().remove(0);
    m.deliver(LinkId(1), &answer);
    m.begin_call(2);
    assert_eq!(
        m.create(&two, &root, "x", rw, OpenMode::ORDWR),
        Err(Error::PENDING)
    );
    m.end_call(2, true);
    // The server dies with the Tcreate under way.
    held.borrow_mut().clear();
    m.fail_link(LinkId(1), &"died");
    restart(&mut m);
    // Process 2's create does not go again: it fails once.
    m.begin_call(2);
    assert_eq!(
        m.create(&two, &root, "x", rw, OpenMode::ORDWR),
        Err(Error::RESTARTED)
    );
    m.end_call(2, false);
    // Process 1's stat finished before the failure; a new stat asks the
    // new server.
    m.begin_call(1);
    assert_eq!(m.stat(&one, &a).map(|s| s.length), Ok(5));
    m.end_call(1, false);
    m.begin_call(2);
    let x = m.create(&two, &root, "x", rw, OpenMode::ORDWR).unwrap();
    m.end_call(2, false);
    m.close(&x, Some(OpenMode::ORDWR));
}

/// What a step of the property test does.
#[derive(Debug, Clone)]
enum Step {
    /// Read `count` bytes at `offset` of open chan `which`.
    Read {
        which: usize,
        offset: u64,
        count: u32,
    },
    /// Stat walked chan `which`.
    Stat { which: usize },
    /// The server dies within the next `after` requests.
    Die { after: usize },
    /// Whatever died is restarted from the image.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..3, 0u64..8, 1u32..8).prop_map(|(which, offset, count)| Step::Read { which, offset, count }),
        2 => (0usize..3).prop_map(|which| Step::Stat { which }),
        1 => (0usize..4).prop_map(|after| Step::Die { after }),
        2 => Just(Step::Restart),
    ]
}

use proptest::prelude::*;

proptest! {
    /// Reads and stats through chans held across any number of deaths and
    /// restarts, at any point: every answer is the image's bytes or one of
    /// recovery's errors, a read that waits is answered after the restart,
    /// nothing panics, and every fid is clunked at the end.
    #[test]
    fn chans_survive_any_failures(steps in proptest::collection::vec(step(), 1..40)) {
        let (mut m, root, budget, _) = mounted();
        let c = caller();
        let image: [&[u8]; 3] = [b"alpha", b"beta", b"alpha"];
        let d = m.walk(&c, &root, "d").unwrap();
        let walked = [
            m.walk(&c, &root, "a").unwrap(),
            m.walk(&c, &d, "b").unwrap(),
            m.walk(&c, &root, "a").unwrap(),
        ];
        let open: Vec<File> = walked.iter().map(|w| open(&mut m, w, OpenMode::OREAD)).collect();
        let mut waiting: Vec<(usize, u64, u32)> = Vec::new();
        let mut server = None;
        for step in steps {
            match step {
                Step::Read { which, offset, count } => {
                    let expected = |o: u64, n: u32| {
                        let bytes = image[which];
                        let start = (o as usize).min(bytes.len());
                        bytes[start..(start + n as usize).min(bytes.len())].to_vec()
                    };
                    match m.read(&c, &open[which], offset, count) {
                        Ok(Io::Ready(bytes)) => prop_assert_eq!(bytes, expected(offset, count)),
                        Ok(Io::WouldBlock(_)) => waiting.push((which, offset, count)),
                        Err(e) => prop_assert!(
                            e == Error::RESTARTED || e == Error::HUNGUP,
                            "read: {e:?}"
                        ),
                    }
                }
                Step::Stat { which } => match m.stat(&c, &walked[which]) {
                    Ok(stat) => prop_assert_eq!(stat.length, image[which].len() as u64),
                    Err(e) => prop_assert!(e == Error::HUNGUP, "stat: {e:?}"),
                },
                Step::Die { after } => budget.set(budget.get().min(after)),
                Step::Restart => {
                    // Every server shares `budget`, so later deaths reach
                    // the restarted ones too.
                    budget.set(usize::MAX);
                    for dead in m.take_dead() {
                        let fresh = server_from_image();
                        let link = Link {
                            server: fresh.clone(),
                            budget: budget.clone(),
                            held: None,
                            lost: None,
                        };
                        prop_assert!(m.revive(dead.link, link).is_ok());
                        server = Some(fresh);
                    }
                    // Reads that waited have their answers now.
                    for (which, offset, count) in core::mem::take(&mut waiting) {
                        let bytes = image[which];
                        let start = (offset as usize).min(bytes.len());
                        let want = bytes[start..(start + count as usize).min(bytes.len())].to_vec();
                        match m.read(&c, &open[which], offset, count) {
                            Ok(Io::Ready(got)) => prop_assert_eq!(got, want),
                            Err(e) => prop_assert!(e == Error::RESTARTED, "{e:?}"),
                            Ok(Io::WouldBlock(_)) => prop_assert!(false, "still waiting"),
                        }
                    }
                }
            }
        }
        // A last restart if the link is dead, then everything closes.
        budget.set(usize::MAX);
        for dead in m.take_dead() {
            let fresh = server_from_image();
            let link = Link { server: fresh.clone(), budget: budget.clone(), held: None, lost: None };
            prop_assert!(m.revive(dead.link, link).is_ok());
            server = Some(fresh);
        }
        for chan in &open {
            m.close(chan, Some(OpenMode::OREAD));
        }
        for chan in walked.iter().chain([&d, &root]) {
            m.close(chan, None);
        }
        if let Some(server) = server {
            prop_assert_eq!(fids(&server), 0);
        }
    }
}
