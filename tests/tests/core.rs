//! Boots core as the root task and checks the scripted rc session.
//!
//! `images/manifests/core.toml` starts core, which spawns `/bin/rc` on
//! `images/scripts/session`; the transcript shows echo, files in a
//! `#e`-backed /tmp, union binds (-a, -b, -c), a pipe, a missing file with
//! `$status`, cp/mv/rm/mkdir, date, ps, kill through /proc/N/ctl, and `ns`;
//! then ramfs, a task server of its own, mounted at /tmp through `#M` and
//! its /srv link: create, append, read, mkdir, ls, rm, unmount, a second
//! mount that finds the files still there, and a mount of a missing link.

use kasane_run::Emulator;
use kasane_tests::{assert_clean, assert_lines_in_order, boot_manifest};

const SESSION: &[&str] = &[
    "core: started /bin/rc as pid 1",
    "hello from rc",
    "first file",
    "-- ls /tmp",
    "a",
    "-- after bind -a #c",
    // The union reads #e's entries, then #c's.
    "a",
    "cons",
    "time",
    // `echo created > /tmp/b` lands in #e, the -c member of the union.
    "-- #e after a create in /tmp",
    "a",
    "b",
    "-- after bind -b #b",
    "core",
    "session",
    "cons",
    "-- pipe",
    "      1       3      14",
    "cat: /tmp/missing: '/tmp/missing' file does not exist",
    "status is cat: /tmp/missing: '/tmp/missing' file does not exist",
    "-- files",
    // cp, then mv (a copy and a remove), leaves the text in /tmp/d.
    "first file",
    "a",
    // #e is one level deep: it refuses directories.
    "mkdir: /tmp/dir: permission denied",
    "rm: /tmp/missing: '/tmp/missing' file does not exist",
    "-- date",
    "Thu Jan  1 00:00:",
    "-- ps",
    "eve               1",
    "ps",
    "-- kill",
    // kill wrote `kill` to sleep's /proc/N/ctl; rc saw it end.
    "status is killed|",
    "-- ns",
    "bind '#c' /dev",
    "bind -c '#e' /env",
    "bind -c '#e' /tmp",
    "bind -a '#c' /tmp",
    "cd /",
    "-- ramfs",
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
    "mount -c /srv/ramfs /tmp",
    "-- after unmount",
    // The tree lives in the server, not in the mount.
    "hello ramfs",
    "appended",
    "mount: can't open /srv/nothing: '/srv/nothing' file does not exist",
    "status is mount: can't open /srv/nothing: '/srv/nothing' file does not exist",
    "done",
    "core: init exited: ''",
];

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_core_runs_the_rc_session() {
    let boot = boot_manifest("core", Emulator::Qemu, 120);
    assert_lines_in_order(&boot, SESSION);
    assert_lines_in_order(&boot, &["microkernel: poweroff ok"]);
    assert_clean(&boot);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_core_runs_the_rc_session() {
    let boot = boot_manifest("core", Emulator::Bochs, 600);
    assert_lines_in_order(&boot, SESSION);
    assert_clean(&boot);
}
