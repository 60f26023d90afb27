//! Core's state and one pass of its loop: a message in, the replies out.
//!
//! The shell receives one message at a time and hands it to
//! [`System::handle`] (a process's fault, exception or call), or, for a
//! task server's message, to `#M` ([`System::servants`]). Then
//! [`System::end_pass`] restarts hung-up task servers, carries out
//! /proc ctl requests, retries parked calls, and gives back the reply the
//! shell sends with its next receive (reply and wait in one IPC). Any
//! further reply of the pass goes out at once ([`Kernel::send`]).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use core_abi::{Call, SpawnRequest};
use kasane_mount::{CallGate, Transport};
use kasane_namespace::{ChanId, Location, MountFlags, Namespace};
use kasane_servant::servants::proc::Control;
use kasane_servant::{Caller, ChanHandle, ChanTable, Devices, Error, LinkId, Opened, Servant};
use ninep::OpenMode;

use crate::park::{Outcome, Parked, Request, Waits};
use crate::process::{Process, Zombie};
use crate::{Kernel, Message, Reply, Servants, ServerConfig, Thread, USER};

pub(crate) type Ns = Namespace<ChanHandle, ChanId<char>>;
pub(crate) type Loc = Location<ChanHandle>;

/// How often console input is polled while a reader waits for a line.
pub(crate) const CONSOLE_POLL_MICROSECONDS: u64 = 10_000;

/// The first /proc number of a task server (in table order): far above
/// the pids processes get, so neither moves the other.
pub const SERVER_PIDS: u32 = 9001;

/// Most rounds of moving user-level links' frames in one pass.
const USER_LINK_ROUNDS: u32 = 8;

/// The bytes a pipe holds.
const PIPE_CAPACITY: usize = 32 * 1024;

/// What core keeps to restart a task server: its table entry (a server
/// that fails at once would loop for ever without its limit).
struct TaskProgram {
    config: ServerConfig,
    /// Its link (the same across restarts).
    link: LinkId,
    /// Its /proc entry's number (`SERVER_PIDS` on).
    pid: u32,
    restarts: u32,
    /// Its place in the table: the boot namespace mounts in this order.
    order: usize,
}

/// Core's state: processes, namespaces, chans, servants, parked calls.
pub struct System<K: Kernel> {
    pub(crate) kernel: K,
    pub(crate) table: ChanTable,
    pub(crate) servants: Servants<K::Link>,
    /// Namespaces by id, with how many processes share each.
    pub(crate) namespaces: BTreeMap<u32, (Ns, u32)>,
    pub(crate) next_ns: u32,
    pub(crate) processes: BTreeMap<u32, Process<K::Task>>,
    /// Each process's thread, to the pid.
    pub(crate) by_thread: BTreeMap<Thread, u32>,
    pub(crate) zombies: Vec<Zombie>,
    pub(crate) parked: Vec<Parked>,
    /// What the parked calls wait for, as the end of the last pass found
    /// them, for the next receive's timeout; `None` once they may differ.
    pub(crate) waits: Option<Waits>,
    pub(crate) next_pid: u32,
    pub(crate) boot_ns: u32,
    /// Task servers by /srv name, for restarts.
    task_programs: BTreeMap<String, TaskProgram>,
    /// Hung-up links whose server is not ready for a restart yet (a Linux
    /// cell still booting: [`Kernel::ready`]); tried again every pass.
    waiting: Vec<kasane_mount::Dead<K::Link>>,
    pub(crate) next_link: u64,
    /// User-level links (`userlink`): pipes of server processes.
    pub(crate) user_links: Vec<LinkId>,
    /// The first reply of the pass, for the shell's next receive.
    pub(crate) deferred: Option<Reply>,
    /// Something parked calls may wait for happened (a process ended).
    pub(crate) woken: bool,
    /// A process took a page since /proc's snapshot was made.
    pub(crate) memory_changed: bool,
    /// Marks the call being handled for `#M` (its journals).
    pub(crate) gate: CallGate,
    /// Processes per environment group (group 0 is the boot group).
    pub(crate) env_refs: BTreeMap<u32, u32>,
    pub(crate) next_env_group: u32,
}

/// A [`Host`] over core's chans and servants, for process `$pid` in
/// environment group `$group`. (A macro: it borrows two fields, not all
/// of `$self`.)
macro_rules! host {
    ($self:ident, $pid:expr, $group:expr) => {
        kasane_servant::Host {
            table: &mut $self.table,
            devices: &mut $self.servants,
            caller: kasane_servant::Caller::new($pid, crate::USER).with_env_group($group),
        }
    };
}
pub(crate) use host;

impl<K: Kernel> System<K> {
    /// Core with no process yet: the typed servants, empty, and `others`
    /// (`#R`, `#c`, `#b`...).
    pub fn new(kernel: K, others: Devices) -> Self {
        let mut servants = Servants::new(PIPE_CAPACITY, others);
        servants.mount.recover_links(true);
        let gate = servants.mount.gate();
        System {
            kernel,
            table: ChanTable::new(),
            servants,
            namespaces: BTreeMap::new(),
            next_ns: 1,
            processes: BTreeMap::new(),
            by_thread: BTreeMap::new(),
            zombies: Vec::new(),
            parked: Vec::new(),
            waits: None,
            next_pid: 1,
            boot_ns: 0,
            task_programs: BTreeMap::new(),
            waiting: Vec::new(),
            next_link: 1,
            user_links: Vec::new(),
            deferred: None,
            woken: false,
            memory_changed: false,
            gate,
            env_refs: BTreeMap::new(),
            next_env_group: 1,
        }
    }

    /// The kernel, for the shell.
    pub fn kernel(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// The servants, for the shell (task servers' answers go to `#M`).
    pub fn servants(&mut self) -> &mut Servants<K::Link> {
        &mut self.servants
    }

    /// The chan table (for tests and checks: every chan core holds).
    pub fn chans(&self) -> &ChanTable {
        &self.table
    }

    /// Adds a started task server from boot module `module` on a new link
    /// of `#M`, posted in /srv as `name`, restarted up to
    /// [`crate::DEFAULT_RESTART_LIMIT`] times and not mounted.
    pub fn add_server(&mut self, name: &str, module: &str, server: K::Link) -> LinkId {
        self.add_configured_server(ServerConfig::new(name, module), server)
    }

    /// Adds a started server of the manifest's table on a new link of
    /// `#M`, posted in /srv as its name; the boot namespace mounts it at
    /// its mount point, and a hang-up restarts it as its entry says.
    pub fn add_configured_server(&mut self, config: ServerConfig, server: K::Link) -> LinkId {
        let link = LinkId(self.next_link);
        self.next_link += 1;
        let placement = server.placement();
        self.servants.mount.add_link(link, server);
        let name = config.name.clone();
        if let Err(e) = self.servants.srv.post(&name, link, USER) {
            self.kernel.log(format_args!("core: posting {name}: {e}\n"));
        }
        let order = self.task_programs.len();
        let pid = SERVER_PIDS + order as u32;
        self.kernel.log(format_args!(
            "core: server {name}: {placement}, /srv/{name}, /proc/{pid}\n"
        ));
        self.task_programs.insert(
            name,
            TaskProgram {
                config,
                link,
                pid,
                restarts: 0,
                order,
            },
        );
        link
    }

    /// Whether `thread` is a process's (else it may be a task server's).
    pub fn is_process(&self, thread: Thread) -> bool {
        self.by_thread.contains_key(&thread)
    }

    /// How many wait records (ended processes not yet waited for) core
    /// keeps.
    pub fn zombie_count(&self) -> usize {
        self.zombies.len()
    }

    /// The pid of a process's thread.
    pub fn pid_of(&self, thread: Thread) -> Option<u32> {
        self.by_thread.get(&thread).copied()
    }

    /// `None` while process `pid` lives; its exit status once it ended.
    pub fn exit_status(&self, pid: u32) -> Option<String> {
        if self.processes.contains_key(&pid) {
            return None;
        }
        Some(
            self.zombies
                .iter()
                .find(|z| z.pid == pid)
                .map(|z| z.status.clone())
                .unwrap_or_default(),
        )
    }

    /// Builds the boot namespace and starts the program named by the boot
    /// arguments (`/bin/rc` if none), saying so on the console; its pid.
    pub fn start_init(&mut self, args: &str) -> Option<u32> {
        let words: Vec<String> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("root="))
            .map(String::from)
            .collect();
        let (path, argv) = match words.first() {
            Some(path) => (path.clone(), words.clone()),
            None => ("/bin/rc".to_string(), alloc::vec!["rc".to_string()]),
        };
        let ns = match self.boot_namespace() {
            Ok(ns) => ns,
            Err(e) => {
                self.kernel.log(format_args!("core: boot namespace: {e}\n"));
                return None;
            }
        };
        let request = SpawnRequest {
            path: path.clone(),
            argv,
            fds: Vec::new(),
            flags: 0,
        };
        match self.create_process(0, ns, &request) {
            Ok(pid) => {
                self.kernel
                    .log(format_args!("core: started {path} as pid {pid}\n"));
                Some(pid)
            }
            Err(e) => {
                self.kernel
                    .log(format_args!("core: cannot start {path}: {e}\n"));
                None
            }
        }
    }

    /// The first namespace: `#R` at `/` with the servants bound in.
    fn boot_namespace(&mut self) -> Result<u32, Error> {
        let has_vm = self.servants.others.get_mut('V').is_ok();
        let has_linux = self.servants.linux.is_some();
        let mut host = host!(self, 0, 0);
        let root = kasane_namespace::Walker::attach(&mut host, 'R', "")?;
        let mut ns = Ns::new(root);
        let mut binds: Vec<(&str, &str, u32)> = alloc::vec![
            ("#c", "/dev", 0),
            ("#b", "/bin", 0),
            ("#b", "/boot", 0),
            ("#p", "/proc", 0),
            ("#s", "/srv", 4),
            ("#e", "/env", 4),
        ];
        // `/dev/vm` (hvm's cells) when the shell has the servant: after
        // #c, so /dev gains the directory `vm`.
        if has_vm {
            binds.push(("#V", "/dev", 2));
        }
        // `/dev/linux` (Linux programs) when the system has a Linux cell.
        if has_linux {
            binds.push(("#L", "/dev", 2));
        }
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
        let mut mounts: Vec<(usize, String, String, Result<MountFlags, Error>)> = self
            .task_programs
            .values()
            .filter(|p| !p.config.mount.is_empty())
            .map(|p| {
                let config = &p.config;
                let flags = config.flags();
                (p.order, config.name.clone(), config.mount.clone(), flags)
            })
            .collect();
        mounts.sort_by_key(|(order, ..)| *order);
        for (_, name, mount, flags) in mounts {
            self.mount_boot_server(&name, &mount, flags);
        }
        Ok(id)
    }

    /// `mount [-abc] /srv/NAME MOUNT` in the boot namespace for a server
    /// the table mounts (ramfs on /tmp: files from the first prompt on).
    /// Outside a call, `#M`'s operations are exchanges (docs/core.md).
    fn mount_boot_server(&mut self, name: &str, mount: &str, flags: Result<MountFlags, Error>) {
        let path = alloc::format!("/srv/{name}");
        let Ok(srv) = self.resolve(0, &path) else {
            return;
        };
        let mounted = (|| -> Result<(), Error> {
            let mut link_chan = self.table.get(*srv.chan())?.clone();
            let caller = Caller::new(0, USER);
            let opened = self
                .servants
                .srv
                .open(&caller, &link_chan.file(), OpenMode::OREAD)?;
            let Opened::Link(link) = opened else {
                return Err(Error::BAD_USE_FD);
            };
            link_chan.link = Some(link);
            // ns(1) names the mount by the path it was opened by, as for
            // mount(2)'s descriptor.
            link_chan.name = path.clone();
            self.mount(0, 0, &link_chan, mount, flags?, "")
        })();
        srv.close(&mut host!(self, 0, 0));
        if let Err(e) = mounted {
            self.kernel
                .log(format_args!("core: mount {path} {mount}: {e}\n"));
        }
    }

    /// How long the shell's receive may wait (µs; `None`: until a message
    /// comes): until the earliest `sleep` ends, at most
    /// [`CONSOLE_POLL_MICROSECONDS`] while a console read is parked, and
    /// at most a hundred times that while a posted 9P request is out on
    /// a task server's link, which is hung up when its answer is later
    /// than [`Kernel::ANSWER_LIMIT`] (a server VM's link has no deadline).
    pub fn receive_timeout(&mut self) -> Option<u32> {
        // It runs before every receive: one pass over the parked calls,
        // and nothing more when none waits for a time, the console or a
        // mounted server (rc's `wait`, parked all along, does not).
        let waits = match self.waits.take() {
            Some(waits) => waits,
            None => self.parked.iter().fold(Waits::default(), Waits::with),
        };
        if waits.is_idle() {
            return None;
        }
        let mut wake = waits.until;
        let console = waits.console;
        let posted = waits.mounted && self.servants.mount.in_flight();
        // The clock is read only when something waits for a time.
        let now = if wake.is_some() || console || posted {
            self.kernel.now()
        } else {
            0
        };
        if posted {
            self.servants.mount.expire(now, K::ANSWER_LIMIT);
            let check = now + CONSOLE_POLL_MICROSECONDS * 100;
            wake = Some(wake.map_or(check, |until| until.min(check)));
        }
        // Console input is polled: while someone waits for a line, wake
        // up often to look (retry_parked reads, which polls).
        if console {
            let poll = now + CONSOLE_POLL_MICROSECONDS;
            wake = Some(wake.map_or(poll, |until| until.min(poll)));
        }
        wake.map(|until| until.saturating_sub(now).clamp(1, 1 << 30) as u32)
    }

    /// Handles one message of a process's thread (anything else is
    /// ignored). A reply goes in the pass's deferred reply if that is
    /// still free, else out at once.
    pub fn handle(&mut self, sender: Thread, message: Message) {
        if let Some(pid) = self.pid_of(sender) {
            self.handle_process(sender, pid, message);
        }
    }

    /// [`System::handle`] for a sender already known to be process
    /// `pid`'s thread ([`System::pid_of`]): one look-up per message.
    pub fn handle_process(&mut self, sender: Thread, pid: u32, message: Message) {
        match message {
            Message::PageFault { address, ip } => self.page_fault(pid, address, ip),
            Message::Exception { vector } => {
                self.kill(pid, alloc::format!("sys: trap: exception {vector}"));
            }
            Message::Kernel => {}
            Message::Call {
                label,
                words,
                items,
            } => {
                let Some(call) = Call::from_label(label) else {
                    let text = String::from("bad system call");
                    if let Some(process) = self.processes.get_mut(&pid) {
                        process.errstr = text.clone();
                    }
                    self.reply(sender, Outcome::Fail(text));
                    return;
                };
                self.attempt(Request {
                    client: sender,
                    pid,
                    call,
                    words,
                    items,
                });
            }
        }
    }

    /// The end of a pass of the loop: restarts hung-up task servers,
    /// carries out /proc ctl requests, retries parked calls; the reply for
    /// the shell's next receive.
    pub fn end_pass(&mut self) -> Option<Reply> {
        // A user-level link's frames move between processes' calls: a
        // rerun call may post more, and a server's write may answer a
        // call parked in this pass, so go on until nothing moves.
        let mut rounds = 0;
        loop {
            let moved = !self.user_links.is_empty() && self.pump_user_links();
            if self.gate.take_hang_ups() || !self.waiting.is_empty() {
                self.restart_task_servers();
            }
            self.carry_out_controls();
            self.retry_parked();
            rounds += 1;
            if !moved || rounds >= USER_LINK_ROUNDS {
                break;
            }
        }
        self.deferred.take()
    }

    /// proc(3) ctl requests, after the write that made them was answered.
    fn carry_out_controls(&mut self) {
        if !self.servants.proc.has_requests() {
            return;
        }
        for request in self.servants.proc.take_requests() {
            match request {
                Control::Kill(pid) => self.kill(pid, "killed".to_string()),
                Control::Inject(pid, verb) => self.inject(pid, verb),
            }
        }
    }

    /// A failure verb written to a task server's /proc ctl: the server
    /// performs it, and its link's failure follows (a fault, an
    /// exception, silence or garbage), which core detects and recovers.
    fn inject(&mut self, pid: u32, verb: &str) {
        let Some((name, link)) = self
            .task_programs
            .iter()
            .find(|(_, p)| p.pid == pid)
            .map(|(name, p)| (name.clone(), p.link))
        else {
            return;
        };
        self.kernel
            .log(format_args!("core: server {name}: injecting {verb}\n"));
        if let Err(e) = self.servants.mount.inject(link, verb) {
            self.kernel
                .log(format_args!("core: server {name}: {verb}: {e}\n"));
        }
    }

    /// Task servers' entries for /proc: reached by pid, not listed.
    pub(crate) fn server_entries(&self) -> Vec<kasane_servant::servants::proc::ProcessInfo> {
        self.task_programs
            .values()
            .map(|p| kasane_servant::servants::proc::ProcessInfo {
                pid: p.pid,
                name: p.config.name.clone(),
                user: USER.into(),
                state: "Server".into(),
                server: true,
                ..Default::default()
            })
            .collect()
    }

    /// Restarts the task servers whose links hung up, each alone, and
    /// revives its link: `#M` attaches again, walks and opens every chan
    /// of its mounts again and sends again the reads and writes that were
    /// under way (core/mount's `recover`), so clients carry on. A server
    /// that is not restarted (its limit, or `on_failure = "stop"`) stays
    /// hung up, and what waited on it fails.
    fn restart_task_servers(&mut self) {
        // A server that fails again while its link is revived is dead
        // again at once: go on until none is (each restart counts). One
        // that is not ready waits for a later pass, and core serves the
        // others meanwhile.
        let mut waiting = core::mem::take(&mut self.waiting);
        loop {
            let mut dead = self.servants.mount.take_dead();
            for dead in &dead {
                self.kernel
                    .log(format_args!("core: #M: link hung up: {}\n", dead.reason));
            }
            dead.append(&mut waiting);
            if dead.is_empty() {
                return;
            }
            for mut dead in dead {
                if self.kernel.ready(&mut dead.transport) {
                    self.restart_task_server(dead);
                } else {
                    self.waiting.push(dead);
                }
            }
        }
    }

    fn restart_task_server(&mut self, dead: kasane_mount::Dead<K::Link>) {
        let (link, mut server) = (dead.link, dead.transport);
        if self.drop_user_link(link, &mut server) {
            return;
        }
        let name = String::from(server.name());
        let Some(program) = self.task_programs.get_mut(&name) else {
            self.servants.mount.give_up(link);
            return;
        };
        if !program.config.restart {
            self.kernel.log(format_args!(
                "core: server {name} failed: not restarted (on_failure = stop); /srv/{name} stays hung up\n"
            ));
            self.servants.mount.give_up(link);
            return;
        }
        program.restarts += 1;
        let limit = program.config.restart_limit;
        if program.restarts > limit {
            let restarts = program.restarts;
            self.kernel.log(format_args!(
                "core: server {name} failed {restarts} times: not restarted; /srv/{name} stays hung up\n"
            ));
            self.servants.mount.give_up(link);
            return;
        }
        let (module, count) = (program.config.module.clone(), program.restarts);
        let server = match self.kernel.restart(server) {
            Ok(server) => server,
            Err(e) => {
                self.kernel
                    .log(format_args!("core: restarting {name} ({module}): {e}\n"));
                self.servants.mount.give_up(link);
                return;
            }
        };
        // Said before the revive, which may already send the server
        // requests (and make it fail again).
        self.kernel.log(format_args!(
            "core: server {name} restarted (restart {count} of {limit})\n"
        ));
        if let Err(e) = self.servants.mount.revive(link, server) {
            self.kernel.log(format_args!(
                "core: server {name} failed again while its mounts were recovered: {e}\n"
            ));
        }
    }
}
