//! The IPC benchmarks: round trips between two address spaces, in cycles.
//!
//! A bench server (module `programs`) in another task answers every message
//! with itself. ktest calls it with a short message (the tag alone) and
//! with eight untyped words (MR1..MR6 in registers, MR7 and MR8 in the
//! UTCB), `ROUNDS` times each after a warm-up, timing each `call` with
//! `rdtsc` (allowed in ring 3 unless the kernel sets CR4.TSD). It prints
//! the median as `bench NAME VALUE cycles`.

use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{compiler_fence, Ordering};

use microkernel_abi::{FromSpecifier, ThreadId, Timeouts, Utcb};
use microkernel_rt::user::ipc_raw;

use crate::cases::Context;
use crate::console::Failure;
use crate::programs::{bench_server, tag};
use crate::threads::{Scope, PATIENT};

/// Timed round trips per benchmark.
const ROUNDS: usize = 1000;

/// Untimed round trips first (page faults, caches).
const WARM_UP: usize = 50;

fn timestamp() -> u64 {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: `rdtsc` reads the time-stamp counter and has no other
    // effect; it faults only if the kernel forbids it in ring 3.
    let value = unsafe { _rdtsc() };
    compiler_fence(Ordering::SeqCst);
    value
}

/// One call; returns the status word.
fn round_trip(utcb: *mut Utcb, server: ThreadId, words: usize, timeouts: Timeouts) -> u64 {
    let mut registers = [0u64; 7];
    registers[0] = tag(0xBE, words, 0).raw();
    for (index, register) in registers.iter_mut().enumerate().skip(1) {
        *register = index as u64;
    }
    // SAFETY: `utcb` is the root thread's own UTCB, whose receive window
    // and buffers the suite cleared; the message and the answer are
    // untyped, so the kernel writes only message registers.
    let (status, _) = unsafe {
        ipc_raw(
            utcb,
            server,
            FromSpecifier::Thread(server),
            timeouts,
            &mut registers,
        )
    };
    status
}

fn median_cycles(
    utcb: *mut Utcb,
    server: ThreadId,
    words: usize,
    samples: &mut [u64; ROUNDS],
) -> Result<u64, Failure> {
    for round in 0..WARM_UP {
        let status = round_trip(utcb, server, words, PATIENT);
        ensure!(
            status == 0,
            "warm-up call {round} failed with status {status:#x}"
        );
    }
    for sample in samples.iter_mut() {
        let start = timestamp();
        let status = round_trip(utcb, server, words, Timeouts::NEVER);
        let end = timestamp();
        ensure!(status == 0, "call failed with status {status:#x}");
        *sample = end.wrapping_sub(start);
    }
    samples.sort_unstable();
    Ok(samples[ROUNDS / 2])
}

/// The cost of entering and leaving the kernel: the median of a system
/// call that does nothing but read a constant (`kernel_info(ApiVersion)`).
/// It is the floor under every IPC figure (Linux's `getppid()` is 346 on
/// the same Bochs clock, PLATFORM.md).
fn null_syscall_cycles(samples: &mut [u64; ROUNDS]) -> u64 {
    for sample in samples.iter_mut() {
        let start = timestamp();
        let _ = microkernel_rt::user::kernel_info(microkernel_abi::KernelInfoSelector::ApiVersion);
        *sample = timestamp().wrapping_sub(start);
    }
    samples.sort_unstable();
    samples[ROUNDS / 2]
}

/// Runs the benchmarks and prints their lines.
pub fn run(context: &mut Context) {
    context.utcb.clear_receive_targets();
    let utcb: *mut Utcb = &mut *context.utcb;
    let mut scope = Scope::new();
    let server = scope.task().and_then(|task| {
        scope.remote(
            task,
            bench_server,
            0,
            microkernel_abi::syscall::DEFAULT_PRIORITY,
        )
    });
    let server = match server {
        Ok(server) => server,
        Err(failure) => {
            say!("ktest: note: no bench server: {failure}");
            return;
        }
    };
    let mut samples = [0u64; ROUNDS];
    say!(
        "bench null_syscall_cycles {} cycles",
        null_syscall_cycles(&mut samples)
    );
    for (name, words) in [("ipc_roundtrip_cycles", 0), ("ipc_roundtrip_8w_cycles", 8)] {
        match median_cycles(utcb, server, words, &mut samples) {
            Ok(median) => say!("bench {name} {median} cycles"),
            Err(failure) => say!("ktest: note: bench {name} not measured: {failure}"),
        }
    }
}
