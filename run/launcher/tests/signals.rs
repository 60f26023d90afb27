//! `run/up` ends its emulator on SIGTERM, SIGINT and SIGHUP, and exits 128+n.
//!
//! The launcher boots (`--iso`, nothing built) a stand-in emulator found
//! first on PATH: a shell script that starts a child of its own and waits.
//! Once both run, the launcher is signalled; it must exit with 128 + the
//! signal's number, and the stand-in and its child must both be gone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The stand-in: notes its pid and its child's, prints a console line (QEMU
/// prints the guest's console on stdout), then waits for its child. Bochs's
/// stand-in never opens the console port, so the launcher is still waiting
/// to connect when the signal comes.
const STAND_IN: &str = r#"#!/bin/sh
d="$KASANE_STAND_IN"
sleep 300 &
echo $! > "$d/child.tmp" && mv "$d/child.tmp" "$d/child.pid"
echo $$ > "$d/emulator.tmp" && mv "$d/emulator.tmp" "$d/emulator.pid"
echo "stand-in: booting"
wait
"#;

/// A directory of its own for one case, with the stand-in installed under
/// the emulator's program name.
fn stand_in(case: &str, program: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kasane-run-{case}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("bin")).expect("temp dir");
    let script = dir.join("bin").join(program);
    fs::write(&script, STAND_IN).expect("stand-in");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .expect("chmod");
    assert!(status.success());
    dir
}

fn launch(dir: &Path, emulator: &str) -> Child {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.join("bin")];
    paths.extend(std::env::split_paths(&path));
    Command::new(env!("CARGO_BIN_EXE_kasane-run"))
        .args(["up", "--emulator", emulator, "--timeout", "120", "--iso"])
        .arg(dir.join("stand-in.iso"))
        .env("PATH", std::env::join_paths(paths).expect("PATH"))
        .env("KASANE_STAND_IN", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the launcher starts")
}

/// The pid a stand-in wrote to `file`, waiting up to `limit` for it.
fn pid_in(dir: &Path, file: &str, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(pid) = fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Whether `pid` still runs the stand-in or its child: not gone, not a
/// zombie, and its command line still theirs (a reused pid is not).
fn runs(pid: i32, dir: &Path) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name (proc(5)).
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    if state == Some(Some('Z')) {
        return false;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    cmdline.contains("sleep") || cmdline.contains(&*dir.to_string_lossy())
}

fn send(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) takes two integers and touches none of our memory.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// What a case started, killed when the case ends however it ends, so a
/// failing case leaves no stand-in behind.
struct Started<'a> {
    dir: &'a Path,
    launcher: Child,
    pids: Vec<i32>,
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        let _ = self.launcher.kill();
        let _ = self.launcher.wait();
        for &pid in &self.pids {
            if runs(pid, self.dir) {
                send(pid, libc::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(self.dir);
    }
}

fn ends_its_emulator(case: &str, emulator: &str, program: &str, signal: i32) {
    let dir = stand_in(case, program);
    let mut started = Started {
        dir: &dir,
        launcher: launch(&dir, emulator),
        pids: Vec::new(),
    };
    let wait = Duration::from_secs(60);
    let (Some(emulator_pid), Some(child_pid)) = (
        pid_in(&dir, "emulator.pid", wait),
        pid_in(&dir, "child.pid", wait),
    ) else {
        panic!("the stand-in {program} did not start");
    };
    started.pids = vec![emulator_pid, child_pid];
    assert!(runs(emulator_pid, &dir), "the stand-in runs");
    assert!(runs(child_pid, &dir), "the stand-in's child runs");
    // Give the launcher a moment to be in its boot loop (it is already,
    // once the stand-in runs, but a signal must not depend on that).
    std::thread::sleep(Duration::from_millis(200));
    let launcher = libc::pid_t::try_from(started.launcher.id()).expect("a pid");
    assert!(send(launcher, signal), "kill({launcher}, {signal})");

    let start = Instant::now();
    let status = loop {
        if let Some(status) = started.launcher.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            panic!("the launcher did not end within 20 s of signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(128 + signal), "{status}");
    // SIGKILL is sent before the launcher exits; the killed are reaped by
    // their new parent soon after.
    let start = Instant::now();
    while (runs(emulator_pid, &dir) || runs(child_pid, &dir))
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !runs(emulator_pid, &dir),
        "the {program} stand-in still runs"
    );
    assert!(
        !runs(child_pid, &dir),
        "the {program} stand-in's child still runs"
    );
}

#[test]
fn sigterm_ends_qemu_and_what_it_started() {
    ends_its_emulator("qemu-term", "qemu", "qemu-system-x86_64", libc::SIGTERM);
}

#[test]
fn sigint_ends_qemu() {
    ends_its_emulator("qemu-int", "qemu", "qemu-system-x86_64", libc::SIGINT);
}

#[test]
fn sighup_ends_qemu() {
    ends_its_emulator("qemu-hup", "qemu", "qemu-system-x86_64", libc::SIGHUP);
}

#[test]
fn sigterm_ends_bochs_and_what_it_started() {
    ends_its_emulator("bochs-term", "bochs", "bochs", libc::SIGTERM);
}
