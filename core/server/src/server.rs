//! The server loop: page faults, system calls and task servers' messages,
//! one at a time.
//!
//! Every message is a kernel page fault or exception of a process (core is
//! every process's pager), a `core-abi` call, or a task server's answer to
//! a posted request (or its fault). A call is answered at once, or parked
//! ([`Parked`]) when it must wait; a parked call is tried again when what
//! it waits for may have happened, and answered by a send to the client,
//! which is still awaiting its reply. The reply to the call just handled
//! goes out with the next receive (reply and wait in one IPC). Nothing
//! here blocks but that IPC and synchronous exchanges with task servers.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use core_abi::layout::{STACK_TOP, UTCB};
use core_abi::{decode_spawn, Call, FileInfo, SpawnRequest, STATUS_ERROR, STATUS_OK};
use kasane_namespace::{join, ChanId, Chans, Location, MountFlags, MountLink, Namespace};
use kasane_servant::servants::cons::{Clock, Console, Time};
use kasane_servant::servants::env::Environment;
use kasane_servant::servants::pipe::Pipes;
use kasane_servant::servants::proc::{Control, ProcessInfo, Processes};
use kasane_servant::servants::root::Root;
use kasane_servant::servants::srv::Registry;
use kasane_servant::{
    Caller, Chan, ChanHandle, ChanTable, Devices, Error, Host, Io, LinkId, Opened,
};
use microkernel_abi::user::{
    current_utcb, exchange_registers, ipc_with_items, kernel_info, space_create, space_destroy,
    thread_create,
};
use microkernel_abi::utcb::ReceiveBuffer;
use microkernel_abi::{
    ExchangeControl, FromSpecifier, KernelInfoSelector, MessageTag, StringItem, TaskId, ThreadId,
    Timeout, Timeouts, TypedItem, Utcb, EXCEPTION_LABEL, PAGE_FAULT_LABEL,
};
use microkernel_rt::console::{print, write_bytes};
use microkernel_rt::frames::FrameBitmap;
use ninep::{FileMode, OpenMode, Stat};

use crate::task_server::TaskServer;
use kasane_mount::{attach_spec, CallGate, Transport};

type MountDriver = kasane_mount::MountDriver<TaskServer>;
use crate::process::{Memory, TextCache};
use crate::servants::{BootFiles, ConsoleDevice, ProcDevice, CONS, REQUESTS, SNAPSHOT};

type Ns = Namespace<ChanHandle, ChanId<char>>;
type Loc = Location<ChanHandle>;

const USER: &str = "eve";

/// How often console input is polled while a reader waits for a line.
const CONSOLE_POLL_MICROSECONDS: u64 = 10_000;

/// Boot modules whose names end so are task servers, posted in /srv
/// under the name without it (`ramfs-task` as /srv/ramfs).
const TASK_SUFFIX: &str = "-task";

/// How many times core restarts a task server whose link hung up before
/// it gives up on it (a server that fails at once would loop for ever).
const MAX_RESTARTS: u32 = 5;

/// The frames core lends task servers: `frames` pages from `base`,
/// shared out evenly among them at boot.
pub struct TaskServerPool {
    pub base: u64,
    pub frames: usize,
}

/// What core keeps to restart a task server.
struct TaskProgram {
    module: String,
    elf: &'static [u8],
    restarts: u32,
}

struct Fd {
    chan: ChanHandle,
    /// A directory's entries, packed as `FileInfo`s at open.
    listing: Option<Vec<u8>>,
}

struct Process {
    parent: u32,
    name: String,
    task: TaskId,
    memory: Memory,
    fds: Vec<Option<Fd>>,
    ns: u32,
    dot: Loc,
    errstr: String,
    env_group: u32,
}

struct Zombie {
    pid: u32,
    parent: u32,
    status: String,
}

/// A request as received, kept to be tried again.
#[derive(Clone)]
struct Request {
    client: ThreadId,
    pid: u32,
    call: Call,
    words: [u64; 3],
    items: Vec<Vec<u8>>,
}

enum Outcome {
    Reply([u64; 2], Option<Vec<u8>>),
    Fail(String),
    /// Try again later (a would-block servant, a child not yet exited).
    Park,
    /// Until this kernel time (microseconds).
    Sleep(u64),
    /// The client is gone; say nothing.
    Silent,
}

struct Parked {
    request: Request,
    until: Option<u64>,
    /// A read of /dev/cons: tried again at every poll of console input.
    console: bool,
    /// A call waiting for a task server's answer (`#M`): a read or
    /// write, or any operation of a call that found the server slow.
    mounted: bool,
}

/// The reply to the call just handled, sent by the next receive's IPC
/// (reply and wait in one kernel entry).
struct Deferred {
    client: ThreadId,
    status: u64,
    words: [u64; 2],
    data: Option<Vec<u8>>,
}

struct KernelClock;

impl Clock for KernelClock {
    fn now(&self) -> Time {
        let micros = kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0);
        Time {
            nanoseconds: micros * 1000,
            ticks: micros,
            frequency: 1_000_000,
        }
    }
}

fn console_out(bytes: &[u8]) {
    write_bytes(bytes);
}

/// `#M` in the servant table.
fn mount_driver(devices: &mut Devices) -> Option<&mut MountDriver> {
    devices
        .get_mut('M')
        .ok()?
        .as_any_mut()?
        .downcast_mut::<MountDriver>()
}

/// Refuses rfork flags core does not serve, and both forms of one.
fn check_rfork(flags: u64) -> Result<(), Error> {
    use core_abi::{RFCENVG, RFCNAMEG, RFENVG, RFNAMEG};
    let known = RFNAMEG | RFENVG | RFCNAMEG | RFCENVG;
    if flags & !known != 0
        || flags & (RFNAMEG | RFCNAMEG) == RFNAMEG | RFCNAMEG
        || flags & (RFENVG | RFCENVG) == RFENVG | RFCENVG
    {
        return Err(Error::BAD_ARG);
    }
    Ok(())
}

fn error(e: Error) -> Outcome {
    Outcome::Fail(e.as_str().to_string())
}

fn info_of(stat: &Stat) -> FileInfo {
    FileInfo {
        name: stat.name.clone(),
        length: stat.length,
        mode: stat.mode.bits(),
        qid_path: stat.qid.path,
        uid: stat.uid.clone(),
        kind: char::from_u32(u32::from(stat.kind)).unwrap_or('?'),
    }
}

/// Core's state.
pub struct Core {
    me: ThreadId,
    utcb: &'static mut Utcb,
    frames: Box<FrameBitmap>,
    arena: Box<FrameBitmap>,
    text: TextCache,
    table: ChanTable,
    devices: Devices,
    namespaces: BTreeMap<u32, (Ns, u32)>,
    next_ns: u32,
    processes: BTreeMap<u32, Process>,
    by_thread: BTreeMap<u64, u32>,
    threads: BTreeMap<u32, ThreadId>,
    zombies: Vec<Zombie>,
    parked: Vec<Parked>,
    next_pid: u32,
    boot_ns: u32,
    buffers: [Box<[u8]>; 2],
    /// Task servers by /srv name, for restarts.
    task_programs: BTreeMap<String, TaskProgram>,
    next_link: u64,
    /// Set while `handle` runs: its reply waits for the next receive.
    defer_replies: bool,
    deferred: Option<Deferred>,
    /// Something parked calls may wait for happened (a process ended).
    woken: bool,
    /// A process took a page since /proc's snapshot was made.
    memory_changed: bool,
    /// Marks the call being handled for `#M` (its journals).
    gate: CallGate,
    /// Processes per environment group (group 0 is the boot group).
    env_refs: BTreeMap<u32, u32>,
    next_env_group: u32,
}

macro_rules! host {
    ($self:ident, $pid:expr, $group:expr) => {
        Host {
            table: &mut $self.table,
            devices: &mut $self.devices,
            caller: Caller::new($pid, USER).with_env_group($group),
        }
    };
}

impl Core {
    pub fn new(
        me: ThreadId,
        frames: Box<FrameBitmap>,
        task_servers: TaskServerPool,
        mut arena: Box<FrameBitmap>,
        modules: Vec<(String, &'static [u8])>,
    ) -> Core {
        let mut text = TextCache::new();
        // Task servers: every `*-task` module, each with an even share of
        // the pool, posted in /srv without the suffix.
        let mut registry = Registry::new();
        let mut mounts = MountDriver::new();
        let gate = mounts.gate();
        let mut task_programs = BTreeMap::new();
        let servers: Vec<&(String, &'static [u8])> = modules
            .iter()
            .filter(|(name, _)| name.ends_with(TASK_SUFFIX) && name.len() > TASK_SUFFIX.len())
            .collect();
        let share = task_servers.frames / servers.len().max(1);
        let mut next_link = 1;
        for (index, (module, elf)) in servers.into_iter().enumerate() {
            let name = &module[..module.len() - TASK_SUFFIX.len()];
            let mut pool = Box::new(FrameBitmap::new());
            pool.init(
                task_servers.base + (index * share) as u64 * microkernel_rt::frames::FRAME_SIZE,
                share,
            );
            let identity = index as u64;
            match TaskServer::start(name, identity, elf, me, pool, &mut arena, &mut text) {
                Ok(server) => {
                    let link = LinkId(next_link);
                    next_link += 1;
                    mounts.add_link(link, server);
                    if let Err(e) = registry.post(name, link, USER) {
                        print(format_args!("core: posting {name}: {e}\n"));
                    }
                    task_programs.insert(
                        String::from(name),
                        TaskProgram {
                            module: module.clone(),
                            elf,
                            restarts: 0,
                        },
                    );
                }
                Err(e) => print(format_args!("core: task server {name}: {e}\n")),
            }
        }
        let mut devices = Devices::new();
        let added = [
            devices.add(Box::new(Root::new())),
            devices.add(Box::new(ConsoleDevice::new(
                Console::new(KernelClock, "kasane"),
                console_out,
            ))),
            devices.add(Box::new(Environment::new())),
            devices.add(Box::new(Pipes::new(32 * 1024))),
            devices.add(Box::new(registry)),
            devices.add(Box::new(ProcDevice {
                inner: Processes::new(),
            })),
            devices.add(Box::new(BootFiles::new(modules))),
            devices.add(Box::new(mounts)),
        ];
        for result in added {
            if let Err(e) = result {
                print(format_args!("core: adding a servant failed: {e}\n"));
            }
        }
        // SAFETY: this is core's only thread, and it reaches its UTCB only
        // through this reference from now on.
        let utcb = unsafe { &mut *current_utcb() };
        Core {
            me,
            utcb,
            frames,
            arena,
            text,
            table: ChanTable::new(),
            devices,
            namespaces: BTreeMap::new(),
            next_ns: 1,
            processes: BTreeMap::new(),
            by_thread: BTreeMap::new(),
            threads: BTreeMap::new(),
            zombies: Vec::new(),
            parked: Vec::new(),
            next_pid: 1,
            boot_ns: 0,
            buffers: [
                // Big enough for a task server's answer too.
                vec![0u8; core_abi::SERVER_BUFFER_0.max(core_abi::link::MSIZE as usize)]
                    .into_boxed_slice(),
                vec![0u8; core_abi::SERVER_BUFFER_1].into_boxed_slice(),
            ],
            task_programs,
            next_link,
            defer_replies: false,
            deferred: None,
            woken: false,
            memory_changed: false,
            env_refs: BTreeMap::new(),
            gate,
            next_env_group: 1,
        }
    }

    /// `#M`, the mount driver.
    fn mounts(&mut self) -> Option<&mut MountDriver> {
        mount_driver(&mut self.devices)
    }

    /// A message from a task server outside a synchronous exchange: the
    /// answer to a posted read or write, or a fault of the server.
    fn server_message(&mut self, link: LinkId, tag: MessageTag) {
        let registers = [
            self.utcb.message_registers[1],
            self.utcb.message_registers[2],
        ];
        let outcome = if tag.is_from_kernel() {
            match tag.label() {
                PAGE_FAULT_LABEL => {
                    // SAFETY: between messages core does not hold its own
                    // UTCB reference across this call (see task_server).
                    let utcb = unsafe { &mut *current_utcb() };
                    match self.mounts().and_then(|m| m.transport_mut(link)) {
                        Some(server) => server.fault(utcb, registers[0]),
                        None => Ok(()),
                    }
                }
                EXCEPTION_LABEL => Err(format!("exception {}", registers[0])),
                _ => Err(String::from("kernel message")),
            }
        } else {
            match TypedItem::decode(registers) {
                Ok(TypedItem::String(item))
                    if tag.label() == core_abi::link::NINEP_LABEL
                        && tag.untyped() == 0
                        && tag.typed() == 2 =>
                {
                    let length = (item.length as usize).min(self.buffers[0].len());
                    // The devices and the buffer are borrowed apart.
                    if let Some(mounts) = mount_driver(&mut self.devices) {
                        mounts.deliver(link, &self.buffers[0][..length]);
                    }
                    Ok(())
                }
                _ => Err(String::from("a message that is not a 9P answer")),
            }
        };
        if let Err(what) = outcome {
            if let Some(mounts) = self.mounts() {
                mounts.fail_link(link, &what);
            }
        }
    }

    /// Restarts the task servers whose links hung up, each alone on a new
    /// link posted under its old /srv name. Mounts made through the old
    /// link stay hung up; a client recovers by mounting again.
    fn restart_task_servers(&mut self) {
        let Some(mounts) = self.mounts() else {
            return;
        };
        let dead = mounts.take_dead();
        for dead in dead {
            let (old, server) = (dead.link, dead.transport);
            let name = String::from(server.name());
            print(format_args!("core: #M: link hung up: {}\n", dead.reason));
            let Some(program) = self.task_programs.get_mut(&name) else {
                continue;
            };
            program.restarts += 1;
            if program.restarts > MAX_RESTARTS {
                print(format_args!(
                    "core: task server {name} failed {} times: not restarted; /srv/{name} stays hung up\n",
                    program.restarts
                ));
                continue;
            }
            let (module, elf, count) = (program.module.clone(), program.elf, program.restarts);
            let restarted = server.restart(elf, self.me, &mut self.arena, &mut self.text);
            let server = match restarted {
                Ok(server) => server,
                Err(e) => {
                    print(format_args!("core: restarting {name} ({module}): {e}\n"));
                    continue;
                }
            };
            let link = LinkId(self.next_link);
            self.next_link += 1;
            if let Some(mounts) = self.mounts() {
                mounts.add_link(link, server);
            }
            let posted = self
                .devices
                .get_mut('s')
                .ok()
                .and_then(|s| s.as_any_mut())
                .and_then(|s| s.downcast_mut::<Registry>())
                .map(|registry| registry.repost(&name, link, USER));
            print(format_args!(
                "core: task server {name} restarted (link {} -> {}, restart {count} of {MAX_RESTARTS})\n",
                old.0, link.0
            ));
            if let Some(Err(e)) = posted {
                print(format_args!("core: posting {name}: {e}\n"));
            }
        }
    }

    /// The first namespace: `#R` at `/` with the servants bound in.
    fn boot_namespace(&mut self) -> Result<u32, Error> {
        let mut host = host!(self, 0, 0);
        let root = kasane_namespace::Walker::attach(&mut host, 'R', "")?;
        let mut ns = Ns::new(root);
        let binds: [(&str, &str, u32); 6] = [
            ("#c", "/dev", 0),
            ("#b", "/bin", 0),
            ("#b", "/boot", 0),
            ("#p", "/proc", 0),
            ("#s", "/srv", 0),
            ("#e", "/env", 4),
        ];
        for (new, old, flags) in binds {
            let dot = ns.root_location(&mut host);
            let new_location = ns.resolve(&mut host, &dot, new)?;
            let old_location = ns.resolve(&mut host, &dot, old)?;
            let result = ns.bind(
                &mut host,
                &new_location,
                &old_location,
                MountFlags::new(flags)?,
            );
            new_location.close(&mut host);
            old_location.close(&mut host);
            dot.close(&mut host);
            result?;
        }
        let id = self.next_ns;
        self.next_ns += 1;
        self.namespaces.insert(id, (ns, 1));
        self.boot_ns = id;
        Ok(id)
    }

    /// Starts `/bin/rc` with the boot arguments and serves until it ends.
    pub fn run(&mut self, args: &str) {
        let words: Vec<String> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("root="))
            .map(String::from)
            .collect();
        let (path, argv) = match words.first() {
            Some(path) => (path.clone(), words.clone()),
            None => ("/bin/rc".to_string(), vec!["rc".to_string()]),
        };
        let ns = match self.boot_namespace() {
            Ok(ns) => ns,
            Err(e) => {
                print(format_args!("core: boot namespace: {e}\n"));
                return;
            }
        };
        let request = SpawnRequest {
            path: path.clone(),
            argv,
            fds: Vec::new(),
            flags: 0,
        };
        let init = match self.create_process(0, ns, &request) {
            Ok(pid) => pid,
            Err(e) => {
                print(format_args!("core: cannot start {path}: {e}\n"));
                return;
            }
        };
        print(format_args!("core: started {path} as pid {init}\n"));
        self.serve(init);
    }

    fn serve(&mut self, init: u32) {
        let mut deferred: Option<Deferred> = None;
        loop {
            if !self.processes.contains_key(&init) {
                let status = self
                    .zombies
                    .iter()
                    .find(|z| z.pid == init)
                    .map(|z| z.status.clone())
                    .unwrap_or_default();
                print(format_args!("core: init exited: '{status}'\n"));
                return;
            }
            let mut wake = self.parked.iter().filter_map(|p| p.until).min();
            let console = self.parked.iter().any(|p| p.console);
            let posted = self.parked.iter().any(|p| p.mounted)
                && self.mounts().is_some_and(|m| m.in_flight());
            // The clock is read only when something waits for a time.
            let now = if wake.is_some() || console || posted {
                kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0)
            } else {
                0
            };
            // A posted 9P request has the link's time to be answered.
            if posted {
                if let Some(mounts) = self.mounts() {
                    mounts.expire(now, crate::task_server::ANSWER_LIMIT);
                }
                let check = now + CONSOLE_POLL_MICROSECONDS * 100;
                wake = Some(wake.map_or(check, |until| until.min(check)));
            }
            // Console input is polled: while someone waits for a line,
            // wake up often to look (retry_parked reads, which polls).
            if console {
                let poll = now + CONSOLE_POLL_MICROSECONDS;
                wake = Some(wake.map_or(poll, |until| until.min(poll)));
            }
            let timeout = match wake {
                Some(until) => Timeout::Relative {
                    microseconds: until.saturating_sub(now).clamp(1, 1 << 30) as u32,
                },
                None => Timeout::Never,
            };
            self.utcb.clear_receive_targets();
            for (slot, buffer) in self.buffers.iter_mut().enumerate() {
                // SAFETY: the buffers are core's, live as long as core, and
                // are read only between receives, after the kernel wrote.
                unsafe {
                    self.utcb.set_receive_buffer(
                        slot,
                        ReceiveBuffer {
                            address: buffer.as_mut_ptr() as u64,
                            length: buffer.len() as u64,
                        },
                    )
                };
            }
            let timeouts = Timeouts {
                send: Timeout::Zero,
                receive: timeout,
            };
            // The reply to the last call goes out in the same IPC (the
            // client waits for it: a zero send timeout).
            let reply = deferred.take();
            let to = match &reply {
                Some(reply) => {
                    self.load_reply(reply.status, reply.words, reply.data.as_deref());
                    reply.client
                }
                None => ThreadId::NIL,
            };
            // SAFETY: core's own UTCB; the receive targets are the buffers
            // above; the only item sent is a string item over the reply's
            // data, which `reply` keeps alive across the call.
            let received = unsafe { ipc_with_items(self.utcb, to, FromSpecifier::Any, timeouts) };
            // The first reply made from here to the end of this pass waits
            // for the next pass's IPC.
            self.defer_replies = true;
            match received {
                Ok(sender) => self.handle(sender),
                Err(e) if e.phase == microkernel_abi::IpcPhase::Send => {
                    // A client gone (killed by a ctl write it made, say)
                    // is not news; anything else is.
                    if self.by_thread.contains_key(&to.raw()) {
                        print(format_args!("core: reply to {to:?} failed: {e:?}\n"));
                    }
                }
                Err(_) => {}
            }
            drop(reply);
            self.restart_task_servers();
            self.carry_out_controls();
            self.retry_parked();
            self.defer_replies = false;
            deferred = self.deferred.take();
        }
    }

    /// Handles one message. The reply to a call is left in
    /// `self.deferred` for the loop's next IPC.
    fn handle(&mut self, sender: ThreadId) {
        let tag = MessageTag::from_raw(self.utcb.message_registers[0]);
        let Some(&pid) = self.by_thread.get(&sender.raw()) else {
            let link = self.mounts().and_then(|m| m.link_of_peer(sender.raw()));
            if let Some(link) = link {
                self.server_message(link, tag);
            }
            return;
        };
        if tag.is_from_kernel() {
            let words = [
                self.utcb.message_registers[1],
                self.utcb.message_registers[2],
            ];
            match tag.label() {
                PAGE_FAULT_LABEL => self.page_fault(sender, pid, words[0], words[1]),
                EXCEPTION_LABEL => {
                    self.kill(pid, format!("sys: trap: exception {}", words[0]));
                }
                _ => {}
            }
            return;
        }
        let Some(call) = Call::from_label(tag.label()) else {
            let text = String::from("bad system call");
            if let Some(process) = self.processes.get_mut(&pid) {
                process.errstr = text.clone();
            }
            self.reply(sender, Outcome::Fail(text));
            return;
        };
        let untyped = tag.untyped();
        let mut words = [0u64; 3];
        for (n, word) in words.iter_mut().enumerate() {
            if n < untyped {
                *word = self.utcb.message_registers[n + 1];
            }
        }
        let mut items = Vec::new();
        for index in 0..tag.typed() / 2 {
            let at = 1 + untyped + 2 * index;
            let pair = [
                self.utcb.message_registers[at],
                self.utcb.message_registers[at + 1],
            ];
            if let (Ok(TypedItem::String(item)), Some(buffer)) =
                (TypedItem::decode(pair), self.buffers.get(index))
            {
                let length = (item.length as usize).min(buffer.len());
                items.push(buffer[..length].to_vec());
            }
        }
        let request = Request {
            client: sender,
            pid,
            call,
            words,
            items,
        };
        self.attempt(request);
    }

    fn attempt(&mut self, request: Request) {
        self.gate.begin(request.pid);
        let mut outcome = self.dispatch(&request);
        // A file server that has not answered yet: the call waits for it
        // and runs again, taking what was answered from #M's journal.
        let blocked = self.gate.blocked();
        if blocked && matches!(outcome, Outcome::Fail(_)) {
            outcome = Outcome::Park;
        }
        let parked = matches!(outcome, Outcome::Park | Outcome::Sleep(_));
        if self.gate.end() {
            if let Some(mounts) = self.mounts() {
                mounts.end_call(request.pid, parked);
            }
        }
        match outcome {
            Outcome::Park => {
                let letter = self.io_letter(&request);
                self.parked.push(Parked {
                    request,
                    until: None,
                    console: letter == Some(('c', true)),
                    mounted: blocked || letter == Some(('M', false)),
                });
            }
            Outcome::Sleep(until) => self.parked.push(Parked {
                request,
                until: Some(until),
                console: false,
                mounted: false,
            }),
            Outcome::Silent => {}
            Outcome::Fail(text) => {
                if let Some(process) = self.processes.get_mut(&request.pid) {
                    process.errstr = text.clone();
                }
                self.reply(request.client, Outcome::Fail(text));
            }
            other => self.reply(request.client, other),
        }
    }

    /// proc(3) ctl requests, after the write that made them was answered.
    fn carry_out_controls(&mut self) {
        let requests = core::mem::take(&mut *REQUESTS.lock());
        for request in requests {
            match request {
                Control::Kill(pid) => self.kill(pid, "killed".to_string()),
            }
        }
    }

    /// For a read or write: the servant letter of its descriptor, and
    /// whether the file is /dev/cons.
    fn io_letter(&self, request: &Request) -> Option<(char, bool)> {
        if !matches!(
            request.call,
            Call::Read | Call::Pread | Call::Write | Call::Pwrite
        ) {
            return None;
        }
        let chan = self
            .table
            .get(self.fd_handle(request.pid, request.words[0])?)
            .ok()?;
        Some((chan.letter, chan.letter == 'c' && chan.qid.path == CONS))
    }

    /// Tries parked calls again when something they wait for may have
    /// happened: a pipe woke (its servant lists wait keys), a process ended
    /// (`wait`), a ctl request was carried out, a sleep is due, or console
    /// input may have come (reads of /dev/cons poll). Otherwise nothing is
    /// retried, so a call's cost does not grow with the parked calls.
    fn retry_parked(&mut self) {
        let piped = self
            .devices
            .get_mut('|')
            .is_ok_and(|pipes| !pipes.take_wakeups().is_empty());
        let mounted = self.parked.iter().any(|p| p.mounted)
            && self
                .devices
                .get_mut('M')
                .is_ok_and(|mounts| !mounts.take_wakeups().is_empty());
        let piped = piped || mounted;
        let woke = core::mem::take(&mut self.woken) || piped;
        let timed = self.parked.iter().any(|p| p.until.is_some());
        let console = self.parked.iter().any(|p| p.console);
        if !(woke || timed || console) {
            return;
        }
        let now = if timed {
            kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0)
        } else {
            0
        };
        let parked = core::mem::take(&mut self.parked);
        for entry in parked {
            if !self.processes.contains_key(&entry.request.pid) {
                continue;
            }
            match entry.until {
                Some(until) if until > now => self.parked.push(entry),
                Some(_) => self.reply(entry.request.client, Outcome::Reply([0, 0], None)),
                None if woke || entry.console => self.attempt(entry.request),
                None => self.parked.push(entry),
            }
        }
    }

    /// Writes a reply into core's message registers: MR1 status, MR2 and
    /// MR3 words, and a string item over `data` if there is any.
    fn load_reply(&mut self, status: u64, words: [u64; 2], data: Option<&[u8]>) {
        let typed = if data.is_some() { 2 } else { 0 };
        let Ok(tag) = MessageTag::new(0, 3, typed) else {
            return;
        };
        let registers = &mut self.utcb.message_registers;
        registers[0] = tag.raw();
        registers[1] = status;
        registers[2] = words[0];
        registers[3] = words[1];
        if let Some(bytes) = data {
            let [first, second] = TypedItem::String(StringItem {
                address: bytes.as_ptr() as u64,
                length: bytes.len() as u64,
            })
            .encode();
            registers[4] = first;
            registers[5] = second;
        }
    }

    /// Answers a call: at once, or (for the call `handle` is answering)
    /// with the loop's next receive.
    fn reply(&mut self, client: ThreadId, outcome: Outcome) {
        let (status, words, data) = match outcome {
            Outcome::Reply(words, data) => (STATUS_OK, words, data),
            Outcome::Fail(_) => (STATUS_ERROR, [0, 0], None),
            _ => return,
        };
        let data = data.filter(|d| !d.is_empty());
        if self.defer_replies && self.deferred.is_none() {
            self.deferred = Some(Deferred {
                client,
                status,
                words,
                data,
            });
            return;
        }
        self.utcb.clear_receive_targets();
        self.load_reply(status, words, data.as_deref());
        let timeouts = Timeouts {
            send: Timeout::Zero,
            receive: Timeout::Zero,
        };
        // SAFETY: core's own UTCB with no receive targets; the only item is
        // a string item over `data`, which lives across the call.
        let result = unsafe { ipc_with_items(self.utcb, client, FromSpecifier::Nobody, timeouts) };
        if let Err(e) = result {
            print(format_args!("core: reply to {client:?} failed: {e:?}\n"));
        }
    }

    fn page_fault(&mut self, thread: ThreadId, pid: u32, address: u64, ip: u64) {
        let Some(process) = self.processes.get_mut(&pid) else {
            return;
        };
        match process.memory.resolve(address, &mut self.frames) {
            Some(item) => {
                self.memory_changed = true;
                let Ok(tag) = MessageTag::new(0, 0, 2) else {
                    return;
                };
                let [first, second] = TypedItem::Map(item).encode();
                self.utcb.clear_receive_targets();
                self.utcb.message_registers[0] = tag.raw();
                self.utcb.message_registers[1] = first;
                self.utcb.message_registers[2] = second;
                let timeouts = Timeouts {
                    send: Timeout::Zero,
                    receive: Timeout::Zero,
                };
                // SAFETY: the item maps a page core lends to this process
                // alone (or shared read-only text); core's own UTCB.
                let _ =
                    unsafe { ipc_with_items(self.utcb, thread, FromSpecifier::Nobody, timeouts) };
            }
            None => {
                let status = format!("sys: trap: fault read addr={address:#x} pc={ip:#x}");
                print(format_args!("core: {}: {status}\n", process.name));
                self.kill(pid, status);
            }
        }
    }

    /// Ends a process: its task, memory, descriptors and namespace.
    fn kill(&mut self, pid: u32, status: String) {
        let Some(process) = self.processes.remove(&pid) else {
            return;
        };
        if let Some(thread) = self.threads.remove(&pid) {
            self.by_thread.remove(&thread.raw());
        }
        let _ = space_destroy(process.task);
        process.memory.release(&mut self.frames);
        if let Some(mounts) = self.mounts() {
            mounts.forget(pid);
        }
        let mut host = host!(self, pid, process.env_group);
        for fd in process.fds.into_iter().flatten() {
            host.close(fd.chan);
        }
        process.dot.close(&mut host);
        self.release_namespace(pid, process.ns, process.env_group);
        self.release_env_group(process.env_group);
        self.woken = true;
        self.zombies.push(Zombie {
            pid,
            parent: process.parent,
            status,
        });
        self.update_snapshot();
    }

    /// Drops a process's reference to namespace `ns`; the last one clears
    /// it (its chans are closed).
    fn release_namespace(&mut self, pid: u32, ns: u32, group: u32) {
        if let Some((_, refs)) = self.namespaces.get_mut(&ns) {
            *refs -= 1;
            if *refs == 0 {
                if let Some((namespace, _)) = self.namespaces.remove(&ns) {
                    let mut host = host!(self, pid, group);
                    namespace.clear(&mut host);
                }
            }
        }
    }

    fn environment(&mut self) -> Option<&mut Environment> {
        self.devices
            .get_mut('e')
            .ok()?
            .as_any_mut()?
            .downcast_mut::<Environment>()
    }

    /// Drops a process's reference to environment group `group`; the last
    /// one forgets its variables. The boot group 0 stays: the /env of the
    /// boot namespace is its directory.
    fn release_env_group(&mut self, group: u32) {
        let refs = self.env_refs.entry(group).or_insert(1);
        *refs = refs.saturating_sub(1);
        if *refs == 0 && group != 0 {
            self.env_refs.remove(&group);
            if let Some(environment) = self.environment() {
                environment.drop_group(group);
            }
        }
    }

    /// rfork(2) without RFPROC: a copy or a clean namespace, a copy or a
    /// clean environment group, for the calling process alone.
    fn rfork(&mut self, pid: u32, flags: u64) -> Result<(), Error> {
        use core_abi::{RFCENVG, RFCNAMEG, RFENVG, RFNAMEG};
        check_rfork(flags)?;
        let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
        let (old_ns, group) = (process.ns, process.env_group);
        if flags & (RFNAMEG | RFCNAMEG) != 0 {
            let mut host = host!(self, pid, group);
            let namespace = if flags & RFNAMEG != 0 {
                let (ns, _) = self.namespaces.get(&old_ns).ok_or(Error::BAD_FD)?;
                ns.fork(&mut host)
            } else {
                let root = kasane_namespace::Walker::attach(&mut host, 'R', "")?;
                Ns::new(root)
            };
            // A clean namespace starts at its root; a copy keeps dot.
            let dot = (flags & RFCNAMEG != 0).then(|| namespace.root_location(&mut host));
            let id = self.next_ns;
            self.next_ns += 1;
            self.namespaces.insert(id, (namespace, 1));
            let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
            process.ns = id;
            if let Some(dot) = dot {
                let old = core::mem::replace(&mut process.dot, dot);
                let mut host = host!(self, pid, group);
                old.close(&mut host);
            }
            self.release_namespace(pid, old_ns, group);
        }
        if flags & (RFENVG | RFCENVG) != 0 {
            let new = self.next_env_group;
            self.next_env_group += 1;
            let environment = self.environment().ok_or(Error::BAD_ARG)?;
            if flags & RFENVG != 0 {
                environment.fork_group(group, new);
            } else {
                environment.create_group(new);
            }
            self.env_refs.insert(new, 1);
            if let Some(process) = self.processes.get_mut(&pid) {
                process.env_group = new;
            }
            self.release_env_group(group);
        }
        self.update_snapshot();
        Ok(())
    }

    fn update_snapshot(&mut self) {
        let mut list = Vec::new();
        for (pid, process) in &self.processes {
            let ns = self
                .namespaces
                .get(&process.ns)
                .map(|(ns, _)| ns.ns_text(Some(&process.dot.path())))
                .unwrap_or_default();
            list.push(ProcessInfo {
                pid: *pid,
                name: process.name.clone(),
                user: USER.into(),
                state: "Ready".into(),
                memory_kb: process.memory.kilobytes(),
                ns,
                ..ProcessInfo::default()
            });
        }
        *SNAPSHOT.lock() = list;
    }

    /// Starts the program of `request` as a child of `parent` (0 for the
    /// first process, in namespace `ns`), sharing the parent's namespace
    /// and environment group unless the request's rfork flags say
    /// otherwise.
    fn create_process(
        &mut self,
        parent: u32,
        ns: u32,
        request: &SpawnRequest,
    ) -> Result<u32, String> {
        check_rfork(request.flags).map_err(|e| e.as_str().to_string())?;
        let (bytes, identity) = self.read_program(parent, &request.path)?;
        let pid = self.next_pid;
        let mut memory = Memory::default();
        let entry = memory.load(
            &bytes,
            identity,
            &mut self.frames,
            &mut self.arena,
            &mut self.text,
        )?;
        memory.set_arguments(
            &mut self.frames,
            self.me.raw(),
            u64::from(pid),
            &request.argv,
        )?;
        let (env_group, parent_ns) = match self.processes.get(&parent) {
            Some(p) => (p.env_group, p.ns),
            None => (0, ns),
        };
        // The parent's namespace, shared; the flags change it below.
        let ns_id = parent_ns;
        if let Some((_, refs)) = self.namespaces.get_mut(&parent_ns) {
            *refs += 1;
        }
        let mut host = host!(self, pid, env_group);
        let dot = match self.processes.get(&parent) {
            Some(p) => p.dot.fork(&mut host),
            None => match self.namespaces.get(&ns_id) {
                Some((ns, _)) => ns.root_location(&mut host),
                None => return Err("no namespace".into()),
            },
        };
        let mut fds: Vec<Option<Fd>> = Vec::new();
        for (child, from) in &request.fds {
            let Some(Some(source)) = self
                .processes
                .get(&parent)
                .and_then(|p| p.fds.get(*from as usize))
            else {
                continue;
            };
            let chan = host.dup(&source.chan);
            let child = *child as usize;
            if fds.len() <= child {
                fds.resize_with(child + 1, || None);
            }
            fds[child] = Some(Fd {
                chan,
                listing: source.listing.clone(),
            });
        }
        let task = space_create().map_err(|e| format!("space_create: {e:?}"))?;
        // SAFETY: the task is new and not core's own.
        let thread = unsafe { thread_create(task, self.me, UTCB) }
            .map_err(|e| format!("thread_create: {e:?}"))?;
        let name = request
            .argv
            .first()
            .cloned()
            .unwrap_or_else(|| request.path.clone());
        self.processes.insert(
            pid,
            Process {
                parent,
                name,
                task,
                memory,
                fds,
                ns: ns_id,
                dot,
                errstr: String::new(),
                env_group,
            },
        );
        *self.env_refs.entry(env_group).or_insert(0) += 1;
        self.by_thread.insert(thread.raw(), pid);
        self.threads.insert(pid, thread);
        self.next_pid += 1;
        // The child's own namespace or environment, before it runs.
        if request.flags != 0 {
            if let Err(e) = self.rfork(pid, request.flags) {
                self.kill(pid, String::from(e.as_str()));
                self.zombies.retain(|z| z.pid != pid);
                return Err(String::from(e.as_str()));
            }
        }
        self.update_snapshot();
        let control = ExchangeControl::SET_INSTRUCTION_POINTER
            | ExchangeControl::SET_STACK_POINTER
            | ExchangeControl::RESUME;
        // SAFETY: a new thread of another task, started at its ELF entry
        // on the stack the layout gives it.
        unsafe { exchange_registers(thread, control, entry, STACK_TOP, ThreadId::NIL) }
            .map_err(|e| format!("exchange_registers: {e:?}"))?;
        Ok(pid)
    }

    /// The bytes of a program file and its identity for the text cache.
    fn read_program(&mut self, pid: u32, path: &str) -> Result<(Vec<u8>, (char, u64)), String> {
        let location = self
            .resolve(pid, path)
            .map_err(|e| e.for_name(path).to_string())?;
        let group = self.processes.get(&pid).map_or(0, |p| p.env_group);
        let mut host = host!(self, pid, group);
        let chan = host.clone_chan(location.chan());
        location.close(&mut host);
        let chan = chan.map_err(|e| e.to_string())?;
        let result = (|| {
            let entry = host.table.get(chan)?.clone();
            let file = entry.file();
            let caller = host.caller;
            let servant = host.devices.get_mut(entry.letter)?;
            servant.open(&caller, &file, OpenMode::OREAD)?;
            // Sized from stat: programs carry debug information, and a
            // doubling Vec would need twice their size of heap.
            let length = servant.stat(&caller, &file)?.length as usize;
            let mut bytes = Vec::with_capacity(length);
            loop {
                match servant.read(&caller, &file, bytes.len() as u64, 1 << 20)? {
                    Io::Ready(data) if data.is_empty() => break,
                    Io::Ready(data) => bytes.extend_from_slice(&data),
                    Io::WouldBlock(_) => return Err(Error::new("program file would block")),
                }
            }
            if let Ok(chan) = host.table.get_mut(chan) {
                chan.mode = Some(OpenMode::OREAD);
            }
            Ok((bytes, (entry.letter, entry.qid.path)))
        })();
        host.close(chan);
        result.map_err(|e: Error| e.to_string())
    }

    fn resolve(&mut self, pid: u32, path: &str) -> Result<Loc, Error> {
        let Some(process) = self.processes.get(&pid) else {
            // Core itself (pid 0), starting the first process.
            let (ns, _) = self.namespaces.get(&self.boot_ns).ok_or(Error::BAD_FD)?;
            let mut host = host!(self, 0, 0);
            let dot = ns.root_location(&mut host);
            let result = ns.resolve(&mut host, &dot, path);
            dot.close(&mut host);
            return result;
        };
        let (ns, _) = self.namespaces.get(&process.ns).ok_or(Error::BAD_FD)?;
        let mut host = host!(self, pid, process.env_group);
        ns.resolve(&mut host, &process.dot, path)
    }

    fn new_fd(&mut self, pid: u32, fd: Fd) -> u64 {
        let Some(process) = self.processes.get_mut(&pid) else {
            return u64::MAX;
        };
        let slot = match process.fds.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                process.fds.push(None);
                process.fds.len() - 1
            }
        };
        process.fds[slot] = Some(fd);
        slot as u64
    }

    /// Opens the file at `location` (which is consumed).
    fn open_location(&mut self, pid: u32, location: Loc, mode: OpenMode) -> Result<Fd, Error> {
        let group = self.processes.get(&pid).map_or(0, |p| p.env_group);
        let ns_id = self.processes.get(&pid).map_or(0, |p| p.ns);
        let mut host = host!(self, pid, group);
        // An open gets a chan of its own (cclone): the location's may be a
        // union member the namespace holds, whose offset is not this fd's.
        let chan = match host.clone_chan(location.chan()) {
            Ok(chan) => chan,
            Err(e) => {
                location.close(&mut host);
                return Err(e);
            }
        };
        let result = (|| {
            let entry = host.table.get(chan)?.clone();
            let caller = host.caller;
            let opened = host
                .devices
                .get_mut(entry.letter)?
                .open(&caller, &entry.file(), mode)?;
            let qid = match opened {
                Opened::File(qid) => qid,
                // srv(3): the descriptor holds the posted link, for mount.
                Opened::Link(link) => {
                    let chan_entry = host.table.get_mut(chan)?;
                    chan_entry.mode = Some(mode);
                    chan_entry.link = Some(link);
                    return Ok(None);
                }
            };
            let chan_entry = host.table.get_mut(chan)?;
            chan_entry.mode = Some(mode);
            chan_entry.qid = qid;
            let listing = if qid.kind.contains(ninep::QidType::DIR) {
                let (ns, _) = self.namespaces.get(&ns_id).ok_or(Error::BAD_FD)?;
                let entries = ns.read_dir(&mut host, &location)?;
                let mut bytes = Vec::new();
                for stat in &entries {
                    info_of(stat).encode_into(&mut bytes);
                }
                Some(bytes)
            } else {
                None
            };
            Ok(listing)
        })();
        location.close(&mut host);
        match result {
            Ok(listing) => Ok(Fd { chan, listing }),
            Err(e) => {
                host.close(chan);
                Err(e)
            }
        }
    }

    /// The chan handle of a process's descriptor.
    fn fd_handle(&self, pid: u32, fd: u64) -> Option<ChanHandle> {
        let process = self.processes.get(&pid)?;
        let entry = process.fds.get(usize::try_from(fd).ok()?)?.as_ref()?;
        Some(entry.chan)
    }

    fn fd_chan(&self, pid: u32, fd: u64) -> Result<(ChanHandle, Chan), Error> {
        let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
        let entry = process
            .fds
            .get(usize::try_from(fd).map_err(|_| Error::BAD_FD)?)
            .and_then(Option::as_ref)
            .ok_or(Error::BAD_FD)?;
        Ok((entry.chan, self.table.get(entry.chan)?.clone()))
    }

    fn dispatch(&mut self, request: &Request) -> Outcome {
        match self.dispatch_inner(request) {
            Ok(outcome) => outcome,
            Err(e) => error(e),
        }
    }

    fn item(request: &Request, index: usize) -> Result<String, Error> {
        let bytes = request.items.get(index).ok_or(Error::BAD_ARG)?;
        String::from_utf8(bytes.clone()).map_err(|_| Error::BAD_CHAR)
    }

    fn dispatch_inner(&mut self, request: &Request) -> Result<Outcome, Error> {
        let pid = request.pid;
        let [w1, w2, w3] = request.words;
        let group = self.processes.get(&pid).map_or(0, |p| p.env_group);
        match request.call {
            Call::Open => {
                let path = Self::item(request, 0)?;
                let mode = OpenMode::from_bits_retain(w1 as u8);
                let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                let fd = self.open_location(pid, location, mode)?;
                // A link keeps the name it was opened by, for ns (mount(2)
                // records it as Plan 9 records c->path).
                let name = match self.processes.get(&pid) {
                    Some(p) if !path.starts_with('/') => join(&p.dot.path(), &path),
                    _ => kasane_namespace::cleanname(&path),
                };
                if let Ok(chan) = self.table.get_mut(fd.chan) {
                    if chan.link.is_some() {
                        chan.name = name;
                    }
                }
                Ok(Outcome::Reply([self.new_fd(pid, fd), 0], None))
            }
            Call::Create => {
                let path = Self::item(request, 0)?;
                let mode = OpenMode::from_bits_retain(w1 as u8);
                let (dir, name) = match path.rsplit_once('/') {
                    Some(("", name)) => ("/".to_string(), name.to_string()),
                    Some((dir, name)) => (dir.to_string(), name.to_string()),
                    None => (".".to_string(), path.clone()),
                };
                // Plan 9's create of an existing file truncates it.
                if let Ok(location) = self.resolve(pid, &path) {
                    let fd = self.open_location(pid, location, mode | OpenMode::OTRUNC)?;
                    return Ok(Outcome::Reply([self.new_fd(pid, fd), 0], None));
                }
                let location = self.resolve(pid, &dir).map_err(|e| e.for_name(&dir))?;
                let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
                let (ns, _) = self.namespaces.get(&process.ns).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let target = ns.create_target(&mut host, &location);
                location.close(&mut host);
                let target = target?;
                let result = (|| {
                    let entry = host.table.get(target)?.clone();
                    let caller = host.caller;
                    let file = host.devices.get_mut(entry.letter)?.create(
                        &caller,
                        &entry.file(),
                        &name,
                        FileMode::from_bits_retain(w2 as u32),
                        mode,
                    )?;
                    let mut chan = Chan::new(entry.letter, file, join(&entry.name, &name));
                    chan.mode = Some(mode);
                    Ok(host.table.insert(chan))
                })();
                host.close(target);
                let chan = result?;
                let fd = self.new_fd(
                    pid,
                    Fd {
                        chan,
                        listing: None,
                    },
                );
                Ok(Outcome::Reply([fd, 0], None))
            }
            Call::Read | Call::Pread => {
                let (handle, chan) = self.fd_chan(pid, w1)?;
                // /proc shows the memory processes have touched since.
                if chan.letter == 'p' && core::mem::take(&mut self.memory_changed) {
                    self.update_snapshot();
                }
                let count = (w2 as usize).min(core_abi::MAX_IO);
                let offset = if request.call == Call::Pread {
                    w3
                } else {
                    chan.offset
                };
                let listing = self
                    .processes
                    .get(&pid)
                    .and_then(|p| p.fds.get(w1 as usize))
                    .and_then(Option::as_ref)
                    .and_then(|fd| fd.listing.clone());
                let data = match listing {
                    Some(bytes) => {
                        // Whole entries only: find how many fit.
                        let start = (offset as usize).min(bytes.len());
                        let mut rest = &bytes[start..];
                        let mut end = start;
                        while FileInfo::decode_from(&mut rest).is_some() {
                            let next = bytes.len() - rest.len();
                            if next - start > count {
                                break;
                            }
                            end = next;
                        }
                        bytes[start..end].to_vec()
                    }
                    None => {
                        let caller = Caller::new(pid, USER).with_env_group(group);
                        match self.devices.get_mut(chan.letter)?.read(
                            &caller,
                            &chan.file(),
                            offset,
                            count as u32,
                        )? {
                            Io::Ready(data) => data,
                            Io::WouldBlock(_) => return Ok(Outcome::Park),
                        }
                    }
                };
                if request.call == Call::Read {
                    self.table.get_mut(handle)?.offset += data.len() as u64;
                }
                Ok(Outcome::Reply([data.len() as u64, 0], Some(data)))
            }
            Call::Write | Call::Pwrite => {
                let (handle, chan) = self.fd_chan(pid, w1)?;
                let empty = Vec::new();
                let data = request.items.first().unwrap_or(&empty);
                let offset = if request.call == Call::Pwrite {
                    w2
                } else {
                    chan.offset
                };
                let caller = Caller::new(pid, USER).with_env_group(group);
                let written = match self.devices.get_mut(chan.letter)?.write(
                    &caller,
                    &chan.file(),
                    offset,
                    data,
                )? {
                    Io::Ready(n) => n,
                    Io::WouldBlock(_) => return Ok(Outcome::Park),
                };
                if request.call == Call::Write {
                    self.table.get_mut(handle)?.offset += u64::from(written);
                }
                Ok(Outcome::Reply([u64::from(written), 0], None))
            }
            Call::Seek => {
                let (handle, chan) = self.fd_chan(pid, w1)?;
                let base = match w3 {
                    core_abi::SEEK_SET => 0,
                    core_abi::SEEK_CUR => chan.offset as i64,
                    _ => {
                        let caller = Caller::new(pid, USER).with_env_group(group);
                        self.devices
                            .get_mut(chan.letter)?
                            .stat(&caller, &chan.file())?
                            .length as i64
                    }
                };
                let offset = base.checked_add(w2 as i64).filter(|o| *o >= 0);
                let offset = offset.ok_or(Error::BAD_ARG)? as u64;
                self.table.get_mut(handle)?.offset = offset;
                Ok(Outcome::Reply([offset, 0], None))
            }
            Call::Close => {
                let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
                let fd = process
                    .fds
                    .get_mut(w1 as usize)
                    .and_then(Option::take)
                    .ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                host.close(fd.chan);
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Stat | Call::Fstat => {
                let stat = if request.call == Call::Stat {
                    let path = Self::item(request, 0)?;
                    let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                    let chan = self.table.get(*location.chan())?.clone();
                    let caller = Caller::new(pid, USER).with_env_group(group);
                    // The location goes after the stat: its chan may be
                    // the last one on a mounted file's fid.
                    let stat = self
                        .devices
                        .get_mut(chan.letter)
                        .and_then(|s| s.stat(&caller, &chan.file()));
                    let mut host = host!(self, pid, group);
                    location.close(&mut host);
                    stat?
                } else {
                    let (_, chan) = self.fd_chan(pid, w1)?;
                    let caller = Caller::new(pid, USER).with_env_group(group);
                    self.devices
                        .get_mut(chan.letter)?
                        .stat(&caller, &chan.file())?
                };
                let mut bytes = Vec::new();
                info_of(&stat).encode_into(&mut bytes);
                Ok(Outcome::Reply([0, 0], Some(bytes)))
            }
            Call::Remove => {
                let path = Self::item(request, 0)?;
                let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                let chan = self.table.get(*location.chan())?.clone();
                let caller = Caller::new(pid, USER).with_env_group(group);
                let result = self
                    .devices
                    .get_mut(chan.letter)
                    .and_then(|s| s.remove(&caller, &chan.file()));
                let mut host = host!(self, pid, group);
                location.close(&mut host);
                result?;
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Chdir => {
                let path = Self::item(request, 0)?;
                let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                let mut host = host!(self, pid, group);
                if !host.is_dir(location.chan()) {
                    location.close(&mut host);
                    return Err(Error::NOT_DIR);
                }
                let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
                let old = core::mem::replace(&mut process.dot, location);
                old.close(&mut host);
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Bind => {
                let new = Self::item(request, 0)?;
                let old = Self::item(request, 1)?;
                let flags = MountFlags::new(w1 as u32)?;
                let new_location = self.resolve(pid, &new).map_err(|e| e.for_name(&new))?;
                let old_location = match self.resolve(pid, &old) {
                    Ok(location) => location,
                    Err(e) => {
                        let mut host = host!(self, pid, group);
                        new_location.close(&mut host);
                        return Err(e.for_name(&old));
                    }
                };
                let ns_id = self.processes.get(&pid).ok_or(Error::BAD_FD)?.ns;
                let (ns, _) = self.namespaces.get_mut(&ns_id).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let result = ns.bind(&mut host, &new_location, &old_location, flags);
                new_location.close(&mut host);
                old_location.close(&mut host);
                result?;
                self.update_snapshot();
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Unmount => {
                let (new, old) = if w1 != 0 {
                    (Some(Self::item(request, 0)?), Self::item(request, 1)?)
                } else {
                    (None, Self::item(request, 0)?)
                };
                let member = match &new {
                    Some(new) => {
                        let location = self.resolve(pid, new).map_err(|e| e.for_name(new))?;
                        let mut host = host!(self, pid, group);
                        let id = host.id(location.chan());
                        location.close(&mut host);
                        Some(id)
                    }
                    None => None,
                };
                let old_location = self.resolve(pid, &old).map_err(|e| e.for_name(&old))?;
                let ns_id = self.processes.get(&pid).ok_or(Error::BAD_FD)?.ns;
                let (ns, _) = self.namespaces.get_mut(&ns_id).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let result = ns.unmount(&mut host, &old_location, member.as_ref());
                old_location.close(&mut host);
                result?;
                self.update_snapshot();
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Mount => {
                let (_, link_chan) = self.fd_chan(pid, w1)?;
                let link = link_chan.link.ok_or(Error::BAD_USE_FD)?;
                let flags = MountFlags::new(w2 as u32)?;
                let old = Self::item(request, 0)?;
                let spec = Self::item(request, 1).unwrap_or_default();
                let old_location = self.resolve(pid, &old).map_err(|e| e.for_name(&old))?;
                let caller = Caller::new(pid, USER).with_env_group(group);
                let root = self
                    .devices
                    .get_mut('M')
                    .and_then(|m| m.attach(&caller, &attach_spec(link, &spec)));
                let root = match root {
                    Ok(file) => {
                        let mut chan = Chan::new('M', file, old.clone());
                        chan.link = Some(link);
                        self.table.insert(chan)
                    }
                    Err(e) => {
                        let mut host = host!(self, pid, group);
                        old_location.close(&mut host);
                        return Err(e);
                    }
                };
                let id = ChanId {
                    kind: link_chan.letter,
                    dev: link_chan.dev,
                    path: link_chan.qid.path,
                };
                let ns_id = self.processes.get(&pid).ok_or(Error::BAD_FD)?.ns;
                let (ns, _) = self.namespaces.get_mut(&ns_id).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let mount_link = MountLink {
                    id,
                    path: &link_chan.name,
                    spec: &spec,
                };
                let result = ns.mount(&mut host, root, &old_location, flags, mount_link);
                old_location.close(&mut host);
                result?;
                self.update_snapshot();
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Wstat => {
                // Renaming within the directory: the one change served.
                let path = Self::item(request, 0)?;
                let name = Self::item(request, 1)?;
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(Error::FILE_NAME);
                }
                let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                let chan = self.table.get(*location.chan())?.clone();
                let caller = Caller::new(pid, USER).with_env_group(group);
                // stat(5): every field but the name says "don't touch".
                let mut stat = Stat::dont_touch();
                stat.name = name;
                let result = self
                    .devices
                    .get_mut(chan.letter)
                    .and_then(|s| s.wstat(&caller, &chan.file(), &stat));
                let mut host = host!(self, pid, group);
                location.close(&mut host);
                result?;
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Rfork => {
                self.rfork(pid, w1)?;
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Pipe => {
                let directory = self.resolve(pid, "#|")?;
                let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
                let (ns, _) = self.namespaces.get(&process.ns).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let ends = [
                    ns.walk(&mut host, &directory, "data"),
                    ns.walk(&mut host, &directory, "data1"),
                ];
                directory.close(&mut host);
                let [Ok(first), Ok(second)] = ends else {
                    return Err(Error::new("can't make a pipe"));
                };
                let first = self.open_location(pid, first, OpenMode::ORDWR)?;
                let second = self.open_location(pid, second, OpenMode::ORDWR)?;
                let (a, b) = (self.new_fd(pid, first), self.new_fd(pid, second));
                Ok(Outcome::Reply([a, b], None))
            }
            Call::Dup => {
                let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
                let source = process
                    .fds
                    .get(w1 as usize)
                    .and_then(Option::as_ref)
                    .ok_or(Error::BAD_FD)?;
                let (chan, listing) = (source.chan, source.listing.clone());
                self.table.incref(chan)?;
                let fd = Fd { chan, listing };
                if w2 == u64::MAX {
                    return Ok(Outcome::Reply([self.new_fd(pid, fd), 0], None));
                }
                let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
                let slot = w2 as usize;
                if slot > 1024 {
                    return Err(Error::BAD_FD);
                }
                if process.fds.len() <= slot {
                    process.fds.resize_with(slot + 1, || None);
                }
                let old = process.fds[slot].replace(fd);
                if let Some(old) = old {
                    let mut host = host!(self, pid, group);
                    host.close(old.chan);
                }
                Ok(Outcome::Reply([w2, 0], None))
            }
            Call::Spawn => {
                let block = request.items.first().ok_or(Error::BAD_ARG)?;
                let spawn = decode_spawn(block).ok_or(Error::BAD_ARG)?;
                let ns = self.processes.get(&pid).ok_or(Error::BAD_FD)?.ns;
                let child = self.create_process(pid, ns, &spawn).map_err(Error::new)?;
                Ok(Outcome::Reply([u64::from(child), 0], None))
            }
            Call::Exits => {
                let status = request
                    .items
                    .first()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                self.kill(pid, status);
                Ok(Outcome::Silent)
            }
            Call::Wait => {
                let wanted = w1 as u32;
                if let Some(index) = self
                    .zombies
                    .iter()
                    .position(|z| z.parent == pid && (wanted == 0 || z.pid == wanted))
                {
                    let zombie = self.zombies.remove(index);
                    return Ok(Outcome::Reply(
                        [u64::from(zombie.pid), 0],
                        Some(zombie.status.into_bytes()),
                    ));
                }
                let living = self
                    .processes
                    .iter()
                    .any(|(child, p)| p.parent == pid && (wanted == 0 || *child == wanted));
                if living {
                    Ok(Outcome::Park)
                } else {
                    Err(Error::new("no living children"))
                }
            }
            Call::Sleep => {
                let now = kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0);
                Ok(Outcome::Sleep(now + w1.saturating_mul(1000)))
            }
            Call::Getpid => Ok(Outcome::Reply([u64::from(pid), 0], None)),
            Call::Errstr => {
                let text = self
                    .processes
                    .get(&pid)
                    .map(|p| p.errstr.clone())
                    .unwrap_or_default();
                Ok(Outcome::Reply([0, 0], Some(text.into_bytes())))
            }
        }
    }
}
