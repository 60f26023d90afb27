//! bench [-n rounds] [-s size] [-g name] [-l name] [-w name path] [-r name] name path ...: time reads through core.
//!
//! For each `name path` pair it opens the file, reads it a few times untimed
//! (faults, first-touch costs in the servers), then times `rounds`
//! (default 64) reads of `size` bytes (default 4096) from offset 0 with
//! `rdtsc`, and prints `bench NAME MEDIAN cycles` and a comment line with
//! the minimum and maximum. A read is one `pread`, or, above
//! `core_abi::MAX_IO`, consecutive `pread`s of at most that many bytes, as
//! an application reading a larger block does. Every read must return
//! exactly `size` bytes, or the program stops with an error. Options apply
//! to what follows them:
//!
//! - `-s size` sets the read size of the entries after it (0 times the
//!   path of a read without its data);
//! - `-n rounds` sets the number of timed reads;
//! - `-g name` times a null core call (`getpid`) under `name`, the floor
//!   under every read;
//! - `-w name path` times `rounds` `pwrite`s of `size` bytes at offset 0
//!   of `path` (which must exist) instead: a write that a durable server
//!   acknowledges only once it is on its disk (docs/storage.md);
//! - `-l name` times a Linux `getpid` delegated to the Linux cell
//!   (`core_user::linux`: core, the link, the agent's proxy, and back);
//! - `-r name` prints `bench NAME X.YY x`, the first path's median over the
//!   second's, after all entries.
//!
//! Under Bochs `rdtsc` advances with executed instructions, so the medians
//! are repeatable (docs/performance.md, "Core file reads").
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{compiler_fence, Ordering};
use core_user::prelude::*;
use core_user::{eprintln, println, sys};

/// Untimed reads before the timed ones.
const WARM_UP: usize = 8;

fn timestamp() -> u64 {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: `rdtsc` reads the time-stamp counter and has no other
    // effect; the microkernel leaves CR4.TSD clear, so ring 3 may.
    let value = unsafe { _rdtsc() };
    compiler_fence(Ordering::SeqCst);
    value
}

/// Median, minimum and maximum of the samples (sorted in place).
fn summary(samples: &mut [u64]) -> (u64, u64, u64) {
    samples.sort_unstable();
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

/// Fills `buffer` from offset 0 of `fd`: one `pread` per `MAX_IO` bytes
/// (one in all for a 0-byte read); returns the bytes read.
fn read_block(fd: sys::Fd, buffer: &mut [u8]) -> sys::Result<usize> {
    let mut done = 0;
    loop {
        let end = buffer.len().min(done + core_abi::MAX_IO);
        let n = sys::pread(fd, &mut buffer[done..end], done as u64)?;
        done += n;
        if n == 0 || done == buffer.len() {
            return Ok(done);
        }
    }
}

/// Reads `buffer.len()` bytes from offset 0 of `fd`, `WARM_UP` times
/// untimed, then once per sample.
fn time_preads(fd: sys::Fd, buffer: &mut [u8], samples: &mut [u64]) -> Result<(), String> {
    let size = buffer.len();
    let check = |n: sys::Result<usize>| match n {
        Ok(n) if n == size => Ok(()),
        Ok(n) => Err(format!("a read returned {n} bytes, not {size}")),
        Err(e) => Err(e),
    };
    for _ in 0..WARM_UP {
        check(read_block(fd, buffer))?;
    }
    for sample in samples.iter_mut() {
        let start = timestamp();
        let n = read_block(fd, buffer);
        let end = timestamp();
        check(n)?;
        *sample = end.wrapping_sub(start);
    }
    Ok(())
}

/// Times `rounds` preads of `size` bytes at offset 0 of `path`.
fn reads(name: &str, path: &str, size: usize, rounds: usize) -> Result<u64, String> {
    let fd = sys::open(path, core_abi::OREAD).map_err(|e| format!("{name}: {path}: {e}"))?;
    let mut buffer = vec![0u8; size];
    let mut samples = vec![0u64; rounds];
    let result = time_preads(fd, &mut buffer, &mut samples);
    let _ = sys::close(fd);
    result.map_err(|e| format!("{name}: {path}: {e}"))?;
    let (median, min, max) = summary(&mut samples);
    println!("bench {name} {median} cycles");
    println!("# {name}: min {min} max {max} over {rounds} reads of {size} bytes of {path}");
    Ok(median)
}

/// Times `rounds` pwrites of `size` bytes at offset 0 of `path`.
fn writes(name: &str, path: &str, size: usize, rounds: usize) -> Result<u64, String> {
    let fd = sys::open(path, core_abi::OWRITE).map_err(|e| format!("{name}: {path}: {e}"))?;
    let buffer = vec![0x5Au8; size];
    let mut samples = vec![0u64; rounds];
    let mut result = Ok(());
    for sample in samples.iter_mut() {
        let start = timestamp();
        let n = sys::pwrite(fd, &buffer, 0);
        let end = timestamp();
        match n {
            Ok(n) if n == size => {}
            Ok(n) => result = Err(format!("a write took {n} bytes, not {size}")),
            Err(e) => result = Err(e),
        }
        if result.is_err() {
            break;
        }
        *sample = end.wrapping_sub(start);
    }
    let _ = sys::close(fd);
    result.map_err(|e| format!("{name}: {path}: {e}"))?;
    let (median, min, max) = summary(&mut samples);
    println!("bench {name} {median} cycles");
    println!("# {name}: min {min} max {max} over {rounds} pwrites of {size} bytes to {path}");
    Ok(median)
}

/// Times `rounds` null calls to core (getpid).
fn null_calls(name: &str, rounds: usize) -> Result<u64, String> {
    for _ in 0..WARM_UP {
        sys::getpid().map_err(|e| format!("{name}: getpid: {e}"))?;
    }
    let mut samples = vec![0u64; rounds];
    for sample in samples.iter_mut() {
        let start = timestamp();
        let pid = sys::getpid();
        let end = timestamp();
        pid.map_err(|e| format!("{name}: getpid: {e}"))?;
        *sample = end.wrapping_sub(start);
    }
    let (median, min, max) = summary(&mut samples);
    println!("bench {name} {median} cycles");
    println!("# {name}: min {min} max {max} over {rounds} getpid calls");
    Ok(median)
}

/// VM exits so far of every cell in `/dev/vm`, by kind ("microkernel",
/// "linux", ...), from the status lines; empty without hvm.
fn exit_counts() -> Vec<(String, u64)> {
    let Ok(cells) = sys::read_dir("/dev/vm") else {
        return Vec::new();
    };
    let mut counts = Vec::new();
    for cell in cells {
        let path = format!("/dev/vm/{}/status", cell.name);
        let Ok(bytes) = sys::read_file(&path) else {
            continue;
        };
        let line = String::from_utf8_lossy(&bytes);
        let words: Vec<&str> = line.split_whitespace().collect();
        let exits = words
            .iter()
            .position(|&w| w == "exits")
            .and_then(|i| words.get(i + 1))
            .and_then(|n| n.parse().ok());
        if let (Some(kind), Some(exits)) = (words.get(1), exits) {
            counts.push(((*kind).into(), exits));
        }
    }
    counts
}

/// Prints `bench NAME_KIND_exits X exits`: each kind of cell's VM exits
/// per call between two `exit_counts`.
fn exits_per_call(name: &str, before: &[(String, u64)], after: &[(String, u64)], calls: usize) {
    for ((kind, first), (_, last)) in before.iter().zip(after) {
        let hundredths = last.saturating_sub(*first) * 100 / calls.max(1) as u64;
        println!(
            "bench {name}_{kind}_exits {}.{:02} exits",
            hundredths / 100,
            hundredths % 100
        );
    }
}

/// Times `rounds` Linux getpid calls delegated to the Linux cell.
fn linux_calls(name: &str, rounds: usize) -> Result<u64, String> {
    use core_user::linux::linux;
    const GETPID: u32 = 39;
    for _ in 0..WARM_UP {
        linux(GETPID, &mut []).map_err(|e| format!("{name}: linux getpid: {e}"))?;
    }
    let mut samples = vec![0u64; rounds];
    let before = exit_counts();
    for sample in samples.iter_mut() {
        let start = timestamp();
        let pid = linux(GETPID, &mut []);
        let end = timestamp();
        pid.map_err(|e| format!("{name}: linux getpid: {e}"))?;
        *sample = end.wrapping_sub(start);
    }
    let after = exit_counts();
    let (median, min, max) = summary(&mut samples);
    println!("bench {name} {median} cycles");
    exits_per_call(name.trim_end_matches("_cycles"), &before, &after, rounds);
    println!("# {name}: min {min} max {max} over {rounds} delegated linux getpid calls");
    Ok(median)
}

fn number(option: &str, value: Option<&String>, least: usize) -> Result<usize, String> {
    value
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= least)
        .ok_or_else(|| format!("bench: {option} wants a number of at least {least}"))
}

fn run(argv: &[String]) -> Result<(), String> {
    let mut size = 4096;
    let mut rounds = 64;
    let mut ratio = None;
    let mut medians = Vec::new();
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-s" => size = number("-s", args.next(), 0)?,
            "-n" => rounds = number("-n", args.next(), 1)?,
            "-r" => ratio = Some(args.next().ok_or("bench: -r wants a name")?.clone()),
            "-w" => {
                let name = args.next().ok_or("bench: -w wants a name")?;
                let path = args
                    .next()
                    .ok_or_else(|| format!("bench: {name} wants a path"))?;
                writes(name, path, size, rounds)?;
            }
            "-g" => {
                let name = args.next().ok_or("bench: -g wants a name")?;
                null_calls(name, rounds)?;
            }
            "-l" => {
                let name = args.next().ok_or("bench: -l wants a name")?;
                linux_calls(name, rounds)?;
            }
            name => {
                let path = args
                    .next()
                    .ok_or_else(|| format!("bench: {name} wants a path"))?;
                medians.push(reads(name, path, size, rounds)?);
            }
        }
    }
    if let Some(name) = ratio {
        let [first, second, ..] = medians[..] else {
            return Err("bench: -r wants two entries".into());
        };
        // Two decimals in integers: no floating point in the program.
        let hundredths = first * 100 / second.max(1);
        println!(
            "bench {name} {}.{:02} x",
            hundredths / 100,
            hundredths % 100
        );
    }
    Ok(())
}

fn main(argv: Vec<String>) -> Result<(), String> {
    if argv.len() < 2 {
        return Err(
            "usage: bench [-n rounds] [-s size] [-g name] [-l name] [-w name path] [-r name] name path ..."
                .into(),
        );
    }
    run(&argv[1..]).inspect_err(|e| eprintln!("bench: FAIL {e}"))
}
