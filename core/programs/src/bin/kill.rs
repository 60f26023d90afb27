//! kill pid|name ...: end processes by writing kill to /proc/N/ctl.
//!
//! Plan 9's kill prints commands for rc; Kasane has no notes yet, so
//! this one does what `echo kill >/proc/N/ctl` does, for each process
//! named by number or by program name (never itself).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{eprintln, sys};

/// The pids of processes whose status names `name`.
fn named(name: &str, me: u32) -> Result<Vec<u32>, String> {
    let mut found = Vec::new();
    for entry in sys::read_dir("/proc")? {
        let Ok(pid) = entry.name.parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(status) = sys::read_file(&format!("/proc/{pid}/status")) else {
            continue;
        };
        if String::from_utf8_lossy(&status).get(..27).map(str::trim) == Some(name) {
            found.push(pid);
        }
    }
    Ok(found)
}

fn kill(pid: u32) -> Result<(), String> {
    let fd = sys::open(&format!("/proc/{pid}/ctl"), core_abi::OWRITE)?;
    let result = sys::write(fd, b"kill").map(|_| ());
    let _ = sys::close(fd);
    result
}

fn main(argv: Vec<String>) -> Result<(), String> {
    if argv.len() < 2 {
        return Err("usage: kill pid|name ...".into());
    }
    let me = sys::getpid()? as u32;
    let mut status = Ok(());
    for word in &argv[1..] {
        let pids = match word.parse::<u32>() {
            Ok(pid) => Ok(vec![pid]),
            Err(_) => named(word, me).and_then(|pids| {
                if pids.is_empty() {
                    Err("no such process".into())
                } else {
                    Ok(pids)
                }
            }),
        };
        let result = pids.and_then(|pids| pids.into_iter().try_for_each(kill));
        if let Err(e) = result {
            eprintln!("kill: {word}: {e}");
            status = Err(format!("kill: {word}: {e}"));
        }
    }
    status
}
