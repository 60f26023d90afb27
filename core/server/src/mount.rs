//! `#M`, the mount driver: servant calls as 9P2000 on a task server's link.
//!
//! A task server ([`TaskServer`]) is a file server running as a task of
//! its own, started by core from a boot module and paged by core from a
//! pool of frames of its own. Core speaks to it over the server link of
//! `core_abi::link`: a synchronous call per 9P request, so one request is
//! outstanding per link. The protocol half is `ninep-client`; this module
//! moves its frames.
//!
//! Every `File` this servant hands out is one chan, and holds one fid:
//! - `dev` is the mount's number in bits 0..16 and a serial in bits 16..32.
//! - Walked chans (serial 0) share one fid per (mount, qid path),
//!   counted, so a file keeps the identity (`M`, dev, path) the namespace
//!   finds mount points by. Walks start from these fids.
//! - Opened and created chans (serial > 0) have a fid of their own, a
//!   clone (a Twalk with no names), because an open fid cannot be walked
//!   and its mode is the chan's alone.
//! - `close` clunks: a serial fid at once, a shared one with its last chan.
//!
//! While core waits for a reply, the server may fault (its heap grows); the
//! fault arrives as the message core is waiting for, and is served from
//! the server's own pool before core waits again. A fault that cannot be
//! served, an exception, a timeout or a malformed answer hangs the link
//! up: every later operation fails with "i/o on hungup channel".

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use core_abi::layout::{STACK_TOP, UTCB};
use core_abi::link::{MSIZE, NINEP_LABEL, READY_LABEL};
use kasane_servant::{Caller, Error, File, Io, LinkId, Opened, Servant};
use microkernel_abi::user::{
    current_utcb, exchange_registers, ipc_with_items, kernel_info, space_create, space_destroy,
    thread_create,
};
use microkernel_abi::utcb::ReceiveBuffer;
use microkernel_abi::{
    ExchangeControl, FromSpecifier, KernelInfoSelector, MessageTag, StringItem, TaskId, ThreadId,
    Timeout, Timeouts, TypedItem, Utcb, EXCEPTION_LABEL, PAGE_FAULT_LABEL,
};
use microkernel_rt::console::print;
use microkernel_rt::frames::FrameBitmap;
use ninep::{FileMode, OpenMode, Stat};
use ninep_client::{Client, Fid, FrameReader, OpId, Outcome};

use crate::process::{Memory, TextCache};

/// How long core waits for a task server to take a request (µs).
const SEND_TIMEOUT: u32 = 1_000_000;
/// How long core waits for each message of an answer (µs).
const REPLY_TIMEOUT: u32 = 10_000_000;
/// How many more times core waits after a wait for an answer timed out.
const RECEIVE_RETRIES: u32 = 3;

const MOUNT_BITS: u32 = 16;
const MOUNT_MASK: u32 = (1 << MOUNT_BITS) - 1;

/// Core's UTCB, for the IPC of the link.
///
/// # Safety
///
/// Core has one thread. The caller must not hold another reference to the
/// UTCB in use across the returned one's life: `Core` keeps its own, but
/// touches it only before and after a servant call, never during one.
unsafe fn utcb<'a>() -> &'a mut Utcb {
    // SAFETY: core's thread's UTCB is mapped for core's life; exclusivity
    // is the caller's contract.
    unsafe { &mut *current_utcb() }
}

fn timeouts(send: Timeout, receive: Timeout) -> Timeouts {
    Timeouts { send, receive }
}

/// A file server running as a task of its own.
pub struct TaskServer {
    name: String,
    thread: ThreadId,
    task: TaskId,
    memory: Memory,
    pool: Box<FrameBitmap>,
}

impl TaskServer {
    /// Loads `elf` into a new task paged from `pool`, starts it and waits
    /// for its ready message (`core_abi::link`).
    pub fn start(
        name: &str,
        elf: &[u8],
        me: ThreadId,
        mut pool: Box<FrameBitmap>,
        arena: &mut FrameBitmap,
        text: &mut TextCache,
    ) -> Result<TaskServer, String> {
        let mut memory = Memory::default();
        // The identity keeps the text apart from any program's.
        let entry = memory.load(elf, ('M', 0), &mut pool, arena, text)?;
        memory.set_arguments(&mut pool, me.raw(), 0, &[String::from(name)])?;
        let task = space_create().map_err(|e| format!("space_create: {e:?}"))?;
        // SAFETY: the task is new and not core's own; core is its pager.
        let thread = unsafe { thread_create(task, me, UTCB) }
            .map_err(|e| format!("thread_create: {e:?}"))?;
        let mut server = TaskServer {
            name: String::from(name),
            thread,
            task,
            memory,
            pool,
        };
        let control = ExchangeControl::SET_INSTRUCTION_POINTER
            | ExchangeControl::SET_STACK_POINTER
            | ExchangeControl::RESUME;
        // SAFETY: a new thread of another task, started at its ELF entry
        // on the stack the layout gives it.
        unsafe { exchange_registers(thread, control, entry, STACK_TOP, ThreadId::NIL) }
            .map_err(|e| format!("exchange_registers: {e:?}"))?;
        // SAFETY: core's thread, before `Core` takes its UTCB reference.
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
                (false, READY_LABEL) => return Ok(server),
                _ => {
                    server.stop();
                    return Err(format!("{name} failed before it was ready"));
                }
            }
        }
    }

    /// Answers a page fault with a page of the server's own.
    fn fault(&mut self, utcb: &mut Utcb, address: u64) -> Result<(), String> {
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

    /// One request: `frame` out, the answer into `answer`; its length.
    fn call(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        // SAFETY: called from a servant method, while `Core` does not use
        // its UTCB reference (see `utcb`).
        let utcb = unsafe { utcb() };
        let tag = MessageTag::new(NINEP_LABEL, 0, 2).map_err(|e| format!("{e:?}"))?;
        let [first, second] = TypedItem::String(StringItem {
            address: frame.as_ptr() as u64,
            length: frame.len() as u64,
        })
        .encode();
        utcb.message_registers[0] = tag.raw();
        utcb.message_registers[1] = first;
        utcb.message_registers[2] = second;
        let mut to = self.thread;
        let mut retries = 0;
        let mut send = Timeout::Relative {
            microseconds: SEND_TIMEOUT,
        };
        loop {
            utcb.clear_receive_targets();
            // SAFETY: `answer` is core's heap memory (mapped read/write),
            // borrowed for this function, read only after the kernel wrote.
            unsafe {
                utcb.set_receive_buffer(
                    0,
                    ReceiveBuffer {
                        address: answer.as_mut_ptr() as u64,
                        length: answer.len() as u64,
                    },
                )
            };
            let wait = timeouts(
                send,
                Timeout::Relative {
                    microseconds: REPLY_TIMEOUT,
                },
            );
            let started = kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0);
            // SAFETY: core's UTCB; the one item is a string over `frame`,
            // which lives across the call; the receive target is `answer`.
            let result =
                unsafe { ipc_with_items(utcb, to, FromSpecifier::Thread(self.thread), wait) };
            if let Err(e) = result {
                let now = kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0);
                let waited = now.saturating_sub(started);
                let text = format!("{}: {e:?} after {waited} us", self.name);
                // A slow answer: wait again (the server's answer waits
                // for core a while too), a few times.
                if e.error == microkernel_abi::Error::Timeout
                    && e.phase == microkernel_abi::IpcPhase::Receive
                    && retries < RECEIVE_RETRIES
                {
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
            let item = TypedItem::decode([utcb.message_registers[1], utcb.message_registers[2]]);
            return match item {
                Ok(TypedItem::String(item))
                    if tag.label() == NINEP_LABEL && tag.untyped() == 0 && tag.typed() == 2 =>
                {
                    Ok((item.length as usize).min(answer.len()))
                }
                _ => Err(format!("{}: answer without a 9P frame", self.name)),
            };
        }
    }

    fn stop(&mut self) {
        let _ = space_destroy(self.task);
        let memory = core::mem::take(&mut self.memory);
        memory.release(&mut self.pool);
    }
}

struct Link {
    server: TaskServer,
    client: Client,
    answer: Box<[u8]>,
    hung_up: bool,
}

/// The mount driver: task servers' links, mounts, and a fid per chan.
pub struct MountDriver {
    links: BTreeMap<LinkId, Link>,
    /// Mount number → the link it goes over.
    mounts: BTreeMap<u32, LinkId>,
    next_mount: u32,
    /// Walked chans' fids by (mount, qid path), with their chan counts.
    walked: BTreeMap<(u32, u64), (Fid, u32)>,
    /// Opened chans' fids by dev.
    opened: BTreeMap<u32, Fid>,
    next_serial: u32,
}

/// The spec `#M`'s attach takes from core's mount call: the link, then
/// attach(5)'s aname.
pub fn attach_spec(link: LinkId, aname: &str) -> String {
    format!("{} {aname}", link.0)
}

fn nine(error: ninep_client::Error) -> Error {
    match error {
        ninep_client::Error::NotFound { .. } => Error::NOT_FOUND,
        ninep_client::Error::HungUp => Error::HUNGUP,
        other => Error::new(other.to_string()),
    }
}

impl MountDriver {
    pub fn new() -> Self {
        MountDriver {
            links: BTreeMap::new(),
            mounts: BTreeMap::new(),
            next_mount: 1,
            walked: BTreeMap::new(),
            opened: BTreeMap::new(),
            next_serial: 1,
        }
    }

    /// Adds a task server's link.
    pub fn add_link(&mut self, link: LinkId, server: TaskServer) {
        let answer = vec![0u8; MSIZE as usize].into_boxed_slice();
        self.links.insert(
            link,
            Link {
                server,
                client: Client::new(MSIZE),
                answer,
                hung_up: false,
            },
        );
    }

    /// Runs one operation to its end, with the follow-up requests the
    /// client makes (parts of a long read, a clean-up clunk).
    fn run(
        &mut self,
        link: LinkId,
        start: impl FnOnce(&mut Client, &mut Vec<u8>) -> Result<OpId, ninep_client::Error>,
    ) -> Result<Outcome, Error> {
        let link = self.links.get_mut(&link).ok_or(Error::HUNGUP)?;
        if link.hung_up {
            return Err(Error::HUNGUP);
        }
        let mut out = Vec::new();
        let op = start(&mut link.client, &mut out).map_err(nine)?;
        let mut frames = FrameReader::new();
        frames.push(&out);
        let mut result = None;
        while let Ok(Some(frame)) = frames.next_frame(MSIZE) {
            let length = match link.server.call(&frame, &mut link.answer) {
                Ok(length) => length,
                Err(e) => {
                    print(format_args!("core: #M: link hung up: {e}\n"));
                    link.hung_up = true;
                    link.server.stop();
                    link.client.hang_up();
                    return Err(Error::HUNGUP);
                }
            };
            let mut more = Vec::new();
            match link.client.receive(&link.answer[..length], &mut more) {
                Ok(Some(done)) if done.op == op => result = Some(done.result),
                Ok(_) => {}
                Err(e) => {
                    print(format_args!("core: #M: 9P botch: {e}\n"));
                    result = Some(Err(ninep_client::Error::Protocol(e)));
                }
            }
            frames.push(&more);
        }
        result
            .unwrap_or(Err(ninep_client::Error::HungUp))
            .map_err(nine)
    }

    fn link_of(&self, file: &File) -> Result<LinkId, Error> {
        self.mounts
            .get(&(file.dev & MOUNT_MASK))
            .copied()
            .ok_or(Error::BAD_FD)
    }

    /// The fid of a chan's file.
    fn fid_of(&self, file: &File) -> Result<Fid, Error> {
        let fid = if file.dev >> MOUNT_BITS == 0 {
            self.walked
                .get(&(file.dev, file.qid.path))
                .map(|(fid, _)| *fid)
        } else {
            self.opened.get(&file.dev).copied()
        };
        fid.ok_or(Error::BAD_FD)
    }

    /// A fresh fid on the file of `file` (walk(5) with no names).
    fn clone_fid(&mut self, file: &File) -> Result<Fid, Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.walk(fid, &[], out))? {
            Outcome::Walked { fid, .. } => Ok(fid),
            _ => Err(Error::new("#M: walk answered wrongly")),
        }
    }

    /// A dev with a serial no live chan of `mount` has.
    fn new_serial_dev(&mut self, mount: u32) -> u32 {
        loop {
            let serial = self.next_serial;
            self.next_serial = if serial >= MOUNT_MASK { 1 } else { serial + 1 };
            let dev = mount | (serial << MOUNT_BITS);
            if !self.opened.contains_key(&dev) {
                return dev;
            }
        }
    }

    fn clunk(&mut self, link: LinkId, fid: Fid) {
        let _ = self.run(link, |c, out| c.clunk(fid, out));
    }

    /// Keeps a walked fid, or counts one more chan on the fid the file
    /// already has (and clunks the new one).
    fn keep_walked(&mut self, link: LinkId, mount: u32, path: u64, fid: Fid) {
        match self.walked.get_mut(&(mount, path)) {
            Some((_, count)) => {
                *count += 1;
                self.clunk(link, fid);
            }
            None => {
                self.walked.insert((mount, path), (fid, 1));
            }
        }
    }
}

impl Servant for MountDriver {
    fn letter(&self) -> char {
        'M'
    }

    /// Only core's mount call attaches, with [`attach_spec`]'s spec.
    fn attach(&mut self, caller: &Caller<'_>, spec: &str) -> Result<File, Error> {
        let (link, aname) = spec.split_once(' ').ok_or(Error::NO_ATTACH)?;
        let link = LinkId(link.parse().map_err(|_| Error::NO_ATTACH)?);
        let negotiated = self
            .links
            .get(&link)
            .ok_or(Error::HUNGUP)?
            .client
            .is_negotiated();
        if !negotiated {
            self.run(link, |c, out| c.version(out))?;
        }
        let uname = caller.uname;
        let Outcome::Attached { fid, qid } =
            self.run(link, |c, out| c.attach(uname, aname, out))?
        else {
            return Err(Error::new("#M: attach answered wrongly"));
        };
        let mount = self.next_mount;
        if mount > MOUNT_MASK {
            self.clunk(link, fid);
            return Err(Error::new("#M: too many mounts"));
        }
        self.next_mount += 1;
        self.mounts.insert(mount, link);
        self.walked.insert((mount, qid.path), (fid, 1));
        Ok(File { dev: mount, qid })
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &File, name: &str) -> Result<File, Error> {
        let link = self.link_of(dir)?;
        let fid = self.fid_of(dir)?;
        let Outcome::Walked { fid, qids } = self.run(link, |c, out| c.walk(fid, &[name], out))?
        else {
            return Err(Error::new("#M: walk answered wrongly"));
        };
        let Some(qid) = qids.last().copied() else {
            self.clunk(link, fid);
            return Err(Error::NOT_FOUND);
        };
        let mount = dir.dev & MOUNT_MASK;
        self.keep_walked(link, mount, qid.path, fid);
        Ok(File { dev: mount, qid })
    }

    fn clone_file(&mut self, _caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        let fid = self.clone_fid(file)?;
        let dev = self.new_serial_dev(file.dev & MOUNT_MASK);
        self.opened.insert(dev, fid);
        Ok(File { dev, qid: file.qid })
    }

    fn stat(&mut self, _caller: &Caller<'_>, file: &File) -> Result<Stat, Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        let Outcome::Stat(mut stat) = self.run(link, |c, out| c.stat(fid, out))? else {
            return Err(Error::new("#M: stat answered wrongly"));
        };
        // As devmnt does: the kernel's fields name the mount.
        stat.kind = 'M' as u16;
        stat.dev = file.dev & MOUNT_MASK;
        Ok(stat)
    }

    fn open(&mut self, _caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        if file.dev >> MOUNT_BITS == 0 {
            // Core opens clones only; a shared fid must stay unopened.
            return Err(Error::new("#M: open of a shared chan"));
        }
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.open(fid, mode, out))? {
            Outcome::Opened { qid, .. } => Ok(Opened::File(qid)),
            _ => Err(Error::new("#M: open answered wrongly")),
        }
    }

    fn create(
        &mut self,
        _caller: &Caller<'_>,
        dir: &File,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<File, Error> {
        let link = self.link_of(dir)?;
        let fid = self.clone_fid(dir)?;
        match self.run(link, |c, out| c.create(fid, name, perm, mode, out)) {
            Ok(Outcome::Created { qid, .. }) => {
                let dev = self.new_serial_dev(dir.dev & MOUNT_MASK);
                self.opened.insert(dev, fid);
                Ok(File { dev, qid })
            }
            Ok(_) => {
                self.clunk(link, fid);
                Err(Error::new("#M: create answered wrongly"))
            }
            Err(e) => {
                self.clunk(link, fid);
                Err(e)
            }
        }
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.read(fid, offset, count, out))? {
            Outcome::Read(data) => Ok(Io::Ready(data)),
            _ => Err(Error::new("#M: read answered wrongly")),
        }
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        let link = self.link_of(dir)?;
        let fid = self.clone_fid(dir)?;
        let result = (|| {
            self.run(link, |c, out| c.open(fid, OpenMode::OREAD, out))?;
            let mut bytes = Vec::new();
            loop {
                let offset = bytes.len() as u64;
                match self.run(link, |c, out| c.read(fid, offset, MSIZE, out))? {
                    Outcome::Read(data) if data.is_empty() => break,
                    Outcome::Read(data) => bytes.extend_from_slice(&data),
                    _ => return Err(Error::new("#M: read answered wrongly")),
                }
            }
            Stat::decode_directory(&bytes).map_err(|e| Error::new(format!("#M: {e}")))
        })();
        self.clunk(link, fid);
        let mut entries = result?;
        for stat in &mut entries {
            stat.kind = 'M' as u16;
            stat.dev = dir.dev & MOUNT_MASK;
        }
        Ok(entries)
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        let (link, fid) = (self.link_of(file)?, self.fid_of(file)?);
        match self.run(link, |c, out| c.write(fid, offset, data, out))? {
            Outcome::Wrote(count) => Ok(Io::Ready(count)),
            _ => Err(Error::new("#M: write answered wrongly")),
        }
    }

    fn remove(&mut self, _caller: &Caller<'_>, file: &File) -> Result<(), Error> {
        let link = self.link_of(file)?;
        // remove(5) clunks the fid: a walked fid is shared, so a clone
        // goes; an opened chan's own fid goes, and its close clunks nothing.
        let fid = if file.dev >> MOUNT_BITS == 0 {
            self.clone_fid(file)?
        } else {
            self.opened.remove(&file.dev).ok_or(Error::BAD_FD)?
        };
        self.run(link, |c, out| c.remove(fid, out)).map(|_| ())
    }

    fn close(&mut self, file: &File, _opened: Option<OpenMode>) {
        let Ok(link) = self.link_of(file) else {
            return;
        };
        if file.dev >> MOUNT_BITS != 0 {
            if let Some(fid) = self.opened.remove(&file.dev) {
                self.clunk(link, fid);
            }
            return;
        }
        let key = (file.dev, file.qid.path);
        if let Some((fid, count)) = self.walked.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                let fid = *fid;
                self.walked.remove(&key);
                self.clunk(link, fid);
            }
        }
    }
}
