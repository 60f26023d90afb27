//! dial [-n] [-b bytes] addr: connect to a network address (dial(2)'s dial
//! string, e.g. `tcp!127.0.0.1!7777`), send standard input, then copy what
//! comes back to standard output until the connection ends. `-n` sends
//! nothing.
//!
//! `-b bytes` sends `bytes` bytes of a known pattern (byte `i` is
//! `i mod 251`, so a receiver can check order and count) in place of
//! standard input, in writes of `MAX_IO`, times them with `rdtsc` and
//! prints `dial: sent N bytes in C cycles` once the last write returns:
//! the figure `tcp_send_1m_cycles` (docs/net.md). Under Bochs `rdtsc`
//! advances with executed instructions (docs/performance.md), so the
//! figure counts the code path of every VM on the way, not wall time.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{compiler_fence, Ordering};
use core_user::prelude::*;
use core_user::{args, fail, net, println, sys, usage};

const USAGE: &str = "dial [-n] [-b bytes] tcp!host!port";

/// The pattern's period: a prime, so it does not line up with any write
/// or segment size.
const PERIOD: usize = 251;

fn timestamp() -> u64 {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: `rdtsc` reads the time-stamp counter and has no other
    // effect; the microkernel leaves CR4.TSD clear, so ring 3 may.
    let value = unsafe { _rdtsc() };
    compiler_fence(Ordering::SeqCst);
    value
}

/// Sends `total` bytes of the pattern on `data`; returns the cycles taken.
fn send_pattern(data: u32, total: usize) -> Result<u64, String> {
    // MAX_IO is a multiple of nothing in PERIOD, so each write takes its
    // piece of a buffer one period longer and starts at its own phase.
    let buffer: Vec<u8> = (0..core_abi::MAX_IO + PERIOD)
        .map(|i| (i % PERIOD) as u8)
        .collect();
    let start = timestamp();
    let mut sent = 0;
    while sent < total {
        let phase = sent % PERIOD;
        let n = (total - sent).min(core_abi::MAX_IO);
        sent += sys::write(data, &buffer[phase..phase + n])?;
    }
    Ok(timestamp() - start)
}

fn main(argv: Vec<String>) -> Result<(), String> {
    let Ok((flags, rest)) = args::parse(&argv[1..], "nb:") else {
        return Err(usage(USAGE));
    };
    let [address] = rest else {
        return Err(usage(USAGE));
    };
    let pattern = match flags.value('b') {
        Some(bytes) => Some(bytes.parse::<usize>().map_err(|_| usage(USAGE))?),
        None => None,
    };
    let conn = net::dial(address).map_err(|e| fail(format!("dial: {address}: {e}")))?;
    let data = conn.data.ok_or("dial: no data file")?;
    let result = (|| {
        if let Some(total) = pattern {
            let cycles = send_pattern(data, total)?;
            println!("dial: sent {total} bytes in {cycles} cycles");
            return Ok(());
        }
        if !flags.has('n') {
            sys::copy(0, data)?;
        }
        sys::copy(data, 1)
    })();
    conn.close();
    result.map_err(|e| fail(format!("dial: {address}: {e}")))
}
