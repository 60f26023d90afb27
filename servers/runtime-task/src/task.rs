//! The server's start, the server loop on the link, and the panic policy.
//!
//! `_start` (from `microkernel_rt::entry!`) calls [`start`], which reads
//! core's thread from the argument page, gives the runtime's heap its
//! range, and calls the server's main.
//!
//! Invariants of the loop (the link of `task_link`):
//! - receive buffer 0 points at `request`, whose every page was written
//!   before it was offered, because the kernel fails a string copy into an
//!   unmapped page instead of asking the pager;
//! - only core's thread is received from (a closed receive), so no other
//!   task can speak on the link;
//! - every request gets exactly one answer, and the answer and the next
//!   receive are one `ipc`, so core never finds the server not receiving.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use microkernel_abi::utcb::ReceiveBuffer;
use microkernel_abi::{
    FromSpecifier, KernelInfoSelector, MessageTag, StringItem, ThreadId, Timeout, Timeouts,
    TypedItem, Utcb,
};
use microkernel_rt::console::write_bytes;
use microkernel_rt::entry::fault;
use microkernel_rt::heap;
use microkernel_rt::user::{current_utcb, ipc_with_items, kernel_info};
use microkernel_rt::utcb::ReceiveTargets;
use ninep_server::{Error, FileServer, Session};
use task_link::layout::{
    ARGS_ADDRESS, ARGS_SIZE, HEAP_BASE, HEAP_SIZE, SERVER_IMAGE, SERVER_IMAGE_SIZE,
};
use task_link::{
    rread_split, Failure, StartBlock, INJECT_LABEL, MSIZE, NINEP_LABEL, READY_LABEL,
    READY_MULTIPLEXES, START_MAGIC,
};

const PAGE: usize = 4096;

microkernel_rt::entry!(main: start, panic: panic);

unsafe extern "Rust" {
    /// Defined by [`crate::entry!`] in the server.
    fn runtime_task_main(core: ThreadId) -> !;
}

/// The image core started this server from (the manifest's `image`), if
/// any: argv\[1\] and argv\[2\] give its offset in the read-only window
/// at `SERVER_IMAGE` and its length.
pub fn image() -> Option<&'static [u8]> {
    let strings = strings(argv()?)?;
    let number = |n: usize| strings.get(n)?.parse::<u64>().ok();
    let (offset, size) = (number(1)?, number(2)?);
    if offset.checked_add(size)? > SERVER_IMAGE_SIZE {
        return None;
    }
    // SAFETY: core mapped the module's pages read-only over
    // [SERVER_IMAGE, SERVER_IMAGE + offset + size) before starting the
    // thread and keeps them for the task's life (checked above to lie in
    // the window).
    Some(unsafe {
        core::slice::from_raw_parts((SERVER_IMAGE + offset) as *const u8, size as usize)
    })
}

/// Where core found the server's PCI device `name` (the manifest's
/// `devices`): the first port of its I/O BAR, which core granted this
/// task. Core puts `NAME@PORT` (decimal) in argv after the image's
/// numbers; `None` if it found no such device on the bus.
pub fn device(name: &str) -> Option<u16> {
    keyed(name)?.parse().ok()
}

/// Which start of this server this is: 1 at boot, one more at each
/// restart (core's argv ends with `start@N`). A server numbers what must
/// not outlive it (a network conversation) apart by it.
pub fn start_number() -> Option<u64> {
    keyed("start")?.parse().ok()
}

/// The value of argv's `KEY@VALUE` argument for `key`.
fn keyed(key: &str) -> Option<&'static str> {
    strings(argv()?)?.into_iter().skip(1).find_map(|argument| {
        let (name, value) = argument.split_once('@')?;
        (name == key).then_some(value)
    })
}

/// The argument page's argv encoding.
fn argv() -> Option<&'static [u8]> {
    // SAFETY: core maps the argument page read-only at ARGS_ADDRESS for
    // the task's life; it is plain bytes.
    let page =
        unsafe { core::slice::from_raw_parts(ARGS_ADDRESS as *const u8, ARGS_SIZE as usize) };
    let length = usize::try_from(u64::from_le_bytes(page[24..32].try_into().ok()?)).ok()?;
    page.get(StartBlock::ARGV_OFFSET..StartBlock::ARGV_OFFSET.checked_add(length)?)
}

/// core-abi's string list: a u32 count, then each string as a u32 length
/// and its bytes (little endian).
fn strings(mut bytes: &[u8]) -> Option<Vec<&str>> {
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
        bytes = rest;
        Some(head)
    };
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = word(take(4)?);
    let mut out = Vec::new();
    for _ in 0..count.min(16) {
        let length = word(take(4)?);
        out.push(core::str::from_utf8(take(length)?).ok()?);
    }
    Some(out)
}

/// The server's start; RDI (`_rdi`) means nothing to a task core starts.
fn start(_rdi: u64) -> ! {
    // SAFETY: core maps the argument page read-only at ARGS_ADDRESS before
    // starting the thread and never changes it; StartBlock is plain words.
    let block = unsafe { (ARGS_ADDRESS as *const StartBlock).read() };
    if block.magic != START_MAGIC {
        fail("runtime-task: bad argument page\n");
    }
    // SAFETY: the heap range is this task's alone by the layout; core's
    // pager backs it with zeroed pages on first touch.
    if !unsafe { heap::claim(HEAP_BASE, HEAP_SIZE) } {
        fail("runtime-task: no heap\n");
    }
    // SAFETY: the server defines this function through `entry!`.
    unsafe { runtime_task_main(ThreadId::from_raw(block.core_thread)) }
}

/// Time-stamp ticks for which a clock reading is used again: a
/// millisecond at 1 GHz, well inside the one-second grain of 9P times.
const CLOCK_REUSE_TICKS: u64 = 1 << 20;

/// The last clock reading in seconds, and the time stamp it was taken at.
static CLOCK: spin::Mutex<Option<(u32, u64)>> = spin::Mutex::new(None);

/// Seconds since the kernel started: the time a server stamps files with
/// (there is no clock of the day in a cell yet). A burst of requests asks
/// the kernel once: a reading younger than [`CLOCK_REUSE_TICKS`] time-stamp
/// ticks is used again.
pub fn clock_seconds() -> u32 {
    // SAFETY: RDTSC only reads the time-stamp counter; user mode may (the
    // kernel leaves CR4.TSD clear).
    let now = unsafe { core::arch::x86_64::_rdtsc() };
    let mut clock = CLOCK.lock();
    if let Some((seconds, taken)) = *clock {
        if now.wrapping_sub(taken) < CLOCK_REUSE_TICKS {
            return seconds;
        }
    }
    let micros = kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0);
    let seconds = u32::try_from(micros / 1_000_000).unwrap_or(u32::MAX);
    *clock = Some((seconds, now));
    seconds
}

/// Waits `microseconds` without using the CPU: a receive from core that
/// times out. Only for a server answering a request, while core sends this
/// link nothing (one request is outstanding per link).
pub fn pause(core: ThreadId, microseconds: u64) {
    // SAFETY: the task's only thread reaches its UTCB here between
    // requests' handling, never across `serve`'s own use of it.
    let utcb = unsafe { &mut *current_utcb() };
    utcb.clear_receive_targets();
    let timeouts = Timeouts {
        send: Timeout::Zero,
        receive: Timeout::Relative {
            microseconds: u32::try_from(microseconds).unwrap_or(u32::MAX),
        },
    };
    // SAFETY: nothing is sent and no receive buffer is set.
    let _ = unsafe { ipc_with_items(utcb, ThreadId::NIL, FromSpecifier::Thread(core), timeouts) };
}

/// Writes every page of `buffer`, so the kernel finds it mapped.
fn touch(buffer: &mut [u8]) {
    for index in (0..buffer.len()).step_by(PAGE) {
        // SAFETY: `index` is inside `buffer`, which this function borrows
        // mutably; a volatile write keeps the compiler from dropping it.
        unsafe { core::ptr::write_volatile(buffer.as_mut_ptr().add(index), 0) };
    }
}

/// Makes `request` the only receive target: receive buffer 0.
///
/// # Safety
///
/// `request` must stay alive, unmoved, across every IPC until the next
/// `offer`, and every page of it must be mapped (written once), because
/// the kernel writes a received string there without asking the pager.
unsafe fn offer(utcb: &mut Utcb, request: &mut [u8]) {
    utcb.clear_receive_targets();
    // SAFETY: forwarded from this function's contract.
    unsafe {
        utcb.set_receive_buffer(
            0,
            ReceiveBuffer {
                address: request.as_mut_ptr() as u64,
                length: request.len() as u64,
            },
        )
    };
}

/// Puts the tag and, if there are any, the string items of a message: one
/// over `data`, or two (header, data) for an Rread (`task_link`).
fn set_message(utcb: &mut Utcb, label: u64, data: Option<&[u8]>) {
    let parts = match data {
        None => [&[][..], &[][..]],
        Some(bytes) => match rread_split(bytes) {
            Some(at) => [&bytes[..at], &bytes[at..]],
            None => [bytes, &[][..]],
        },
    };
    let count = if data.is_none() {
        0
    } else if parts[1].is_empty() {
        1
    } else {
        2
    };
    let Ok(tag) = MessageTag::new(label, 0, 2 * count) else {
        return;
    };
    utcb.message_registers[0] = tag.raw();
    for (index, part) in parts.iter().take(count).enumerate() {
        let item = TypedItem::String(StringItem {
            address: part.as_ptr() as u64,
            length: part.len() as u64,
        });
        utcb.message_registers[1 + 2 * index..3 + 2 * index].copy_from_slice(&item.encode());
    }
}

/// The error of a request that would have to wait for its answer.
const WOULD_WAIT: &str =
    "this request must wait, which a task server cannot (place the server in a VM)";

/// Serves `fs` on the link to `core` for good.
pub fn serve<F: FileServer>(core: ThreadId, fs: &mut F) -> ! {
    let size = MSIZE as usize;
    let mut request = vec![0u8; size];
    touch(&mut request);
    // The answer is built here; it never outgrows msize, so it is never
    // moved, and its pages are touched before the first answer is sent.
    let mut answer: Vec<u8> = vec![0u8; size];
    touch(&mut answer);
    answer.clear();
    let mut session: Session<F> = Session::new(MSIZE);
    // SAFETY: this is the task's only thread, and its UTCB is reached only
    // through this reference.
    let utcb = unsafe { &mut *current_utcb() };
    set_message(utcb, READY_LABEL, None);
    let mut to = core;
    let mut polls = 0u64;
    loop {
        // SAFETY: `request` lives for the rest of this function (which
        // never returns) and its pages are mapped (touched above).
        unsafe { offer(utcb, &mut request) };
        // Core waits for the ready message at boot. An answer waits for
        // core to receive: core may be busy with another link, and if it
        // gave up on this one it destroys the task instead.
        let timeouts = Timeouts {
            send: Timeout::Never,
            receive: Timeout::Never,
        };
        // SAFETY: the task's own UTCB; the only item sent is the string
        // over `answer` (or none), which lives across the call, and the
        // only receive target is `request`.
        let received = unsafe { ipc_with_items(utcb, to, FromSpecifier::Thread(core), timeouts) };
        to = ThreadId::NIL;
        let Ok(sender) = received else {
            continue;
        };
        let tag = MessageTag::from_raw(utcb.message_registers[0]);
        if sender == core && !tag.is_from_kernel() && tag.label() == INJECT_LABEL {
            if let Some(failure) = Failure::from_number(utcb.message_registers[1]) {
                perform(utcb, core, failure);
            }
            continue;
        }
        if sender != core || tag.is_from_kernel() || tag.label() != NINEP_LABEL {
            continue;
        }
        let length = match TypedItem::decode([utcb.message_registers[1], utcb.message_registers[2]])
        {
            Ok(TypedItem::String(item)) if tag.typed() == 2 && tag.untyped() == 0 => {
                (item.length as usize).min(request.len())
            }
            _ => 0,
        };
        answer.clear();
        let handled = session.handle(fs, &request[..length], &mut answer);
        // A request the server would answer later cannot wait on this
        // link, which answers each request before the next: it fails with
        // a clear error instead (a VM placement's link can wait).
        // The server's own machinery runs after every request (a network
        // stack moves what the request queued); the clock only orders its
        // timers, as a task has no cheap wall clock.
        polls += 1;
        for (id, completion) in fs.poll(polls) {
            session.complete(id, completion, &mut answer);
        }
        if handled.is_ok() && answer.is_empty() && session.pending_count() > 0 {
            session.fail_pending(fs, &Error::new(WOULD_WAIT), &mut answer);
        }
        let data = match handled {
            Ok(()) if !answer.is_empty() => Some(answer.as_slice()),
            // A frame that is not one, or a request that waits: this link
            // answers every request at once, so core hangs the link up.
            _ => None,
        };
        set_message(utcb, NINEP_LABEL, data);
        to = core;
    }
}

/// How long a server that could not hand core an answer (core was not
/// receiving) waits for a request before it tries again (µs).
const RESEND_PAUSE: u32 = 1_000;

/// Milliseconds since the kernel started, for a server's timers.
fn clock_ms() -> u64 {
    kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0) / 1000
}

/// Serves `fs` for good on a link that carries several requests at once
/// (`task_link`, [`READY_MULTIPLEXES`]): a request the server holds (a
/// read that waits for data, a `listen`) is answered when
/// [`FileServer::poll`] finishes it, while other requests come and go.
/// Between requests the server waits for core no longer than
/// [`FileServer::poll_delay_ms`] says, so its device and timers run.
///
/// Invariants, besides [`serve`]'s:
/// - answers go out oldest first, each with a zero send timeout: one core
///   is not receiving waits here, never in the kernel, so core's send to
///   this server and this server's to core never wait on each other;
/// - each answer is a buffer of its own, written whole before it is sent
///   (so its pages are mapped), kept until the kernel copied it.
pub fn serve_multiplexed<F: FileServer>(core: ThreadId, fs: &mut F) -> ! {
    let size = MSIZE as usize;
    let mut request = vec![0u8; size];
    touch(&mut request);
    let mut session: Session<F> = Session::new(MSIZE);
    // Answers not yet taken by core, oldest first, and emptied buffers.
    let mut outgoing: VecDeque<Vec<u8>> = VecDeque::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    // SAFETY: this is the task's only thread, and its UTCB is reached only
    // through this reference.
    let utcb = unsafe { &mut *current_utcb() };
    // The ready message says the link multiplexes; core waits for it.
    let Ok(tag) = MessageTag::new(READY_LABEL, 1, 0) else {
        fail("runtime-task: no ready tag\n");
    };
    utcb.message_registers[0] = tag.raw();
    utcb.message_registers[1] = READY_MULTIPLEXES;
    let ready = Timeouts {
        send: Timeout::Never,
        receive: Timeout::Zero,
    };
    // SAFETY: the task's own UTCB; untyped words only, nothing received.
    if unsafe { ipc_with_items(utcb, core, FromSpecifier::Nobody, ready) }.is_err() {
        fail("runtime-task: core did not take the ready message\n");
    }
    let mut backoff = false;
    loop {
        // The oldest answer goes out with this round's receive.
        let to = match outgoing.front() {
            Some(answer) if !backoff => {
                set_message(utcb, NINEP_LABEL, Some(answer));
                core
            }
            _ => ThreadId::NIL,
        };
        let receive = if outgoing.len() > usize::from(to == core) {
            // More to send: look for a request, but do not wait for one.
            if backoff {
                Timeout::Relative {
                    microseconds: RESEND_PAUSE,
                }
            } else {
                Timeout::Zero
            }
        } else {
            match fs.poll_delay_ms() {
                Some(ms) => Timeout::Relative {
                    microseconds: u32::try_from(ms.saturating_mul(1000).max(1)).unwrap_or(u32::MAX),
                },
                None => Timeout::Never,
            }
        };
        backoff = false;
        // SAFETY: `request` lives for the rest of this function (which
        // never returns) and its pages are mapped (touched above).
        unsafe { offer(utcb, &mut request) };
        let timeouts = Timeouts {
            send: Timeout::Zero,
            receive,
        };
        // SAFETY: the task's own UTCB; the items sent are over the front
        // answer, which stays in `outgoing` across the call; the only
        // receive target is `request`.
        let received = unsafe { ipc_with_items(utcb, to, FromSpecifier::Thread(core), timeouts) };
        let sent = to == core
            && !matches!(&received, Err(e) if e.phase == microkernel_abi::IpcPhase::Send);
        if sent {
            if let Some(mut done) = outgoing.pop_front() {
                done.clear();
                spare.push(done);
            }
        } else if to == core {
            // Core is busy: it takes the answer on a later round.
            backoff = true;
        }
        if let Ok(sender) = received {
            let tag = MessageTag::from_raw(utcb.message_registers[0]);
            let from_core = sender == core && !tag.is_from_kernel();
            match tag.label() {
                INJECT_LABEL if from_core => {
                    if let Some(failure) = Failure::from_number(utcb.message_registers[1]) {
                        perform(utcb, core, failure);
                    }
                }
                NINEP_LABEL if from_core => {
                    let length = match TypedItem::decode([
                        utcb.message_registers[1],
                        utcb.message_registers[2],
                    ]) {
                        Ok(TypedItem::String(item)) if tag.typed() == 2 && tag.untyped() == 0 => {
                            (item.length as usize).min(request.len())
                        }
                        _ => 0,
                    };
                    let mut answer = spare.pop().unwrap_or_default();
                    if session.handle(fs, &request[..length], &mut answer).is_err() {
                        // Core sends whole frames; one that is not is a
                        // broken link, which core sees end here.
                        fail("runtime-task: a request that is not a 9P frame\n");
                    }
                    if answer.is_empty() {
                        spare.push(answer);
                    } else {
                        outgoing.push_back(answer);
                    }
                }
                // Core's probe (`task_link::PROBE_LABEL`): taking it was
                // the point. Anything else is ignored.
                _ => {}
            }
        }
        // The server's own work: what the device brought, timers, and the
        // requests it finished.
        for (id, completion) in fs.poll(clock_ms()) {
            let mut answer = spare.pop().unwrap_or_default();
            session.complete(id, completion, &mut answer);
            if answer.is_empty() {
                spare.push(answer);
            } else {
                outgoing.push_back(answer);
            }
        }
    }
}

/// An address no task of core's has: neither program, heap, arguments,
/// image nor stack (task_link::layout).
const WILD_ADDRESS: u64 = 0x6000_0000;

/// Performs a failure core injected (`/proc/N/ctl`), for real. Returns
/// only after `garbage`, whose bytes core answers by cutting the link.
fn perform(utcb: &mut Utcb, core: ThreadId, failure: Failure) {
    write_bytes(b"runtime-task: performing ");
    write_bytes(failure.verb().as_bytes());
    write_bytes(b"\n");
    match failure {
        Failure::Crash => panic!("crash injected"),
        Failure::TripleFault => {
            // SAFETY: deliberately fatal: with the stack pointer on the
            // unmapped page 0, the invalid opcode cannot be handled in the
            // task; the kernel hands core the exception and the task ends.
            unsafe { core::arch::asm!("xor esp, esp", "ud2", options(noreturn)) }
        }
        Failure::WildWrite => {
            // SAFETY: deliberately fatal: WILD_ADDRESS is outside every
            // range core pages, so the write faults and core cannot serve
            // it; nothing of this task's is written.
            unsafe { core::ptr::write_volatile(WILD_ADDRESS as *mut u64, 0xdead) };
            fail("runtime-task: the wild write did not fault\n")
        }
        Failure::Hang => loop {
            core::hint::spin_loop();
        },
        Failure::Garbage => {
            let noise = b"\xde\xad\xbe\xef this is not 9P";
            set_message(utcb, NINEP_LABEL, Some(noise));
            let timeouts = Timeouts {
                send: Timeout::Relative {
                    microseconds: 1_000_000,
                },
                receive: Timeout::Zero,
            };
            // SAFETY: the task's own UTCB; the one item is over `noise`,
            // a static; nothing is received.
            let _ = unsafe { ipc_with_items(utcb, core, FromSpecifier::Nobody, timeouts) };
        }
    }
}

/// Reports on the kernel console and faults: the kernel sends the
/// exception to the pager (core), which sees the end of the link.
fn fail(text: &str) -> ! {
    write_bytes(text.as_bytes());
    fault()
}

fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail(&alloc::format!("runtime-task: panic: {info}\n"))
}
