//! Linux as a peer of Kasane's namespace (issue 13), under hvm in Bochs.
//!
//! `images/manifests/linux-peer.toml` runs core beside the Debian cloud
//! kernel with the bridge agent (and busybox) in its initramfs; core
//! drives the Linux link itself. `images/scripts/linux-peer` then, in one
//! boot:
//!
//! - while the Linux cell boots, runs a loop on ramfs, which counts on
//!   while the first request to Linux (the mount below) waits for the
//!   agent: the request waits in its process, not in core;
//! - mounts `/srv/linux` (the agent's 9P server) on /n: reads
//!   `/proc/version`, writes a file, appends to it, counts its lines and
//!   lists the Linux root;
//! - runs Linux programs with `lx` (`/dev/linux`): `uname -r`, a shell's
//!   arithmetic with an empty `$status`, a failing command's stderr and
//!   `exit 3`, `lx uname -a | wc -l`, `lx cat` fed from a Kasane pipe, the
//!   Kasane-written file read by Linux's `cat` and a Linux-written file
//!   read through /n, a program that does not exist; then, at an
//!   interactive rc, a Linux program reading what is typed at the
//!   console (`images/scripts/linux-peer-console`, typed by the test),
//!   ^D ending its input;
//! - Linux mounts Kasane: `exportfs` serves the session's namespace on
//!   `/dev/linux/export`, the agent's FUSE file system on `/kasane` is
//!   its 9P client; from Linux, `ls` and `cat` show a file made in
//!   Kasane's ramfs, and a file written, appended to, made, renamed and
//!   removed from Linux shows in Kasane;
//! - delegates system calls with `linux()` (`linuxcalls`): uname, openat
//!   and read of the Kasane-written file, write and read back, getdents64,
//!   getpid twice in one proxy, and call 999 refused;
//! - times `bench linux_delegated_getpid_cycles` and
//!   `bench read_4k_linux_9p_cycles`;
//! - crashes the Linux kernel from inside an `lx` program: the program
//!   fails once with `linux cell restarted`, Kasane's ramfs is untouched
//!   and a loop on it keeps counting while the new agent boots (core
//!   waits for it without blocking anyone), hvm restarts the cell from
//!   its pristine image, `#M` recovers the mount, and then `lx`, `/n` and
//!   `linux()` work again, and the new agent's `/kasane` too. A reader
//!   of `/n/bin/busybox` runs across the crash: its counts before the
//!   crash are whole, the read in flight (if any) fails once with
//!   `linux cell restarted`, its next open waits for the recovery, and
//!   its counts after it are whole again.
//!
//! `linux-bare.toml` boots the same system in QEMU without VT-x: there is
//! no Linux cell, and `lx`, `linux()`, `/dev/linux` and `/srv/linux` say
//! `no linux cell`.
//!
//! Both boot an emulator (Bochs for minutes), so they are `#[ignore]`d in
//! a plain `cargo test`: `cargo test -p kasane-tests --test linuxpeer --
//! --include-ignored`.

use kasane_run::Emulator;
use kasane_tests::Line::{Is, Pattern, StartsWith};
use kasane_tests::{
    assert_clean, assert_lines_in_order, assert_no_line_contains, assert_output_between,
    boot_manifest, boot_script,
};

fn bench(transcript: &str, name: &str) -> u64 {
    let prefix = format!("bench {name} ");
    let line = transcript
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line:\n{transcript}"));
    let mut words = line[prefix.len()..].split_whitespace();
    let value = words.next().and_then(|v| v.parse().ok());
    assert_eq!(words.next(), Some("cycles"), "{line}");
    value.unwrap_or_else(|| panic!("not a number: {line}"))
}

const LINUXCALLS: [kasane_tests::Line<'static>; 7] = [
    StartsWith("linuxcalls: uname Linux 6.1.0-"),
    Is("linuxcalls: openat+read /kasane.txt: written from kasane"),
    Is("appended"),
    Is("linuxcalls: write+read /tmp/delegated: 31 bytes, the same"),
    Is("linuxcalls: getdents64 /: bin dev etc init kasane kasane.txt lib proc root sys tmp"),
    Is("linuxcalls: getpid: one proxy for this process"),
    Is("linuxcalls: call 999 refused: linux system call 999 is not delegated (see docs/linux-bridge.md)"),
];

#[test]
#[ignore = "boots Bochs with a Linux cell (minutes); run/test runs it"]
fn bochs_rc_mounts_linux_runs_linux_programs_and_delegates_calls() {
    let console = "images/scripts/linux-peer-console";
    let boot = boot_script("linux-peer", console, Emulator::Bochs, 600);
    assert_lines_in_order(
        &boot,
        &[
            Is("hvm: vmx=on ept=on ug=on vpid=on preemption-timer=on cells=2 tsc=200MHz"),
            Is("core: server linux: vm, /srv/linux, /proc/9002"),
            Is("-- linux 9P"),
            Is("ramfs"),
            Is("linux"),
            StartsWith("linux| kasane-agent: ready release=6.1.0-"),
            StartsWith("Linux version 6.1.0-"),
            Is("written from kasane"),
            Is("      2 /n/kasane.txt"),
            Is("bin"),
            Is("kasane.txt"),
            Is("tmp"),
            Is("-- lx"),
        ],
    );
    // While the Linux cell booted, the mount waited for the agent in the
    // process that made it, not in core: the loop on ramfs counted on.
    let lines: Vec<&str> = boot.transcript.lines().collect();
    let booting = lines
        .iter()
        .take_while(|l| !l.starts_with("linux| kasane-agent: ready"))
        .skip_while(|l| **l != "-- linux 9P")
        .filter(|l| l.starts_with("boot tick "))
        .count();
    assert!(
        booting >= 3,
        "{booting} ticks while the agent booted:\n{}",
        boot.transcript
    );
    assert_output_between(
        &boot,
        "-- lx",
        "-- lx console",
        &[
            StartsWith("6.1.0-"),
            Is("42"),
            Is("status is "),
            Is("to stderr"),
            Is("status is exit 3"),
            Is("      1"),
            Is("from a kasane pipe"),
            Is("written from kasane"),
            Is("appended"),
            Is("written by linux"),
            Is("lx: cannot run /no/such/program: No such file or directory (os error 2)"),
            Is("status is lx: cannot run /no/such/program: No such file or directory (os error 2)"),
            Is("clone"),
            Is("syscall"),
            Is("export"),
        ],
    );
    // What is typed at the console reaches the Linux program as it runs
    // (lx's helper), ^D ends its input, and the shell reads again after.
    assert_output_between(
        &boot,
        "-- lx console",
        "-- linux mounts kasane",
        &[
            Is("ready for input"),
            Is("typed at the console"),
            Is("linux got typed at the console"),
            Is("more for cat"),
            Is("more for cat"),
            Is("cat ended"),
            Is("status is "),
        ],
    );
    assert_output_between(
        &boot,
        "-- linux mounts kasane",
        "-- linux()",
        &[
            // lx ls /kasane/tmp, lx cat: Kasane's ramfs seen from Linux
            // (the boot-time loop's count, and the file made in Kasane).
            Is("count"),
            Is("fromkasane"),
            Is("made in kasane"),
            // Written from Linux, read in Kasane.
            Is("hi"),
            Is("made in kasane"),
            Is("appended from linux"),
            // ls /tmp: the directory made from Linux; x was renamed and
            // removed.
            Is("count"),
            Is("d"),
            Is("fromkasane"),
            Is("ls: /kasane/no/such: No such file or directory"),
            Is("status is exit 1"),
        ],
    );
    assert_output_between(&boot, "-- linux()", "-- bench", &LINUXCALLS);
    let mut after = vec![
        Is("-- crash"),
        Pattern("*Kernel panic - not syncing: sysrq triggered crash"),
        StartsWith("hvm: cell 1 (linux) failed: reset requested"),
        Is("hvm: cell 1 (linux) restarted (restart 1 of 2)"),
        Is("core: #M: link hung up: linux: linux cell restarted"),
        // The run in flight fails at once; core serves on while the new
        // agent boots.
        Is("lx: linux cell restarted"),
        Is("status is lx: linux cell restarted"),
        Is("kept"),
        Is("-- after the restart"),
        StartsWith("linux| kasane-agent: ready release=6.1.0-"),
        Is("core: server linux restarted (restart 1 of 5)"),
        StartsWith("6.1.0-"),
        Is("status is "),
        Is("bin"),
        Is("init"),
        Is("tmp"),
        Is("written from kasane"),
        Is("appended"),
    ];
    after.extend(LINUXCALLS);
    after.extend([
        // The new agent mounted Kasane again; exportfs started a new
        // session for it.
        Is("made in kasane"),
        Is("appended from linux"),
        Is("-- end"),
        Is("core: init exited: ''"),
    ]);
    assert_lines_in_order(&boot, &after);
    assert_no_line_contains(&boot, "PANIC");
    assert_clean(&boot);
    let transcript = &boot.transcript;
    // The ramfs loop kept counting while the Linux cell was down.
    let lines: Vec<&str> = transcript.lines().collect();
    let at = |wanted: &str| {
        lines
            .iter()
            .position(|l| *l == wanted)
            .unwrap_or_else(|| panic!("no line {wanted:?}:\n{transcript}"))
    };
    let down = at("core: #M: link hung up: linux: linux cell restarted");
    let up = at("core: server linux restarted (restart 1 of 5)");
    let ticks = lines[down..up]
        .iter()
        .filter(|l| l.starts_with("tick "))
        .count();
    assert!(ticks >= 3, "{ticks} ticks while the Linux cell was down");
    // The reader of /n/bin/busybox: counts before the crash are whole;
    // the read in flight when the cell died, if one was, fails once with
    // `linux cell restarted` (the transport's reason, not #M's `i/o on
    // hungup channel`); an open or read made while the cell is down waits
    // for the recovery (it is not failed), and the counts after it are
    // whole again. Nothing hangs.
    let panic = lines
        .iter()
        .position(|l| l.contains("Kernel panic - not syncing: sysrq triggered crash"))
        .expect("the panic");
    let reader: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l.contains("/n/bin/busybox") && !l.starts_with("bench ") && !l.starts_with('#')
        })
        .map(|(at, l)| (at, l.trim_start()))
        .collect();
    assert_eq!(reader.len(), 10, "{reader:?}");
    let mut before = 0;
    let mut after = 0;
    let mut failed = 0;
    for (at, line) in &reader {
        let count = line
            .strip_suffix(" /n/bin/busybox")
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(count) = count {
            assert!(count > 1_000_000, "{line}");
            if *at < down {
                assert_eq!(failed, 0, "a count between failures: {reader:?}");
                before += 1;
            } else {
                assert!(*at > up, "a count before the recovery: {line}");
                after += 1;
            }
        } else {
            assert!(
                line.starts_with("wc: /n/bin/busybox: ") && line.ends_with("linux cell restarted"),
                "{line}"
            );
            assert!(*at > panic, "a failure before the crash: {line}");
            failed += 1;
        }
    }
    assert!(
        failed <= 1,
        "more than one failure: {reader:?}\n{transcript}"
    );
    assert!(
        before >= 1 && after >= 1,
        "counts on both sides: {reader:?}"
    );
    // The session waits for the reader before it ends.
    assert!(at("reader done") < at("-- end"), "the reader finished");
    assert!(
        transcript.contains("exportfs: linux cell restarted: a new session"),
        "exportfs saw the restart"
    );
    for line in transcript.lines().filter(|l| l.starts_with("bench ")) {
        println!("{line}");
    }
    let getpid = bench(transcript, "linux_delegated_getpid_cycles");
    assert!(getpid > 0 && getpid < 1_000_000, "{getpid}");
    let read = bench(transcript, "read_4k_linux_9p_cycles");
    assert!(read > 0 && read < 5_000_000, "{read}");
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_bare_mode_has_no_linux_cell() {
    let boot = boot_manifest("linux-bare", Emulator::Qemu, 180);
    assert_output_between(
        &boot,
        "-- bare",
        "-- end",
        &[
            Is("clone"),
            Is("syscall"),
            Is("export"),
            Is("lx: no linux cell"),
            Is("status is lx: no linux cell"),
            Is("status is no linux cell"),
            Is("mount: can't open /srv/linux: no linux cell"),
            Is("status is mount: can't open /srv/linux: no linux cell"),
        ],
    );
    assert_clean(&boot);
}
