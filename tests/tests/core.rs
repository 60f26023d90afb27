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
use kasane_tests::Line::{self, Is, Pattern};
use kasane_tests::{
    assert_clean, assert_lines_in_order, assert_output_between, assert_typed, boot_manifest,
    boot_script, boot_typing,
};

const SCRIPT: &str = "images/scripts/session";

/// The session's output starts after this line ...
const STARTED: &str = "core: started /bin/rc as pid 1";
/// ... and ends before this one.
const ENDED: &str = "core: init exited: ''";

/// Everything the session prints, line for line: `check_session` finds
/// exactly these between [`STARTED`] and [`ENDED`], so a listing also
/// shows that nothing more is there.
const SESSION: &[Line] = &[
    Is("hello from rc"),
    // ramfs is at /tmp from boot: files and directories from the start.
    Is("-- ramfs at /tmp from boot"),
    Is("hello ramfs"),
    Is("appended"),
    Is("inner"),
    Is("-- ls /tmp on ramfs"),
    Is("d"),
    Is("f"),
    // ls -l of the directory: the file's mode, owner and length.
    Is("-664 M eve        6 g"),
    // What was removed is gone: /tmp lists f alone, and neither the file
    // nor its directory can be read.
    Is("-- after rm"),
    Is("f"),
    Is("cat: /tmp/d/g: '/tmp/d/g' file does not exist"),
    Is("ls: /tmp/d: '/tmp/d' file does not exist"),
    Is("-- #e at /n"),
    Is("first file"),
    Is("a"),
    // The union reads #e's entries, then #c's.
    Is("-- after bind -a #c"),
    Is("a"),
    Is("cons"),
    Is("null"),
    Is("zero"),
    Is("sysname"),
    Is("time"),
    // `echo created > /n/b` lands in #e, the -c member of the union.
    Is("-- #e after a create in /n"),
    Is("a"),
    Is("b"),
    // #s before the union: its entry first (the default system's second
    // server, fat, follows it there: see `check_session`).
    Is("-- after bind -b #s"),
    Is("ramfs"),
    Is("a"),
    Is("b"),
    Is("cons"),
    Is("null"),
    Is("zero"),
    Is("sysname"),
    Is("time"),
    Is("-- pipe"),
    Is("      1       3      14"),
    Is("cat: /n/missing: '/n/missing' file does not exist"),
    Is("status is cat: /n/missing: '/n/missing' file does not exist"),
    // cp, then mv (a copy and a remove), leaves the text in /n/d; after
    // rm of b and d, #e holds a alone and /n/d cannot be read.
    Is("-- files"),
    Is("first file"),
    Is("-- after rm in #e"),
    Is("a"),
    Is("cat: /n/d: '/n/d' file does not exist"),
    // #e is one level deep: it refuses directories.
    Is("mkdir: /n/dir: permission denied"),
    Is("rm: /n/missing: '/n/missing' file does not exist"),
    // The kernel clock counts from boot: the first minutes of 1970.
    Is("-- date"),
    Pattern("Thu Jan  1 00:*:* GMT 1970"),
    // ps: user, pid, memory, state, program (pids and sizes vary).
    Is("-- ps"),
    Pattern("eve               1 *K Ready    /bin/rc"),
    Pattern("eve * *K Ready    ps"),
    // kill wrote `kill` to sleep's /proc/N/ctl; rc saw it end.
    Is("-- kill"),
    Is("status is killed|"),
    // cat waits on an empty pipe while ps, in the same pipeline, runs and
    // lists it (and the sleep that will close the pipe).
    Is("-- blocked reader"),
    Pattern("eve               1 *K Ready    /bin/rc"),
    Pattern("eve * *K Ready    sleep"),
    Pattern("eve * *K Ready    cat"),
    Pattern("eve * *K Ready    ps"),
    Is("-- bad bind flag"),
    Is("bind: bad flag -x"),
    Is("usage: bind [-b|-a|-c|-bc|-ac] new old"),
    Is("status is bind: usage"),
    // The boot namespace (with core's mount of ramfs), then the session's
    // binds on /n; #s's was undone.
    Is("-- ns"),
    Is("bind '#c' /dev"),
    // hvm's cells, /dev/vm (empty in bare mode and until hvm answers
    // CellInfo).
    Is("bind -a '#V' /dev"),
    Is("bind '#b' /bin"),
    Is("bind '#b' /boot"),
    Is("bind '#p' /proc"),
    Is("bind -c '#s' /srv"),
    Is("bind -c '#e' /env"),
    Is("mount -c /srv/ramfs /tmp"),
    Is("bind -c '#e' /n"),
    Is("bind -a '#c' /n"),
    Is("cd /"),
    // Unmounted, /tmp is #R's empty directory.
    Is("-- after unmount /tmp"),
    // The tree lives in the server, not in the mount.
    Is("-- ramfs again at /mnt"),
    Is("f"),
    Is("hello ramfs"),
    Is("appended"),
    Is("mount: can't open /srv/nothing: '/srv/nothing' file does not exist"),
    Is("status is mount: can't open /srv/nothing: '/srv/nothing' file does not exist"),
    // Plan 9 flags: wc's counts in its order, a total, a usage line for a
    // flag it does not take; mkdir -p; ls -p, -ld, -F; rm -f and -r.
    Is("-- flags"),
    Is("      0       2       3"),
    Is("      2 /n/f"),
    Is("      2 /n/f"),
    Is("      4 total"),
    Is("usage: wc [-lwrbc] [file ...]"),
    Is("status is usage"),
    Is("r"),
    Is("d775 M eve        0 p"),
    Is("f"),
    Is("p/"),
    Is("status is "),
    Is("ls: /n/p: '/n/p' file does not exist"),
    // rc's language (issue 18): lists, control flow, functions, `{...},
    // a script run with rc FILE and with ., eval, a missing command, and
    // a background job waited for.
    Is("-- rc language"),
    Is("3 b b c a b c"),
    Is("a1 b2 x1 x2"),
    Is("local 1"),
    Is("global a"),
    Is("yes"),
    Is("no"),
    Is("123"),
    Is("while done"),
    Is("is b or c"),
    Is("one"),
    Is("two"),
    Is("matched"),
    Is("hello world of 1"),
    Is("fn greet { echo hello $1 of $#* }"),
    Is("greet: file does not exist"),
    Is("2 one two"),
    Is("script args p q"),
    Is("count 2"),
    Is("script args r"),
    Is("count 1"),
    Is("evaluated"),
    Is("nosuch: file does not exist"),
    Is("status is nosuch: file does not exist"),
    Is("waited ok"),
    Is("job output"),
    Is("/tmp/blk /tmp/s.rc /tmp/*.none"),
    Is("blk is a file"),
    // Here documents in a script: substituted, and quoted (kept as is).
    Is("here there"),
    Is("kept $x"),
    Is("rc: too deep: functions, eval or . nested 32 times"),
    Is("done"),
];

/// Checks the session's output, line for line, and the power-off. `#s`
/// lists the servers the manifest posts after ramfs (`srv`) too.
fn check_session(boot: &Boot, srv: &[&'static str]) {
    let mut expected = SESSION.to_vec();
    let at = expected
        .iter()
        .position(|line| *line == Is("-- after bind -b #s"))
        .expect("the session lists #s")
        + 2;
    expected.splice(at..at, srv.iter().map(|name| Is(name)));
    assert_output_between(boot, STARTED, ENDED, &expected);
    assert_clean(boot);
}

/// The session's lines, as typed.
fn typed_lines() -> Vec<String> {
    let path = kasane_run::root().join(SCRIPT);
    kasane_run::read_script(&path).expect("the session script")
}

/// Checks a typed session: each line echoed after a prompt, the output
/// line for line, a few commands next to their own output, and the end.
fn check_typed_session(boot: &Boot, srv: &[&'static str]) {
    let lines = typed_lines();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_typed(boot, &lines);
    assert_lines_in_order(
        boot,
        &[
            Is("; echo hello from rc"),
            Is("hello from rc"),
            Is("; cat /tmp/d/g"),
            Is("cat: /tmp/d/g: '/tmp/d/g' file does not exist"),
            Is("; echo one two three | wc"),
            Is("      1       3      14"),
            Is("; echo done"),
            Is("done"),
            // ^D at the last prompt: rc ends the prompt's line and exits.
            Is("; "),
            Is(ENDED),
        ],
    );
    check_session(boot, srv);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_interactive_rc_runs_the_typed_session() {
    let boot = boot_script("default", SCRIPT, Emulator::Qemu, 120);
    check_typed_session(&boot, &["fat"]);
    // No disk attached: QEMU's CD-ROM sits where the disk would, and the
    // FAT server's task says in one line that it is not a disk.
    assert_lines_in_order(
        &boot,
        &[
            Is("core: mount /srv/fat /n/c: fat: no disk: ata1: ata: device signature 0xeb14 is not an ATA disk"),
            Is("microkernel: poweroff ok"),
        ],
    );
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_interactive_rc_runs_the_typed_session() {
    let boot = boot_script("default", SCRIPT, Emulator::Bochs, 600);
    check_typed_session(&boot, &["fat"]);
    // No disk attached: the storage VM finds an empty channel, and the
    // rest of the system does not depend on it (tests/tests/fat.rs boots
    // this system with a disk).
    assert_lines_in_order(
        &boot,
        &[
            Is("core: server fat: vm, /srv/fat, /proc/9002"),
            Is("core: mount /srv/fat /n/c: fat: no disk: ata1: ata: no device on the channel"),
            Is("hvm: poweroff ok (requested by cell 0)"),
        ],
    );
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_rc_runs_the_session_file() {
    let boot = boot_manifest("core", Emulator::Qemu, 120);
    check_session(&boot, &[]);
    assert_lines_in_order(&boot, &[Is("microkernel: poweroff ok")]);
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
        "echo a )",
        "echo still here",
    ];
    let boot = boot_typing("default", &lines, Emulator::Bochs, 600);
    assert_typed(&boot, &[&echo_long]);
    // What the commands printed, and nothing else: the erased and killed
    // text is gone, and the unfinished quote took a second line (after
    // the continuation prompt, a tab).
    assert_output_between(
        &boot,
        STARTED,
        ENDED,
        &[
            Is(&long),
            Is("typo FIXED"),
            Is("after kill"),
            Is("\tlines'"),
            Is("two"),
            Is("lines"),
            Is("rc: syntax error on line 1: unexpected ')'"),
            Is("still here"),
        ],
    );
    assert_clean(&boot);
}
