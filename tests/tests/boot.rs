//! Boots the foundation images in Bochs (VT-x) and QEMU (bare) and checks
//! what the console shows: the mode, the VT-x summary, contained failures.
//!
//! These boot emulators, so they are `#[ignore]`d in a plain `cargo test`;
//! `run/test` runs them with `--include-ignored`.

use kasane_run::Emulator;
use kasane_tests::{assert_absent, assert_clean, assert_lines_in_order, boot_manifest};

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_runs_the_microkernel_as_a_vmx_guest() {
    let boot = boot_manifest("smoke", Emulator::Bochs, 180);
    assert_lines_in_order(
        &boot,
        &[
            "hvm: Kasane hvm",
            "hvm: vmx=on ept=on ug=on vpid=on preemption-timer=on cells=1 tsc=200MHz",
            "microkernel: Kasane microkernel 0.1.0 mode=vmx-guest cell=0 memory=32MiB modules=0 hypervisor=KasaneHVM",
            "microkernel: smoke test done",
            "hvm: poweroff ok (requested by cell 0)",
        ],
    );
    assert_absent(&boot, "warning");
    assert_absent(&boot, "failed");
    assert_clean(&boot);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_without_vtx_runs_bare() {
    let boot = boot_manifest("smoke", Emulator::Qemu, 120);
    assert_lines_in_order(
        &boot,
        &[
            "hvm: vmx=off (cpu has no VT-x) -> bare mode",
            "mode=bare cell=0",
            "microkernel: smoke test done",
            "microkernel: poweroff ok",
        ],
    );
    assert_absent(&boot, "mode=vmx-guest");
    assert_clean(&boot);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_contains_a_triple_faulting_cell() {
    let boot = boot_manifest("fault-triple", Emulator::Bochs, 180);
    assert_lines_in_order(
        &boot,
        &[
            "mode=vmx-guest",
            "microkernel: triple-faulting on purpose",
            "hvm: cell 0 (cell0) failed: triple fault",
            "hvm: cell 0 (cell0) stopped",
            "hvm: all cells stopped",
            "hvm: poweroff ok (all cells stopped)",
        ],
    );
    let failure = boot
        .transcript
        .lines()
        .find(|l| l.contains("failed: triple fault"))
        .expect("failure line");
    assert!(
        failure.contains("rip=0xffffffff8"),
        "the guest RIP is reported: {failure}"
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
            "microkernel: writing outside the cell at 0x6000000 on purpose",
            "hvm: cell 0 (cell0) failed: EPT violation (write at gpa=0x6000000, outside the cell's memory) rip=0x",
            "hvm: all cells stopped",
            "hvm: poweroff ok",
        ],
    );
    assert_absent(&boot, "went through");
    assert_clean(&boot);
}

#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_bare_kernel_runs_the_hello_root_task() {
    let boot = boot_manifest("hello", Emulator::Qemu, 120);
    assert_lines_in_order(
        &boot,
        &[
            "mode=bare",
            "microkernel: timer via",
            "microkernel: root task `hello` started",
            "hello: root task running as thread 0x1",
            "hello: a 20 ms receive ended with Some(IpcError { error: Timeout, phase: Receive })",
            "hello: goodbye",
            "microkernel: the root task finished",
            "microkernel: poweroff ok",
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
            "hvm: vmx=on",
            "mode=vmx-guest",
            "microkernel: timer via x2apic",
            "hello: root task running as thread 0x1",
            "hello: a 20 ms receive ended with Some(IpcError { error: Timeout, phase: Receive })",
            "microkernel: the root task finished",
            "hvm: poweroff ok (requested by cell 0)",
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
            "microkernel: root task `ktest` started",
            "ktest: ok call_reply_same_task",
            "ktest: ok call_reply_cross_task",
            "ktest: ok timeouts",
            "ktest: ok receive_from_any",
            "ktest: ok string_copy",
            "ktest: ok map_unmap_recursive",
            "ktest: ok grant",
            "ktest: ok user_pager",
            "ktest: ok timer_interrupt",
            "ktest: ok preemption_round_robin",
            "ktest: ok priority_order",
            "ktest: ok destroyed_partner",
            "ktest: ok bad_arguments",
            " passed, 0 failed",
            "bench null_syscall_cycles ",
            "bench ipc_roundtrip_cycles ",
            "bench ipc_roundtrip_8w_cycles ",
            "microkernel: the root task finished",
        ],
    );
    assert_absent(&boot, "ktest: FAIL");
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
