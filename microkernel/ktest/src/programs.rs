//! The programs that the threads of the cases run.
//!
//! Each is an [`Entry`](crate::threads::Entry): it takes one word and never
//! returns (it parks when done, and the case's scope deletes it). Programs
//! that run in a task ktest created see ktest's image through the pager,
//! so they may read constants and the start table, but they keep their
//! state on their own stack or in their task's scratch memory; programs of
//! ktest's own threads report through the statics below.
//!
//! Protocols (labels are this crate's own):
//! - echo: any untyped message comes back with label + 1 and every word
//!   inverted;
//! - bench: any message comes back unchanged;
//! - memory agent: commands to read, write, accept and pass on the page at
//!   `WINDOW` (the `AGENT_*` labels), each answered with three words;
//! - string agent: three string rounds driven by the root (see
//!   `string_agent`);
//! - the rest report into statics.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use microkernel_abi::utcb::ReceiveBuffer;
use microkernel_abi::{
    Fpage, FromSpecifier, IpcError, MapItem, MessageTag, Rights, StringItem, TagFlags, ThreadId,
    Timeout, Timeouts, TypedItem, Utcb,
};
use microkernel_rt::user::{
    call, ipc_raw, ipc_with_items, receive, reply_and_wait, send, yield_now,
};
use microkernel_rt::utcb::ReceiveTargets;

use crate::layout::{SCRATCH_AREA, UNMAPPED, WINDOW};
use crate::threads::{current_thread, own_utcb, park, root_thread, PATIENCE, PATIENT};

/// Builds a tag whose counts are known to be valid.
pub const fn tag(label: u64, untyped: usize, typed: usize) -> MessageTag {
    match MessageTag::new(label, untyped, typed) {
        Ok(tag) => tag,
        Err(_) => panic!("invalid tag"),
    }
}

/// The status word of an IPC result: 0 for success.
pub fn status_of<T>(result: &Result<T, IpcError>) -> u64 {
    match result {
        Ok(_) => 0,
        Err(error) => error.status(),
    }
}

/// Waits for the next message from anyone; returns its sender.
fn wait_any(utcb: &mut Utcb) -> ThreadId {
    loop {
        match receive(utcb, FromSpecifier::Any, Timeout::Never) {
            Ok(sender) => return sender,
            Err(_) => yield_now(),
        }
    }
}

/// How the echo server changes a word.
pub const fn echo_word(word: u64) -> u64 {
    !word
}

/// Answers every untyped message with label + 1 and each word passed
/// through [`echo_word`].
pub fn echo_server(_: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    let mut client = wait_any(utcb);
    loop {
        let request = MessageTag::from_raw(utcb.message_registers[0]);
        let words = request.untyped();
        for word in &mut utcb.message_registers[1..=words] {
            *word = echo_word(*word);
        }
        utcb.message_registers[0] = tag((request.label() + 1) & 0xFFFF, words, 0).raw();
        client = match reply_and_wait(utcb, client, Timeout::Never) {
            Ok(next) => next,
            Err(_) => wait_any(utcb),
        };
    }
}

/// Answers every message with itself, as fast as the kernel allows.
pub fn bench_server(_: u64) -> ! {
    let utcb = microkernel_rt::user::current_utcb();
    let mut registers = [0u64; 7];
    let wait = Timeouts {
        send: Timeout::Zero,
        receive: Timeout::Never,
    };
    let mut client = ThreadId::NIL;
    loop {
        // SAFETY: the UTCB is this thread's and has no receive window or
        // buffers; the reply is the request's untyped words (MR7 and up are
        // still in the UTCB where the kernel put them), with no items.
        let (status, sender) =
            unsafe { ipc_raw(utcb, client, FromSpecifier::Any, wait, &mut registers) };
        client = if status == 0 { sender } else { ThreadId::NIL };
        // Untyped only: a request with items is answered with its words.
        registers[0] &= !((0x3F << 6) | TagFlags::all().bits());
    }
}

/// Takes one message from anyone, never answers, and parks.
pub fn sink(_: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    let _ = receive(utcb, FromSpecifier::Any, Timeout::Never);
    park()
}

/// Parks at once: a thread that is blocked, but not receiving from anyone
/// who will ever send.
pub fn parked(_: u64) -> ! {
    park()
}

/// Label of the senders' messages.
pub const SENDER_LABEL: u64 = 0x5E;

/// Results of the senders' send phases (`u64::MAX` until known).
pub static SEND_RESULTS: [AtomicU64; 2] = [const { AtomicU64::new(u64::MAX) }; 2];

/// Sends the root `SENDER_LABEL` with MR1 = its own id, MR2 = `index`.
pub fn sender(index: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    utcb.message_registers[0] = tag(SENDER_LABEL, 2, 0).raw();
    utcb.message_registers[1] = current_thread().raw();
    utcb.message_registers[2] = index;
    let result = send(utcb, root_thread(), PATIENCE);
    if let Some(slot) = SEND_RESULTS.get(index as usize) {
        slot.store(status_of(&result), Ordering::Release);
    }
    park()
}

/// Counters of the spinning threads.
pub static SPIN_COUNTERS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Counts forever, never entering the kernel.
pub fn spinner(index: u64) -> ! {
    let counter = &SPIN_COUNTERS[index as usize % SPIN_COUNTERS.len()];
    loop {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Entries of the order log.
pub const ORDER_LOG_LENGTH: usize = 8;

/// Values in the order their threads ran.
pub static ORDER_LOG: [AtomicU64; ORDER_LOG_LENGTH] =
    [const { AtomicU64::new(0) }; ORDER_LOG_LENGTH];

/// Entries used in [`ORDER_LOG`].
pub static ORDER_USED: AtomicUsize = AtomicUsize::new(0);

/// Appends `value` to the order log.
pub fn log_order(value: u64) {
    let index = ORDER_USED.fetch_add(1, Ordering::AcqRel);
    if let Some(entry) = ORDER_LOG.get(index) {
        entry.store(value, Ordering::Release);
    }
}

/// Logs `value` as soon as it runs, then parks.
pub fn order_logger(value: u64) -> ! {
    log_order(value);
    park()
}

/// Waits for a message from the root, logs `value`, then parks.
pub fn wakeup_logger(value: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    let _ = receive(utcb, FromSpecifier::Thread(root_thread()), Timeout::Never);
    log_order(value);
    park()
}

/// The thread the waiters wait on.
pub static WAITER_TARGET: AtomicU64 = AtomicU64::new(0);

/// How each waiter's IPC ended (`u64::MAX` while it waits).
pub static WAITER_RESULTS: [AtomicU64; 3] = [const { AtomicU64::new(u64::MAX) }; 3];

/// Waiter modes.
pub const WAIT_CALL: u64 = 0;
/// A closed receive from the target.
pub const WAIT_RECEIVE: u64 = 1;
/// A send to the target.
pub const WAIT_SEND: u64 = 2;

/// Blocks on [`WAITER_TARGET`] in the way `mode` says, with no timeout,
/// and records how that ended.
pub fn waiter(mode: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    let target = ThreadId::from_raw(WAITER_TARGET.load(Ordering::Acquire));
    utcb.message_registers[0] = tag(0x3A17, 0, 0).raw();
    let status = match mode {
        WAIT_CALL => status_of(&call(utcb, target, Timeouts::NEVER)),
        WAIT_RECEIVE => status_of(&receive(
            utcb,
            FromSpecifier::Thread(target),
            Timeout::Never,
        )),
        _ => status_of(&send(utcb, target, Timeout::Never)),
    };
    if let Some(slot) = WAITER_RESULTS.get(mode as usize) {
        slot.store(status, Ordering::Release);
    }
    park()
}

/// Label of the page-fault child's report.
pub const CHILD_DONE: u64 = 0xD0E;

/// What the page-fault child mixes into its report.
pub const CHILD_MAGIC: u64 = 0x6B74_6573_7421_0007;

/// Reports `argument ^ CHILD_MAGIC` and its own id to the thread named by
/// `argument` (its pager), with a forged KERNEL flag the kernel must clear.
pub fn pager_child(argument: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    utcb.message_registers[0] = tag(CHILD_DONE, 2, 0).raw() | TagFlags::KERNEL.bits();
    utcb.message_registers[1] = argument ^ CHILD_MAGIC;
    utcb.message_registers[2] = current_thread().raw();
    let _ = send(utcb, ThreadId::from_raw(argument), PATIENCE);
    park()
}

/// Memory agent: map the item in this message at `WINDOW`; answers the
/// received flexpage and the first word of the window.
pub const AGENT_MAP_IN: u64 = 0xA10;
/// Memory agent: answer the word at MR1 (inside `WINDOW`).
pub const AGENT_READ: u64 = 0xA11;
/// Memory agent: write MR2 to MR1 (inside `WINDOW`).
pub const AGENT_WRITE: u64 = 0xA12;
/// Memory agent: call thread MR1 with `AGENT_MAP_IN` and a map (MR2 = 0)
/// or grant (MR2 = 1) item of `WINDOW`; answers the call's status word and
/// the first two answer words.
pub const AGENT_PASS: u64 = 0xA13;
/// What an agent answers to a request it does not understand.
pub const AGENT_REFUSED: u64 = 0xBAD_BAD;

/// The window page with all rights.
pub fn window_fpage(rights: Rights) -> Fpage {
    match Fpage::new(WINDOW, 12, rights) {
        Ok(fpage) => fpage,
        Err(_) => panic!("WINDOW is page aligned"),
    }
}

fn in_window(address: u64) -> bool {
    (WINDOW..=WINDOW + 4096 - 8).contains(&address) && address % 8 == 0
}

/// Serves memory commands (the `AGENT_*` labels) from anyone, forever.
pub fn memory_agent(_: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    // SAFETY: `WINDOW` is reserved by the layout for received mappings:
    // no Rust object lives there, and this program reaches it only with
    // volatile accesses through raw pointers.
    unsafe { utcb.set_receive_window(window_fpage(Rights::FULL)) };
    let mut client = wait_any(utcb);
    loop {
        let request = MessageTag::from_raw(utcb.message_registers[0]);
        let answer = agent_answer(utcb, request);
        utcb.message_registers[0] = tag(request.label(), 3, 0).raw();
        utcb.message_registers[1..4].copy_from_slice(&answer);
        client = match reply_and_wait(utcb, client, Timeout::Never) {
            Ok(next) => next,
            Err(_) => wait_any(utcb),
        };
    }
}

fn agent_answer(utcb: &mut Utcb, request: MessageTag) -> [u64; 3] {
    let words = utcb.message_registers;
    match request.label() {
        AGENT_MAP_IN => {
            let first = 1 + request.untyped();
            if request.typed() != 2 {
                return [AGENT_REFUSED, request.raw(), 0];
            }
            match TypedItem::decode([words[first], words[first + 1]]) {
                Ok(TypedItem::Map(item)) => [item.fpage.raw(), read_window(WINDOW), 0],
                _ => [AGENT_REFUSED, words[first], words[first + 1]],
            }
        }
        AGENT_READ if in_window(words[1]) => [read_window(words[1]), 0, 0],
        AGENT_WRITE if in_window(words[1]) => {
            // SAFETY: inside `WINDOW` (checked), which holds no Rust object.
            unsafe { (words[1] as *mut u64).write_volatile(words[2]) };
            [0, 0, 0]
        }
        AGENT_PASS => {
            let destination = ThreadId::from_raw(words[1]);
            let item = TypedItem::Map(MapItem {
                send_base: WINDOW,
                fpage: window_fpage(Rights::READ | Rights::WRITE),
                grant: words[2] != 0,
            });
            utcb.message_registers[0] = tag(AGENT_MAP_IN, 0, 2).raw();
            utcb.message_registers[1..3].copy_from_slice(&item.encode());
            // SAFETY: the item passes on the page at `WINDOW`, which this
            // program uses only as memory shared on purpose; a grant takes
            // it away, which the program expects (it then faults on it).
            let result = unsafe {
                ipc_with_items(
                    utcb,
                    destination,
                    FromSpecifier::Thread(destination),
                    PATIENT,
                )
            };
            match result {
                Ok(_) => [0, utcb.message_registers[1], utcb.message_registers[2]],
                Err(error) => [error.status(), 0, 0],
            }
        }
        _ => [AGENT_REFUSED, request.raw(), 0],
    }
}

fn read_window(address: u64) -> u64 {
    if !in_window(address) {
        return AGENT_REFUSED;
    }
    // SAFETY: inside `WINDOW` (checked), which holds no Rust object; if no
    // page is mapped there the read faults to the pager, which is what the
    // memory cases test.
    unsafe { (address as *const u64).read_volatile() }
}

/// String agent: the root's request carries one string item.
pub const STRING_REQUEST: u64 = 0x57;
/// String agent's answer to round 1.
pub const STRING_ECHO: u64 = 0x58;
/// String agent's report of rounds 2 and 3.
pub const STRING_REPORT: u64 = 0x59;
/// What the string agent XORs into each byte it sends back.
pub const STRING_XOR: u8 = 0x5A;
/// Where the string agent receives (in its scratch memory).
pub const STRING_BUFFER: u64 = SCRATCH_AREA;
/// Bytes of that buffer.
pub const STRING_BUFFER_LENGTH: u64 = 512;
/// Bytes of the too-short buffer of round 3.
pub const STRING_SHORT_LENGTH: u64 = 16;
/// Where the string agent builds its answer.
const STRING_ANSWER: u64 = SCRATCH_AREA + 4096;

/// Three rounds with the root (`argument`):
/// 1. receives a string into a touched 512-byte buffer and answers
///    `STRING_ECHO` with MR1 = byte sum, MR2/MR3 = the received item's
///    address and length, and a string item of the bytes XOR `STRING_XOR`;
/// 2. offers a buffer at `UNMAPPED` and reports how its receive ended;
/// 3. offers a 16-byte buffer and reports how its receive ended;
/// 4. receives two strings into two buffers (`two_strings`).
///
/// Reports are `STRING_REPORT` with MR1 = status word, MR2 = error_detail.
pub fn string_agent(argument: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    let root = ThreadId::from_raw(argument);
    for page in [STRING_BUFFER, STRING_ANSWER] {
        // SAFETY: scratch memory of this task holds no Rust object; the
        // write makes the pager map the page before the kernel copies into
        // it (string copies do not fault to the pager, ABI §6.2).
        unsafe { (page as *mut u64).write_volatile(0) };
    }
    let buffer = ReceiveBuffer {
        address: STRING_BUFFER,
        length: STRING_BUFFER_LENGTH,
    };
    // SAFETY: the buffer is scratch memory that holds no Rust object; this
    // program reads it only with volatile accesses, after the receive.
    unsafe { utcb.set_receive_buffer(0, buffer) };
    match receive(utcb, FromSpecifier::Thread(root), Timeout::Never) {
        Ok(_) => echo_string(utcb, root),
        Err(error) => report(utcb, root, error.status()),
    }
    let unmapped = ReceiveBuffer {
        address: UNMAPPED,
        length: STRING_BUFFER_LENGTH,
    };
    // SAFETY: nothing is mapped at `UNMAPPED` (the layout keeps it so), so
    // the kernel cannot write anything there.
    unsafe { utcb.set_receive_buffer(0, unmapped) };
    let result = receive(utcb, FromSpecifier::Thread(root), Timeout::Never);
    report(utcb, root, status_of(&result));
    let short = ReceiveBuffer {
        address: STRING_BUFFER,
        length: STRING_SHORT_LENGTH,
    };
    // SAFETY: as for the first buffer.
    unsafe { utcb.set_receive_buffer(0, short) };
    let result = receive(utcb, FromSpecifier::Thread(root), Timeout::Never);
    report(utcb, root, status_of(&result));
    two_strings(utcb, root);
    utcb.clear_receive_targets();
    park()
}

/// Round 4: says it is ready and waits in the same IPC, with buffer 0 of
/// 16 bytes at `STRING_BUFFER` and buffer 1 of 512 after it, so that the
/// root's two string items take the fast path; answers `STRING_ECHO` with
/// MR1..MR4 = each received item's length and byte sum.
fn two_strings(utcb: &mut Utcb, root: ThreadId) {
    let second = STRING_BUFFER + STRING_SHORT_LENGTH;
    for (slot, (address, length)) in [(STRING_BUFFER, STRING_SHORT_LENGTH), (second, 512)]
        .into_iter()
        .enumerate()
    {
        // SAFETY: scratch memory of this task (mapped by the writes in
        // `string_agent`) holding no Rust object, read only after the IPC.
        unsafe { utcb.set_receive_buffer(slot, ReceiveBuffer { address, length }) };
    }
    utcb.message_registers[0] = tag(STRING_REPORT, 2, 0).raw();
    utcb.message_registers[1] = 0;
    utcb.message_registers[2] = 0;
    let wait = Timeouts {
        send: PATIENCE,
        receive: Timeout::Never,
    };
    // SAFETY: no items sent; the receive targets are the buffers above.
    let received = unsafe { ipc_with_items(utcb, root, FromSpecifier::Thread(root), wait) };
    if let Err(error) = received {
        return report(utcb, root, error.status());
    }
    let message = MessageTag::from_raw(utcb.message_registers[0]);
    let mut words = [0u64; 4];
    for (index, pair) in words.chunks_exact_mut(2).enumerate() {
        let at = 1 + message.untyped() + 2 * index;
        let item = TypedItem::decode([utcb.message_registers[at], utcb.message_registers[at + 1]]);
        let Ok(TypedItem::String(item)) = item else {
            return report(utcb, root, AGENT_REFUSED);
        };
        pair[0] = item.length;
        for offset in 0..item.length.min(512) {
            // SAFETY: inside the buffer the kernel reported, in this
            // task's scratch memory.
            pair[1] += u64::from(unsafe { ((item.address + offset) as *const u8).read_volatile() });
        }
    }
    utcb.message_registers[0] = tag(STRING_ECHO, 4, 0).raw();
    utcb.message_registers[1..5].copy_from_slice(&words);
    let _ = send(utcb, root, PATIENCE);
}

fn echo_string(utcb: &mut Utcb, root: ThreadId) {
    let request = MessageTag::from_raw(utcb.message_registers[0]);
    let first = 1 + request.untyped();
    let item = match TypedItem::decode([
        utcb.message_registers[first],
        utcb.message_registers[first + 1],
    ]) {
        Ok(TypedItem::String(item)) if request.typed() == 2 => item,
        _ => return report(utcb, root, AGENT_REFUSED),
    };
    let length = item.length.min(STRING_BUFFER_LENGTH);
    let mut sum = 0u64;
    for offset in 0..length {
        // SAFETY: both pages are this task's scratch memory, mapped by the
        // writes above, and hold no Rust object; offsets stay below 512.
        unsafe {
            let byte = ((STRING_BUFFER + offset) as *const u8).read_volatile();
            sum += u64::from(byte);
            ((STRING_ANSWER + offset) as *mut u8).write_volatile(byte ^ STRING_XOR);
        }
    }
    let answer = TypedItem::String(StringItem {
        address: STRING_ANSWER,
        length,
    });
    utcb.message_registers[0] = tag(STRING_ECHO, 3, 2).raw();
    utcb.message_registers[1] = sum;
    utcb.message_registers[2] = item.address;
    utcb.message_registers[3] = item.length;
    utcb.message_registers[4..6].copy_from_slice(&answer.encode());
    let timeouts = Timeouts {
        send: PATIENCE,
        receive: Timeout::Zero,
    };
    // SAFETY: a string item of this task's scratch memory, which the
    // kernel only reads; no map or grant items.
    let _ = unsafe { ipc_with_items(utcb, root, FromSpecifier::Nobody, timeouts) };
}

fn report(utcb: &mut Utcb, root: ThreadId, status: u64) {
    let detail = utcb.error_detail;
    utcb.message_registers[0] = tag(STRING_REPORT, 2, 0).raw();
    utcb.message_registers[1] = status;
    utcb.message_registers[2] = detail;
    let _ = send(utcb, root, PATIENCE);
}
