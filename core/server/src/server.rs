//! The server loop: page faults, system calls and task servers' messages,
//! one at a time.
//!
//! Every message is a kernel page fault or exception of a process (core is
//! every process's pager), a `core-abi` call, or a task server's answer to
//! a posted request (or its fault). This shell decodes each from core's
//! UTCB and hands it to `core_system::System`, which keeps the processes,
//! descriptors and parked calls and runs the calls (host-tested there).
//! The reply to the call just handled goes out with the next receive
//! (reply and wait in one IPC). Nothing here blocks but that IPC and,
//! outside calls (core's mounts at boot), exchanges with task servers; in
//! a call, a task server that has not answered in two ticks parks the
//! call (`kasane-mount`'s journals).
//!
//! What core needs of the microkernel is in `kernel` (`Microkernel`).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use core_system::{
    BootFiles, ConsoleDevice, LinuxRuns, Message, Reply, ServerConfig, System, TaskStart, Thread,
    VmDevice, NO_LINUX,
};
use kasane_manifest::MANIFEST_MODULE;
use kasane_servant::servants::cons::Console;
use kasane_servant::servants::root::Root;
use kasane_servant::{Devices, LinkId};
use microkernel_abi::utcb::ReceiveBuffer;
use microkernel_abi::{
    FromSpecifier, MessageTag, ThreadId, Timeout, Timeouts, TypedItem, EXCEPTION_LABEL,
    PAGE_FAULT_LABEL,
};
use microkernel_rt::console::print;
use microkernel_rt::frames::{FrameBitmap, FRAME_SIZE};
use microkernel_rt::pci;
use microkernel_rt::user::{current_utcb, ipc_with_items};
use microkernel_rt::utcb::ReceiveTargets;

use crate::links::open_links;
use crate::process::TextCache;
use crate::servants::{console_input, console_out, KernelClock};
use crate::task_server::{Grants, TaskServer};
use crate::vm_server::{server_vms, HvmCells, ServerLink, LINUX_SERVER};

mod kernel;

use kernel::{load_reply, Microkernel};

/// Whether core drives server VMs' links: under hvm it does; in bare
/// mode (no VT-x) a server the manifest places in a VM runs as a task.
fn drives_server_vms() -> bool {
    crate::links::under_hvm()
}

/// The compiled manifest (cell 0's `manifest` module), if there is one.
fn manifest_bytes<'a>(modules: &[(String, &'a [u8])]) -> Option<&'a [u8]> {
    modules
        .iter()
        .find(|(name, _)| name == MANIFEST_MODULE)
        .map(|(_, bytes)| *bytes)
}

/// The task servers of the manifest's `[[server]]` table
/// (`core_system::task_servers`), saying what core says of them. Without
/// a `manifest` module (a system without servers), none.
fn server_table(modules: &[(String, &'static [u8])]) -> Vec<TaskStart> {
    let Some(bytes) = manifest_bytes(modules) else {
        return Vec::new();
    };
    let (starts, said) = core_system::task_servers(bytes, drives_server_vms());
    for line in said {
        print(format_args!("{line}\n"));
    }
    starts
}

/// How many task servers the manifest starts in this placement (the
/// count [`server_table`] will find, said quietly): core sets aside
/// [`crate::entry::TASK_SERVER_BYTES`] for each.
pub fn task_server_count(modules: &[(String, &'static [u8])]) -> usize {
    manifest_bytes(modules).map_or(0, |bytes| {
        core_system::task_servers(bytes, drives_server_vms())
            .0
            .len()
    })
}

/// The frames core lends task servers: `frames` pages from `base`,
/// shared out evenly among them at boot.
pub struct TaskServerPool {
    pub base: u64,
    pub frames: usize,
}

/// Core: its logic, and the buffers its receives write into.
pub struct Core {
    system: System<Microkernel>,
    buffers: [Box<[u8]>; 2],
    /// The Linux cell's link interrupt "thread" (`#M` finds the link by
    /// it), if there is a Linux cell.
    linux_peer: Option<u64>,
    /// Cuts the frames of `/dev/linux`'s runs (each whole) out of the
    /// exchanger's buffer; kept, as making one clears 4 KiB.
    runs_decoder: Box<bridge_protocol::Decoder>,
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
        // Task servers: the manifest's table, each with an even share of
        // the pool, posted in /srv under its name. A server placed in a VM
        // is the VM's while core drives server VMs, and a task otherwise.
        let mut servers = Vec::new();
        for TaskStart { config, image } in server_table(&modules) {
            let find = |wanted: &str| {
                modules
                    .iter()
                    .find(|(name, _)| name == wanted)
                    .map(|(_, bytes)| *bytes)
            };
            let image = match image.as_str() {
                "" => None,
                name => match find(name) {
                    Some(bytes) => Some(bytes),
                    None => {
                        print(format_args!(
                            "core: server {}: no image module {name}\n",
                            config.name
                        ));
                        continue;
                    }
                },
            };
            match find(&config.module) {
                Some(elf) => servers.push((config, elf, image)),
                None => print(format_args!(
                    "core: server {}: no module {}\n",
                    config.name, config.module
                )),
            }
        }
        let share = task_servers.frames / servers.len().max(1);
        let mut started = Vec::new();
        for (index, (config, elf, image)) in servers.into_iter().enumerate() {
            let name = config.name.as_str();
            let mut pool = Box::new(FrameBitmap::new());
            pool.init(
                task_servers.base + (index * share) as u64 * FRAME_SIZE,
                share,
            );
            let identity = index as u64;
            let devices = task_devices(&config);
            match TaskServer::start(
                name, identity, elf, image, devices, 1, me, pool, &mut arena, &mut text,
            ) {
                Ok(server) => started.push((config, ServerLink::Task(server))),
                Err(e) => print(format_args!("core: task server {name}: {e}\n")),
            }
        }
        // Server VMs: every link whose peer hvm names a server-vm cell,
        // posted in /srv under the cell's name (issue 12, contract 7), with
        // the mount and restart policy of its `[[server]]` entry.
        let vm_table = manifest_bytes(&modules)
            .map(core_system::vm_servers)
            .unwrap_or_default();
        let mut linux_peer = None;
        for (name, server) in server_vms(open_links(me)) {
            if name == LINUX_SERVER {
                linux_peer = Some(kasane_mount::Transport::peer(&server));
            }
            let config = vm_table
                .iter()
                .find(|config| config.name == name)
                .cloned()
                .unwrap_or_else(|| ServerConfig::new(&name, &name));
            started.push((config, ServerLink::Vm(Box::new(server))));
        }
        // `/dev/linux`: with a Linux link, or (bare mode) when the
        // manifest has a Linux cell, to answer `no linux cell`.
        let wants_linux = manifest_bytes(&modules)
            .and_then(|bytes| kasane_manifest::BootManifest::decode(bytes).ok())
            .is_some_and(|m| {
                m.cells
                    .iter()
                    .any(|c| c.kind == kasane_manifest::CellKind::Linux)
            });
        let mut others = Devices::new();
        let added = [
            others.add(Box::new(Root::new())),
            others.add(Box::new(ConsoleDevice::new(
                Console::new(KernelClock, "kasane"),
                console_out,
                console_input,
            ))),
            others.add(Box::new(BootFiles::new(modules))),
            others.add(Box::new(VmDevice::new(HvmCells))),
        ];
        for result in added {
            if let Err(e) = result {
                print(format_args!("core: adding a servant failed: {e}\n"));
            }
        }
        // SAFETY: this is core's only thread, and it reaches its UTCB only
        // through this reference from now on (and, during servant calls,
        // the task servers' transport: see task_server::utcb).
        let utcb = unsafe { &mut *current_utcb() };
        let kernel = Microkernel {
            me,
            utcb,
            frames,
            arena,
            text,
        };
        let mut system = System::new(kernel, others);
        if linux_peer.is_some() || wants_linux {
            system.servants().linux = Some(LinuxRuns::new(linux_peer.is_some()));
        }
        if linux_peer.is_none() && wants_linux {
            // Bare mode: /srv/linux says why it cannot be mounted.
            if let Err(e) = system.servants().srv.post_absent("linux", "eve", NO_LINUX) {
                print(format_args!("core: /srv/linux: {e}\n"));
            }
        }
        for (config, server) in started {
            system.add_configured_server(config, server);
        }
        Core {
            system,
            buffers: [
                // Big enough for a task server's answer too.
                vec![0u8; core_abi::SERVER_BUFFER_0.max(task_link::MSIZE as usize)]
                    .into_boxed_slice(),
                // And for the data of a task server's late Rread (its
                // second item, task_link); a process's second string item
                // is held to SERVER_BUFFER_1 (`handle`).
                vec![0u8; core_abi::SERVER_BUFFER_1.max(task_link::MSIZE as usize)]
                    .into_boxed_slice(),
            ],
            linux_peer,
            runs_decoder: Box::new(bridge_protocol::Decoder::new()),
        }
    }

    /// Starts `/bin/rc` with the boot arguments and serves until it ends.
    pub fn run(&mut self, args: &str) {
        if let Some(init) = self.system.start_init(args) {
            self.serve(init);
        }
    }

    fn serve(&mut self, init: u32) {
        let mut deferred: Option<Reply> = None;
        loop {
            if let Some(status) = self.system.exit_status(init) {
                print(format_args!("core: init exited: '{status}'\n"));
                return;
            }
            let timeout = match self.system.receive_timeout() {
                Some(microseconds) => Timeout::Relative { microseconds },
                None => Timeout::Never,
            };
            let utcb = &mut *self.system.kernel().utcb;
            // Core never sets a receive window or a slot past these two,
            // so setting them is enough (a servant call may have cleared
            // or moved them).
            for (slot, buffer) in self.buffers.iter_mut().enumerate() {
                // SAFETY: the buffers are core's, live as long as core, and
                // are read only between receives, after the kernel wrote.
                unsafe {
                    utcb.set_receive_buffer(
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
                    load_reply(utcb, reply);
                    ThreadId::from_raw(reply.client.0)
                }
                None => ThreadId::NIL,
            };
            // SAFETY: core's own UTCB; the receive targets are the buffers
            // above; the only item sent is a string item over the reply's
            // data, which `reply` keeps alive across the call.
            let received = unsafe { ipc_with_items(utcb, to, FromSpecifier::Any, timeouts) };
            match received {
                Ok(sender) => {
                    self.handle(sender);
                    let _ = self.pump_linux();
                }
                Err(e) if e.phase == microkernel_abi::IpcPhase::Send => {
                    // A client gone (killed by a ctl write it made, say)
                    // is not news; anything else is.
                    if self.system.is_process(Thread(to.raw())) {
                        print(format_args!("core: reply to {to:?} failed: {e:?}\n"));
                    }
                }
                Err(_) => {}
            }
            drop(reply);
            deferred = self.system.end_pass();
            // A Linux link revived in that pass may have runs' frames to
            // send, and answers to take, with nothing else to come.
            if deferred.is_none() && self.pump_linux() {
                deferred = self.system.end_pass();
            }
        }
    }

    /// Decodes one message from core's UTCB and hands it on: a process's
    /// to `System::handle`, a task server's to `#M`.
    fn handle(&mut self, sender: ThreadId) {
        if let Some(irq) = sender.interrupt_number() {
            // A link's interrupt: unmask it first (an answer that lands
            // after the poll raises it again), then take a server VM's
            // answer to a posted request, if whole.
            let _ = microkernel_rt::user::interrupt_acknowledge(irq);
            let mounts = &mut self.system.servants().mount;
            let Some(link) = mounts.link_of_peer(sender.raw()) else {
                return;
            };
            if let Some(vm) = mounts.transport_mut(link).and_then(ServerLink::vm) {
                vm.interrupted();
            }
            // The Linux link carries runs and delegated calls besides 9P:
            // its pump sees a restart, takes them all and polls #M's part.
            if Some(sender.raw()) == self.linux_peer {
                let _ = self.pump_linux();
                return;
            }
            // Several requests are out at once: take every answer that
            // came with this interrupt.
            loop {
                let polled = mounts
                    .transport_mut(link)
                    .and_then(ServerLink::vm)
                    .map(|vm| vm.poll());
                match polled {
                    Some(Ok(Some(answer))) => mounts.deliver(link, &answer),
                    Some(Err(what)) => {
                        mounts.fail_link(link, &what);
                        break;
                    }
                    _ => break,
                }
            }
            return;
        }
        let thread = Thread(sender.raw());
        let Some(pid) = self.system.pid_of(thread) else {
            let tag = MessageTag::from_raw(self.system.kernel().utcb.message_registers[0]);
            let link = self.system.servants().mount.link_of_peer(sender.raw());
            if let Some(link) = link {
                self.server_message(link, tag);
            }
            return;
        };
        let registers = &self.system.kernel().utcb.message_registers;
        let tag = MessageTag::from_raw(registers[0]);
        let message = if tag.is_from_kernel() {
            match tag.label() {
                PAGE_FAULT_LABEL => Message::PageFault {
                    address: registers[1],
                    ip: registers[2],
                },
                EXCEPTION_LABEL => Message::Exception {
                    vector: registers[1],
                },
                _ => Message::Kernel,
            }
        } else {
            let untyped = tag.untyped();
            let mut words = [0u64; 4];
            for (n, word) in words.iter_mut().enumerate() {
                if n < untyped {
                    *word = registers[n + 1];
                }
            }
            let mut items = Vec::new();
            let limits = [usize::MAX, core_abi::SERVER_BUFFER_1];
            for index in 0..tag.typed() / 2 {
                let at = 1 + untyped + 2 * index;
                let pair = [registers[at], registers[at + 1]];
                if let (Ok(TypedItem::String(item)), Some(buffer), Some(&limit)) = (
                    TypedItem::decode(pair),
                    self.buffers.get(index),
                    limits.get(index),
                ) {
                    // Longer than the call's limit (the buffer is bigger
                    // for task servers' sake): the item is left out, and
                    // the call fails for want of it.
                    if item.length as usize <= limit {
                        let length = (item.length as usize).min(buffer.len());
                        items.push(buffer[..length].to_vec());
                    }
                }
            }
            Message::Call {
                label: tag.label(),
                words,
                items,
            }
        };
        self.system.handle_process(thread, pid, message);
    }

    /// Moves `/dev/linux`'s frames: the runs' requests out on the Linux
    /// link, the agent's answers in (and a 9P answer that came with them
    /// to `#M`), and a restart of the cell to the runs under way. While
    /// the link is hung up (its agent booting) the runs' frames wait.
    /// Whether anything moved.
    fn pump_linux(&mut self) -> bool {
        let Some(peer) = self.linux_peer else {
            return false;
        };
        let servants = self.system.servants();
        let (Some(runs), mounts) = (servants.linux.as_mut(), &mut servants.mount) else {
            return false;
        };
        let Some(link) = mounts.link_of_peer(peer) else {
            return false;
        };
        let Some(vm) = mounts.transport_mut(link).and_then(ServerLink::vm) else {
            return false;
        };
        let outgoing = runs.take_frames();
        let mut moved = !outgoing.is_empty();
        let (restarted, failed) = vm.send_runs(outgoing);
        if restarted {
            runs.peer_changed();
        }
        if let Some(why) = failed {
            print(format_args!("core: /dev/linux: {why}\n"));
            runs.peer_changed();
        }
        // Every whole answer that came: the link's interrupt has been
        // taken, so one left in the stream would wait for the next.
        while let Some(vm) = mounts.transport_mut(link).and_then(ServerLink::vm) {
            let polled = vm.poll();
            for frame in vm.take_runs() {
                moved = true;
                // Each is one whole frame, encoded by the exchanger.
                self.runs_decoder.reset();
                if let (_, Some(Ok(frame))) = self.runs_decoder.feed(&frame) {
                    runs.deliver(frame.request_id, &frame.message);
                }
            }
            match polled {
                Ok(Some(answer)) => mounts.deliver(link, &answer),
                Err(what) => {
                    mounts.fail_link(link, &what);
                    return true;
                }
                Ok(None) => return moved || restarted,
            }
            moved = true;
        }
        moved || restarted
    }

    /// A message from a task server outside a synchronous exchange: the
    /// answer to a posted read or write, or a fault of the server.
    fn server_message(&mut self, link: LinkId, tag: MessageTag) {
        let (registers, data) = {
            let registers = &self.system.kernel().utcb.message_registers;
            ([registers[1], registers[2]], [registers[3], registers[4]])
        };
        let mounts = &mut self.system.servants().mount;
        let outcome = if tag.is_from_kernel() {
            match tag.label() {
                PAGE_FAULT_LABEL => {
                    // SAFETY: between messages core does not hold its own
                    // UTCB reference across this call (see task_server).
                    let utcb = unsafe { &mut *current_utcb() };
                    match mounts.transport_mut(link).and_then(ServerLink::task) {
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
                    if tag.label() == task_link::NINEP_LABEL
                        && tag.untyped() == 0
                        && tag.typed() == 2 =>
                {
                    let length = (item.length as usize).min(self.buffers[0].len());
                    mounts.deliver(link, &self.buffers[0][..length]);
                    Ok(())
                }
                // An Rread in two parts (task_link): the data, in buffer
                // 1, joins its header in buffer 0.
                Ok(TypedItem::String(header))
                    if tag.label() == task_link::NINEP_LABEL
                        && tag.untyped() == 0
                        && tag.typed() == 4
                        && header.length == task_link::RREAD_HEADER as u64 =>
                {
                    let [first, second] = &mut self.buffers;
                    match TypedItem::decode(data) {
                        Ok(TypedItem::String(item))
                            if item.length as usize <= second.len()
                                && header.length + item.length <= first.len() as u64 =>
                        {
                            let (at, length) = (task_link::RREAD_HEADER, item.length as usize);
                            first[at..at + length].copy_from_slice(&second[..length]);
                            mounts.deliver(link, &first[..at + length]);
                            Ok(())
                        }
                        _ => Err(String::from("a malformed two-part Rread")),
                    }
                }
                _ => Err(String::from("a message that is not a 9P answer")),
            }
        };
        if let Err(what) = outcome {
            mounts.fail_link(link, &what);
        }
    }
}

/// The devices core gives task server `config`: its fixed ports, and each
/// PCI device's ports from where the firmware put them (bare mode reads
/// the machine's configuration space; core's thread may use its ports).
/// A PCI device that is not there is said and left out: the server runs
/// without it.
fn task_devices(config: &ServerConfig) -> Grants {
    let mut devices = Grants {
        ports: config.ports.clone(),
        found: Vec::new(),
    };
    for device in &config.pci {
        let read = |slot: u8, offset: u8| pci::read(pci::address(0, slot, 0, offset));
        match device.io_base(read) {
            Some(base) => {
                print(format_args!(
                    "core: server {}: device {} at port {base:#x}\n",
                    config.name, device.name
                ));
                let ranges = device.ports.iter();
                devices.ports.extend(
                    ranges.filter_map(|&(first, count)| Some((base.checked_add(first)?, count))),
                );
                devices.found.push((device.name, base));
            }
            None => print(format_args!(
                "core: server {}: no device {} on PCI bus 0; it runs without\n",
                config.name, device.name
            )),
        }
    }
    devices
}
