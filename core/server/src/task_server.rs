//! Task servers: file servers running as microkernel tasks of their own,
//! and the server link core speaks 9P to them over.
//!
//! Core starts a task server from a boot module and pages it from a pool
//! of frames of its own. Over the link of `task_link` each 9P request
//! is a synchronous call, so one request is outstanding per link. The
//! mount driver `#M` (`kasane-mount`) drives the protocol; [`TaskServer`]
//! is its [`Transport`] here.
//!
//! While core waits for a reply, the server may fault (its heap grows); the
//! fault arrives as the message core is waiting for, and is served from
//! the server's own pool before core waits again. A fault that cannot be
//! served, an exception, a timeout or a malformed answer is an error of
//! the exchange: `#M` hangs the link up, the task is destroyed, and core
//! restarts the server on a new link (`core_system::System`'s restarts).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core_abi::layout::{STACK_TOP, UTCB};
use kasane_mount::{ReadTarget, Transport};
use microkernel_abi::utcb::ReceiveBuffer;
use microkernel_abi::{
    ExchangeControl, FromSpecifier, MessageTag, StringItem, TaskId, ThreadId, Timeout, Timeouts,
    TypedItem, Utcb, EXCEPTION_LABEL, PAGE_FAULT_LABEL,
};
use microkernel_rt::console::print;
use microkernel_rt::frames::FrameBitmap;
use microkernel_rt::user::{
    current_utcb, exchange_registers, ipc_with_items, space_create, space_destroy,
    space_grant_ports, thread_create,
};
use microkernel_rt::utcb::ReceiveTargets;
use task_link::layout::{SERVER_IMAGE, SERVER_IMAGE_SIZE};
use task_link::{
    Failure, INJECT_LABEL, MSIZE, NINEP_LABEL, PROBE_LABEL, READY_LABEL, READY_MULTIPLEXES,
    RREAD_HEADER,
};

use crate::process::{Memory, TextCache};

/// How long core waits for a task server to take a request (µs).
const SEND_TIMEOUT: u32 = 1_000_000;
/// The same for a posted request, while processes wait: an idle server
/// is always receiving (it answers and receives in one IPC), so one that
/// does not take a request soon is hung, and core must not stall on it.
const POST_SEND_TIMEOUT: u32 = 50_000;
/// How long core waits for each message of an answer (µs).
const REPLY_TIMEOUT: u32 = 10_000_000;
/// How many more times core waits after a wait for an answer timed out.
const RECEIVE_RETRIES: u32 = 3;

/// How long core waits for the answer to a read or write before it lets
/// the caller wait alone and serves others (µs; two ticks, nominal).
const PATIENCE: u32 = 2_000;

/// How long a posted request may wait for its answer (µs) before the
/// link is hung up: core's watchdog for a server that hangs (ramfs
/// answers in microseconds; `faulty`'s slowest file takes a second).
pub const ANSWER_LIMIT: u64 = 3_000_000;

/// How long core waits for a server to take a failure injection (µs).
const INJECT_TIMEOUT: u32 = 100_000;

/// How long core waits for a multiplexing server to take a probe (µs):
/// it receives between rounds of its own work, which are short.
const PROBE_TIMEOUT: u32 = 200_000;

/// How many page faults of a multiplexing server core serves while one
/// send of its own waits, before it calls the server hung.
const FAULTS_PER_SEND: u32 = 16;

/// Core's UTCB, for the IPC of the link.
///
/// # Safety
///
/// Core has one thread. The caller must not hold another reference to the
/// UTCB in use across the returned one's life: core's `Microkernel` keeps
/// its own, but touches it only before and after a servant call or a
/// restart, never during one.
unsafe fn utcb<'a>() -> &'a mut Utcb {
    // SAFETY: core's thread's UTCB is mapped for core's life; exclusivity
    // is the caller's contract.
    unsafe { &mut *current_utcb() }
}

fn timeouts(send: Timeout, receive: Timeout) -> Timeouts {
    Timeouts { send, receive }
}

/// What core gives a task server of the machine's devices, at every
/// start: ports to grant, and where each PCI device's ports begin, for
/// the server's argv (`NAME@PORT`, decimal: `runtime_task::device`; the
/// argv ends with `start@N`, which start of the server this is).
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// I/O ports `(first, count)`.
    pub ports: Vec<(u16, u16)>,
    /// PCI devices found: name and I/O base.
    pub found: Vec<(&'static str, u16)>,
}

/// A file server running as a task of its own.
pub struct TaskServer {
    name: String,
    /// Its text's key in core's text cache (one per server program).
    identity: u64,
    /// Its program, for restarts.
    elf: &'static [u8],
    /// The image it starts from (a tar boot module), mapped at
    /// `SERVER_IMAGE` at every start.
    image: Option<&'static [u8]>,
    /// Its devices, granted to its task at every start.
    devices: Grants,
    thread: ThreadId,
    task: TaskId,
    memory: Memory,
    pool: Box<FrameBitmap>,
    /// Where the next Rread's data goes instead of the answer buffer.
    aim: Option<ReadTarget>,
    /// How many bytes of data went there.
    aimed: Option<usize>,
    /// Which start of the server this is: 1 at boot, one more at each
    /// restart (argv's `start@N`).
    start: u64,
    /// The server said in its ready message that its link carries several
    /// requests at once (`task_link::READY_MULTIPLEXES`).
    multiplexed: bool,
}

impl TaskServer {
    /// Loads `elf` into a new task paged from `pool`, grants it its
    /// `devices`, starts it and waits for its ready message
    /// (`task_link`). `identity` tells this server program's text apart
    /// from every other program's.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        name: &str,
        identity: u64,
        elf: &'static [u8],
        image: Option<&'static [u8]>,
        devices: Grants,
        start: u64,
        me: ThreadId,
        mut pool: Box<FrameBitmap>,
        arena: &mut FrameBitmap,
        text: &mut TextCache,
    ) -> Result<TaskServer, String> {
        let mut memory = Memory::default();
        let entry = memory.load(elf, ('M', identity), &mut pool, arena, text)?;
        let mut argv = alloc::vec![String::from(name)];
        if let Some(image) = image {
            let offset = memory.map_module(SERVER_IMAGE, image, SERVER_IMAGE_SIZE)?;
            argv.push(format!("{offset}"));
            argv.push(format!("{}", image.len()));
        }
        for (device, base) in &devices.found {
            argv.push(format!("{device}@{base}"));
        }
        argv.push(format!("start@{start}"));
        memory.set_arguments(&mut pool, me.raw(), 0, &argv)?;
        let task = space_create().map_err(|e| format!("space_create: {e:?}"))?;
        for &(first, count) in &devices.ports {
            if let Err(e) = space_grant_ports(task, first, count) {
                let _ = space_destroy(task);
                memory.release(&mut pool);
                return Err(format!("ports {first:#x}+{count}: {e:?}"));
            }
        }
        // SAFETY: the task is new and not core's own; core is its pager.
        let thread = unsafe { thread_create(task, me, UTCB) }
            .map_err(|e| format!("thread_create: {e:?}"))?;
        let mut server = TaskServer {
            name: String::from(name),
            identity,
            elf,
            image,
            devices,
            thread,
            task,
            memory,
            pool,
            aim: None,
            aimed: None,
            multiplexed: false,
            start,
        };
        let control = ExchangeControl::SET_INSTRUCTION_POINTER
            | ExchangeControl::SET_STACK_POINTER
            | ExchangeControl::RESUME;
        // SAFETY: a new thread of another task, started at its ELF entry
        // on the stack the layout gives it.
        unsafe { exchange_registers(thread, control, entry, STACK_TOP, ThreadId::NIL) }
            .map_err(|e| format!("exchange_registers: {e:?}"))?;
        // SAFETY: core's thread, at boot before `Microkernel` takes its UTCB
        // reference, or in a restart, while that reference is not in use.
        let utcb = unsafe { utcb() };
        loop {
            utcb.clear_receive_targets();
            let wait = timeouts(
                Timeout::Zero,
                Timeout::Relative {
                    microseconds: REPLY_TIMEOUT,
                },
            );
            // SAFETY: core's own UTCB; no items sent, no receive targets.
            let result =
                unsafe { ipc_with_items(utcb, ThreadId::NIL, FromSpecifier::Thread(thread), wait) };
            result.map_err(|e| format!("{name} did not start: {e:?}"))?;
            let tag = MessageTag::from_raw(utcb.message_registers[0]);
            match (tag.is_from_kernel(), tag.label()) {
                (true, PAGE_FAULT_LABEL) => {
                    let address = utcb.message_registers[1];
                    server.fault(utcb, address)?;
                }
                (false, READY_LABEL) => {
                    server.multiplexed =
                        tag.untyped() >= 1 && utcb.message_registers[1] & READY_MULTIPLEXES != 0;
                    return Ok(server);
                }
                _ => {
                    server.stop();
                    return Err(format!("{name} failed before it was ready"));
                }
            }
        }
    }

    /// Answers a page fault with a page of the server's own.
    pub fn fault(&mut self, utcb: &mut Utcb, address: u64) -> Result<(), String> {
        let item = self
            .memory
            .resolve(address, &mut self.pool)
            .ok_or_else(|| format!("{}: no page for {address:#x}", self.name))?;
        let tag = MessageTag::new(0, 0, 2).map_err(|e| format!("{e:?}"))?;
        let [first, second] = TypedItem::Map(item).encode();
        utcb.clear_receive_targets();
        utcb.message_registers[0] = tag.raw();
        utcb.message_registers[1] = first;
        utcb.message_registers[2] = second;
        // SAFETY: the item maps a page of the server's pool that core lends
        // to this task alone (or its shared read-only text); core's UTCB.
        let sent = unsafe {
            ipc_with_items(
                utcb,
                self.thread,
                FromSpecifier::Nobody,
                timeouts(Timeout::Zero, Timeout::Zero),
            )
        };
        sent.map(|_| ())
            .map_err(|e| format!("{}: fault reply: {e:?}", self.name))
    }

    /// Takes a message the server is waiting to give core, without
    /// waiting: `true` if it was a page fault, now served; `false` if the
    /// server gave nothing (it is busy, or hung). An exception or any
    /// other message is the link's end.
    fn take_fault(&mut self, utcb: &mut Utcb) -> Result<bool, String> {
        utcb.clear_receive_targets();
        let now = timeouts(Timeout::Zero, Timeout::Zero);
        // SAFETY: core's own UTCB; nothing sent, no receive targets (a
        // message with string items fails to arrive, and is no fault).
        let taken =
            unsafe { ipc_with_items(utcb, ThreadId::NIL, FromSpecifier::Thread(self.thread), now) };
        if taken.is_err() {
            return Ok(false);
        }
        let tag = MessageTag::from_raw(utcb.message_registers[0]);
        match (tag.is_from_kernel(), tag.label()) {
            (true, PAGE_FAULT_LABEL) => {
                let address = utcb.message_registers[1];
                self.fault(utcb, address)?;
                Ok(true)
            }
            (true, EXCEPTION_LABEL) => Err(format!(
                "{}: exception {}",
                self.name, utcb.message_registers[1]
            )),
            _ => Err(format!("{}: a message that is not a 9P answer", self.name)),
        }
    }

    /// Loads a T-message into core's message registers.
    fn load(utcb: &mut Utcb, frame: &[u8]) -> Result<(), String> {
        let tag = MessageTag::new(NINEP_LABEL, 0, 2).map_err(|e| format!("{e:?}"))?;
        let [first, second] = TypedItem::String(StringItem {
            address: frame.as_ptr() as u64,
            length: frame.len() as u64,
        })
        .encode();
        utcb.message_registers[0] = tag.raw();
        utcb.message_registers[1] = first;
        utcb.message_registers[2] = second;
        Ok(())
    }

    /// One request: `frame` out (or, with `None`, the request already
    /// posted), the answer into `answer`; its length. With `patience`, a
    /// wait for the answer longer than that many microseconds gives up
    /// with `None`: the answer will come to core's loop.
    fn call(
        &mut self,
        frame: Option<&[u8]>,
        answer: &mut [u8],
        patience: Option<u32>,
    ) -> Result<Option<usize>, String> {
        // SAFETY: called from a servant method, while `Microkernel` does
        // not use its UTCB reference (see `utcb`).
        let utcb = unsafe { utcb() };
        let (mut to, mut send) = match frame {
            Some(frame) => {
                Self::load(utcb, frame)?;
                let send = Timeout::Relative {
                    microseconds: if patience.is_some() {
                        POST_SEND_TIMEOUT
                    } else {
                        SEND_TIMEOUT
                    },
                };
                (self.thread, send)
            }
            None => (ThreadId::NIL, Timeout::Zero),
        };
        let mut retries = 0;
        let mut faults = 0;
        if answer.len() <= RREAD_HEADER {
            return Err(format!("{}: answer buffer too small", self.name));
        }
        // An Rread's data (its second item, task_link) lands right after
        // its header, or at the aimed reader's buffer.
        let data = match self.aim {
            Some(target) => ReceiveBuffer {
                address: target.address,
                length: target.length as u64,
            },
            None => ReceiveBuffer {
                address: answer[RREAD_HEADER..].as_mut_ptr() as u64,
                length: (answer.len() - RREAD_HEADER) as u64,
            },
        };
        loop {
            utcb.clear_receive_targets();
            // SAFETY: `answer` is core's heap memory (mapped read/write),
            // borrowed for this function, read only after the kernel wrote.
            // An aimed target is core's alias of pages a process may write
            // (`core_system::buffer_alias`), which hold no Rust object of
            // core's and stay the process's while core handles its call.
            unsafe {
                utcb.set_receive_buffer(
                    0,
                    ReceiveBuffer {
                        address: answer.as_mut_ptr() as u64,
                        length: answer.len() as u64,
                    },
                );
                utcb.set_receive_buffer(1, data);
            };
            let wait = timeouts(
                send,
                Timeout::Relative {
                    microseconds: patience.unwrap_or(REPLY_TIMEOUT),
                },
            );
            // SAFETY: core's UTCB; the one item is a string over `frame`,
            // which lives across the call; the receive target is `answer`.
            let result =
                unsafe { ipc_with_items(utcb, to, FromSpecifier::Thread(self.thread), wait) };
            if let Err(e) = result {
                let late_send = e.error == microkernel_abi::Error::Timeout
                    && e.phase == microkernel_abi::IpcPhase::Send;
                if late_send && self.multiplexed && faults < FAULTS_PER_SEND {
                    // A multiplexing server may be waiting for core too,
                    // in a page fault (its answers never wait): serve it,
                    // then send again.
                    faults += 1;
                    if self.take_fault(utcb)? {
                        if let Some(frame) = frame {
                            Self::load(utcb, frame)?;
                        }
                        continue;
                    }
                }
                let slow = e.error == microkernel_abi::Error::Timeout
                    && e.phase == microkernel_abi::IpcPhase::Receive;
                if slow && patience.is_some() {
                    return Ok(None);
                }
                let text = if e.phase == microkernel_abi::IpcPhase::Send
                    && e.error == microkernel_abi::Error::Timeout
                {
                    // An idle server always receives: this one is stuck.
                    format!("{}: takes no requests (hung)", self.name)
                } else {
                    format!("{}: {e:?}", self.name)
                };
                // A slow answer: wait again, a few times.
                if slow && retries < RECEIVE_RETRIES {
                    print(format_args!("core: #M: {text}; waiting again\n"));
                    retries += 1;
                    to = ThreadId::NIL;
                    send = Timeout::Zero;
                    continue;
                }
                return Err(text);
            }
            let tag = MessageTag::from_raw(utcb.message_registers[0]);
            if tag.is_from_kernel() {
                if tag.label() != PAGE_FAULT_LABEL {
                    let what = if tag.label() == EXCEPTION_LABEL {
                        format!("exception {}", utcb.message_registers[1])
                    } else {
                        String::from("kernel message")
                    };
                    return Err(format!("{}: {what}", self.name));
                }
                let address = utcb.message_registers[1];
                self.fault(utcb, address)?;
                // Then wait for the answer again, sending nothing.
                to = ThreadId::NIL;
                send = Timeout::Zero;
                continue;
            }
            let registers = &utcb.message_registers;
            let items = [
                TypedItem::decode([registers[1], registers[2]]),
                TypedItem::decode([registers[3], registers[4]]),
            ];
            if tag.label() != NINEP_LABEL || tag.untyped() != 0 {
                return Err(format!("{}: answer without a 9P frame", self.name));
            }
            return match (tag.typed(), items) {
                (2, [Ok(TypedItem::String(item)), _]) => {
                    Ok(Some((item.length as usize).min(answer.len())))
                }
                (4, [Ok(TypedItem::String(header)), Ok(TypedItem::String(data))]) => {
                    self.rread(answer, header.length, data.length).map(Some)
                }
                _ => Err(format!("{}: answer without a 9P frame", self.name)),
            };
        }
    }

    /// An Rread that came as two items, its header in `answer` and
    /// `length` bytes of data after it or at the aim; the length of the
    /// frame for the driver. Data that went to the aim is taken out of the
    /// frame (its count says 0) and counted in `aimed`.
    fn rread(&mut self, answer: &mut [u8], header: u64, length: u64) -> Result<usize, String> {
        let count = answer
            .get(7..RREAD_HEADER)
            .map(|c| [c[0], c[1], c[2], c[3]]);
        if header != RREAD_HEADER as u64 || count.map(u32::from_le_bytes) != Some(length as u32) {
            return Err(format!("{}: a malformed two-part Rread", self.name));
        }
        let length = length as usize;
        if self.aim.take().is_none() {
            return Ok(RREAD_HEADER + length);
        }
        // read(5): size[4] Rread tag[2] count[4] data[count]; the data is
        // the reader's already.
        answer[..4].copy_from_slice(&(RREAD_HEADER as u32).to_le_bytes());
        answer[7..RREAD_HEADER].fill(0);
        self.aimed = Some(length);
        Ok(RREAD_HEADER)
    }

    /// Starts the program of a stopped server again in a new task, with
    /// the same pool and name: a restart after the server failed. Its
    /// text is still in the cache, so only data pages are loaded.
    pub fn restart(
        self,
        me: ThreadId,
        arena: &mut FrameBitmap,
        text: &mut TextCache,
    ) -> Result<TaskServer, String> {
        TaskServer::start(
            &self.name,
            self.identity,
            self.elf,
            self.image,
            self.devices,
            self.start + 1,
            me,
            self.pool,
            arena,
            text,
        )
    }

    fn stop(&mut self) {
        let _ = space_destroy(self.task);
        let memory = core::mem::take(&mut self.memory);
        memory.release(&mut self.pool);
    }
}

impl Transport for TaskServer {
    fn name(&self) -> &str {
        &self.name
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        self.call(Some(frame), answer, None)
            .map(|length| length.unwrap_or(0))
    }

    fn posts(&self) -> bool {
        true
    }

    fn post(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<Option<usize>, String> {
        self.call(Some(frame), answer, Some(PATIENCE))
    }

    fn collect(&mut self, answer: &mut [u8]) -> Result<usize, String> {
        self.call(None, answer, None)
            .map(|length| length.unwrap_or(0))
    }

    fn peer(&self) -> u64 {
        self.thread.raw()
    }

    fn multiplexes(&self) -> bool {
        self.multiplexed
    }

    fn probes(&self) -> bool {
        self.multiplexed
    }

    /// Sends the server [`PROBE_LABEL`]: one that receives is alive. A
    /// page fault it waits in is served first (see `call`).
    fn probe(&mut self) -> Result<(), String> {
        // SAFETY: called from core's loop between calls, while
        // `Microkernel` does not use its UTCB reference (see `utcb`).
        let utcb = unsafe { utcb() };
        let tag = MessageTag::new(PROBE_LABEL, 0, 0).map_err(|e| format!("{e:?}"))?;
        for _ in 0..FAULTS_PER_SEND {
            utcb.clear_receive_targets();
            utcb.message_registers[0] = tag.raw();
            let wait = timeouts(
                Timeout::Relative {
                    microseconds: PROBE_TIMEOUT,
                },
                Timeout::Zero,
            );
            // SAFETY: core's UTCB; no words, no items.
            let sent = unsafe { ipc_with_items(utcb, self.thread, FromSpecifier::Nobody, wait) };
            match sent {
                Ok(_) => return Ok(()),
                Err(_) if self.take_fault(utcb)? => continue,
                Err(e) => return Err(format!("{}: takes no probe (hung): {e:?}", self.name)),
            }
        }
        Err(format!("{}: faults without end", self.name))
    }

    fn aim(&mut self, target: Option<ReadTarget>) {
        self.aim = target;
        self.aimed = None;
    }

    fn take_aimed(&mut self) -> Option<usize> {
        self.aimed.take()
    }

    /// Sends the server the failure to perform (`task_link::INJECT_LABEL`);
    /// it does so at once, and core sees the result on the link.
    fn inject(&mut self, verb: &str) -> Result<(), String> {
        let failure = Failure::from_verb(verb).ok_or_else(|| format!("no failure {verb}"))?;
        // SAFETY: called from core's loop between calls, while
        // `Microkernel` does not use its UTCB reference (see `utcb`).
        let utcb = unsafe { utcb() };
        let tag = MessageTag::new(INJECT_LABEL, 1, 0).map_err(|e| format!("{e:?}"))?;
        utcb.clear_receive_targets();
        utcb.message_registers[0] = tag.raw();
        utcb.message_registers[1] = failure as u64;
        let wait = timeouts(
            Timeout::Relative {
                microseconds: INJECT_TIMEOUT,
            },
            Timeout::Zero,
        );
        // SAFETY: core's UTCB; untyped words only.
        let sent = unsafe { ipc_with_items(utcb, self.thread, FromSpecifier::Nobody, wait) };
        sent.map(|_| ())
            .map_err(|e| format!("{}: the server did not take it: {e:?}", self.name))
    }

    fn stop(&mut self) {
        TaskServer::stop(self);
    }
}

// The driver sizes its buffers for the link's message size.
const _: () = assert!(kasane_mount::MSIZE == MSIZE);
