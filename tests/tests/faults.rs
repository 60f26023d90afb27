//! Failure injection under core: a task server dies mid-request, a client
//! sends garbage; both sides are checked.
//!
//! `images/manifests/core-faults.toml` runs `images/scripts/faults`: ramfs
//! at /tmp (core mounts it at boot) holds a file; the task server
//! `faulty` is mounted at /n and a read of its `crash` kills it in the
//! middle of the request. The faulty side: core reports the hang up,
//! restarts that server alone and revives its link (its mounts come
//! back); the read, sent again, kills it again, so it is restarted again
//! and the read fails once with "server restarted"; the old mount then
//! works without a new mount, and a new mount of /srv/faulty works too.
//! The rest: ramfs still has its file, the shell goes on. A read of the
//! restarted server's `slow` file (a second to answer) holds up only its
//! reader: another process's output comes first; so does a walk to its
//! `sleepy` file (the walk takes the second), and a spawn whose program
//! lookup walks a union through that slow member. Then `garbage`
//! sends core eight malformed calls; each is refused, and core still
//! answers (getpid, the shell, ramfs).

use kasane_run::{Boot, Emulator};
use kasane_tests::Line::{self, Is, Pattern, StartsWith};
use kasane_tests::{
    assert_clean, assert_lines_in_order, assert_no_line_contains, assert_output_between,
};

const TRANSCRIPT: &[Line] = &[
    Is("core: started /bin/rc as pid 1"),
    Is("alive"),
    Is("-- crash"),
    // The server dies with the read outstanding ...
    Is("faulty: crash requested by a read of /crash"),
    // (the reason is the exception the dying task took)
    StartsWith("core: #M: link hung up: faulty: "),
    // ... and is restarted alone; its mount is revived on the same link
    // and the read under way is sent again ...
    Is("core: server faulty restarted (restart 1 of 5)"),
    // ... which kills it again: it is restarted again, and the read,
    // sent again once already, fails (once).
    StartsWith("runtime-task: panic: "),
    Is("faulty: crash requested by a read of /crash"),
    StartsWith("core: #M: link hung up: faulty: "),
    Is("core: server faulty restarted (restart 2 of 5)"),
    Is("cat: /n/crash: server restarted"),
    Is("status is cat: /n/crash: server restarted"),
    // The old mount works without a new mount (docs/core.md, "Recovery").
    Is("-- the mount recovered"),
    Is("alive"),
    // /tmp is ramfs from boot.
    Is("-- ramfs kept its file"),
    Is("kept"),
    Is("-- mount again"),
    Is("alive"),
    // `cat /n/slow >/dev/cons | date`: the server takes a second to
    // answer cat; core serves date meanwhile, so date prints first.
    Is("-- a slow read holds up only its reader"),
    Pattern("Thu Jan  1 00:*:* GMT 1970"),
    Is("slow answer"),
    // The same for a walk: cat's open waits for the server, and only cat.
    Is("-- a slow walk holds up only its walker"),
    Pattern("Thu Jan  1 00:*:* GMT 1970"),
    Is("awake"),
    // rc's spawn of `sleepy` walks /bin's union: #b has no such file, the
    // faulty member takes its second; the spawn waits, then reads the file
    // it found there (which is no program).
    Is("-- a spawn that looks through a slow union member waits for it"),
    Pattern("Thu Jan  1 00:*:* GMT 1970"),
    Is("sleepy: not a program: not an ELF file"),
    Is("status is |sleepy: not a program: not an ELF file"),
    Is("-- garbage"),
    Is("garbage: unknown call: refused (bad system call)"),
    Is("garbage: open without a path: refused (bad arg in system call)"),
    Is("garbage: read of fd 1000000, 2^40 bytes: refused (fd out of range or not open)"),
    Is("garbage: write from unmapped memory: refused by the kernel (IpcError { error: StringFault, phase: Send })"),
    Is("garbage: spawn block of noise: refused (bad arg in system call)"),
    Is("garbage: bind with flags 0xff: refused (bad arg in system call)"),
    Is("garbage: stat of a 64 KiB path: refused by the kernel (IpcError { error: MessageTooLong, phase: Send })"),
    Is("garbage: chdir with 40 untyped words: refused (bad arg in system call)"),
    Is("garbage: send without receive: sent, not waiting for the reply"),
    // Preads that name another buffer than the kernel's (the zero-copy
    // read, docs/performance.md): the bytes land in the process's own
    // memory only.
    Is("garbage: pread naming an unmapped buffer: Ok(5), into its real buffer"),
    Is("garbage: pread naming its own code: Ok(5), into its real buffer, code unchanged"),
    Is("garbage: pread naming more than its buffer: Ok(5), into its own memory past it"),
    Is("garbage: pread naming another buffer of its own: Ok(5), into that one"),
    // getpid's answer is the garbage process's pid.
    Pattern("garbage: 8 refused, 0 unexpected; getpid still answers *"),
    Is("status is "),
    // Core, ramfs and the shell carried on.
    Is("kept"),
    Is("done"),
    Is("core: init exited: ''"),
];

fn check(boot: &Boot) {
    assert_lines_in_order(boot, TRANSCRIPT);
    // Right after each marker comes date's line, then the slow answer:
    // nothing else between.
    for (marker, next, answer) in [
        (
            "-- a slow read holds up only its reader",
            "-- a slow walk holds up only its walker",
            "slow answer",
        ),
        (
            "-- a slow walk holds up only its walker",
            "-- a spawn that looks through a slow union member waits for it",
            "awake",
        ),
    ] {
        assert_output_between(
            boot,
            marker,
            next,
            &[Pattern("Thu Jan  1 00:*:* GMT 1970"), Is(answer)],
        );
    }
    assert_no_line_contains(boot, "UNEXPECTED");
    assert_no_line_contains(boot, "not restarted");
    assert_clean(boot);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_core_survives_a_dying_server_and_a_garbage_client() {
    check(&kasane_tests::boot_manifest(
        "core-faults",
        Emulator::Qemu,
        120,
    ));
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_core_survives_a_dying_server_and_a_garbage_client() {
    check(&kasane_tests::boot_manifest(
        "core-faults",
        Emulator::Bochs,
        600,
    ));
}
