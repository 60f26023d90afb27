//! garbage: a hostile client for tests; it sends core malformed calls.
//!
//! Each case is one raw IPC to core that the user library would never
//! send: an unknown call, missing or oversized arguments, an absurd
//! descriptor, a string item over unmapped memory, a spawn block of noise,
//! bad bind flags, a send that does not wait for its reply. Every case
//! prints `garbage: CASE: refused (...)` or `garbage: CASE: UNEXPECTED ...`;
//! then preads of `/tmp/k` (a file on a task server) that name a buffer
//! other than the one given to the kernel print `garbage: pread naming
//! CASE: ...`: the bytes must land in the process's own memory only. At
//! the end a normal call (getpid) must still work, and the program exits
//! with an error status if any case went wrong.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_abi::{Call, STATUS_OK};
use core_user::prelude::*;
use core_user::{println, sys};

/// How one raw call ended.
enum Answer {
    /// Core replied with this status word (never on the host).
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    Status(u64),
    /// The IPC itself failed (the kernel refused the message).
    Ipc(String),
}

/// One raw message to core: `label`, `words` untyped, `items` as
/// (address, length) string items; waits for the reply when `call`.
#[cfg(target_os = "none")]
fn raw(label: u64, words: &[u64], items: &[(u64, u64)], call: bool) -> Answer {
    use core_user::rt::core_thread;
    use microkernel_abi::{
        FromSpecifier, MessageTag, StringItem, Timeout, Timeouts, TypedItem, Utcb,
    };
    use microkernel_rt::user::{current_utcb, ipc_with_items};

    // SAFETY: this program is single-threaded and reaches its UTCB
    // only here, one message at a time.
    let utcb: &mut Utcb = unsafe { &mut *current_utcb() };
    utcb.clear_receive_targets();
    let Ok(tag) = MessageTag::new(label, words.len(), 2 * items.len()) else {
        return Answer::Ipc("tag refused by the ABI".into());
    };
    utcb.message_registers[0] = tag.raw();
    utcb.message_registers[1..=words.len()].copy_from_slice(words);
    for (index, &(address, length)) in items.iter().enumerate() {
        let at = 1 + words.len() + 2 * index;
        let encoded = TypedItem::String(StringItem { address, length }).encode();
        utcb.message_registers[at..at + 2].copy_from_slice(&encoded);
    }
    let core = core_thread();
    let (from, timeouts) = if call {
        (FromSpecifier::Thread(core), Timeouts::NEVER)
    } else {
        (
            FromSpecifier::Nobody,
            Timeouts {
                send: Timeout::Never,
                receive: Timeout::Zero,
            },
        )
    };
    // SAFETY: the UTCB is this thread's; the string items may name any
    // address on purpose: the kernel checks them against this task's
    // mappings and fails the IPC rather than touch anything else; no
    // receive buffer is set, so nothing is written here.
    let result = unsafe { ipc_with_items(utcb, core, from, timeouts) };
    match result {
        Err(e) => Answer::Ipc(format!("{e:?}")),
        Ok(_) if !call => Answer::Status(STATUS_OK),
        Ok(_) => Answer::Status(utcb.message_registers[1]),
    }
}

/// On the host there is no core to send to.
#[cfg(not(target_os = "none"))]
fn raw(_label: u64, _words: &[u64], _items: &[(u64, u64)], _call: bool) -> Answer {
    Answer::Ipc("no core on the host".into())
}

/// A pread that lies about its buffer: the words name `claimed` as the
/// buffer (the zero-copy read's fourth word) while the kernel's receive
/// buffer is `honest`; the count core answered, or why the call failed.
#[cfg(target_os = "none")]
fn lying_pread(fd: u64, count: u64, claimed: u64, honest: &mut [u8]) -> Result<u64, String> {
    use core_user::rt::core_thread;
    use microkernel_abi::utcb::ReceiveBuffer;
    use microkernel_abi::{FromSpecifier, MessageTag, Timeouts, Utcb};
    use microkernel_rt::user::{current_utcb, ipc_with_items};
    use microkernel_rt::utcb::ReceiveTargets;

    // SAFETY: as in `raw`: single-threaded, one message at a time.
    let utcb: &mut Utcb = unsafe { &mut *current_utcb() };
    utcb.clear_receive_targets();
    let buffer = ReceiveBuffer {
        address: honest.as_mut_ptr() as u64,
        length: honest.len() as u64,
    };
    // SAFETY: `honest` is borrowed exclusively for this function, and the
    // slot is cleared before it returns.
    unsafe { utcb.set_receive_buffer(0, buffer) };
    let tag = MessageTag::new(Call::Pread.label(), 4, 0).map_err(|e| format!("{e:?}"))?;
    utcb.message_registers[0] = tag.raw();
    utcb.message_registers[1..5].copy_from_slice(&[fd, count, 0, claimed]);
    let core = core_thread();
    // SAFETY: no items; the one receive target is `honest`, above.
    let result =
        unsafe { ipc_with_items(utcb, core, FromSpecifier::Thread(core), Timeouts::NEVER) };
    utcb.clear_receive_targets();
    result.map_err(|e| format!("{e:?}"))?;
    match utcb.message_registers[1] {
        STATUS_OK => Ok(utcb.message_registers[2]),
        _ => Err(sys::errstr()),
    }
}

#[cfg(not(target_os = "none"))]
fn lying_pread(_fd: u64, _count: u64, _claimed: u64, _honest: &mut [u8]) -> Result<u64, String> {
    Err("no core on the host".into())
}

/// Reads of `path` ("kept\n", written by the faults script) that name a
/// buffer other than the one given to the kernel: core must put the
/// bytes into the process's own memory only, wherever the claim points.
/// Returns how many cases went wrong.
fn lying_reads(path: &str) -> u32 {
    let expected = b"kept\n";
    let fd = match sys::open(path, core_abi::OREAD) {
        Ok(fd) => u64::from(fd),
        Err(e) => {
            println!("garbage: lying reads: {path}: UNEXPECTED {e}");
            return 1;
        }
    };
    let count = expected.len() as u64;
    let mut failed = 0;
    let mut report = |case: &str, ok: bool, what: String| {
        let verdict = if ok { "" } else { "UNEXPECTED " };
        println!("garbage: pread naming {case}: {verdict}{what}");
        failed += u32::from(!ok);
    };
    // Nothing of this process's is there: the bytes go to the kernel's
    // receive buffer, as without the claim.
    let mut honest = [0u8; 8];
    let answer = lying_pread(fd, count, 0x0000_7f00_dead_0000, &mut honest);
    let ok = answer == Ok(count) && honest.starts_with(expected);
    report(
        "an unmapped buffer",
        ok,
        format!("{answer:?}, into its real buffer"),
    );
    // Its own code, which it may not write: the same, and the code stays.
    let code = main as *const u8;
    // SAFETY: the first bytes of this program's own `main`, mapped
    // read-only and executable; read, never written.
    let before = unsafe { core::ptr::read_volatile(code.cast::<[u8; 8]>()) };
    let mut honest = [0u8; 8];
    let answer = lying_pread(fd, count, code as u64, &mut honest);
    // SAFETY: as above.
    let after = unsafe { core::ptr::read_volatile(code.cast::<[u8; 8]>()) };
    let ok = answer == Ok(count) && honest.starts_with(expected) && before == after;
    report(
        "its own code",
        ok,
        format!("{answer:?}, into its real buffer, code unchanged"),
    );
    // More than the real buffer (2 bytes) holds, over its own heap: the
    // bytes land in its own memory past the buffer.
    let mut block = [0u8; 64];
    let claimed = block.as_ptr() as u64;
    let answer = lying_pread(fd, count, claimed, &mut block[..2]);
    let ok = answer == Ok(count) && block.starts_with(expected);
    report(
        "more than its buffer",
        ok,
        format!("{answer:?}, into its own memory past it"),
    );
    // Another buffer of its own: the bytes go there, the real one is
    // untouched.
    let mut other = vec![0u8; 16];
    let mut honest = [0u8; 8];
    let answer = lying_pread(fd, count, other.as_mut_ptr() as u64, &mut honest);
    let ok = answer == Ok(count) && other.starts_with(expected) && honest == [0; 8];
    report(
        "another buffer of its own",
        ok,
        format!("{answer:?}, into that one"),
    );
    let _ = sys::close(fd as sys::Fd);
    failed
}

/// A malformed call: its name, label, untyped words and string items
/// (address, length).
type Case<'a> = (&'a str, u64, &'a [u64], &'a [(u64, u64)]);

fn check(case: &str, answer: Answer, refused: &mut u32, failed: &mut u32) {
    match answer {
        Answer::Status(status) if status != STATUS_OK => {
            let why = sys::errstr();
            println!("garbage: {case}: refused ({why})");
            *refused += 1;
        }
        Answer::Ipc(e) => {
            println!("garbage: {case}: refused by the kernel ({e})");
            *refused += 1;
        }
        Answer::Status(_) => {
            println!("garbage: {case}: UNEXPECTED success");
            *failed += 1;
        }
    }
}

fn main(_argv: Vec<String>) -> Result<(), String> {
    let (mut refused, mut failed) = (0, 0);
    let noise: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
    let huge = vec![b'a'; 64 * 1024];
    // Touch the pages so the kernel can copy them (ABI §6.2).
    let touched: u64 = huge.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    core::hint::black_box(touched);
    let dev_n = [(b"/dev".as_ptr() as u64, 4), (b"/n".as_ptr() as u64, 2)];
    let cases: [Case; 8] = [
        ("unknown call", Call::Getpid.label() + 1000, &[1, 2, 3], &[]),
        ("open without a path", Call::Open.label(), &[0], &[]),
        (
            "read of fd 1000000, 2^40 bytes",
            Call::Read.label(),
            &[1_000_000, 1 << 40],
            &[],
        ),
        (
            "write from unmapped memory",
            Call::Write.label(),
            &[1],
            &[(0x0000_7f00_dead_0000, 4096)],
        ),
        (
            "spawn block of noise",
            Call::Spawn.label(),
            &[],
            &[(noise.as_ptr() as u64, noise.len() as u64)],
        ),
        ("bind with flags 0xff", Call::Bind.label(), &[0xff], &dev_n),
        (
            "stat of a 64 KiB path",
            Call::Stat.label(),
            &[],
            &[(huge.as_ptr() as u64, huge.len() as u64)],
        ),
        (
            "chdir with 40 untyped words",
            Call::Chdir.label(),
            &[7; 40],
            &[],
        ),
    ];
    // Each answer is checked before the next call: errstr is the
    // last error of the process.
    for (case, label, words, items) in cases {
        let answer = raw(label, words, items, true);
        check(case, answer, &mut refused, &mut failed);
    }
    // A send that does not wait: core's reply finds nobody waiting.
    if let Answer::Ipc(e) = raw(Call::Getpid.label(), &[], &[], false) {
        println!("garbage: send without receive: the kernel refused ({e})");
    } else {
        println!("garbage: send without receive: sent, not waiting for the reply");
    }
    failed += lying_reads("/tmp/k");
    let pid = sys::getpid().map_err(|e| format!("getpid after the garbage: {e}"))?;
    println!("garbage: {refused} refused, {failed} unexpected; getpid still answers {pid}");
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} malformed calls were not refused").to_string())
    }
}
