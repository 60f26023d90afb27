//! Server VMs: 9P servers in cells of their own, reached over hvm's links.
//!
//! A `server-vm` cell gets one virtio link to cell 0 (hvm's contract 1).
//! Core drives its end ([`crate::links`]) and gives it to `#M` as a
//! [`Transport`], posted as `/srv/NAME` under the cell's name, exactly as
//! a task server of that name is. On the link 9P messages travel as a
//! byte stream, each framed by its size[4] (`virtio_link::stream`). A
//! synchronous exchange (core's boot mounts, recovery) sends the
//! T-message and waits on the link's interrupt for a whole R-message;
//! everything else is posted, several requests at once, each answer taken
//! from the link's interrupt ([`VmServer::poll`]) and matched by its tag.
//!
//! [`ServerLink`] is what `#M` holds for either placement.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use kasane_mount::{Transport, UserLink};
use microkernel_rt::user::{cell_info, kernel_info};
use virtio_link::bridged::BridgedExchanger;
use virtio_link::stream::{ExchangeError, Exchanger, StreamLink};

use crate::links::Link;
use crate::task_server::{TaskServer, ANSWER_LIMIT};

/// `hvm_abi::CellInfo.kind` of a server VM.
pub const SERVER_VM_KIND: u32 = hvm_abi::CellKindCode::ServerVm as u32;

/// `hvm_abi::CellInfo.kind` of a Linux cell.
pub const LINUX_KIND: u32 = 2;

/// What failed when the Linux cell restarted says (issue 13).
const LINUX_RESTARTED: &str = "linux cell restarted";

/// The name the Linux cell's 9P server is posted under (`/srv/linux`).
pub const LINUX_SERVER: &str = "linux";

/// The bridge channel id of core's 9P channel to the Linux agent.
const LINUX_CHANNEL: u32 = 1;

/// Microseconds core waits for a (re)booting Linux agent's Hello before
/// the first 9P message: a Linux boot takes ~30 s under Bochs.
const AGENT_LIMIT: u64 = 300_000_000;

/// Most cells core asks hvm about.
const MAX_CELLS: u32 = 64;

/// The cell at the other end of link `index`: (cell, name, kind).
pub fn peer(index: u32) -> Option<(u32, String, u32)> {
    (1..MAX_CELLS)
        .map_while(|cell| cell_info(cell).ok().map(|info| (cell, info)))
        .find(|(_, info)| info.link == index)
        .map(|(cell, info)| (cell, info.name().to_string(), info.kind))
}

/// How 9P rides the link: a bare stream (a server VM) or one channel of
/// the bridge protocol (the Linux agent, docs/linux-bridge.md).
enum Framing {
    Stream(Exchanger),
    Bridged(Box<BridgedExchanger>),
}

impl Framing {
    fn new(bridged: bool, generation: Option<u64>) -> Framing {
        if bridged {
            Framing::Bridged(Box::new(BridgedExchanger::new(
                kasane_mount::MSIZE,
                generation,
                LINUX_CHANNEL,
            )))
        } else {
            Framing::Stream(Exchanger::new(kasane_mount::MSIZE, generation))
        }
    }

    fn generation(&self) -> Option<u64> {
        match self {
            Framing::Stream(e) => e.generation(),
            Framing::Bridged(e) => e.generation(),
        }
    }

    fn send(&mut self, link: &mut LinkIo<'_>, frame: &[u8]) -> Result<(), ExchangeError> {
        match self {
            Framing::Stream(e) => e.send(link, frame),
            Framing::Bridged(e) => e.send(link, frame, AGENT_LIMIT),
        }
    }

    /// [`send`](Self::send) that never waits for a booting agent: the
    /// Linux link keeps the frame until the agent says Hello.
    fn post(&mut self, link: &mut LinkIo<'_>, frame: &[u8]) -> Result<(), ExchangeError> {
        match self {
            Framing::Stream(e) => e.send(link, frame),
            Framing::Bridged(e) => e.post(link, frame),
        }
    }

    fn poll(&mut self, link: &mut LinkIo<'_>) -> Result<Option<Vec<u8>>, ExchangeError> {
        match self {
            Framing::Stream(e) => e.poll(link),
            Framing::Bridged(e) => e.poll(link),
        }
    }

    fn await_answer(
        &mut self,
        link: &mut LinkIo<'_>,
        answer: &mut [u8],
    ) -> Result<usize, ExchangeError> {
        match self {
            Framing::Stream(e) => e.await_answer(link, answer, ANSWER_LIMIT),
            Framing::Bridged(e) => e.await_answer(link, answer, ANSWER_LIMIT),
        }
    }
}

/// A server VM's link, or the Linux cell's, as `#M`'s transport.
pub struct VmServer {
    name: String,
    /// Its cell (for hvm's cell calls).
    pub cell: u32,
    link: Link,
    exchanger: Framing,
    /// The link generation `/dev/linux`'s runs were last told of.
    runs_generation: Option<u64>,
    /// Watches a restarted Linux cell's new agent boot ([`VmServer::ready`]).
    probe: Option<Box<BridgedExchanger>>,
    /// When core asked hvm to restart the Linux cell itself (it still ran
    /// when its link hung up), on the kernel's clock (µs).
    restart_asked: Option<u64>,
}

impl VmServer {
    /// The transport over `link`, whose peer is server VM `cell`, or the
    /// Linux cell's agent if `bridged`.
    pub fn new(name: &str, cell: u32, mut link: Link, bridged: bool) -> VmServer {
        let generation = link.generation();
        VmServer {
            name: String::from(name),
            cell,
            exchanger: Framing::new(bridged, generation),
            runs_generation: generation,
            probe: None,
            restart_asked: None,
            link,
        }
    }

    /// Sends the encoded bridge frames of `/dev/linux`'s runs (kept until
    /// the agent says Hello if it is booting: never waits); whether the
    /// Linux cell restarted since the last call, and why a send failed.
    /// Not for a server VM.
    pub fn send_runs(&mut self, outgoing: Vec<Vec<u8>>) -> (bool, Option<String>) {
        let Framing::Bridged(exchanger) = &mut self.exchanger else {
            return (false, None);
        };
        let link = &mut LinkIo(&mut self.link);
        let generation = link.generation();
        let restarted = generation != self.runs_generation;
        self.runs_generation = generation;
        for frame in outgoing {
            if let Err(error) = exchanger.post_other(link, &frame) {
                return (restarted, Some(explain(true, error)));
            }
        }
        (restarted, None)
    }

    /// The frames of runs that came, encoded (each [`VmServer::poll`]
    /// keeps them).
    pub fn take_runs(&mut self) -> Vec<Vec<u8>> {
        match &mut self.exchanger {
            Framing::Bridged(exchanger) => exchanger.take_others(),
            Framing::Stream(_) => Vec::new(),
        }
    }

    fn bridged(&self) -> bool {
        matches!(self.exchanger, Framing::Bridged(_))
    }

    /// Why an exchange failed, with the server's name.
    fn explain(&self, error: ExchangeError) -> String {
        format!("{}: {}", self.name, explain(self.bridged(), error))
    }
}

/// Why an exchange failed: a restarted Linux cell is said as such
/// (issue 13: what was in flight fails once with `linux cell restarted`).
fn explain(bridged: bool, error: ExchangeError) -> String {
    match error {
        ExchangeError::PeerRestarted if bridged => String::from(LINUX_RESTARTED),
        ExchangeError::NoAnswer if bridged => String::from("no answer from the linux agent"),
        error => error.to_string(),
    }
}

/// `CellControl(cell, op)` through the kernel's `hvm_call` (the ops are
/// `core_system::Verb::operation`'s numbers).
fn cell_control(cell: u32, op: u64) -> Result<(), String> {
    microkernel_rt::user::hvm_call(hvm_abi::Hypercall::CellControl as u64, u64::from(cell), op)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl VmServer {
    /// Makes sure the server VM is restarted after its link hung up: hvm
    /// restarts a cell that failed (a triple fault, a stray write, a
    /// missed heartbeat: its manifest policy), which the link's new
    /// generation shows; one that broke the protocol (garbage) or went
    /// silent still runs, and core asks hvm for the restart.
    pub fn restart(mut self) -> Result<VmServer, String> {
        if self.link.generation() == self.exchanger.generation() {
            cell_control(self.cell, core_system::Verb::Restart.operation())
                .map_err(|e| format!("{} (cell {}): hvm: {e}", self.name, self.cell))?;
            // hvm restarts the cell at its next turn: wait (bounded) for
            // the new peer, so that nothing the old one still sends is
            // taken for the new one's answers.
            let deadline = clock_microseconds().saturating_add(ANSWER_LIMIT);
            while self.link.generation() == self.exchanger.generation()
                && clock_microseconds() < deadline
            {
                crate::links::wait(&mut self.link, 10_000);
            }
        }
        // Bytes the old peer left in cell 0's receive buffers are not the
        // new one's: drop them, and start a clean stream.
        let mut scratch = [0u8; 512];
        while let Ok(console) = self.link.console() {
            match console.receive(&mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        self.exchanger = Framing::new(self.bridged(), self.link.generation());
        self.probe = None;
        self.restart_asked = None;
        Ok(self)
    }

    /// Whether [`restart`](Self::restart) may go ahead now: always for a
    /// server VM; a Linux cell hvm restarted is ready once its new agent
    /// said Hello. For a Linux cell that still runs (it went silent or
    /// broke the protocol) core asks hvm for the restart here, once, and
    /// then waits for the new agent the same way, so nothing else in
    /// Kasane waits for a Linux boot; if no new agent comes within
    /// `AGENT_LIMIT`, `restart` goes ahead and says why. Never blocks.
    pub fn ready(&mut self) -> bool {
        let generation = self.link.generation();
        if !self.bridged() {
            return true;
        }
        if generation == self.exchanger.generation() {
            let now = clock_microseconds();
            return match self.restart_asked {
                Some(asked) => now.saturating_sub(asked) > AGENT_LIMIT,
                None => {
                    let restart = core_system::Verb::Restart.operation();
                    if cell_control(self.cell, restart).is_err() {
                        // `restart` asks again and reports hvm's reason.
                        return true;
                    }
                    self.restart_asked = Some(now);
                    false
                }
            };
        }
        // A probe of its own: the exchanger's generation is what
        // `restart` compares to see that hvm restarted the cell.
        let probe = self.probe.get_or_insert_with(|| {
            Box::new(BridgedExchanger::new(
                kasane_mount::MSIZE,
                generation,
                LINUX_CHANNEL,
            ))
        });
        probe
            .agent_ready(&mut LinkIo(&mut self.link))
            .unwrap_or(true)
    }

    /// Asks hvm to have the server VM perform failure `verb` for real
    /// (`CellControl` ops 10..=14: hvm raises the command vector in the
    /// VM, whose runtime takes the verb and does it).
    fn inject(&mut self, verb: &str) -> Result<(), String> {
        let op = core_system::Verb::parse(verb)
            .map(core_system::Verb::operation)
            .filter(|&op| op >= hvm_abi::CellControl::Crash as u64)
            .ok_or_else(|| format!("no failure {verb}"))?;
        cell_control(self.cell, op)
            .map_err(|e| format!("{} (cell {}): hvm: {e}", self.name, self.cell))
    }
}

/// The kernel's clock (µs): the links' time.
fn clock_microseconds() -> u64 {
    kernel_info(microkernel_abi::KernelInfoSelector::ClockMicroseconds).unwrap_or(0)
}

/// The link as `virtio_link::stream` drives it.
struct LinkIo<'a>(&'a mut Link);

impl StreamLink for LinkIo<'_> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        self.0.console()?.send(bytes)
    }

    fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str> {
        self.0.console()?.receive(out)
    }

    fn generation(&mut self) -> Option<u64> {
        self.0.generation()
    }

    fn now(&mut self) -> u64 {
        clock_microseconds()
    }

    fn wait(&mut self) {
        crate::links::wait(self.0, 20_000);
    }
}

impl Transport for VmServer {
    fn name(&self) -> &str {
        &self.name
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        let link = &mut LinkIo(&mut self.link);
        self.exchanger
            .send(link, frame)
            .and_then(|()| self.exchanger.await_answer(link, answer))
            .map_err(|error| self.explain(error))
    }

    /// Reads and writes are posted, as on a task server's link: the
    /// answer comes with the link's interrupt ([`VmServer::poll`] from
    /// core's loop), so core serves others meanwhile, and `#M` sends a
    /// request under way again after a restart (core/mount's `recover`).
    fn posts(&self) -> bool {
        true
    }

    /// A server VM's runtime reads each request as it comes and answers
    /// it when it is done, by tag, so the link carries several at once
    /// with no deadline: hvm's heartbeat watches the VM, and a hung one
    /// is restarted and recovered. The Linux agent answers one at a time.
    fn multiplexes(&self) -> bool {
        !self.bridged()
    }

    /// A Linux cell comes back booted from its pristine image, with none
    /// of the old agent's open files: a read or write under way when it
    /// went fails once with `linux cell restarted` (issue 13), as `lx`
    /// runs do, rather than being sent to the new agent; opens wait for
    /// the new agent, and `#M` recovers the mount's chans on it.
    fn restart_error(&self) -> Option<&'static str> {
        self.bridged().then_some(LINUX_RESTARTED)
    }

    /// Never waits: on the Linux link a request posted while the agent
    /// boots is kept until it says Hello ([`holding`](Self::holding)).
    fn post(&mut self, frame: &[u8], _answer: &mut [u8]) -> Result<Option<usize>, String> {
        self.exchanger
            .post(&mut LinkIo(&mut self.link), frame)
            .map(|()| None)
            .map_err(|error| self.explain(error))
    }

    fn collect(&mut self, answer: &mut [u8]) -> Result<usize, String> {
        self.exchanger
            .await_answer(&mut LinkIo(&mut self.link), answer)
            .map_err(|error| self.explain(error))
    }

    /// Requests posted to a booting Linux agent wait for its Hello, for
    /// up to `AGENT_LIMIT`, before any answer deadline runs.
    fn holding(&self) -> bool {
        let Framing::Bridged(exchanger) = &self.exchanger else {
            return false;
        };
        exchanger.holding(clock_microseconds(), AGENT_LIMIT)
    }

    /// The link's interrupt "thread": core's loop receives the interrupt
    /// from it and finds this link by it.
    fn peer(&self) -> u64 {
        microkernel_abi::ThreadId::interrupt(self.link.interrupt()).raw()
    }
}

impl VmServer {
    /// The link's interrupt came: its peer may have restarted (see
    /// `Link::interrupted`).
    pub fn interrupted(&mut self) {
        self.link.interrupted();
    }

    /// A whole answer the link has brought, if any (core's loop, on the
    /// link's interrupt); never blocks.
    pub fn poll(&mut self) -> Result<Option<Vec<u8>>, String> {
        // Without the name: core's `fail_link` adds it.
        let bridged = self.bridged();
        self.exchanger
            .poll(&mut LinkIo(&mut self.link))
            .map_err(|error| explain(bridged, error))
    }
}

/// What `#M` holds: a task server's link or a server VM's.
pub enum ServerLink {
    Task(TaskServer),
    Vm(Box<VmServer>),
    /// A server process's pipe (`core_system`'s user-level links).
    User(UserLink),
}

impl From<UserLink> for ServerLink {
    fn from(link: UserLink) -> Self {
        ServerLink::User(link)
    }
}

impl ServerLink {
    /// The task server, if it is one.
    pub fn task(&mut self) -> Option<&mut TaskServer> {
        match self {
            ServerLink::Task(server) => Some(server),
            ServerLink::Vm(_) | ServerLink::User(_) => None,
        }
    }

    /// The server VM's link, if this is one.
    pub fn vm(&mut self) -> Option<&mut VmServer> {
        match self {
            ServerLink::Task(_) | ServerLink::User(_) => None,
            ServerLink::Vm(server) => Some(server),
        }
    }
}

impl Transport for ServerLink {
    fn name(&self) -> &str {
        match self {
            ServerLink::Task(server) => server.name(),
            ServerLink::Vm(server) => server.name(),
            ServerLink::User(server) => server.name(),
        }
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        match self {
            ServerLink::Task(server) => server.exchange(frame, answer),
            ServerLink::Vm(server) => server.exchange(frame, answer),
            ServerLink::User(server) => server.exchange(frame, answer),
        }
    }

    fn stop(&mut self) {
        match self {
            ServerLink::Task(server) => server.stop(),
            ServerLink::Vm(server) => server.stop(),
            ServerLink::User(server) => server.stop(),
        }
    }

    fn posts(&self) -> bool {
        match self {
            ServerLink::Task(server) => server.posts(),
            ServerLink::Vm(server) => server.posts(),
            ServerLink::User(server) => server.posts(),
        }
    }

    fn post(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<Option<usize>, String> {
        match self {
            ServerLink::Task(server) => server.post(frame, answer),
            ServerLink::Vm(server) => server.post(frame, answer),
            ServerLink::User(server) => server.post(frame, answer),
        }
    }

    fn collect(&mut self, answer: &mut [u8]) -> Result<usize, String> {
        match self {
            ServerLink::Task(server) => server.collect(answer),
            ServerLink::Vm(server) => server.collect(answer),
            ServerLink::User(server) => server.collect(answer),
        }
    }

    fn peer(&self) -> u64 {
        match self {
            ServerLink::Task(server) => server.peer(),
            ServerLink::Vm(server) => server.peer(),
            ServerLink::User(server) => server.peer(),
        }
    }

    fn multiplexes(&self) -> bool {
        match self {
            ServerLink::Task(server) => server.multiplexes(),
            ServerLink::Vm(server) => server.multiplexes(),
            ServerLink::User(server) => server.multiplexes(),
        }
    }

    fn holding(&self) -> bool {
        match self {
            ServerLink::Task(server) => server.holding(),
            ServerLink::Vm(server) => server.holding(),
            ServerLink::User(server) => server.holding(),
        }
    }

    fn probes(&self) -> bool {
        match self {
            ServerLink::Task(server) => server.probes(),
            ServerLink::Vm(server) => server.probes(),
            ServerLink::User(server) => server.probes(),
        }
    }

    fn probe(&mut self) -> Result<(), String> {
        match self {
            ServerLink::Task(server) => server.probe(),
            ServerLink::Vm(server) => server.probe(),
            ServerLink::User(server) => server.probe(),
        }
    }

    fn restart_error(&self) -> Option<&'static str> {
        match self {
            ServerLink::Task(server) => server.restart_error(),
            ServerLink::Vm(server) => server.restart_error(),
            ServerLink::User(server) => server.restart_error(),
        }
    }

    fn inject(&mut self, verb: &str) -> Result<(), String> {
        match self {
            ServerLink::Task(server) => server.inject(verb),
            ServerLink::Vm(server) => server.inject(verb),
            ServerLink::User(server) => server.inject(verb),
        }
    }

    fn placement(&self) -> &'static str {
        match self {
            ServerLink::Task(_) => "task",
            ServerLink::Vm(_) => "vm",
            ServerLink::User(_) => "process",
        }
    }

    fn aim(&mut self, target: Option<kasane_mount::ReadTarget>) {
        if let ServerLink::Task(server) = self {
            server.aim(target);
        }
    }

    fn take_aimed(&mut self) -> Option<usize> {
        self.task().and_then(Transport::take_aimed)
    }

    fn user(&mut self) -> Option<&mut UserLink> {
        match self {
            ServerLink::User(link) => Some(link),
            _ => None,
        }
    }
}

/// Opens every link whose peer is a server VM, for `#M`: (name,
/// transport). The first Linux cell's link is the agent's 9P server,
/// posted as [`LINUX_SERVER`] (docs/linux-bridge.md); other links are
/// left alone.
pub fn server_vms(links: Vec<Link>) -> Vec<(String, VmServer)> {
    let mut servers: Vec<(String, VmServer)> = Vec::new();
    for link in links {
        match peer(link.index) {
            Some((cell, name, SERVER_VM_KIND)) => {
                let server = VmServer::new(&name, cell, link, false);
                servers.push((name, server));
            }
            Some((cell, _, LINUX_KIND)) if !servers.iter().any(|(n, _)| n == LINUX_SERVER) => {
                let server = VmServer::new(LINUX_SERVER, cell, link, true);
                servers.push((String::from(LINUX_SERVER), server));
            }
            _ => drop(link),
        }
    }
    servers
}

/// `/dev/vm`'s view of hvm: `CellInfo` and `CellControl` through
/// `hvm_call`. In bare mode every call is `NotSupported`, so there are no
/// cells.
pub struct HvmCells;

impl core_system::Cells for HvmCells {
    fn cell(&self, index: u32) -> Option<core_system::CellRecord> {
        let info = cell_info(index).ok()?;
        let kind = match info.kind {
            1 => String::from("microkernel"),
            2 => String::from("linux"),
            SERVER_VM_KIND => String::from("server-vm"),
            other => format!("kind-{other}"),
        };
        let state = match info.state {
            0 => String::from("created"),
            1 => String::from("running"),
            2 => String::from("stopped"),
            3 => String::from("failed"),
            other => format!("state-{other}"),
        };
        Some(core_system::CellRecord {
            name: info.name().to_string(),
            kind,
            state,
            restarts: info.restarts,
            restart_limit: info.restart_limit,
            exits: microkernel_rt::user::hvm_call(
                hvm_abi::Hypercall::ExitCount as u64,
                u64::from(index),
                0,
            )
            .unwrap_or(0),
            last_failure: info.last_failure().to_string(),
        })
    }

    fn control(&mut self, index: u32, verb: core_system::Verb) -> Result<(), String> {
        cell_control(index, verb.operation())
    }
}
