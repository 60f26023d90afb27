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
//! here blocks but that IPC and, outside calls (core's mounts at boot),
//! exchanges with task servers; in a call, a task server that has not
//! answered in two ticks parks the call (`kasane-mount`'s journals).
//!
//! The calls themselves are in `calls`, and processes (paging, kill,
//! rfork, spawn) in `processes`.

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

// After `host!`: macros are in scope only below their definition.
mod calls;
mod processes;

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
        // `mount -c /srv/ramfs /tmp` when ramfs is a boot module, so /tmp
        // takes files from the first prompt on. Outside a call, #M's
        // operations are exchanges (docs/core.md).
        let dot = ns.root_location(&mut host);
        if let Ok(srv) = ns.resolve(&mut host, &dot, "/srv/ramfs") {
            let mounted = (|| -> Result<(), Error> {
                let link_chan = host.table.get(*srv.chan())?.clone();
                let caller = host.caller;
                let servant = host.devices.get_mut('s')?;
                let Opened::Link(link) =
                    servant.open(&caller, &link_chan.file(), OpenMode::OREAD)?
                else {
                    return Err(Error::BAD_USE_FD);
                };
                let tmp = ns.resolve(&mut host, &dot, "/tmp")?;
                let root = host
                    .devices
                    .get_mut('M')
                    .and_then(|m| m.attach(&caller, &attach_spec(link, "")));
                let result = root.and_then(|file| {
                    let mut chan = Chan::new('M', file, "/tmp");
                    chan.link = Some(link);
                    let root = host.table.insert(chan);
                    let id = ChanId {
                        kind: link_chan.letter,
                        dev: link_chan.dev,
                        path: link_chan.qid.path,
                    };
                    let from = MountLink {
                        id,
                        path: "/srv/ramfs",
                        spec: "",
                    };
                    ns.mount(&mut host, root, &tmp, MountFlags::new(4)?, from)
                });
                tmp.close(&mut host);
                result
            })();
            srv.close(&mut host);
            if let Err(e) = mounted {
                print(format_args!("core: mount -c /srv/ramfs /tmp: {e}\n"));
            }
        }
        dot.close(&mut host);
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
            if self.gate.take_hang_ups() {
                self.restart_task_servers();
            }
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
}
