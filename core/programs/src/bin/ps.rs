//! ps: list the processes from /proc/N/status (ps(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{println, sys};

fn main(_argv: Vec<String>) -> Result<(), String> {
    let mut pids: Vec<u32> = sys::read_dir("/proc")?
        .iter()
        .filter_map(|entry| entry.name.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        // A process may end between the listing and the read.
        let Ok(status) = sys::read_file(&format!("/proc/{pid}/status")) else {
            continue;
        };
        let status = String::from_utf8_lossy(&status);
        // proc(3): name, user and state in 27, 27 and 11 columns, then
        // six times, the memory size in KiB, and two priorities.
        let field = |from: usize, to: usize| status.get(from..to).unwrap_or("").trim();
        let (name, user, state) = (field(0, 27), field(28, 55), field(56, 67));
        let memory = status
            .get(68..)
            .and_then(|numbers| numbers.split_whitespace().nth(6))
            .unwrap_or("0");
        println!("{user:<10} {pid:>8} {memory:>7}K {state:<8} {name}");
    }
    Ok(())
}
