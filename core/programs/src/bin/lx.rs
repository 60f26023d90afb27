//! lx prog [arg ...]: run a Linux program in the Linux cell (/dev/linux).
//!
//! Opens `/dev/linux/clone` (which makes a run and is its `ctl`), writes
//! `exec PROG ARGS…` (each word quoted, so blanks survive), feeds the
//! program lx's standard input unless that is the console, copies the
//! program's standard output to fd 1 as it comes, then its standard
//! error to fd 2, and exits with the run's status: empty when the Linux
//! program exited 0, else `exit N` or `signal N` (docs/linux-bridge.md).
//! The agent runs a path as given (no PATH search), so a PROG without a
//! `/` is `/bin/PROG`.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::sys;

/// `word` quoted for a ctl line: in single quotes, a quote doubled.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "''"))
}

fn run(argv: &[String]) -> Result<String, String> {
    let ctl = sys::open("/dev/linux/clone", core_abi::ORDWR)?;
    let mut name = [0u8; 16];
    let n = sys::read(ctl, &mut name)?;
    let dir = format!(
        "/dev/linux/{}",
        core::str::from_utf8(&name[..n]).map_err(|_| "bad run name")?
    );
    let program = if argv[0].contains('/') {
        argv[0].clone()
    } else {
        format!("/bin/{}", argv[0])
    };
    // argv[0] is the path (busybox goes by its last element).
    let mut line = format!("exec {}", quote(&program));
    for word in &argv[1..] {
        line.push(' ');
        line.push_str(&quote(word));
    }
    sys::write(ctl, line.as_bytes())?;
    // Standard input: all of it, then end of file, unless it is the
    // console (a program that never reads would wait on the keyboard).
    let console = sys::fstat(0)
        .map(|info| info.name == "cons")
        .unwrap_or(true);
    if !console {
        let data = sys::open(&format!("{dir}/data"), core_abi::OWRITE)?;
        let result = sys::copy(0, data);
        sys::close(data)?;
        result?;
    }
    sys::write(ctl, b"eof")?;
    let data = sys::open(&format!("{dir}/data"), core_abi::OREAD)?;
    sys::copy(data, 1)?;
    let stderr = sys::open(&format!("{dir}/stderr"), core_abi::OREAD)?;
    sys::copy(stderr, 2)?;
    let status =
        String::from_utf8(sys::read_file(&format!("{dir}/status"))?).map_err(|_| "bad status")?;
    let _ = sys::close(ctl);
    Ok(status)
}

fn main(argv: Vec<String>) -> Result<(), String> {
    if argv.len() < 2 {
        return Err(String::from("usage: lx prog [arg ...]"));
    }
    match run(&argv[1..]) {
        Ok(status) if status.is_empty() => Ok(()),
        Ok(status) => Err(status),
        Err(e) => {
            core_user::eprintln!("lx: {e}");
            Err(format!("lx: {e}"))
        }
    }
}
