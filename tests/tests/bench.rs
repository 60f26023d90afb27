//! Boots core's file-read benchmarks under Bochs and reports the figures.
//!
//! `images/manifests/bench-core.toml` runs `/bin/bench` from an rc script:
//! 4 KB reads of a file on the ramfs task server (through core's `#M`
//! driver and the server link) and of in-core servants, with a null core
//! call, 0-, 1- and 8192-byte reads and a 64 KB read beside them. The test checks that
//! every figure is there and sane, and prints the `bench` lines so that
//! `run/test`'s log carries them (docs/performance.md, "Core file reads").

use kasane_run::Emulator;
use kasane_tests::Line::{Is, Pattern};
use kasane_tests::{assert_clean, assert_lines_in_order, assert_no_line_contains, boot_manifest};

/// The `bench NAME VALUE UNIT` lines of the transcript, from `bench` on.
fn bench_lines(transcript: &str) -> Vec<&str> {
    transcript
        .lines()
        .filter_map(|line| line.find("bench ").map(|at| &line[at..]))
        .filter(|line| line.ends_with(" cycles") || line.ends_with(" x"))
        .collect()
}

/// The value of `bench NAME VALUE UNIT`, in hundredths (a ratio has two
/// decimals).
fn figure(lines: &[&str], name: &str) -> u64 {
    let line = lines
        .iter()
        .find(|line| line.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no `bench {name}` line in {lines:#?}"));
    let value = line.split_whitespace().nth(2).unwrap_or("");
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "00"));
    let parsed = whole
        .parse::<u64>()
        .ok()
        .zip(fraction.parse::<u64>().ok().filter(|_| fraction.len() == 2));
    match parsed {
        Some((whole, fraction)) => whole * 100 + fraction,
        None => panic!("`{line}`: the value is not a number"),
    }
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_core_read_benchmarks() {
    let boot = boot_manifest("bench-core", Emulator::Bochs, 600);
    assert_lines_in_order(
        &boot,
        &[
            Is("core: started /bin/rc as pid 1"),
            Pattern("bench core_getpid_cycles * cycles"),
            Pattern("bench read_4k_ramfs_task_cycles * cycles"),
            Pattern("bench read_4k_servant_cycles * cycles"),
            Pattern("bench read_4k_boot_module_cycles * cycles"),
            Pattern("bench read_64k_ramfs_task_cycles * cycles"),
            Pattern("bench read_0b_servant_cycles * cycles"),
            Pattern("bench read_4k_ramfs_vs_servant_ratio * x"),
            Is("bench status is "),
            Pattern("ramvm server-vm running restarts 0/5 exits * last-failure -"),
            Pattern("bench read_4k_ramfs_vm_cycles * cycles"),
            Pattern("bench read_4k_ramfs_task_again_cycles * cycles"),
            Pattern("bench read_4k_vm_vs_task_ratio * x"),
            Pattern("ramvm server-vm running restarts 0/5 exits * last-failure -"),
            Is("vm bench status is "),
            Is("core: init exited: ''"),
        ],
    );
    assert_no_line_contains(&boot, "bench: FAIL");
    assert_clean(&boot);
    let lines = bench_lines(&boot.transcript);
    for line in &lines {
        eprintln!("{line}");
    }
    for line in boot.transcript.lines().filter(|l| l.starts_with("# ")) {
        eprintln!("{line}");
    }
    let null_call = figure(&lines, "core_getpid_cycles");
    let ramfs = figure(&lines, "read_4k_ramfs_task_cycles");
    let servant = figure(&lines, "read_4k_servant_cycles");
    let ratio = figure(&lines, "read_4k_ramfs_vs_servant_ratio");
    let ramfs_64k = figure(&lines, "read_64k_ramfs_task_cycles");
    assert!(null_call > 0, "a null call takes time: {lines:#?}");
    // A read costs more than a null call, and the ramfs task's path (core,
    // #M, 9P to another task and back) more than a servant's in core.
    assert!(servant > null_call, "{lines:#?}");
    assert!(ramfs > servant, "{lines:#?}");
    assert!(ratio > 100, "the ratio is above 1: {lines:#?}");
    // Sixteen times the bytes in eight calls: dearer than one 4 KB read,
    // cheaper than sixteen.
    assert!(
        ramfs_64k > 2 * ramfs && ramfs_64k < 16 * ramfs,
        "{lines:#?}"
    );
    // The server VM's read (issue 12): through the virtio link and hvm's
    // link switch instead of IPC; dearer than the task's, and counted in
    // VM exits, which cost about a thousand cycles each on real VT-x and
    // almost nothing on the Bochs clock.
    let vm = figure(&lines, "read_4k_ramfs_vm_cycles");
    let task_again = figure(&lines, "read_4k_ramfs_task_again_cycles");
    assert!(vm > servant && task_again > servant, "{lines:#?}");
    let exits: Vec<u64> = boot
        .transcript
        .lines()
        .filter(|l| l.starts_with("ramvm server-vm "))
        .filter_map(|l| l.split_whitespace().nth(6)?.parse().ok())
        .collect();
    assert_eq!(exits.len(), 2, "two readings of the VM's exits");
    assert!(exits[1] > exits[0], "the reads made the VM exit: {exits:?}");
    // bench makes 72 reads of the file (8 untimed, 64 timed) between the
    // two readings; the open, walk and clunk around them and the VM's
    // heartbeat timer are counted too, so this is an upper bound.
    let per_read = (exits[1] - exits[0]) as f64 / 72.0;
    println!("bench read_4k_vm_exits {per_read:.2} exits");
}
