//! A 9P server in its own VM beside the same server as a task, under core.
//!
//! `images/manifests/core-vm.toml` places one ramfs image twice: `ramfs`
//! as a task on /tmp and `img` as a server VM (`ramfs-vm`, its own cell,
//! EPT and VPID) on /n, joined to core by a virtio link core drives from
//! user space. `images/scripts/vm` runs the same rc session (create,
//! append, read, mkdir, ls -l, wc, union bind, rm) against both, reads
//! `/dev/vm`, then injects each failure verb into the VM through its
//! `/proc` ctl while a reader holds one of its files open. Each case
//! shows the injection, the VM performing it for real, hvm's or core's
//! line naming the reason, the restart of that VM alone, the reader
//! seeing at most one failed read (none when the read in flight is sent
//! again, as it is today) and then the same bytes, and the task
//! server on /tmp answering throughout.

use kasane_run::{Boot, Emulator};
use kasane_tests::Line::{self, Is, Pattern, StartsWith};
use kasane_tests::{assert_clean, assert_lines_in_order, assert_no_line_contains};

/// The rc session run against `dir` (the same for both placements).
fn session(dir: &'static str) -> Vec<Line<'static>> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        Is(leak(format!("-- session on {dir}"))),
        Is("motd from the ramfs image"),
        Is("hello"),
        Is("world"),
        Pattern("-664 M eve * 6 g"),
        Is(leak(format!("      2 {dir}/f"))),
        Is("inner"),
        Is("doc"),
        Is("f"),
        Is("motd"),
    ]
}

/// One injected failure: the injection, what the VM does, hvm's or
/// core's line naming it, core's recovery of the mount, then the reader's
/// bytes.
fn case(verb: &'static str, reasons: &[Line<'static>]) -> Vec<Line<'static>> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut lines = vec![
        Is(leak(format!("-- vm {verb}"))),
        Is(leak(format!("core: server img: injecting {verb}"))),
        Is(leak(format!(
            "hvm: cell 1 (img): `{verb}` injected by cell 0"
        ))),
        Is(leak(format!("img| runtime-vm: performing `{verb}`"))),
    ];
    lines.extend_from_slice(reasons);
    lines.extend([
        StartsWith("core: server img restarted (restart "),
        Is("one"),
        Is("two"),
        Is("three"),
    ]);
    lines
}

/// hvm's failure line for the VM, then core seeing the new peer on the
/// link (its link vector) and recovering the mount.
fn by_hvm(failure: &'static str) -> [Line<'static>; 2] {
    [
        StartsWith(failure),
        Is("core: #M: link hung up: img: the server VM was restarted"),
    ]
}

fn transcript() -> Vec<Line<'static>> {
    let mut lines = vec![
        Is("core: server ramfs: task, /srv/ramfs, /proc/9001"),
        Is("core: server img: vm, /srv/img, /proc/9002"),
        Is("core: started /bin/rc as pid 1"),
        Is("-- placements"),
        Is("ramfs"),
        Is("img"),
        Pattern("img server-vm running restarts 0/10 exits * last-failure -"),
    ];
    lines.extend(session("/tmp"));
    lines.extend(session("/n"));
    lines.extend(case(
        "crash",
        &by_hvm("hvm: cell 1 (img) failed: fault reported by the cell itself"),
    ));
    lines.extend(case(
        "triple-fault",
        &by_hvm("hvm: cell 1 (img) failed: triple fault"),
    ));
    lines.extend(case(
        "wild-write",
        &by_hvm("hvm: cell 1 (img) failed: EPT violation (write at gpa=0xe01ff000"),
    ));
    // Garbage leaves the VM running: core's protocol check cuts the link
    // and asks hvm for the restart.
    lines.extend(case(
        "garbage",
        &[
            StartsWith("core: #M: link hung up: img: a 9P size of"),
            Is("hvm: cell 1 (img): `restart` requested by cell 0"),
        ],
    ));
    lines.extend(case(
        "hang",
        &by_hvm("hvm: cell 1 (img) failed: no heartbeat for longer than 200 ms"),
    ));
    lines.extend([
        Pattern("img server-vm running restarts 4/10 exits * last-failure no heartbeat for longer than 200 ms rip=*"),
        Is("-- the image came back"),
        Is("motd from the ramfs image"),
        // A restart asked through /dev/vm: the VM alone, the mount
        // recovered; a ctl message that is no verb is refused.
        Is("-- /dev/vm ctl"),
        Is("hvm: cell 1 (img): `restart` requested by cell 0"),
        Is("core: #M: link hung up: img: the server VM was restarted"),
        StartsWith("core: server img restarted (restart "),
        Is("motd from the ramfs image"),
        Is("status is echo: write error: unknown ctl message 'explode': stop, start, restart, crash, triple-fault, wild-write, hang or garbage"),
        Is("done"),
        Is("core: init exited: ''"),
    ]);
    lines
}

fn check(boot: &Boot) {
    assert_lines_in_order(boot, &transcript());
    // The task server on /tmp answers after every case.
    for verb in ["crash", "triple-fault", "wild-write", "garbage", "hang"] {
        let from = format!("-- vm {verb}");
        let part: Vec<&str> = boot
            .transcript
            .lines()
            .map(str::trim_end)
            .skip_while(|l| *l != from)
            .skip(1)
            .take_while(|l| !l.starts_with("-- "))
            .collect();
        assert!(part.contains(&"kept"), "{verb}: {part:?}");
        // At most one failed read per injected failure.
        let failed = part.iter().filter(|l| **l == "one read failed").count();
        assert!(failed <= 1, "{verb}: {part:?}");
    }
    // The VM came up once at boot, once after each of the five failures
    // and once for the restart asked through /dev/vm (its console lines
    // interleave with cell 0's, so they are counted rather than placed).
    let up = boot
        .transcript
        .lines()
        .filter(|l| l.starts_with("img| runtime-vm: link up at 00:01.0"))
        .count();
    assert_eq!(up, 7, "{}", boot.transcript);
    // Only the VM was restarted; the task server and cell 0 never were.
    assert_no_line_contains(boot, "server ramfs restarted");
    assert_no_line_contains(boot, "cell 0 (cell0) failed");
    assert_no_line_contains(boot, "not restarted");
    assert_no_line_contains(boot, "PANIC");
    assert_clean(boot);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_ramfs_as_task_and_as_vm_and_the_vm_failure_matrix() {
    check(&kasane_tests::boot_manifest(
        "core-vm",
        Emulator::Bochs,
        900,
    ));
}

/// Bare mode (QEMU's TCG, no VT-x): the server placed in a VM runs as a
/// task, core says so in one line, and the same session and failure
/// matrix pass with the task's runtime performing each verb.
fn bare_transcript() -> Vec<Line<'static>> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut lines = vec![
        Is("hvm: cell img: needs VT-x; not started in bare mode"),
        Is("core: server img: placed in a vm, runs as a task (bare mode: no server VM link)"),
        Is("core: server ramfs: task, /srv/ramfs, /proc/9001"),
        Is("core: server img: task, /srv/img, /proc/9002"),
        Is("-- placements"),
        Is("cat: /dev/vm/1/status: '/dev/vm/1/status' file does not exist"),
    ];
    lines.extend(session("/tmp"));
    lines.extend(session("/n"));
    for verb in ["crash", "triple-fault", "wild-write", "garbage", "hang"] {
        lines.extend([
            Is(leak(format!("-- vm {verb}"))),
            Is(leak(format!("core: server img: injecting {verb}"))),
            Is(leak(format!("runtime-task: performing {verb}"))),
            StartsWith("core: #M: link hung up: img: "),
            StartsWith("core: server img restarted (restart "),
            Is("one"),
            Is("two"),
            Is("three"),
        ]);
    }
    lines.extend([
        Is("-- the image came back"),
        Is("motd from the ramfs image"),
        // No cells to control without hvm.
        Is("-- /dev/vm ctl"),
        Is("rc: can't open /dev/vm/1/ctl: '/dev/vm/1' file does not exist"),
        Is("motd from the ramfs image"),
        Is("done"),
    ]);
    lines
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_bare_mode_runs_the_vm_placed_server_as_a_task() {
    let boot = kasane_tests::boot_manifest("core-vm", Emulator::Qemu, 300);
    assert_lines_in_order(&boot, &bare_transcript());
    assert_no_line_contains(&boot, "server ramfs restarted");
    assert_clean(&boot);
}
