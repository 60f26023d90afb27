//! CellControl on a stock Linux cell under hvm, in Bochs.
//!
//! `images/manifests/linux-control.toml`: cell 0 is `vm-probe` (args
//! "linux"). It waits for the bridge agent's first bytes on link 0, stops
//! the Linux cell with `CellControl`, starts it again (a new link
//! generation; the kernel boots from its pristine image and the new agent
//! speaks), and checks that a failure-injection op is refused for a Linux
//! cell. Two Linux boots: minutes.

use kasane_run::Emulator;
use kasane_tests::Line::{Is, Pattern};
use kasane_tests::{assert_clean, assert_lines_in_order, assert_no_line_contains, boot_manifest};

#[test]
#[ignore = "boots Bochs with a Linux cell twice (minutes); run/test runs it"]
fn bochs_cell0_stops_and_starts_a_linux_cell() {
    let boot = boot_manifest("linux-control", Emulator::Bochs, 1500);
    assert_lines_in_order(
        &boot,
        &[
            Is("vm-probe: link 0 to cell 1 `linux` up at 00:01.0, BAR 0xe0000000"),
            Is("vm-probe: ok: the Linux cell's agent speaks on link 0"),
            Is("vm-probe: ok: CellControl stop accepted"),
            Is("hvm: cell 1 (linux): `stop` requested by cell 0"),
            Is("vm-probe: ok: the Linux cell is stopped"),
            Is("vm-probe: ok: CellControl start accepted"),
            Is("hvm: cell 1 (linux): `start` requested by cell 0"),
            Pattern("vm-probe: link 0 generation * -> *: the peer is new"),
            Is("vm-probe: ok: a new link generation"),
            Is("vm-probe: ok: the started Linux cell's agent speaks on link 0"),
            Is("vm-probe: ok: an injection into a Linux cell is refused"),
            Is("vm-probe: 7 passed, 0 failed"),
            Is("hvm: poweroff ok (requested by cell 0)"),
        ],
    );
    assert_no_line_contains(&boot, "FAILED");
    assert_no_line_contains(&boot, "failed:");
    assert_clean(&boot);
}
