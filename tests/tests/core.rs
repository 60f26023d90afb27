//! Boots core as the root task and checks the rc session, typed into the
//! interactive shell and run from a file.
//!
//! `images/scripts/session` is the one list of commands. The default
//! system (`images/manifests/default.toml`) starts `rc -i` on the console,
//! and the launcher types the session's lines at its `; ` prompts, then
//! ^D (`run/up --script`), under QEMU (bare) and Bochs (VT-x): the
//! transcript shows every line echoed after a prompt, and the output of
//! each. `images/manifests/core.toml` runs the same file as `rc
//! /boot/session` (QEMU only: the typed runs cover the rest).
//!
//! The session relies on /tmp being ramfs from boot (core mounts
//! /srv/ramfs there with -c: a task server of its own, through `#M`):
//! create, append, read, mkdir, ls, rm, and that what was removed is gone.
//! Then echo, files in a `#e`-backed /n, union binds (-a, -b, -c), a pipe,
//! a missing file with `$status`, cp/mv/rm/mkdir, date, ps, kill through
//! /proc/N/ctl, a reader blocked on a pipe while another process runs, a
//! bad bind flag, and `ns` (which shows the boot mount); then an unmount
//! of /tmp, a second mount that finds the files still there, and a mount
//! of a missing link.

use kasane_run::{Boot, Emulator};
use kasane_tests::{
    assert_clean, assert_lines_in_order, assert_output_in_order, assert_typed, boot_manifest,
    boot_script, boot_typing,
};

const SCRIPT: &str = "images/scripts/session";

const SESSION: &[&str] = &[
    "core: started /bin/rc as pid 1",
    "hello from rc",
    // ramfs is at /tmp from boot: files and directories from the start.
    "-- ramfs at /tmp from boot",
    "hello ramfs",
    "appended",
    "inner",
    "-- ls /tmp on ramfs",
    "d",
    "f",
    // ls -l of the directory: the file's mode, owner and length.
    "-664 M eve        6 g",
    "-- after rm",
    "f",
    "cat: /tmp/d/g: '/tmp/d/g' file does not exist",
    "ls: /tmp/d: '/tmp/d' file does not exist",
    "-- #e at /n",
    "first file",
    "a",
    "-- after bind -a #c",
    // The union reads #e's entries, then #c's.
    "a",
    "cons",
    "null",
    "zero",
    "sysname",
    "time",
    // `echo created > /n/b` lands in #e, the -c member of the union.
    "-- #e after a create in /n",
    "a",
    "b",
    "-- after bind -b #s",
    "ramfs",
    "a",
    "b",
    "cons",
    "-- pipe",
    "      1       3      14",
    "cat: /n/missing: '/n/missing' file does not exist",
    "status is cat: /n/missing: '/n/missing' file does not exist",
    "-- files",
    // cp, then mv (a copy and a remove), leaves the text in /n/d.
    "first file",
    "-- after rm in #e",
    "a",
    "cat: /n/d: '/n/d' file does not exist",
    // #e is one level deep: it refuses directories.
    "mkdir: /n/dir: permission denied",
    "rm: /n/missing: '/n/missing' file does not exist",
    "-- date",
    "Thu Jan  1 00:00:",
    "-- ps",
    "eve               1",
    "ps",
    "-- kill",
    // kill wrote `kill` to sleep's /proc/N/ctl; rc saw it end.
    "status is killed|",
    // cat waits on an empty pipe while ps, in the same pipeline, runs and
    // lists it (and the sleep that will close the pipe).
    "-- blocked reader",
    " sleep",
    " cat",
    " ps",
    "-- bad bind flag",
    "bind: bad flag -x",
    "usage: bind [-b|-a|-c|-bc|-ac] new old",
    "status is bind: usage",
    "-- ns",
    "bind '#c' /dev",
    "bind -c '#e' /env",
    "mount -c /srv/ramfs /tmp",
    "bind -c '#e' /n",
    "bind -a '#c' /n",
    "cd /",
    "-- after unmount /tmp",
    // The tree lives in the server, not in the mount.
    "-- ramfs again at /mnt",
    "f",
    "hello ramfs",
    "appended",
    "mount: can't open /srv/nothing: '/srv/nothing' file does not exist",
    "status is mount: can't open /srv/nothing: '/srv/nothing' file does not exist",
    "done",
    "core: init exited: ''",
];

/// The session's lines, as typed.
fn typed_lines() -> Vec<String> {
    let path = kasane_run::root().join(SCRIPT);
    kasane_run::read_script(&path).expect("the session script")
}

/// Checks a typed session: each line echoed after a prompt, the output
/// in order, a few commands next to their own output, and the end.
fn check_typed_session(boot: &Boot) {
    let lines = typed_lines();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_typed(boot, &lines);
    assert_output_in_order(boot, SESSION);
    assert_lines_in_order(
        boot,
        &[
            "; echo hello from rc",
            "hello from rc",
            "; echo one two three | wc",
            "      1       3      14",
            "; cat /n/missing",
            "cat: /n/missing: '/n/missing' file does not exist",
            "; echo done",
            "done",
            // ^D at the last prompt: rc ends the prompt's line and exits.
            "core: init exited: ''",
        ],
    );
    assert_clean(boot);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_interactive_rc_runs_the_typed_session() {
    let boot = boot_script("default", SCRIPT, Emulator::Qemu, 120);
    check_typed_session(&boot);
    assert_lines_in_order(&boot, &["microkernel: poweroff ok"]);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_interactive_rc_runs_the_typed_session() {
    let boot = boot_script("default", SCRIPT, Emulator::Bochs, 600);
    check_typed_session(&boot);
    assert_lines_in_order(&boot, &["hvm: poweroff ok"]);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_rc_runs_the_session_file() {
    let boot = boot_manifest("core", Emulator::Qemu, 120);
    assert_lines_in_order(&boot, SESSION);
    assert_lines_in_order(&boot, &["microkernel: poweroff ok"]);
    assert_clean(&boot);
}

/// 150 characters of text, more than a UART's FIFO (16) and Bochs's
/// trigger level many times over.
fn long_text() -> String {
    (0..15)
        .map(|n| format!("word{n:02}-abc"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_console_lines_arrive_intact_and_are_edited() {
    let long = long_text();
    assert!(long.len() > 64);
    let echo_long = format!("echo {long}");
    let lines = [
        echo_long.as_str(),
        // Backspace and DEL erase one character each; ^U the line so far.
        "echo tpyo\x08\x08\x08ypo fixed\x7f\x7f\x7f\x7f\x7fFIXED",
        "garbage that is killed\x15echo after kill",
        "echo 'two",
        "lines'",
        "echo a && b",
        "echo still here",
    ];
    let boot = boot_typing("default", &lines, Emulator::Bochs, 600);
    assert_typed(&boot, &[&echo_long]);
    assert_output_in_order(
        &boot,
        &[
            &long,
            "typo FIXED",
            "after kill",
            "two",
            "lines",
            "rc: syntax error",
            "still here",
            "core: init exited: ''",
        ],
    );
    assert_clean(&boot);
}
