//! Per-process namespaces under core: shared, copied (rfork n) and clean
//! (rfork N), plus a rename through the mount driver.
//!
//! `images/manifests/core-ns.toml` runs `images/scripts/namespaces`: a
//! child rc binds `#c` on /n in the namespace it shares with the shell,
//! and the shell sees it; a child that said `rfork n` binds `#c` on /mnt
//! and sees it, and the shell does not; a child that said `rfork N` has
//! nothing but `#R` and what it binds itself (its `ns` shows exactly that),
//! and the shell's /srv is untouched; `with -N` and `with -n` spawn a
//! program with a clean or copied namespace; `mv` within /tmp (ramfs,
//! mounted by core at boot) is a wstat rename; a program copied to ramfs
//! runs from there; a bad rfork flag sets `$status`.

use kasane_run::{Boot, Emulator};
use kasane_tests::Line::{self, Is, Pattern};
use kasane_tests::{assert_clean, assert_output_between, boot_manifest, output_between};

/// Everything the script prints, line for line, between core's
/// `started` line and its `init exited` line.
const TRANSCRIPT: &[Line] = &[
    Is("-- a child that shares the namespace binds #c on /n"),
    Is("-- the parent sees it"),
    Is("cons"),
    Is("null"),
    Is("zero"),
    Is("sysname"),
    Is("time"),
    Is("-- a child with a copy (rfork n) binds #c on /mnt"),
    Is("child sees:"),
    Is("cons"),
    Is("null"),
    Is("zero"),
    Is("sysname"),
    Is("time"),
    // The copy's bind stayed in the child: the parent's /mnt is empty.
    Is("-- the parent does not see it"),
    Is("-- end of /mnt"),
    // The clean child's /srv is empty and its namespace is the two binds
    // it made.
    Is("-- a child with a clean namespace (rfork N)"),
    Is("clean child srv:"),
    Is("-- end of clean /srv"),
    Is("bind '#b' /bin"),
    Is("bind '#p' /proc"),
    Is("cd /"),
    Is("-- the parent still has its own"),
    Is("ramfs"),
    // Spawn flags: a child started with a clean namespace sees an empty
    // /srv; one started with a copy sees ramfs; a bad flag is refused.
    Is("-- spawned with a clean namespace (with -N)"),
    Is("-- end of clean /srv (spawn)"),
    Is("ramfs"),
    Is("with: bad flag -x"),
    Is("usage: with [-nNeE] command [arg ...]"),
    Is("status is with: usage"),
    // In /tmp, ramfs from boot: the rename left one file.
    Is("-- rename within a directory"),
    Is("new"),
    Is("moved"),
    // spawn reads the program through the namespace: here from ramfs.
    Is("-- a program read from ramfs"),
    Pattern("Thu Jan  1 00:*:* GMT 1970"),
    Is("-- bad rfork flag"),
    Is("rfork: bad flag m"),
    Is("usage: rfork [nNeEs]"),
    Is("status is rfork: usage"),
    Is("done"),
];

fn check(boot: &Boot) {
    assert_output_between(
        boot,
        "core: started /bin/rc as pid 1",
        "core: init exited: ''",
        TRANSCRIPT,
    );
    // The same, said outright for the lines that show an absence.
    assert!(
        output_between(boot, "-- the parent does not see it", "-- end of /mnt").is_empty(),
        "{}",
        boot.transcript
    );
    assert!(
        output_between(boot, "clean child srv:", "-- end of clean /srv").is_empty(),
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
