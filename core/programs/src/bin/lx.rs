//! lx prog [arg ...]: run a Linux program in the Linux cell (/dev/linux).
//!
//! Opens `/dev/linux/clone` (which makes a run and is its `ctl`), writes
//! `exec PROG ARGS…` (each word quoted, so blanks survive), feeds the
//! program lx's standard input, copies the program's standard output to
//! fd 1 as it comes, then its standard error to fd 2, and exits with the
//! run's status: empty when the Linux program exited 0, else `exit N` or
//! `signal N` (docs/linux-bridge.md). The agent runs a path as given (no
//! PATH search), so a PROG without a `/` is `/bin/PROG`.
//!
//! Standard input that is not the console (a pipe, a file) is copied
//! whole before the output, then end of file. The console is read as
//! the program runs: lx starts itself again as `lx -stdin DIR`, a
//! helper that copies each line typed to the run's `data` and says `eof`
//! on its `ctl` at ^D, while lx copies the output; when the program
//! ends, lx ends the helper if it still waits for a line, so what is
//! typed next goes to the shell.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::sys;

/// `word` quoted for a ctl line: in single quotes, a quote doubled.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "''"))
}

/// Where lx is, to start its helper.
const LX: &str = "/bin/lx";

/// The helper's flag: `lx -stdin DIR`.
const FEED: &str = "-stdin";

/// Standard input to run `dir`'s data until end of file.
fn send_input(dir: &str) -> Result<(), String> {
    let data = sys::open(&format!("{dir}/data"), core_abi::OWRITE)?;
    let result = sys::copy(0, data);
    sys::close(data)?;
    result?;
    Ok(())
}

/// The helper: standard input to run `dir`'s data until end of file,
/// then `eof` on its ctl.
fn feed(dir: &str) -> Result<(), String> {
    send_input(dir)?;
    let ctl = sys::open(&format!("{dir}/ctl"), core_abi::OWRITE)?;
    sys::write(ctl, b"eof")?;
    Ok(())
}

/// Ends the helper `pid` if it still runs, and takes its wait record.
fn end_helper(pid: u64) {
    if let Ok(ctl) = sys::open(&format!("/proc/{pid}/ctl"), core_abi::OWRITE) {
        let _ = sys::write(ctl, b"kill");
        let _ = sys::close(ctl);
    }
    let _ = sys::wait(pid);
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
    // Standard input: the console as it is typed, through the helper;
    // anything else all of it, then end of file; none, end of file.
    let stdin = sys::fstat(0).ok();
    let console = stdin.as_ref().is_some_and(|info| info.name == "cons");
    let helper = if console {
        let request = core_abi::SpawnRequest {
            path: String::from(LX),
            argv: vec![String::from("lx"), String::from(FEED), dir.clone()],
            fds: vec![(0, 0), (2, 2)],
            flags: 0,
        };
        Some(sys::spawn(&request)?)
    } else {
        if stdin.is_some() {
            send_input(&dir)?;
        }
        sys::write(ctl, b"eof")?;
        None
    };
    let output = (|| -> Result<String, String> {
        let data = sys::open(&format!("{dir}/data"), core_abi::OREAD)?;
        sys::copy(data, 1)?;
        let stderr = sys::open(&format!("{dir}/stderr"), core_abi::OREAD)?;
        sys::copy(stderr, 2)?;
        let status = sys::read_file(&format!("{dir}/status"))?;
        Ok(String::from_utf8(status).map_err(|_| "bad status")?)
    })();
    if let Some(pid) = helper {
        end_helper(pid);
    }
    let _ = sys::close(ctl);
    output
}

fn main(argv: Vec<String>) -> Result<(), String> {
    if argv.len() == 3 && argv[1] == FEED {
        return feed(&argv[2]).map_err(|e| format!("lx: {e}"));
    }
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
