//! Core's logic on the host: calls through a fake kernel and real servants.
//!
//! The fake kernel records what core asked of it (tasks made, started and
//! destroyed, replies sent at once, console lines) and serves page faults
//! from a list of mapped pages. The servants are the real ones of
//! `kasane-servant`, core's `#b` and `cons`, and `#M` over a ramfs served
//! in-process (`ninep-server`), the code the ramfs task server runs.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use core_abi::{encode_spawn, Call, FileInfo, SpawnRequest, LABEL_BASE, STATUS_ERROR, STATUS_OK};
use core_system::{BootFiles, ConsoleDevice, Kernel, Message, Reply, System, Thread, Transport};
use kasane_servant::servants::cons::{Clock, Console, Time};
use kasane_servant::servants::root::Root;
use kasane_servant::{Devices, Error};
use ninep_server::Session;
use ramfs::RamFs;

const OREAD: u64 = 0;
const OWRITE: u64 = 1;
const ORDWR: u64 = 2;
const MCREATE: u64 = 4;

/// What the fake kernel saw.
#[derive(Default)]
struct Record {
    now: u64,
    created: Vec<u32>,
    started: Vec<u32>,
    destroyed: Vec<u32>,
    sent: Vec<Reply>,
    log: Vec<String>,
    restarts: usize,
    /// Passes a hung-up server is not ready for a restart (`ready`).
    not_ready: usize,
}

struct FakeTask {
    pid: u32,
    pages: Vec<u64>,
}

/// A kernel that records; pages below 0x1000_0000 are the process's.
struct Fake(Rc<RefCell<Record>>);

impl Kernel for Fake {
    type Task = FakeTask;
    type Link = RamLink;

    const ANSWER_LIMIT: u64 = 40_000_000;

    fn now(&mut self) -> u64 {
        self.0.borrow().now
    }

    fn log(&mut self, message: std::fmt::Arguments<'_>) {
        self.0.borrow_mut().log.push(message.to_string());
    }

    fn create(
        &mut self,
        pid: u32,
        program: &[u8],
        _identity: (char, u64),
        _argv: &[String],
    ) -> Result<(FakeTask, Thread), String> {
        if !program.starts_with(b"\x7fELF") {
            return Err("not a program".into());
        }
        self.0.borrow_mut().created.push(pid);
        let task = FakeTask {
            pid,
            pages: Vec::new(),
        };
        Ok((task, thread(pid)))
    }

    fn start(&mut self, task: &FakeTask) -> Result<(), String> {
        self.0.borrow_mut().started.push(task.pid);
        Ok(())
    }

    fn fault(&mut self, task: &mut FakeTask, address: u64) -> bool {
        if address >= 0x1000_0000 {
            return false;
        }
        task.pages.push(address & !0xfff);
        true
    }

    fn destroy(&mut self, task: FakeTask) {
        self.0.borrow_mut().destroyed.push(task.pid);
    }

    fn kilobytes(&self, task: &FakeTask) -> u64 {
        task.pages.len() as u64 * 4
    }

    fn send(&mut self, reply: &Reply) {
        self.0.borrow_mut().sent.push(reply.clone());
    }

    fn ready(&mut self, _link: &mut RamLink) -> bool {
        let mut record = self.0.borrow_mut();
        if record.not_ready == 0 {
            return true;
        }
        record.not_ready -= 1;
        false
    }

    fn restart(&mut self, mut link: RamLink) -> Result<RamLink, String> {
        self.0.borrow_mut().restarts += 1;
        link.broken = false;
        link.fs = RamFs::new(Zero, "eve", "eve", 0o775);
        link.session = Session::new(kasane_mount::MSIZE);
        Ok(link)
    }
}

/// The thread the fake kernel gives process `pid`.
fn thread(pid: u32) -> Thread {
    Thread(1000 + u64::from(pid))
}

struct Zero;

impl ramfs::Clock for Zero {
    fn now(&self) -> u32 {
        0
    }
}

/// A ramfs on the far end of an in-process link. A posting link keeps
/// its answers for the test to deliver; a broken one fails.
struct RamLink {
    session: Session<RamFs<Zero>>,
    fs: RamFs<Zero>,
    posting: bool,
    broken: bool,
    answers: Rc<RefCell<VecDeque<Vec<u8>>>>,
    /// A server process's pipe instead (core's user-level link).
    user: Option<kasane_mount::UserLink>,
}

impl From<kasane_mount::UserLink> for RamLink {
    fn from(link: kasane_mount::UserLink) -> Self {
        RamLink {
            user: Some(link),
            ..RamLink::new()
        }
    }
}

impl RamLink {
    fn new() -> Self {
        RamLink {
            session: Session::new(kasane_mount::MSIZE),
            fs: RamFs::new(Zero, "eve", "eve", 0o775),
            posting: false,
            broken: false,
            answers: Rc::default(),
            user: None,
        }
    }
}

impl Transport for RamLink {
    fn name(&self) -> &str {
        match &self.user {
            Some(user) => user.name(),
            None => "ramfs",
        }
    }

    fn user(&mut self) -> Option<&mut kasane_mount::UserLink> {
        self.user.as_mut()
    }

    fn multiplexes(&self) -> bool {
        self.user.is_some()
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        if let Some(user) = &mut self.user {
            return user.exchange(frame, answer);
        }
        if self.broken {
            return Err("ramfs: the server died".into());
        }
        let mut out = Vec::new();
        self.session
            .handle(&mut self.fs, frame, &mut out)
            .map_err(|e| format!("{e:?}"))?;
        answer[..out.len()].copy_from_slice(&out);
        Ok(out.len())
    }

    fn posts(&self) -> bool {
        self.posting || self.user.is_some()
    }

    fn post(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<Option<usize>, String> {
        if let Some(user) = &mut self.user {
            return user.post(frame, answer);
        }
        let mut later = vec![0u8; kasane_mount::MSIZE as usize];
        let n = self.exchange(frame, &mut later)?;
        later.truncate(n);
        self.answers.borrow_mut().push_back(later);
        Ok(None)
    }

    fn collect(&mut self, answer: &mut [u8]) -> Result<usize, String> {
        if let Some(user) = &mut self.user {
            return user.collect(answer);
        }
        let ready = self
            .answers
            .borrow_mut()
            .pop_front()
            .ok_or("nothing posted")?;
        answer[..ready.len()].copy_from_slice(&ready);
        Ok(ready.len())
    }

    fn peer(&self) -> u64 {
        77
    }
}

struct Epoch;

impl Clock for Epoch {
    fn now(&self) -> Time {
        Time::default()
    }
}

thread_local! {
    static TYPED: RefCell<VecDeque<u8>> = RefCell::default();
    static SHOWN: RefCell<Vec<u8>> = RefCell::default();
}

fn console_out(bytes: &[u8]) {
    SHOWN.with(|shown| shown.borrow_mut().extend_from_slice(bytes));
}

fn console_in() -> Option<u8> {
    TYPED.with(|typed| typed.borrow_mut().pop_front())
}

/// A program file as far as the fake kernel cares.
const PROGRAM: &[u8] = b"\x7fELF a program";

struct Core {
    system: System<Fake>,
    record: Rc<RefCell<Record>>,
    init: u32,
}

/// Core booted with `#R`, `#c` with cons, `#b` holding `rc`, and the
/// first process started.
/// Core with init started; with `with_ramfs`, a ramfs task server
/// posted as /srv/ramfs first, as the task-server modules are at boot.
fn boot_with(with_ramfs: bool) -> Core {
    boot_with_servant(with_ramfs, None)
}

/// As [`boot_with`], with one more servant (e.g. `#V`).
fn boot_with_servant(
    with_ramfs: bool,
    extra: Option<Box<dyn kasane_servant::Servant + Send>>,
) -> Core {
    let record = Rc::new(RefCell::new(Record::default()));
    let mut others = Devices::new();
    if let Some(servant) = extra {
        others.add(servant).unwrap();
    }
    others.add(Box::new(Root::new())).unwrap();
    others
        .add(Box::new(ConsoleDevice::new(
            Console::new(Epoch, "kasane"),
            console_out,
            console_in,
        )))
        .unwrap();
    let modules = vec![
        ("rc".to_string(), PROGRAM),
        ("notes".to_string(), &b"not a program"[..]),
    ];
    others.add(Box::new(BootFiles::new(modules))).unwrap();
    let mut system = System::new(Fake(record.clone()), others);
    if with_ramfs {
        let mut config = core_system::ServerConfig::new("ramfs", "ramfs-task");
        config.mount = "/tmp".to_string();
        config.mount_flags = "c".to_string();
        system.add_configured_server(config, RamLink::new());
    }
    let init = system.start_init("root=core /bin/rc -i").unwrap();
    Core {
        system,
        record,
        init,
    }
}

fn boot() -> Core {
    boot_with(false)
}

impl Core {
    /// One pass with a message from `pid`: the deferred reply.
    fn message(&mut self, pid: u32, message: Message) -> Option<Reply> {
        self.system.handle(thread(pid), message);
        self.system.end_pass()
    }

    /// One pass with a call of `pid`: the deferred reply.
    fn call(&mut self, pid: u32, call: Call, words: [u64; 3], items: &[&[u8]]) -> Option<Reply> {
        let items = items.iter().map(|i| i.to_vec()).collect();
        let [w1, w2, w3] = words;
        let words = [w1, w2, w3, 0];
        let message = Message::Call {
            label: LABEL_BASE + call as u64,
            words,
            items,
        };
        self.message(pid, message)
    }

    /// A call that must succeed at once: its reply.
    fn ok(&mut self, pid: u32, call: Call, words: [u64; 3], items: &[&[u8]]) -> Reply {
        let reply = self.call(pid, call, words, items).expect("a reply");
        assert_eq!(reply.client, thread(pid));
        if reply.status != STATUS_OK {
            panic!("{call:?} failed: {}", self.errstr(pid));
        }
        reply
    }

    /// A call that must fail at once: its error string.
    fn fails(&mut self, pid: u32, call: Call, words: [u64; 3], items: &[&[u8]]) -> String {
        let reply = self.call(pid, call, words, items).expect("a reply");
        assert_eq!(reply.status, STATUS_ERROR, "{call:?} succeeded");
        assert_eq!(reply.data, None);
        self.errstr(pid)
    }

    fn errstr(&mut self, pid: u32) -> String {
        let reply = self.call(pid, Call::Errstr, [0; 3], &[]).unwrap();
        String::from_utf8(reply.data.unwrap_or_default()).unwrap()
    }

    fn open(&mut self, pid: u32, path: &str, mode: u64) -> u64 {
        self.ok(pid, Call::Open, [mode, 0, 0], &[path.as_bytes()])
            .words[0]
    }

    fn read(&mut self, pid: u32, fd: u64, count: u64) -> Vec<u8> {
        let reply = self.ok(pid, Call::Read, [fd, count, 0], &[]);
        let data = reply.data.unwrap_or_default();
        assert_eq!(reply.words[0], data.len() as u64);
        data
    }

    fn spawn(&mut self, pid: u32, fds: Vec<(u32, u32)>) -> u32 {
        let block = encode_spawn(&SpawnRequest {
            path: "/bin/rc".into(),
            argv: vec!["child".into()],
            fds,
            flags: 0,
        });
        self.ok(pid, Call::Spawn, [0; 3], &[&block]).words[0] as u32
    }

    fn sent(&self) -> Vec<Reply> {
        std::mem::take(&mut self.record.borrow_mut().sent)
    }
}

#[test]
fn boot_starts_init_in_the_boot_namespace() {
    let mut core = boot();
    assert_eq!(core.init, 1);
    let record = core.record.borrow();
    assert_eq!(
        (record.created.as_slice(), record.started.as_slice()),
        (&[1][..], &[1][..])
    );
    assert_eq!(record.log, ["core: started /bin/rc as pid 1\n"]);
    drop(record);
    assert!(core.system.is_process(thread(1)));
    assert_eq!(core.system.exit_status(1), None);
    // #c on /dev, #b on /bin, #p on /proc.
    let fd = core.open(1, "/dev/sysname", OREAD);
    assert_eq!(core.read(1, fd, 100), b"kasane");
    let fd = core.open(1, "/proc/1/status", OREAD);
    assert!(String::from_utf8(core.read(1, fd, 200))
        .unwrap()
        .contains("rc"));
}

/// hvm with two cells, recording the controls asked for.
struct FakeCells(std::sync::Arc<std::sync::Mutex<Vec<(u32, u64)>>>);

impl core_system::Cells for FakeCells {
    fn cell(&self, index: u32) -> Option<core_system::CellRecord> {
        let name = ["cell0", "ramfs"].get(index as usize)?;
        Some(core_system::CellRecord {
            name: name.to_string(),
            kind: if index == 0 {
                "microkernel"
            } else {
                "server-vm"
            }
            .to_string(),
            state: "running".to_string(),
            restarts: 0,
            restart_limit: 2,
            exits: 0,
            last_failure: String::new(),
        })
    }

    fn control(&mut self, index: u32, verb: core_system::Verb) -> Result<(), String> {
        self.0.lock().unwrap().push((index, verb.operation()));
        Ok(())
    }
}

#[test]
fn dev_vm_is_bound_after_dev_and_reaches_hvm() {
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let vm = core_system::VmDevice::new(FakeCells(asked.clone()));
    let mut core = boot_with_servant(false, Some(Box::new(vm)));
    // #c's files are still there: #V is bound after it.
    let fd = core.open(1, "/dev/sysname", OREAD);
    assert_eq!(core.read(1, fd, 100), b"kasane");
    let fd = core.open(1, "/dev/vm/1/status", OREAD);
    assert_eq!(
        core.read(1, fd, 200),
        b"ramfs server-vm running restarts 0/2 exits 0 last-failure -\n"
    );
    let ctl = core.open(1, "/dev/vm/1/ctl", OWRITE);
    core.ok(1, Call::Write, [ctl, 0, 0], &[b"hang"]);
    assert_eq!(*asked.lock().unwrap(), [(1, 13)]);
    let error = core.fails(1, Call::Write, [ctl, 0, 0], &[b"explode"]);
    assert!(error.contains("unknown ctl message 'explode'"), "{error}");
}

#[test]
fn open_read_seek_and_close_keep_the_descriptor_table() {
    let mut core = boot();
    let chans = core.system.chans().len();
    let notes = core.open(1, "/boot/notes", OREAD);
    let name = core.open(1, "/dev/sysname", OREAD);
    assert_eq!((notes, name), (0, 1));
    assert_eq!(core.read(1, notes, 4), b"not ");
    assert_eq!(core.read(1, notes, 100), b"a program");
    assert_eq!(core.read(1, notes, 100), b"");
    let reply = core.ok(1, Call::Pread, [notes, 3, 4], &[]);
    assert_eq!(reply.data.as_deref(), Some(&b"a p"[..]));
    let reply = core.ok(1, Call::Seek, [notes, 2, core_abi::SEEK_SET], &[]);
    assert_eq!(reply.words[0], 2);
    assert_eq!(core.read(1, notes, 3), b"t a");
    core.ok(1, Call::Close, [notes, 0, 0], &[]);
    // The lowest free descriptor is taken again.
    assert_eq!(core.open(1, "/dev/zero", OREAD), 0);
    let dup = core.ok(1, Call::Dup, [name, u64::MAX, 0], &[]).words[0];
    assert_eq!(dup, 2);
    assert_eq!(core.read(1, dup, 10), b"kasane");
    for fd in [0, 1, 2] {
        core.ok(1, Call::Close, [fd, 0, 0], &[]);
    }
    assert_eq!(core.system.chans().len(), chans);
}

#[test]
fn a_directory_reads_as_whole_entries() {
    let mut core = boot();
    let fd = core.open(1, "/bin", OREAD);
    let mut names = Vec::new();
    loop {
        let data = core.read(1, fd, 4096);
        if data.is_empty() {
            break;
        }
        let mut rest = &data[..];
        while let Some(info) = FileInfo::decode_from(&mut rest) {
            names.push(info.name);
        }
        assert!(rest.is_empty());
    }
    assert_eq!(names, ["rc", "notes"]);
    let reply = core.ok(1, Call::Stat, [0; 3], &[b"/bin/rc"]);
    let info = FileInfo::decode_from(&mut &reply.data.unwrap()[..]).unwrap();
    assert_eq!(
        (info.name.as_str(), info.length),
        ("rc", PROGRAM.len() as u64)
    );
}

#[test]
fn bad_requests_are_refused_with_plan9_errors() {
    let mut core = boot();
    let bad = core.message(
        1,
        Message::Call {
            label: 7,
            words: [0; 4],
            items: Vec::new(),
        },
    );
    assert_eq!(bad.map(|r| r.status), Some(STATUS_ERROR));
    assert_eq!(core.errstr(1), "bad system call");
    assert_eq!(
        core.fails(1, Call::Open, [0; 3], &[]),
        Error::BAD_ARG.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Open, [0; 3], &[b"/dev/\xff"]),
        Error::BAD_CHAR.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Open, [0; 3], &[b"/nowhere"]),
        "'/nowhere' file does not exist"
    );
    for call in [
        Call::Read,
        Call::Write,
        Call::Close,
        Call::Fstat,
        Call::Seek,
    ] {
        assert_eq!(
            core.fails(1, call, [9, 1, 0], &[b"x"]),
            Error::BAD_FD.as_str()
        );
        assert_eq!(
            core.fails(1, call, [u64::MAX, 1, 0], &[b"x"]),
            Error::BAD_FD.as_str()
        );
    }
    let fd = core.open(1, "/dev/null", OREAD);
    assert_eq!(
        core.fails(1, Call::Dup, [fd, 1025, 0], &[]),
        Error::BAD_FD.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Bind, [1 << 9, 0, 0], &[b"#c", b"/tmp"]),
        Error::BAD_ARG.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Rfork, [1 << 20, 0, 0], &[]),
        Error::BAD_ARG.as_str()
    );
    let both = core_abi::RFNAMEG | core_abi::RFCNAMEG;
    assert_eq!(
        core.fails(1, Call::Rfork, [both, 0, 0], &[]),
        Error::BAD_ARG.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Spawn, [0; 3], &[b"garbage"]),
        Error::BAD_ARG.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Mount, [fd, 0, 0], &[b"/n"]),
        Error::BAD_USE_FD.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Wstat, [0; 3], &[b"/dev/null", b"a/b"]),
        Error::FILE_NAME.as_str()
    );
    // A program that is not one: the spawn fails, nothing is made.
    let block = encode_spawn(&SpawnRequest {
        path: "/boot/notes".into(),
        argv: vec!["notes".into()],
        fds: Vec::new(),
        flags: 0,
    });
    assert_eq!(
        core.fails(1, Call::Spawn, [0; 3], &[&block]),
        "not a program"
    );
    assert_eq!(core.record.borrow().created, [1]);
    // Core carries on.
    assert_eq!(core.ok(1, Call::Getpid, [0; 3], &[]).words[0], 1);
}

#[test]
fn a_parked_pipe_read_is_woken_by_a_write() {
    let mut core = boot();
    let ends = core.ok(1, Call::Pipe, [0; 3], &[]).words;
    let child = core.spawn(1, vec![(0, ends[1] as u32)]);
    assert_eq!(child, 2);
    assert_eq!(core.record.borrow().started, [1, 2]);
    // Nothing to read: the call is parked, unanswered.
    assert_eq!(core.call(1, Call::Read, [ends[0], 100, 0], &[]), None);
    assert!(core.sent().is_empty());
    // Another call goes on meanwhile.
    assert_eq!(core.ok(2, Call::Getpid, [0; 3], &[]).words[0], 2);
    // The child's write: its own reply is deferred to the next receive,
    // and the woken reader is answered at once.
    let written = core.ok(2, Call::Write, [0, 0, 0], &[b"hello"]);
    assert_eq!(written.words[0], 5);
    let sent = core.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].client, thread(1));
    assert_eq!((sent[0].status, sent[0].words[0]), (STATUS_OK, 5));
    assert_eq!(sent[0].data.as_deref(), Some(&b"hello"[..]));
}

#[test]
fn the_first_reply_of_a_pass_is_deferred() {
    let mut core = boot();
    let child = core.spawn(1, Vec::new());
    // wait parks while the child lives.
    assert_eq!(core.call(1, Call::Wait, [0; 3], &[]), None);
    // exits is never answered, so the woken wait's reply is the pass's
    // first: it goes with the next receive, not at once.
    let reply = core.call(child, Call::Exits, [0; 3], &[b"done"]).unwrap();
    assert_eq!(reply.client, thread(1));
    assert_eq!(reply.words[0], u64::from(child));
    assert_eq!(reply.data.as_deref(), Some(&b"done"[..]));
    assert!(core.sent().is_empty());
    assert!(!core.system.is_process(thread(child)));
    assert_eq!(core.record.borrow().destroyed, [child]);
    assert_eq!(core.fails(1, Call::Wait, [0; 3], &[]), "no living children");
}

#[test]
fn a_killed_process_loses_its_descriptors_and_parked_call() {
    let mut core = boot();
    let chans = core.system.chans().len();
    let ends = core.ok(1, Call::Pipe, [0; 3], &[]).words;
    let child = core.spawn(1, vec![(0, ends[0] as u32), (1, ends[1] as u32)]);
    core.open(child, "/dev/sysname", OREAD);
    core.open(child, "/bin", OREAD);
    // The child waits on the pipe.
    assert_eq!(core.call(child, Call::Read, [0, 10, 0], &[]), None);
    let ctl = core.open(1, &format!("/proc/{child}/ctl"), OWRITE);
    core.ok(1, Call::Write, [ctl, 0, 0], &[b"kill"]);
    assert!(!core.system.is_process(thread(child)));
    assert_eq!(core.record.borrow().destroyed, [child]);
    // Its parked read is dropped: a write wakes nobody.
    core.ok(1, Call::Write, [ends[1], 0, 0], &[b"x"]);
    assert!(core.sent().is_empty());
    let reply = core.ok(1, Call::Wait, [u64::from(child), 0, 0], &[]);
    assert_eq!(reply.data.as_deref(), Some(&b"killed"[..]));
    // Only init's own descriptors are left.
    for fd in [ends[0], ends[1], ctl] {
        core.ok(1, Call::Close, [fd, 0, 0], &[]);
    }
    assert_eq!(core.system.chans().len(), chans);
    // Its calls are no longer served.
    assert_eq!(core.call(child, Call::Getpid, [0; 3], &[]), None);
}

#[test]
fn faults_are_paged_or_end_the_process() {
    let mut core = boot();
    let child = core.spawn(1, Vec::new());
    let paged = core.message(
        child,
        Message::PageFault {
            address: 0x40_1234,
            ip: 0x40_0000,
        },
    );
    assert_eq!(paged, None);
    assert!(core.system.is_process(thread(child)));
    let fd = core.open(1, &format!("/proc/{child}/status"), OREAD);
    let status = String::from_utf8(core.read(1, fd, 200)).unwrap();
    assert!(status.contains("4K") || status.contains(" 4"), "{status}");
    core.message(
        child,
        Message::PageFault {
            address: 0x2000_0000,
            ip: 0x40_1000,
        },
    );
    assert!(!core.system.is_process(thread(child)));
    let reply = core.ok(1, Call::Wait, [0; 3], &[]);
    assert_eq!(
        reply.data.as_deref(),
        Some(&b"sys: trap: fault read addr=0x20000000 pc=0x401000"[..])
    );
    let child = core.spawn(1, Vec::new());
    core.message(child, Message::Exception { vector: 13 });
    let reply = core.ok(1, Call::Wait, [0; 3], &[]);
    assert_eq!(reply.data.as_deref(), Some(&b"sys: trap: exception 13"[..]));
}

#[test]
fn sleep_parks_until_its_time() {
    let mut core = boot();
    core.record.borrow_mut().now = 1_000;
    assert_eq!(core.system.receive_timeout(), None);
    assert_eq!(core.call(1, Call::Sleep, [5, 0, 0], &[]), None);
    assert_eq!(core.system.receive_timeout(), Some(5_000));
    core.record.borrow_mut().now = 4_000;
    assert_eq!(core.system.end_pass(), None);
    assert_eq!(core.system.receive_timeout(), Some(2_000));
    core.record.borrow_mut().now = 6_000;
    let reply = core.system.end_pass().unwrap();
    assert_eq!((reply.client, reply.status), (thread(1), STATUS_OK));
}

#[test]
fn a_console_read_waits_for_a_line_and_is_polled() {
    let mut core = boot();
    let cons = core.open(1, "/dev/cons", ORDWR);
    assert_eq!(core.call(1, Call::Read, [cons, 100, 0], &[]), None);
    // While a console read is parked, core wakes every 10 ms to poll.
    core.record.borrow_mut().now = 50;
    assert_eq!(core.system.receive_timeout(), Some(10_000));
    TYPED.with(|typed| typed.borrow_mut().extend(b"ls\r"));
    let reply = core.system.end_pass().unwrap();
    assert_eq!(reply.data.as_deref(), Some(&b"ls\n"[..]));
    assert_eq!(core.system.receive_timeout(), None);
    core.ok(1, Call::Write, [cons, 0, 0], &[b"; "]);
    SHOWN.with(|shown| assert_eq!(shown.borrow().as_slice(), b"ls\n; "));
}

#[test]
fn environment_groups_are_typed_and_dropped_with_their_last_process() {
    let mut core = boot();
    let fd = core
        .ok(1, Call::Create, [ORDWR, 0o664, 0], &[b"/env/user"])
        .words[0];
    core.ok(1, Call::Write, [fd, 0, 0], &[b"glenda"]);
    let child = core.spawn(1, Vec::new());
    // A copy of the group: the child sees the variable, changes its own.
    // (/env stays the boot group's directory; `#e` attaches the caller's.)
    core.ok(child, Call::Rfork, [core_abi::RFENVG, 0, 0], &[]);
    let fd = core.open(child, "#e/user", ORDWR);
    assert_eq!(core.read(child, fd, 100), b"glenda");
    core.ok(child, Call::Pwrite, [fd, 0, 0], &[b"ken   "]);
    let fd = core.open(1, "/env/user", OREAD);
    assert_eq!(core.read(1, fd, 100), b"glenda");
    // A clean group sees nothing.
    core.ok(child, Call::Rfork, [core_abi::RFCENVG, 0, 0], &[]);
    assert_eq!(
        core.fails(child, Call::Open, [OREAD, 0, 0], &[b"#e/user"]),
        "'#e/user' file does not exist"
    );
}

#[test]
fn ramfs_is_on_tmp_from_boot_and_tmp_is_empty_without_it() {
    let mut core = boot_with(true);
    let ns = core.open(1, "/proc/1/ns", OREAD);
    let ns = String::from_utf8(core.read(1, ns, 4096)).unwrap();
    assert!(ns.lines().any(|l| l == "mount -c /srv/ramfs /tmp"), "{ns}");
    let fd = core
        .ok(1, Call::Create, [ORDWR, 0o664, 0], &[b"/tmp/f"])
        .words[0];
    assert_eq!(core.ok(1, Call::Write, [fd, 0, 0], &[b"x"]).words[0], 1);
    let tmp = core.open(1, "/srv/ramfs", ORDWR);
    core.ok(1, Call::Mount, [tmp, 0, 0], &[b"/n", b""]);
    let again = core.open(1, "/n/f", ORDWR);
    let reply = core.ok(1, Call::Pread, [again, 100, 0], &[]);
    assert_eq!(
        reply.data.as_deref(),
        Some(&b"x"[..]),
        "the file is on ramfs"
    );

    // Without a ramfs module, /tmp is #R's empty, read-only directory.
    let mut core = boot();
    let error = core.fails(1, Call::Create, [ORDWR, 0o664, 0], &[b"/tmp/f"]);
    assert_eq!(error, "permission denied");
}

#[test]
fn a_server_not_ready_is_restarted_later_and_core_serves_meanwhile() {
    let mut core = boot();
    let id = core
        .system
        .add_server("ramfs", "ramfs-task", RamLink::new());
    let srv = core.open(1, "/srv/ramfs", ORDWR);
    core.ok(1, Call::Mount, [srv, MCREATE, 0], &[b"/n", b""]);
    core.record.borrow_mut().not_ready = 3;
    core.system
        .servants()
        .mount
        .transport_mut(id)
        .unwrap()
        .broken = true;
    assert_eq!(
        core.fails(1, Call::Stat, [0; 3], &[b"/n"]),
        "i/o on hungup channel"
    );
    // Not ready: no restart yet, and other calls are answered.
    assert_eq!(core.record.borrow().restarts, 0);
    assert_eq!(core.ok(1, Call::Getpid, [0; 3], &[]).words[0], 1);
    for _ in 0..3 {
        core.system.end_pass();
    }
    // Ready at last: restarted once, said once, and the mount is back.
    assert_eq!(core.record.borrow().restarts, 1);
    let log = core.record.borrow().log.clone();
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("core: #M: link hung up"))
            .count(),
        1
    );
    let fd = core.open(1, "/n", OREAD);
    assert_eq!(core.read(1, fd, 100), b"");
}

#[test]
fn a_task_server_is_mounted_read_and_restarted() {
    let mut core = boot();
    let answers = Rc::default();
    let mut link = RamLink::new();
    link.answers = Rc::clone(&answers);
    let id = core.system.add_server("ramfs", "ramfs-task", link);
    let srv = core.open(1, "/srv/ramfs", ORDWR);
    core.ok(1, Call::Mount, [srv, MCREATE, 0], &[b"/n", b""]);
    let fd = core
        .ok(1, Call::Create, [ORDWR, 0o664, 0], &[b"/n/f"])
        .words[0];
    assert_eq!(
        core.ok(1, Call::Write, [fd, 0, 0], &[b"on ramfs"]).words[0],
        8
    );
    let reply = core.ok(1, Call::Pread, [fd, 100, 0], &[]);
    assert_eq!(reply.data.as_deref(), Some(&b"on ramfs"[..]));
    // A server that is slow to answer parks the reader alone; its answer
    // wakes it.
    core.system
        .servants()
        .mount
        .transport_mut(id)
        .unwrap()
        .posting = true;
    assert_eq!(core.call(1, Call::Pread, [fd, 2, 3], &[]), None);
    assert_eq!(core.ok(1, Call::Getpid, [0; 3], &[]).words[0], 1);
    let answer = answers.borrow_mut().pop_front().unwrap();
    core.system.servants().mount.deliver(id, &answer);
    let reply = core.system.end_pass().unwrap();
    assert_eq!(reply.data.as_deref(), Some(&b"ra"[..]));
    // An open that walks a slow server parks at each request not yet
    // answered and runs again from the start with the answers it has
    // (#M's journal), until it is done.
    let chans = core.system.chans().len();
    assert_eq!(core.call(1, Call::Open, [OREAD, 0, 0], &[b"/n/f"]), None);
    let mut reply = None;
    for _ in 0..10 {
        let Some(answer) = answers.borrow_mut().pop_front() else {
            break;
        };
        core.system.servants().mount.deliver(id, &answer);
        reply = core.system.end_pass();
        if reply.is_some() {
            break;
        }
    }
    let reply = reply.expect("the open was answered");
    assert_eq!((reply.client, reply.status), (thread(1), STATUS_OK));
    let opened = reply.words[0];
    assert_eq!(core.system.chans().len(), chans + 1);
    // What is still on the wire (a clunk) answers nobody.
    loop {
        let next = answers.borrow_mut().pop_front();
        let Some(answer) = next else { break };
        core.system.servants().mount.deliver(id, &answer);
        assert_eq!(core.system.end_pass(), None);
    }
    core.system
        .servants()
        .mount
        .transport_mut(id)
        .unwrap()
        .posting = false;
    assert_eq!(core.read(1, opened, 2), b"on");
    // The server dies: the link hangs up, the call under way fails once,
    // and core restarts the server and revives the link: the mount is
    // there again without a new mount.
    {
        let link = core.system.servants().mount.transport_mut(id).unwrap();
        link.posting = false;
        link.broken = true;
    }
    assert_eq!(
        core.fails(1, Call::Stat, [0; 3], &[b"/n/f"]),
        "'/n/f' i/o on hungup channel"
    );
    assert_eq!(core.record.borrow().restarts, 1);
    assert!(core
        .record
        .borrow()
        .log
        .iter()
        .any(|l| l.starts_with("core: server ramfs restarted (restart 1 of 5)")));
    // The fake restart starts an empty ramfs: the file made before is
    // gone, and its open descriptor says so rather than read other bytes.
    assert_eq!(
        core.fails(1, Call::Pread, [opened, 4, 0], &[]),
        "server restarted: file is gone"
    );
    let fd = core.open(1, "/n", OREAD);
    assert_eq!(core.read(1, fd, 100), b"");
    let fd = core
        .ok(1, Call::Create, [ORDWR, 0o664, 0], &[b"/n/g"])
        .words[0];
    assert_eq!(core.ok(1, Call::Write, [fd, 0, 0], &[b"new"]).words[0], 3);
}

#[test]
fn a_server_left_stopped_stays_hung_up_and_its_proc_entry_takes_verbs() {
    let mut core = boot();
    let mut config = core_system::ServerConfig::new("ramfs", "ramfs-task");
    config.restart = false;
    let id = core.system.add_configured_server(config, RamLink::new());
    assert!(core
        .record
        .borrow()
        .log
        .iter()
        .any(|l| l == "core: server ramfs: task, /srv/ramfs, /proc/9001\n"));
    let srv = core.open(1, "/srv/ramfs", ORDWR);
    core.ok(1, Call::Mount, [srv, MCREATE, 0], &[b"/n", b""]);
    // /proc/9001 is the server's, reached by number; its ctl takes the
    // failure verbs (this fake link cannot perform them, and says so).
    let status = core.open(1, "/proc/9001/status", OREAD);
    let text = String::from_utf8(core.read(1, status, 200)).unwrap();
    assert!(
        text.starts_with("ramfs ") && text.contains("Server"),
        "{text}"
    );
    let ctl = core.open(1, "/proc/9001/ctl", 1);
    core.ok(1, Call::Write, [ctl, 0, 0], &[b"crash"]);
    assert_eq!(core.system.end_pass(), None);
    assert!(core
        .record
        .borrow()
        .log
        .iter()
        .any(|l| l == "core: server ramfs: crash: ramfs: cannot inject crash\n"));
    assert!(core
        .fails(1, Call::Write, [ctl, 0, 0], &[b"kill"])
        .contains("bad process or channel control request"));
    // It dies; with on_failure = stop it is not restarted, and its mount
    // stays hung up.
    core.system
        .servants()
        .mount
        .transport_mut(id)
        .unwrap()
        .broken = true;
    assert!(core
        .fails(1, Call::Stat, [0; 3], &[b"/n"])
        .contains("i/o on hungup channel"));
    assert_eq!(core.record.borrow().restarts, 0);
    assert!(core
        .record
        .borrow()
        .log
        .iter()
        .any(|l| l.starts_with("core: server ramfs failed: not restarted (on_failure = stop)")));
    assert!(core
        .fails(1, Call::Stat, [0; 3], &[b"/n"])
        .contains("i/o on hungup channel"));
}

/// A vm server run as a task in bare mode takes its devices along: the
/// fixed ports of `ata1` to grant, and the PCI `ne2k` for core to find on
/// the bus (its ports are wherever the firmware put them).
#[test]
fn a_vm_server_run_as_a_task_keeps_its_devices() {
    let text = "[system]\nname = \"t\"\n[[cell]]\nname = \"cell0\"\nkind = \"microkernel\"\nmemory_mib = 64\n[[server]]\nname = \"net\"\nprogram = \"net\"\nplacement = \"vm\"\nmemory_mib = 8\ndevices = [\"ne2k\"]\n[[server]]\nname = \"fat\"\nprogram = \"fatfs\"\nplacement = \"vm\"\nmemory_mib = 8\ndevices = [\"ata1\"]\n";
    let bytes = kasane_manifest::Manifest::compile(text).unwrap().encode();
    let (bare, _) = core_system::task_servers(&bytes, false);
    let net = &bare[0].config;
    assert!(net.ports.is_empty(), "{:?}", net.ports);
    assert_eq!(net.pci.iter().map(|d| d.name).collect::<Vec<_>>(), ["ne2k"]);
    let fat = &bare[1].config;
    assert_eq!(fat.ports, [(0x170, 8), (0x376, 1)]);
    assert!(fat.pci.is_empty());
    // A server VM's cell gets its devices from hvm, not from core.
    assert!(core_system::vm_servers(&bytes)
        .iter()
        .all(|c| c.ports.is_empty() && c.pci.is_empty()));
}

/// The shell starts the servers of the manifest's table that
/// `task_servers` lists: task servers, and vm servers while core drives
/// no server VM link (bare mode), said in one line each.
#[test]
fn the_manifest_table_gives_the_task_servers() {
    let text = "[system]\nname = \"t\"\n[[cell]]\nname = \"cell0\"\nkind = \"microkernel\"\nmemory_mib = 64\n[[server]]\nname = \"big\"\nprogram = \"ramfs\"\nplacement = \"vm\"\nmemory_mib = 8\nimage = \"files\"\n[[server]]\nname = \"ramfs\"\nprogram = \"ramfs\"\nmount = \"/tmp\"\nmount_flags = \"c\"\non_failure = \"stop\"\nrestart_limit = 2\n";
    let bytes = kasane_manifest::Manifest::compile(text).unwrap().encode();
    let (bare, said) = core_system::task_servers(&bytes, false);
    assert_eq!(
        said,
        ["core: server big: placed in a vm, runs as a task (bare mode: no server VM link)"]
    );
    let names: Vec<(&str, &str, &str)> = bare
        .iter()
        .map(|s| {
            (
                s.config.name.as_str(),
                s.config.module.as_str(),
                s.image.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("big", "ramfs-task", "files"), ("ramfs", "ramfs-task", "")]
    );
    let ramfs = &bare[1].config;
    assert_eq!(
        (
            ramfs.mount.as_str(),
            ramfs.mount_flags.as_str(),
            ramfs.restart,
            ramfs.restart_limit
        ),
        ("/tmp", "c", false, 2)
    );
    // With server VM links, the vm server is its cell's.
    let (with_vms, said) = core_system::task_servers(&bytes, true);
    assert!(said.is_empty());
    assert_eq!(with_vms.len(), 1);
    let vms = core_system::vm_servers(&bytes);
    assert_eq!(
        vms.iter()
            .map(|c| (c.name.as_str(), c.module.as_str()))
            .collect::<Vec<_>>(),
        [("big", "ramfs-vm")]
    );
    // A module that is not a manifest: no servers, and why.
    let (none, said) = core_system::task_servers(b"nonsense", false);
    assert!(none.is_empty());
    assert_eq!(
        said,
        ["core: the manifest module: compiled manifest is truncated; no servers"]
    );
}

/// A 9P server process played by the test: pid `pid` serves a ramfs on
/// descriptor `fd`, the far end of a pipe whose other end it posted.
struct ServerProcess {
    pid: u32,
    fd: u64,
    session: Session<RamFs<Zero>>,
    fs: RamFs<Zero>,
}

impl ServerProcess {
    fn new(pid: u32, fd: u64) -> Self {
        ServerProcess {
            pid,
            fd,
            session: Session::new(kasane_mount::MSIZE),
            fs: RamFs::new(Zero, "eve", "eve", 0o775),
        }
    }

    /// Bytes waiting at the server's end (pipe(3)'s length).
    fn waiting(&self, core: &mut Core) -> u64 {
        let reply = core.ok(self.pid, Call::Fstat, [self.fd, 0, 0], &[]);
        let bytes = reply.data.unwrap();
        FileInfo::decode_from(&mut &bytes[..]).unwrap().length
    }

    /// Reads every T-message waiting and writes each answer back; how
    /// many it answered.
    fn serve(&mut self, core: &mut Core) -> usize {
        let mut served = 0;
        while self.waiting(core) > 0 {
            let frame = core.read(self.pid, self.fd, 9000);
            let mut out = Vec::new();
            self.session.handle(&mut self.fs, &frame, &mut out).unwrap();
            let written = core.ok(self.pid, Call::Write, [self.fd, 0, 0], &[&out]);
            assert_eq!(written.words[0], out.len() as u64);
            served += 1;
        }
        served
    }
}

impl Core {
    /// A call of `pid` on a user-level link: the server process serves
    /// until the call is answered; the reply.
    fn served(
        &mut self,
        server: &mut ServerProcess,
        pid: u32,
        call: Call,
        words: [u64; 3],
        items: &[&[u8]],
    ) -> Reply {
        let mut answered = self.call(pid, call, words, items);
        for _ in 0..20 {
            if let Some(reply) = answered.take().filter(|r| r.client == thread(pid)) {
                return reply;
            }
            let mut sent = self.sent();
            if let Some(at) = sent.iter().position(|r| r.client == thread(pid)) {
                return sent.remove(at);
            }
            server.serve(self);
        }
        panic!("{call:?} of {pid} never answered");
    }
}

/// Pid 1 makes a pipe, posts one end as /srv/user and keeps the other
/// to serve on; its child (pid 2) is the client. The child's /srv fd.
fn posted_user_server(core: &mut Core) -> (ServerProcess, u32, u64) {
    let ends = core.ok(1, Call::Pipe, [0; 3], &[]).words;
    let srv = core
        .ok(1, Call::Create, [OWRITE, 0o600, 0], &[b"/srv/user"])
        .words[0];
    let fd = ends[0].to_string();
    core.ok(1, Call::Write, [srv, 0, 0], &[fd.as_bytes()]);
    core.ok(1, Call::Close, [srv, 0, 0], &[]);
    // The posted end is the link's now: the poster's own copy may go.
    core.ok(1, Call::Close, [ends[0], 0, 0], &[]);
    let child = core.spawn(1, Vec::new());
    let srv = core.open(child, "/srv/user", ORDWR);
    (ServerProcess::new(1, ends[1]), child, srv)
}

#[test]
fn a_process_serves_9p_through_a_pipe_posted_in_srv() {
    let mut core = boot();
    let (mut server, client, srv) = posted_user_server(&mut core);
    let mount = core.served(
        &mut server,
        client,
        Call::Mount,
        [srv, MCREATE, 0],
        &[b"/n", b""],
    );
    assert_eq!(mount.status, STATUS_OK, "{}", core.errstr(client));
    let created = core.served(
        &mut server,
        client,
        Call::Create,
        [ORDWR, 0o664, 0],
        &[b"/n/hello"],
    );
    assert_eq!(created.status, STATUS_OK, "{}", core.errstr(client));
    let fd = created.words[0];
    let wrote = core.served(
        &mut server,
        client,
        Call::Write,
        [fd, 0, 0],
        &[b"over a pipe"],
    );
    assert_eq!((wrote.status, wrote.words[0]), (STATUS_OK, 11));
    let read = core.served(&mut server, client, Call::Pread, [fd, 100, 0], &[]);
    assert_eq!(read.data.as_deref(), Some(&b"over a pipe"[..]));
    // Other processes are served while the server is asked.
    assert_eq!(core.call(client, Call::Stat, [0; 3], &[b"/n/hello"]), None);
    assert_eq!(core.ok(1, Call::Getpid, [0; 3], &[]).words[0], 1);
    server.serve(&mut core);
    let sent = core.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].client, sent[0].status),
        (thread(client), STATUS_OK)
    );
    // The directory is read from the server too.
    let dir = core.served(&mut server, client, Call::Open, [OREAD, 0, 0], &[b"/n"]);
    assert_eq!(dir.status, STATUS_OK);
    let listing = core.served(
        &mut server,
        client,
        Call::Read,
        [dir.words[0], 4096, 0],
        &[],
    );
    let bytes = listing.data.unwrap();
    let entry = FileInfo::decode_from(&mut &bytes[..]).unwrap();
    assert_eq!((entry.name.as_str(), entry.length), ("hello", 11));
}

#[test]
fn a_user_link_hangs_up_when_its_server_closes_the_pipe() {
    let mut core = boot();
    let (mut server, client, srv) = posted_user_server(&mut core);
    let mount = core.served(&mut server, client, Call::Mount, [srv, 0, 0], &[b"/n", b""]);
    assert_eq!(mount.status, STATUS_OK);
    // A stat waits on the server, which goes away instead.
    assert_eq!(core.call(client, Call::Stat, [0; 3], &[b"/n"]), None);
    let closed = core.ok(1, Call::Close, [server.fd, 0, 0], &[]);
    assert_eq!(closed.status, STATUS_OK);
    let sent = core.sent();
    assert_eq!(
        (sent[0].client, sent[0].status),
        (thread(client), STATUS_ERROR)
    );
    assert_eq!(core.errstr(client), "i/o on hungup channel");
    assert_eq!(
        core.fails(client, Call::Stat, [0; 3], &[b"/n"]),
        "i/o on hungup channel"
    );
    let log = core.record.borrow().log.clone();
    assert!(
        log.iter()
            .any(|l| l == "core: #M: link hung up: user: the server closed its end of the pipe\n"),
        "{log:?}"
    );
}

#[test]
fn a_user_link_hangs_up_on_a_frame_no_9p_message_has() {
    let mut core = boot();
    let (server, client, srv) = posted_user_server(&mut core);
    assert_eq!(
        core.call(client, Call::Mount, [srv, 0, 0], &[b"/n", b""]),
        None
    );
    assert!(server.waiting(&mut core) > 0);
    core.read(1, server.fd, 9000);
    // A size field of 3: no 9P message is that short.
    core.ok(1, Call::Write, [server.fd, 0, 0], &[&[3, 0, 0, 0, 100]]);
    let sent = core.sent();
    assert_eq!(
        (sent[0].client, sent[0].status),
        (thread(client), STATUS_ERROR)
    );
    let log = core.record.borrow().log.clone();
    assert!(
        log.iter().any(|l| l.contains(
            "link hung up: user: a broken 9P stream: size field 3 is below the 7-byte minimum"
        )),
        "{log:?}"
    );
    // Core carries on; the posted name stays, hung up.
    assert_eq!(core.ok(client, Call::Getpid, [0; 3], &[]).words[0], 2);
}

#[test]
fn only_pipes_and_links_can_be_posted_or_mounted() {
    let mut core = boot();
    let file = core.open(1, "/dev/sysname", OREAD);
    let srv = core
        .ok(1, Call::Create, [OWRITE, 0o600, 0], &[b"/srv/x"])
        .words[0];
    let fd = file.to_string();
    assert_eq!(
        core.fails(1, Call::Write, [srv, 0, 0], &[fd.as_bytes()]),
        Error::BAD_USE_FD.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Write, [srv, 0, 0], &[b"77"]),
        Error::BAD_FD.as_str()
    );
    assert_eq!(
        core.fails(1, Call::Mount, [file, 0, 0], &[b"/n"]),
        Error::BAD_USE_FD.as_str()
    );
}

#[test]
fn dissociated_and_orphaned_children_leave_no_wait_records() {
    let mut core = boot();
    // A child spawned with RFNOWAIT: its parent's wait does not count it,
    // and its end leaves nothing to wait for.
    let block = encode_spawn(&SpawnRequest {
        path: "/bin/rc".into(),
        argv: vec!["served".into()],
        fds: Vec::new(),
        flags: core_abi::RFNOWAIT,
    });
    let served = core.ok(1, Call::Spawn, [0; 3], &[&block]).words[0] as u32;
    assert_eq!(core.fails(1, Call::Wait, [0; 3], &[]), "no living children");
    core.call(served, Call::Exits, [0; 3], &[b"bye"]);
    assert!(!core.system.is_process(thread(served)));
    assert_eq!(core.fails(1, Call::Wait, [0; 3], &[]), "no living children");
    // rfork(RFNOWAIT) dissociates the caller itself.
    let child = core.spawn(1, Vec::new());
    core.ok(child, Call::Rfork, [core_abi::RFNOWAIT, 0, 0], &[]);
    core.call(child, Call::Exits, [0; 3], &[]);
    assert_eq!(core.fails(1, Call::Wait, [0; 3], &[]), "no living children");
    // A grandchild that ends before its parent is waited for by nobody
    // once the parent ends: its record goes with the parent.
    let parent = core.spawn(1, Vec::new());
    let grandchild = core.spawn(parent, Vec::new());
    core.call(grandchild, Call::Exits, [0; 3], &[b"early"]);
    // And one that outlives its parent leaves no record at all.
    let late = core.spawn(parent, Vec::new());
    core.call(parent, Call::Exits, [0; 3], &[b"parent"]);
    let reply = core.ok(1, Call::Wait, [0; 3], &[]);
    assert_eq!(reply.data.as_deref(), Some(&b"parent"[..]));
    core.call(late, Call::Exits, [0; 3], &[b"late"]);
    assert_eq!(core.system.zombie_count(), 0);
}
