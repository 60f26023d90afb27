//! Per-process namespaces under core: shared, copied (rfork n) and clean
//! (rfork N), plus a rename through the mount driver.
//!
//! `images/manifests/core-ns.toml` runs `images/scripts/namespaces`: a
//! child rc binds `#c` on /n in the namespace it shares with the shell,
//! and the shell sees it; a child that said `rfork n` binds `#c` on /mnt
//! and sees it, and the shell does not; a child that said `rfork N` has
//! nothing but `#R` and what it binds itself (its `ns` shows exactly that),
//! and the shell's /srv is untouched; `with -N` and `with -n` spawn a
//! program with a clean or copied namespace; `mv` within a ramfs directory is a
//! wstat rename; a program copied to ramfs runs from there; a bad rfork
//! flag sets `$status`.

use kasane_run::{Boot, Emulator};
use kasane_tests::{assert_clean, assert_lines_in_order, boot_manifest};

const TRANSCRIPT: &[&str] = &[
    "core: started /bin/rc as pid 1",
    "-- the parent sees it",
    "cons",
    "-- a child with a copy (rfork n) binds #c on /mnt",
    "child sees:",
    "cons",
    "-- the parent does not see it",
    "-- end of /mnt",
    "clean child srv:",
    "-- end of clean /srv",
    "bind '#b' /bin",
    "bind '#p' /proc",
    "cd /",
    "-- the parent still has its own",
    "ramfs",
    // Spawn flags: a child started with a clean namespace sees an empty
    // /srv; one started with a copy sees ramfs; a bad flag is refused.
    "-- spawned with a clean namespace (with -N)",
    "-- end of clean /srv (spawn)",
    "ramfs",
    "with: bad flag -x",
    "status is with: usage",
    "-- rename within a directory",
    "new",
    "moved",
    // spawn reads the program through the namespace: here from ramfs.
    "-- a program read from ramfs",
    "Thu Jan  1 00:00:",
    "rfork: bad flag m",
    "status is rfork: usage",
    "done",
    "core: init exited: ''",
];

/// The lines strictly between the first line equal to `from` and the next
/// line equal to `to`.
fn between<'a>(boot: &'a Boot, from: &str, to: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = boot.transcript.lines().collect();
    let start = lines.iter().position(|l| *l == from);
    let start = start.unwrap_or_else(|| panic!("no line {from:?}:\n{}", boot.transcript));
    let end = lines[start..].iter().position(|l| *l == to);
    let end = end.unwrap_or_else(|| panic!("no line {to:?}:\n{}", boot.transcript));
    lines[start + 1..start + end].to_vec()
}

fn check(boot: &Boot) {
    assert_lines_in_order(boot, TRANSCRIPT);
    // The copy's bind stayed in the child; the clean child's /srv is empty
    // and its namespace is the two binds it made.
    assert_eq!(
        between(boot, "-- the parent does not see it", "-- end of /mnt"),
        Vec::<&str>::new(),
        "{}",
        boot.transcript
    );
    assert_eq!(
        between(boot, "clean child srv:", "-- end of clean /srv"),
        Vec::<&str>::new(),
        "{}",
        boot.transcript
    );
    assert_eq!(
        between(
            boot,
            "-- spawned with a clean namespace (with -N)",
            "-- end of clean /srv (spawn)"
        ),
        Vec::<&str>::new(),
        "{}",
        boot.transcript
    );
    assert_eq!(
        between(
            boot,
            "-- end of clean /srv",
            "-- the parent still has its own"
        ),
        ["bind '#b' /bin", "bind '#p' /proc", "cd /"],
        "{}",
        boot.transcript
    );
    // The rename left one file.
    assert_eq!(
        between(boot, "-- rename within a directory", "moved"),
        ["new"],
        "{}",
        boot.transcript
    );
    assert_clean(boot);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_namespaces_are_shared_copied_or_clean() {
    check(&boot_manifest("core-ns", Emulator::Qemu, 120));
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_namespaces_are_shared_copied_or_clean() {
    check(&boot_manifest("core-ns", Emulator::Bochs, 600));
}
