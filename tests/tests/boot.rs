//! Boots the foundation images in Bochs (VT-x) and QEMU (bare) and checks
//! what the console shows: the mode, the VT-x summary, contained failures.
//!
//! These boot emulators, so they are `#[ignore]`d in a plain `cargo test`;
//! `run/test` runs them with `--include-ignored`. Lines are compared whole;
//! `StartsWith` marks the summaries other parts may extend (hvm's `vmx=on`
//! line, the microkernel's timer line) and `Pattern` the figures that vary.

use kasane_run::Emulator;
use kasane_tests::Line::{Is, Pattern, StartsWith};
use kasane_tests::{assert_clean, assert_lines_in_order, assert_no_line_contains, boot_manifest};

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_runs_the_microkernel_as_a_vmx_guest() {
    let boot = boot_manifest("smoke", Emulator::Bochs, 180);
    assert_lines_in_order(
        &boot,
        &[
            Is("hvm: Kasane hvm 0.1.0 starting"),
            Is("hvm: vmx=on ept=on ug=on vpid=on preemption-timer=on cells=1 tsc=200MHz"),
            Is("microkernel: Kasane microkernel 0.1.0 mode=vmx-guest cell=0 memory=32MiB modules=0 hypervisor=KasaneHVM"),
            Is("microkernel: smoke test done"),
            Is("hvm: poweroff ok (requested by cell 0)"),
        ],
    );
    assert_no_line_contains(&boot, "warning");
    assert_no_line_contains(&boot, "failed");
    assert_clean(&boot);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_without_vtx_runs_bare() {
    let boot = boot_manifest("smoke", Emulator::Qemu, 120);
    assert_lines_in_order(
        &boot,
        &[
            Is("hvm: vmx=off (cpu has no VT-x) -> bare mode"),
            StartsWith(
                "microkernel: Kasane microkernel 0.1.0 mode=bare cell=0 memory=32MiB modules=0 ",
            ),
            Is("microkernel: smoke test done"),
            Is("microkernel: poweroff ok"),
        ],
    );
    assert_no_line_contains(&boot, "mode=vmx-guest");
    assert_clean(&boot);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_contains_a_triple_faulting_cell() {
    let boot = boot_manifest("fault-triple", Emulator::Bochs, 180);
    assert_lines_in_order(
        &boot,
        &[
            StartsWith("microkernel: Kasane microkernel 0.1.0 mode=vmx-guest cell=0 "),
            Is("microkernel: triple-faulting on purpose"),
            // The guest RIP is reported: the kernel's, in the top 2 GiB.
            Pattern(
                "hvm: cell 0 (cell0) failed: triple fault (qualification 0x0) rip=0xffffffff8*",
            ),
            Is("hvm: cell 0 (cell0) stopped"),
            Is("hvm: all cells stopped"),
            Is("hvm: poweroff ok (all cells stopped)"),
        ],
    );
    assert_clean(&boot);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_contains_a_write_outside_the_cell() {
    let boot = boot_manifest("fault-wild-write", Emulator::Bochs, 180);
    assert_lines_in_order(
        &boot,
        &[
            Is("microkernel: writing outside the cell at 0x6000000 on purpose"),
            Pattern("hvm: cell 0 (cell0) failed: EPT violation (write at gpa=0x6000000, outside the cell's memory) rip=0x*"),
            Is("hvm: cell 0 (cell0) stopped"),
            Is("hvm: all cells stopped"),
            Is("hvm: poweroff ok (all cells stopped)"),
        ],
    );
    assert_no_line_contains(&boot, "went through");
    assert_clean(&boot);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_bare_kernel_runs_the_hello_root_task() {
    let boot = boot_manifest("hello", Emulator::Qemu, 120);
    assert_lines_in_order(
        &boot,
        &[
            StartsWith("microkernel: Kasane microkernel 0.1.0 mode=bare cell=0 memory=32MiB modules=1 "),
            // Calibrated against the PIT (rates vary with the host).
            Pattern("microkernel: timer via xapic, tick 1000 us (calibrated: tsc * MHz by pit, apic * MHz)"),
            Pattern("microkernel: root task `hello` started: * KiB free memory, * kernel frames left"),
            Pattern("hello: root task running as thread 0x1, * KiB free, 1 modules, abi 1"),
            Pattern("hello: a 20 ms receive ended with Some(IpcError { error: Timeout, phase: Receive }) after * us"),
            Is("hello: goodbye"),
            Is("microkernel: the root task finished"),
            Is("microkernel: poweroff ok"),
        ],
    );
    assert_clean(&boot);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_vmx_kernel_runs_the_hello_root_task() {
    let boot = boot_manifest("hello", Emulator::Bochs, 180);
    assert_lines_in_order(
        &boot,
        &[
            StartsWith("hvm: vmx=on "),
            StartsWith("microkernel: Kasane microkernel 0.1.0 mode=vmx-guest cell=0 memory=32MiB modules=1 "),
            // hvm passes the TSC rate it measured in CPUID 0x15.
            Is("microkernel: timer via x2apic, tick 1000 us (calibrated: tsc 200 MHz by cpuid, apic 200 MHz)"),
            Pattern("hello: root task running as thread 0x1, * KiB free, 1 modules, abi 1"),
            Pattern("hello: a 20 ms receive ended with Some(IpcError { error: Timeout, phase: Receive }) after * us"),
            Is("hello: goodbye"),
            Is("microkernel: the root task finished"),
            Is("hvm: poweroff ok (requested by cell 0)"),
        ],
    );
    assert_clean(&boot);
}

/// The microkernel's in-system suite: every case passes and the benchmark
/// lines print, in the given emulator.
fn ktest_passes(emulator: Emulator, timeout: u64) -> kasane_run::Boot {
    let boot = boot_manifest("ktest", emulator, timeout);
    assert_lines_in_order(
        &boot,
        &[
            StartsWith("microkernel: root task `ktest` started: "),
            Is("ktest: ok call_reply_same_task"),
            Is("ktest: ok call_reply_cross_task"),
            Is("ktest: ok timeouts"),
            Is("ktest: ok receive_from_any"),
            Is("ktest: ok fast_path_edges"),
            Is("ktest: ok string_copy"),
            Is("ktest: ok map_unmap_recursive"),
            Is("ktest: ok grant"),
            Is("ktest: ok user_pager"),
            Is("ktest: ok timer_interrupt"),
            Is("ktest: ok preemption_round_robin"),
            Is("ktest: ok priority_order"),
            Is("ktest: ok destroyed_partner"),
            Is("ktest: ok bad_arguments"),
            Is("ktest: ok driver_mechanisms"),
            Pattern("ktest: * passed, 0 failed"),
            Pattern("bench null_syscall_cycles * cycles"),
            Pattern("bench ipc_roundtrip_cycles * cycles"),
            Pattern("bench ipc_roundtrip_8w_cycles * cycles"),
            Is("microkernel: the root task finished"),
        ],
    );
    assert_no_line_contains(&boot, "ktest: FAIL");
    assert_clean(&boot);
    boot
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_bare_kernel_passes_ktest() {
    ktest_passes(Emulator::Qemu, 180);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_vmx_kernel_passes_ktest() {
    let boot = ktest_passes(Emulator::Bochs, 400);
    for line in boot.transcript.lines().filter(|l| l.starts_with("bench ")) {
        eprintln!("{line}");
    }
}
