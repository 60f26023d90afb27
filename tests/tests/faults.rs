//! Failure injection under core: a task server dies mid-request, a client
//! sends garbage; both sides are checked.
//!
//! `images/manifests/core-faults.toml` runs `images/scripts/faults`: ramfs
//! at /tmp holds a file; the task server `faulty` is mounted at /n and a
//! read of its `crash` kills it in the middle of the request. The faulty
//! side: the read fails with "i/o on hungup channel", core reports the hang
//! up and restarts that server alone on a new link, the old mount stays
//! hung up, and a new mount of /srv/faulty reaches the restarted server.
//! The rest: ramfs still has its file, the shell goes on. A read of the
//! restarted server's `slow` file (a second to answer) holds up only its
//! reader: another process's output comes first; so does a walk to its
//! `sleepy` file (the walk takes the second), and a spawn whose program
//! lookup walks a union through that slow member. Then `garbage`
//! sends core eight malformed calls; each is refused, and core still
//! answers (getpid, the shell, ramfs).

use kasane_run::{Boot, Emulator};
use kasane_tests::{assert_absent, assert_clean, assert_lines_in_order, boot_manifest};

const TRANSCRIPT: &[&str] = &[
    "core: started /bin/rc as pid 1",
    "alive",
    "-- crash",
    // The server dies with the read outstanding ...
    "faulty: crash requested by a read of /crash",
    "core: #M: link hung up: faulty:",
    // ... and is restarted alone, posted again under its name.
    "core: task server faulty restarted (link 2 -> 3, restart 1 of 5)",
    "cat: /n/crash: i/o on hungup channel",
    "status is cat: /n/crash: i/o on hungup channel",
    "-- the old mount is hung up",
    "cat: /n/hello: '/n/hello' i/o on hungup channel",
    "-- ramfs kept its file",
    "kept",
    "-- mount again",
    "alive",
    // `cat /n/slow >/dev/cons | date`: the server takes a second to
    // answer cat; core serves date meanwhile, so date prints first.
    "-- a slow read holds up only its reader",
    "Thu Jan  1 00:00:",
    "slow answer",
    // The same for a walk: cat's open waits for the server, and only cat.
    "-- a slow walk holds up only its walker",
    "Thu Jan  1 00:00:",
    "awake",
    // rc's spawn of `sleepy` walks /bin's union: #b has no such file, the
    // faulty member takes its second; the spawn waits, then reads the file
    // it found there (which is no program).
    "-- a spawn that looks through a slow union member waits for it",
    "sleepy: not a program: not an ELF file",
    "status is |sleepy: not a program: not an ELF file",
    "-- garbage",
    "garbage: unknown call: refused (bad system call)",
    "garbage: open without a path: refused (bad arg in system call)",
    "garbage: read of fd 1000000, 2^40 bytes: refused (fd out of range or not open)",
    "garbage: write from unmapped memory: refused by the kernel",
    "garbage: spawn block of noise: refused (bad arg in system call)",
    "garbage: bind with flags 0xff: refused (bad arg in system call)",
    "garbage: stat of a 64 KiB path: refused",
    "garbage: chdir with 40 untyped words: refused",
    "garbage: 8 refused, 0 unexpected; getpid still answers",
    "status is ",
    // Core, ramfs and the shell carried on.
    "kept",
    "done",
    "core: init exited: ''",
];

fn check(boot: &Boot) {
    assert_lines_in_order(boot, TRANSCRIPT);
    let lines: Vec<&str> = boot.transcript.lines().collect();
    for (marker, answer) in [
        ("-- a slow read holds up only its reader", "slow answer"),
        ("-- a slow walk holds up only its walker", "awake"),
    ] {
        let at = lines
            .iter()
            .position(|l| *l == marker)
            .expect("the marker line");
        assert!(
            lines[at + 1].starts_with("Thu Jan  1 ") && lines[at + 2] == answer,
            "date should print while the server is slow ({marker}):\n{}",
            boot.transcript
        );
    }
    assert_absent(boot, "UNEXPECTED");
    assert_absent(boot, "not restarted");
    assert_clean(boot);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_core_survives_a_dying_server_and_a_garbage_client() {
    check(&boot_manifest("core-faults", Emulator::Qemu, 120));
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_core_survives_a_dying_server_and_a_garbage_client() {
    check(&boot_manifest("core-faults", Emulator::Bochs, 600));
}
