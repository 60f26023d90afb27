//! The task half of the failure matrix, and transparent recovery.
//!
//! `images/manifests/core-recover.toml` runs `images/scripts/recover`:
//! `img` is ramfs started from a tar image, mounted on /n (its /proc entry
//! is 9001); `ramfs` is a second ramfs on /tmp. For each failure verb
//! (crash, triple-fault, wild-write, garbage, hang) a block holds
//! /n/doc/lines open as its input, writes the verb to img's ctl and runs
//! cat on it. The transcript shows the injection, the task performing
//! it for real, core's line naming what it saw (an exception, a page it
//! cannot serve, an answer nobody asked for, a server that takes no
//! requests), the restart of img alone, and cat reading the same three
//! lines through the recovered chan with no error; `cat /tmp/k` (the
//! other server) and rc work after each case, and during the hang. Then
//! the image's files are there again, a file made after the start is
//! gone with a clear error (not other bytes), and a ctl message that is no
//! verb is refused.

use kasane_run::{Boot, Emulator};
use kasane_tests::Line::{self, Is, StartsWith};
use kasane_tests::{assert_clean, assert_lines_in_order, assert_no_line_contains, output_between};

/// One failure case: the verb, the lines between the injection and the
/// restart, the restart's number.
fn case(verb: &'static str, between: &[Line<'static>], restart: u32) -> Vec<Line<'static>> {
    let mut lines = vec![
        Is(Box::leak(format!("-- {verb}").into_boxed_str())),
        Is(Box::leak(
            format!("core: server img: injecting {verb}").into_boxed_str(),
        )),
        Is(Box::leak(
            format!("runtime-task: performing {verb}").into_boxed_str(),
        )),
    ];
    lines.extend_from_slice(between);
    lines.push(Is(Box::leak(
        format!("core: server img restarted (restart {restart} of 10)").into_boxed_str(),
    )));
    // The reader carries on: the same bytes, no error.
    lines.extend([Is("one"), Is("two"), Is("three")]);
    lines
}

fn transcript() -> Vec<Line<'static>> {
    let mut lines = vec![
        Is("core: server img: task, /srv/img, /proc/9001"),
        Is("core: server ramfs: task, /srv/ramfs, /proc/9002"),
        Is("core: started /bin/rc as pid 1"),
        Is("-- the image"),
        Is("motd from the ramfs image"),
        Is("lines"),
    ];
    lines.extend(case(
        "crash",
        &[
            StartsWith("runtime-task: panic: "),
            Is("crash injected"),
            Is("core: #M: link hung up: img: exception 6"),
        ],
        1,
    ));
    lines.push(Is("kept"));
    lines.extend(case(
        "triple-fault",
        &[Is("core: #M: link hung up: img: exception 6")],
        2,
    ));
    lines.push(Is("kept"));
    lines.extend(case(
        "wild-write",
        &[Is(
            "core: #M: link hung up: img: img: no page for 0x60000000",
        )],
        3,
    ));
    lines.push(Is("kept"));
    lines.extend(case(
        "garbage",
        &[Is(
            "core: #M: link hung up: img: an answer nobody asked for",
        )],
        4,
    ));
    lines.push(Is("kept"));
    lines.extend(case(
        "hang",
        &[Is("core: #M: link hung up: img: takes no requests (hung)")],
        5,
    ));
    lines.extend([
        Is("-- the image came back"),
        Is("motd from the ramfs image"),
        Is("-- a file made after the start is gone"),
        Is("core: server img restarted (restart 6 of 10)"),
        Is("status is cat: server restarted: file is gone"),
        Is("doc"),
        Is("motd"),
        Is("-- not a verb"),
        Is("echo: write error: bad process or channel control request"),
        Is("done"),
        Is("core: init exited: ''"),
    ]);
    lines
}

fn check(boot: &Boot) {
    assert_lines_in_order(boot, &transcript());
    // During the hang the other server answers (before or after img's
    // restart, as the scheduler has it).
    let hang = output_between(boot, "-- hang", "-- the image came back");
    assert_eq!(hang.iter().filter(|l| **l == "kept").count(), 1, "{hang:?}");
    // Only img was restarted; nothing else failed.
    assert_no_line_contains(boot, "server ramfs restarted");
    assert_no_line_contains(boot, "not restarted");
    assert_no_line_contains(boot, "PANIC");
    assert_clean(boot);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_task_servers_fail_for_real_and_recover() {
    check(&kasane_tests::boot_manifest(
        "core-recover",
        Emulator::Bochs,
        600,
    ));
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_task_servers_fail_for_real_and_recover() {
    check(&kasane_tests::boot_manifest(
        "core-recover",
        Emulator::Qemu,
        300,
    ));
}
