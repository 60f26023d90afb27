//! The storage driver VM on a real disk image, and the host's tools after.
//!
//! The host makes a FAT16 image with `mkfs.fat` and fills it with `mtools`
//! (a long-named directory with a nested file, an empty file, files to
//! rename and remove, a file to benchmark). `images/manifests/core-fat.toml`
//! gives the secondary ATA channel to the `fat` server VM (`fatfs-vm`),
//! which core mounts on /n; the launcher attaches the image there. The rc
//! session (`images/scripts/fat`) lists and reads what the host wrote,
//! creates, appends, makes a directory, renames and removes, mounts the
//! server again from rc, times 4 KB reads and durable writes, and runs a
//! background writer of numbered records (`images/scripts/fat-writer`)
//! while `/dev/vm/1/ctl` injects `crash`, then another while it injects
//! `wild-write`. After power-off the host checks the image: `fsck.fat -n`
//! finds nothing worse than the dirty flag a crash leaves, and `mtools`
//! sees every change and every acknowledged record.
//!
//! The task placement (`images/manifests/core-fat-task.toml`, QEMU bare
//! and Bochs under hvm): the same server as a task of cell 0, the
//! channel's ports granted to that task alone by the microkernel, runs
//! the same session without the VM's crash injection
//! (`images/scripts/fat-task`), times its 4 KB read beside ramfs's, is
//! restarted (a new task, granted the ports again), and the host checks
//! the image the same way.
//!
//! The default system (`images/manifests/default.toml`, what `run/up`
//! boots) mounts an attached disk on /n/c: under QEMU bare (the task
//! build) and Bochs (the storage VM), a typed session reads what the host
//! wrote and writes a file the host then finds. Booted without a disk it
//! says so in one line (tests/tests/core.rs checks that line).

use std::path::{Path, PathBuf};
use std::process::Command;

use kasane_run::{Boot, Emulator};
use kasane_tests::Line::{Is, Pattern, StartsWith};
use kasane_tests::{assert_clean, assert_lines_in_order, assert_no_line_contains};

fn tool(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{program} (dosfstools/mtools; run/deps installs them): {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn run(program: &str, args: &[&str]) -> String {
    let (ok, text) = tool(program, args);
    assert!(ok, "{program} {args:?}:\n{text}");
    text
}

/// A 20-cylinder FAT16 image (Bochs takes whole cylinders of 516 096 bytes).
fn make_disk(name: &str) -> PathBuf {
    let dir = kasane_run::root().join("build/fat-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    let image = disk.to_str().unwrap();
    run("mkfs.fat", &["-F", "16", "-s", "1", "-C", image, "10080"]);
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let hello = file("hello", b"hello from the host\n");
    let empty = file("empty", b"");
    let old = file("old", b"old name\n");
    let doomed = file("doomed", b"doomed\n");
    let bench = file("bench", &[0x42; 8192]);
    run("mmd", &["-i", image, "::/A Long Directory Name"]);
    run("mmd", &["-i", image, "::/A Long Directory Name/nested"]);
    for (from, to) in [
        (&hello, "::/A Long Directory Name/nested/Hello World.txt"),
        (&empty, "::/empty"),
        (&old, "::/old.txt"),
        (&doomed, "::/doomed.txt"),
        (&bench, "::/bench.bin"),
    ] {
        run("mcopy", &["-i", image, from, to]);
    }
    assert_eq!(
        std::fs::metadata(&disk).unwrap().len() % kasane_run::DISK_CYLINDER_BYTES,
        0
    );
    disk
}

fn mtype(disk: &Path, path: &str) -> String {
    run("mtype", &["-i", disk.to_str().unwrap(), path])
}

/// The numbers N of the `acked N` lines: records the session saw written.
fn acknowledged(boot: &Boot) -> Vec<u32> {
    boot.transcript
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("acked ")?.parse().ok())
        .collect()
}

/// The exit counts `cat /dev/vm/1/status` printed, in order.
fn exit_readings(boot: &Boot) -> Vec<u64> {
    boot.transcript
        .lines()
        .filter(|l| l.starts_with("fat server-vm "))
        .filter_map(|l| l.split_whitespace().nth(6)?.parse().ok())
        .collect()
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_storage_vm_serves_a_mkfs_image_and_keeps_acknowledged_records() {
    let disk = make_disk("bochs");
    let boot = kasane_tests::boot_with_disk("core-fat", &disk, Emulator::Bochs, 900);
    assert_lines_in_order(
        &boot,
        &[
            Pattern("fat| fatfs: ata1: 20160 sectors*, model *"),
            Is("fat| fatfs: volume 0 at sector 0, 20160 sectors"),
            Is("core: server fat: vm, /srv/fat, /proc/9001"),
            Is("-- fat: what the host wrote"),
            // Directory order, as the host's tools wrote the entries.
            Is("A Long Directory Name"),
            Is("empty"),
            Is("old.txt"),
            Is("doomed.txt"),
            Is("bench.bin"),
            Is("Hello World.txt"),
            Is("hello from the host"),
            Is("      0 /n/empty"),
            Is("      9 /n/old.txt"),
            Is("-- fat: writes"),
            Is("hello from kasane"),
            Is("appended line"),
            Is("A Long Directory Name"),
            Is("empty"),
            Is("bench.bin"),
            Is("Kasane Note.txt"),
            Is("Made On Kasane"),
            Is("Renamed By Kasane.txt"),
            Is("-- fat: mount from rc"),
            Is("inner"),
            Is("-- fat: bench"),
            Pattern("bench fat_read_4k_cycles * cycles"),
            Pattern("bench fat_write_4k_cycles * cycles"),
            Is("-- fat: records"),
            Is("hvm: cell 1 (fat): `crash` injected by cell 0"),
            StartsWith("hvm: cell 1 (fat) failed: fault reported by the cell itself"),
            Is("core: #M: link hung up: fat: the server VM was restarted"),
            StartsWith("core: server fat restarted (restart 1 of 10)"),
            Is("hvm: cell 1 (fat): `wild-write` injected by cell 0"),
            StartsWith("hvm: cell 1 (fat) failed: EPT violation"),
            StartsWith("core: server fat restarted (restart 2 of 10)"),
            Is("-- fat: done"),
        ],
    );
    assert_no_line_contains(&boot, "cell 0 (cell0) failed");
    assert_no_line_contains(&boot, "fat: disk i/o error");
    assert_no_line_contains(&boot, "fat: corrupt");
    assert_no_line_contains(&boot, "bench: FAIL");
    assert_clean(&boot);

    // The writers (1000-1999 while `crash` is injected, 2000-2999 while
    // `wild-write` is) continue after the failure with at most one failed
    // record each.
    let acked = acknowledged(&boot);
    assert!(acked.len() >= 1998, "{} records acknowledged", acked.len());
    assert!(
        acked.contains(&1000) && acked.contains(&2999),
        "first and last acknowledged"
    );
    // The failures came while a writer was running: acknowledged records
    // on both sides of each injection.
    for verb in ["crash", "wild-write"] {
        let injected = format!("hvm: cell 1 (fat): `{verb}` injected by cell 0");
        let lines: Vec<&str> = boot.transcript.lines().collect();
        let at = lines.iter().position(|l| *l == injected).unwrap();
        let first = if verb == "crash" { 1000 } else { 2000 };
        let acked_in = |part: &[&str]| {
            part.iter()
                .filter_map(|l| l.strip_prefix("acked ")?.parse::<u32>().ok())
                .any(|n| (first..first + 1000).contains(&n))
        };
        assert!(
            acked_in(&lines[..at]) && acked_in(&lines[at..]),
            "`{verb}` was not injected under the writer"
        );
    }

    // The figures, for run/test's summary.
    for line in boot
        .transcript
        .lines()
        .filter(|l| l.starts_with("bench fat_"))
    {
        println!("{}", line.trim_end());
    }
    // Exits per read and per write (upper bounds: the open,
    // walk and clunk around the timed calls and the heartbeat count too).
    let exits = exit_readings(&boot);
    assert_eq!(exits.len(), 3, "{}", boot.transcript);
    // bench makes 24 reads (8 untimed, 16 timed) and 16 writes.
    println!(
        "bench fat_read_4k_vm_exits {:.0} exits",
        (exits[1] - exits[0]) as f64 / 24.0
    );
    println!(
        "bench fat_write_4k_vm_exits {:.0} exits",
        (exits[2] - exits[1]) as f64 / 16.0
    );

    // The host's tools after power-off. A crash leaves the dirty flag
    // set; anything else fsck.fat reports is a failure.
    let image = disk.to_str().unwrap();
    let (clean, report) = tool("fsck.fat", &["-n", image]);
    let problems: Vec<&str> = report
        .lines()
        .filter(|line| {
            !line.starts_with("fsck.fat ")
                && !line.contains("Dirty bit is set")
                && !line.contains("Automatically removing dirty bit")
                && !line.contains("Leaving filesystem unchanged")
                && !line.starts_with(image)
                && !line.trim().is_empty()
        })
        .collect();
    assert!(
        problems.is_empty(),
        "fsck.fat -n (exit ok: {clean}):\n{report}"
    );
    let listing = run("mdir", &["-i", image, "-b", "::/"]);
    for name in [
        "Kasane Note.txt",
        "Made On Kasane",
        "Renamed By Kasane.txt",
        "records.txt",
    ] {
        assert!(listing.contains(name), "mdir lacks {name}:\n{listing}");
    }
    assert!(
        !listing.contains("doomed.txt") && !listing.contains("old.txt"),
        "{listing}"
    );
    assert_eq!(
        mtype(&disk, "::/Kasane Note.txt"),
        "hello from kasane\nappended line\n"
    );
    assert_eq!(mtype(&disk, "::/Made On Kasane/inner.txt"), "inner\n");
    assert_eq!(mtype(&disk, "::/Renamed By Kasane.txt"), "old name\n");
    let bench = run("mtype", &["-i", image, "::/bench.bin"]);
    assert_eq!(bench.len(), 8192);
    assert!(
        bench.as_bytes()[..4096].iter().all(|&b| b == 0x5A),
        "the timed writes reached the disk"
    );
    // Every acknowledged record is on the disk, in order, once.
    let records = mtype(&disk, "::/records.txt");
    let on_disk: Vec<u32> = records
        .lines()
        .filter_map(|line| line.strip_prefix("record ")?.parse().ok())
        .collect();
    for n in &acked {
        assert_eq!(
            on_disk.iter().filter(|&&m| m == *n).count(),
            1,
            "acknowledged record {n} is not on the disk once: {records}"
        );
    }
    let mut sorted = on_disk.clone();
    sorted.sort_unstable();
    assert_eq!(on_disk, sorted, "records out of order: {records}");
}

/// The host's checks after power-off common to both sessions' writes:
/// `fsck.fat -n` clean, and `mtools` sees each change.
fn assert_session_changes_on_disk(disk: &Path) {
    let image = disk.to_str().unwrap();
    let (clean, report) = tool("fsck.fat", &["-n", image]);
    assert!(clean, "fsck.fat -n:\n{report}");
    let problems: Vec<&str> = report
        .lines()
        .filter(|line| !line.starts_with("fsck.fat ") && !line.starts_with(image))
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(problems.is_empty(), "fsck.fat -n:\n{report}");
    let listing = run("mdir", &["-i", image, "-b", "::/"]);
    for name in ["Kasane Note.txt", "Made On Kasane", "Renamed By Kasane.txt"] {
        assert!(listing.contains(name), "mdir lacks {name}:\n{listing}");
    }
    assert!(
        !listing.contains("doomed.txt") && !listing.contains("old.txt"),
        "{listing}"
    );
    assert_eq!(
        mtype(disk, "::/Kasane Note.txt"),
        "hello from kasane\nappended line\n"
    );
    assert_eq!(mtype(disk, "::/Made On Kasane/inner.txt"), "inner\n");
    assert_eq!(mtype(disk, "::/Renamed By Kasane.txt"), "old name\n");
    assert_eq!(
        mtype(disk, "::/A Long Directory Name/nested/Hello World.txt"),
        "hello from the host\n"
    );
    let bench = run("mtype", &["-i", image, "::/bench.bin"]);
    assert_eq!(bench.len(), 8192);
    assert!(
        bench.as_bytes()[..4096].iter().all(|&b| b == 0x5A),
        "the timed writes reached the disk"
    );
    assert!(bench.as_bytes()[4096..].iter().all(|&b| b == 0x42));
}

/// The task placement's session (`core-fat-task`) under `emulator`, with
/// the host's checks after; returns its `bench` lines.
fn task_session(name: &str, emulator: Emulator, timeout: u64) -> Vec<String> {
    let disk = make_disk(name);
    let boot = kasane_tests::boot_with_disk("core-fat-task", &disk, emulator, timeout);
    assert_lines_in_order(
        &boot,
        &[
            Pattern("fatfs: ata1: 20160 sectors*, model *"),
            Is("fatfs: volume 0 at sector 0, 20160 sectors"),
            Is("core: server fat: task, /srv/fat, /proc/9001"),
            Is("-- fat: what the host wrote"),
            Is("A Long Directory Name"),
            Is("empty"),
            Is("old.txt"),
            Is("doomed.txt"),
            Is("bench.bin"),
            Is("Hello World.txt"),
            Is("hello from the host"),
            Is("      0 /n/c/empty"),
            Is("      9 /n/c/old.txt"),
            Is("-- fat: writes"),
            Is("hello from kasane"),
            Is("appended line"),
            Is("A Long Directory Name"),
            Is("empty"),
            Is("bench.bin"),
            Is("Kasane Note.txt"),
            Is("Made On Kasane"),
            Is("Renamed By Kasane.txt"),
            Is("-- fat: mount from rc"),
            Is("inner"),
            Is("-- fat: bench"),
            Pattern("bench fat_task_read_4k_cycles * cycles"),
            Pattern("bench ramfs_task_read_4k_cycles * cycles"),
            Pattern("bench fat_task_vs_ramfs_read_4k_ratio * x"),
            Pattern("bench fat_task_write_4k_cycles * cycles"),
            Is("-- fat: restart"),
            Is("core: server fat: injecting crash"),
            StartsWith("core: #M: link hung up: fat: "),
            // The new task identified the disk: its ports were granted again.
            Pattern("fatfs: ata1: 20160 sectors*, model *"),
            Is("core: server fat restarted (restart 1 of 5)"),
            Is("hello from kasane"),
            Is("appended line"),
            Is("-- fat: done"),
        ],
    );
    assert_no_line_contains(&boot, "fat: disk i/o error");
    assert_no_line_contains(&boot, "fat: corrupt");
    assert_no_line_contains(&boot, "bench: FAIL");
    assert_no_line_contains(&boot, "restart 2");
    assert_clean(&boot);
    assert_session_changes_on_disk(&disk);
    boot.transcript
        .lines()
        .filter(|l| l.starts_with("bench "))
        .map(|l| l.trim_end().to_owned())
        .collect()
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_task_placement_serves_the_disk_with_granted_ports() {
    // Bare mode: the microkernel's port grant alone opens the channel.
    // TCG's cycle counts are noisy; they go to the summary as `qemu_`.
    for line in task_session("qemu-task", Emulator::Qemu, 300) {
        println!("{}", line.replacen("bench ", "bench qemu_", 1));
    }
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_task_placement_serves_the_disk_through_cell_0s_bitmaps() {
    // Under hvm: cell 0 holds the device (its I/O bitmaps), and inside it
    // the grant keeps it to the server's task. Bochs's counts repeat.
    for line in task_session("bochs-task", Emulator::Bochs, 600) {
        println!("{line}");
    }
}

/// The default system with the image attached under `emulator`: the
/// typed session reads the host's file and writes one; after power-off
/// the host's tools see it and the volume is clean.
fn default_system_mounts_the_disk(name: &str, emulator: Emulator, placement: &str) {
    let disk = make_disk(name);
    let lines = [
        "ls /n/c",
        "cat '/n/c/A Long Directory Name/nested/Hello World.txt'",
        "echo written by the default system >/n/c/default.txt",
        "cat /n/c/default.txt",
    ];
    let boot = kasane_tests::boot_typing_with_disk("default", &lines, &disk, emulator, 600);
    assert_lines_in_order(
        &boot,
        &[
            Pattern("*fatfs: ata1: 20160 sectors*, model *"),
            Pattern(&format!("core: server fat: {placement}, /srv/fat, /proc/*")),
            Is("; ls /n/c"),
            Is("A Long Directory Name"),
            Is("empty"),
            Is("old.txt"),
            Is("doomed.txt"),
            Is("bench.bin"),
            Is("hello from the host"),
            Is("written by the default system"),
        ],
    );
    assert_no_line_contains(&boot, "core: mount /srv/fat");
    assert_clean(&boot);
    let (clean, report) = tool("fsck.fat", &["-n", disk.to_str().unwrap()]);
    assert!(clean, "fsck.fat -n:\n{report}");
    assert_eq!(
        mtype(&disk, "::/default.txt"),
        "written by the default system\n"
    );
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_default_system_mounts_an_attached_disk_on_n_c() {
    default_system_mounts_the_disk("default-qemu", Emulator::Qemu, "task");
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_default_system_mounts_an_attached_disk_on_n_c() {
    default_system_mounts_the_disk("default-bochs", Emulator::Bochs, "vm");
}
