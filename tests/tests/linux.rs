//! Boots cell 0 and a stock Linux cell under hvm in Bochs and checks the link.
//!
//! The manifest `linux-link` runs core (cell 0's root task, with
//! `linktest=bridge`) beside Debian's cloud kernel with the bridge agent as
//! `/init` (fetched and built by the launcher, never committed). Core
//! drives the link from user space (virtio-drivers over the microkernel's
//! device window, PCI ports and link interrupt). The transcript must show:
//! Linux reaching the agent; cell 0 exchanging Hello, Ping and Uname with it
//! over hvm's virtio link; the crash cell 0 asks for, hvm's report of the
//! Linux cell's failure with its reason, the restart, and the new agent
//! answering; cell 0's tick counter going on all the while; cell 0 playing a
//! hostile guest (a descriptor outside its memory, nonsense register
//! writes) that hvm refuses while both cells keep running; the three
//! benchmark lines; and a clean power-off.
//!
//! A second system, `linux-watchdog`, boots the kernel with `panic=0`: the
//! crash becomes a hang, and hvm's heartbeat watchdog must catch it while
//! cell 0 keeps ticking.
//!
//! A third, `fault-triple-linux`, fails cell 0 at once (a triple fault) and
//! checks that the Linux cell beside it still runs: its kernel boots on to
//! its end (no root file system, a panic, a reset request).
//!
//! Bochs takes minutes for this, so the tests are `#[ignore]`d in a plain
//! `cargo test`; run it with
//! `cargo test -p kasane-tests --test linux -- --include-ignored`.

use kasane_run::Emulator;
use kasane_tests::Line::{self, Is, Pattern, StartsWith};
use kasane_tests::{assert_clean, assert_lines_in_order, assert_no_line_contains, boot_manifest};

/// The index of the first whole line that is `line`.
fn position(transcript: &str, line: Line) -> usize {
    transcript
        .lines()
        .position(|l| line.matches(l))
        .unwrap_or_else(|| panic!("no line {line:?} in the transcript:\n{transcript}"))
}

fn bench(transcript: &str, name: &str) -> u64 {
    let prefix = format!("bench {name} ");
    let line = transcript
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line:\n{transcript}"));
    let mut words = line[prefix.len()..].split_whitespace();
    let value = words.next().and_then(|v| v.parse().ok());
    assert_eq!(words.next(), Some("cycles"), "{line}");
    value.unwrap_or_else(|| panic!("not a number: {line}"))
}

#[test]
#[ignore = "boots Bochs with a Linux cell (several minutes); run/test runs it"]
fn bochs_linux_cell_link_crash_restart_and_hostile_guest() {
    let boot = boot_manifest("linux-link", Emulator::Bochs, 900);
    // Releases, nonces, addresses and cycle counts vary: `Pattern` and
    // `StartsWith` say where. hvm's summary may grow (`StartsWith`).
    assert_lines_in_order(
        &boot,
        &[
            Is("hvm: vmx=on ept=on ug=on vpid=on preemption-timer=on cells=2 tsc=200MHz"),
            StartsWith("microkernel: Kasane microkernel 0.1.0 mode=vmx-guest cell=0 "),
            StartsWith("microkernel: root task `core` started: "),
            Is("core: linux-link: virtio console ready at 00:01.0 (BAR 0xe0000000), driven by virtio-drivers from user space"),
            StartsWith("linux| kasane-agent: loaded 7 modules: virtio_ring"),
            StartsWith("linux| kasane-agent: ready release=6.1.0-"),
            StartsWith("core: linux-link: agent hello (announcement) release=6.1.0-"),
            Pattern("bench linux_boot_to_agent_cycles * cycles"),
            StartsWith("core: linux-link: hello reply from the agent release=6.1.0-"),
            Pattern("core: linux-link: pong nonce=0x* after * cycles"),
            Pattern("bench link_roundtrip_cycles * cycles"),
            // The uname reply names the machine.
            Pattern("core: linux-link: uname release=6.1.0-* machine=x86_64"),
            Is("core: linux-link: asking the agent to crash the kernel"),
            Is("core: linux-link: crash accepted; waiting for hvm to restart the Linux cell"),
            StartsWith("linux| "),
            Pattern("*Kernel panic - not syncing: sysrq triggered crash"),
            // hvm names why the Linux cell failed and the guest RIP: the
            // panicking kernel reboots through the FADT reset register
            // (`reboot=acpi`).
            Pattern("hvm: cell 1 (linux) failed: reset requested (port 0xCF9 / ACPI reset) rip=0x*"),
            Is("hvm: cell 1 (linux) will be restarted (attempt 1 of 2)"),
            Is("hvm: cell 1 (linux) restarted (restart 1 of 2)"),
            Is("core: linux-link: link reset by hvm (generation 2): the Linux cell was restarted"),
            StartsWith("linux| kasane-agent: ready release=6.1.0-"),
            StartsWith("core: linux-link: agent hello (announcement) release=6.1.0-"),
            Pattern("bench linux_restart_to_agent_cycles * cycles"),
            StartsWith("core: linux-link: hello reply from the agent release=6.1.0-"),
            Pattern("core: linux-link: uname release=6.1.0-* machine=x86_64"),
            StartsWith("hvm: cell 0 (cell0) link: refused: descriptor chain"),
            Is("core: linux-link: hostile descriptor (0x1000000000+64) refused: returned with 0 bytes"),
            Is("core: linux-link: nonsense register writes ignored"),
            Is("core: linux-link: the link works after the hostile test (pong)"),
            Is("core: linux-link: done"),
            Is("hvm: poweroff ok (requested by cell 0)"),
        ],
    );
    let transcript = &boot.transcript;
    // Cell 0 keeps counting while Linux is down and restarting.
    let ticks = transcript
        .lines()
        .filter(|l| l.starts_with("core: tick "))
        .count();
    assert!(ticks >= 3, "only {ticks} ticks:\n{transcript}");
    let crash = position(
        transcript,
        Is("core: linux-link: crash accepted; waiting for hvm to restart the Linux cell"),
    );
    let back = position(
        transcript,
        Pattern("bench linux_restart_to_agent_cycles * cycles"),
    );
    assert!(
        transcript
            .lines()
            .take(back)
            .skip(crash)
            .any(|l| l.starts_with("core: tick ")),
        "no tick between the crash and the new agent:\n{transcript}"
    );
    // The figures are there and plausible (Bochs cycles).
    let boot_cycles = bench(transcript, "linux_boot_to_agent_cycles");
    let restart_cycles = bench(transcript, "linux_restart_to_agent_cycles");
    let roundtrip = bench(transcript, "link_roundtrip_cycles");
    assert!(boot_cycles > 10_000_000, "{boot_cycles}");
    assert!(restart_cycles > 10_000_000, "{restart_cycles}");
    assert!(roundtrip > 0 && roundtrip < boot_cycles, "{roundtrip}");
    for line in transcript.lines().filter(|l| l.starts_with("bench ")) {
        eprintln!("{line}");
    }
    assert_no_line_contains(&boot, "linux-link: FAILED");
    assert_no_line_contains(&boot, "hvm: cell 0 (cell0) failed");
    assert_no_line_contains(&boot, "PANIC");
    assert_clean(&boot);
}

#[test]
#[ignore = "boots Bochs with a Linux cell (several minutes); run/test runs it"]
fn bochs_watchdog_restarts_a_hung_linux_cell() {
    // panic=0: the crash leaves the kernel spinning; the agent stops
    // answering cell 0's heartbeats, and hvm's 3 s watchdog fails the cell.
    let boot = boot_manifest("linux-watchdog", Emulator::Bochs, 900);
    assert_lines_in_order(
        &boot,
        &[
            StartsWith("linux| kasane-agent: ready release=6.1.0-"),
            Pattern("core: linux-link: uname release=6.1.0-* machine=x86_64"),
            Is("core: linux-link: crash accepted; waiting for hvm to restart the Linux cell"),
            Pattern("*Kernel panic - not syncing: sysrq triggered crash"),
            Pattern("hvm: cell 1 (linux) failed: no heartbeat for longer than 3000 ms rip=0x*"),
            Is("hvm: cell 1 (linux) will be restarted (attempt 1 of 1)"),
            Is("hvm: cell 1 (linux) restarted (restart 1 of 1)"),
            Is("core: linux-link: link reset by hvm (generation 2): the Linux cell was restarted"),
            StartsWith("linux| kasane-agent: ready release=6.1.0-"),
            Pattern("core: linux-link: uname release=6.1.0-* machine=x86_64"),
            Is("core: linux-link: the link works after the hostile test (pong)"),
            Is("core: linux-link: done"),
            Is("hvm: poweroff ok (requested by cell 0)"),
        ],
    );
    // Cell 0 keeps running while the Linux cell hangs and is failed.
    let transcript = &boot.transcript;
    let crash = position(
        transcript,
        Is("core: linux-link: crash accepted; waiting for hvm to restart the Linux cell"),
    );
    let restarted = position(
        transcript,
        Is("hvm: cell 1 (linux) restarted (restart 1 of 1)"),
    );
    assert!(
        transcript
            .lines()
            .take(restarted)
            .skip(crash)
            .any(|l| l.starts_with("core: tick ")),
        "no tick while the Linux cell hung:\n{transcript}"
    );
    assert_no_line_contains(&boot, "linux-link: FAILED");
    assert_clean(&boot);
}

#[test]
#[ignore = "boots Bochs with a Linux cell (minutes); run/test runs it"]
fn bochs_linux_cell_runs_on_after_cell0_fails() {
    // Containment with a second cell: cell 0 triple-faults at once, and the
    // Linux cell beside it still boots its kernel to the end (no root file
    // system: a panic and a reset request) after cell 0 is gone.
    let boot = boot_manifest("fault-triple-linux", Emulator::Bochs, 900);
    assert_lines_in_order(
        &boot,
        &[
            Is("hvm: vmx=on ept=on ug=on vpid=on preemption-timer=on cells=2 tsc=200MHz"),
            Is("microkernel: triple-faulting on purpose"),
            Pattern("hvm: cell 0 (cell0) failed: triple fault (qualification 0x0) rip=0x*"),
            Is("hvm: cell 0 (cell0) stopped"),
            // The Linux cell runs on after cell 0 is gone.
            Pattern("linux| [*] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"),
            Pattern("hvm: cell 1 (linux) failed: reset requested (port 0xCF9 / ACPI reset) rip=0x*"),
            Is("hvm: cell 1 (linux) stopped"),
            Is("hvm: all cells stopped"),
            Is("hvm: poweroff ok (all cells stopped)"),
        ],
    );
    assert_clean(&boot);
}
