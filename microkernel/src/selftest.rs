//! Boot self-tests the manifest selects with `args = "test=NAME"`.
//!
//! `smoke` only boots. `triple-fault` and `wild-write` misbehave on purpose
//! so the tests can check that hvm contains the failure: the first loads an
//! empty IDT and raises an exception (→ #DF → triple fault, SDM Vol. 3 6.15);
//! the second maps a page outside the cell's memory and writes to it (an EPT
//! violation under hvm).

use core::arch::asm;
use hvm_abi::{BootInfo, BootMode};

use crate::kprintln;

fn test_name(args: &str) -> Option<&str> {
    args.split_whitespace()
        .find_map(|word| word.strip_prefix("test="))
}

/// Runs the selected test; returns when the kernel should power off.
pub fn run(info: &BootInfo, mode: BootMode) {
    match test_name(info.args()) {
        None => kprintln!("microkernel: nothing to run yet"),
        Some("smoke") => kprintln!("microkernel: smoke test done"),
        Some("triple-fault") => triple_fault(),
        Some("wild-write") if mode == BootMode::Bare => {
            kprintln!("microkernel: wild-write needs hvm's EPT; skipped in bare mode")
        }
        Some("wild-write") => wild_write(info),
        Some(other) => kprintln!("microkernel: unknown test `{}`", other),
    }
}

fn triple_fault() {
    kprintln!("microkernel: triple-faulting on purpose");
    let empty: [u16; 5] = [0; 5];
    // SAFETY: deliberately fatal: with a zero-limit IDT, int3 cannot be
    // delivered, nor can the #GP and #DF that follow.
    unsafe { asm!("lidt [{}]", "int3", in(reg) &empty, options(nostack)) };
}

fn wild_write(info: &BootInfo) {
    // Target: 64 MiB past the end of the cell's memory, 2 MiB aligned.
    let target =
        ((info.memory_base + info.memory_size + (2 << 20) - 1) & !((2 << 20) - 1)) + (64 << 20);
    kprintln!(
        "microkernel: writing outside the cell at {:#x} on purpose",
        target
    );
    let direct = |phys: u64| (hvm_abi::DIRECT_MAP_BASE + phys) as *mut u64;
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    // Two free pages become a PDPT and a PD mapping virtual 512 GiB (PML4
    // slot 1, unused by hvm's layout) to the target with a 2 MiB page.
    let pdpt = (info.free_base + 0xFFF) & !0xFFF;
    let pd = pdpt + 0x1000;
    // SAFETY: the pages are free memory of this cell; the PML4 is the boot
    // page table hvm built, reachable through the direct map.
    unsafe {
        for i in 0..512 {
            direct(pdpt).add(i).write_volatile(0);
            direct(pd).add(i).write_volatile(0);
        }
        direct(pd).write_volatile(target | 0x83);
        direct(pdpt).write_volatile(pd | 0x3);
        direct(cr3 & !0xFFF).add(1).write_volatile(pdpt | 0x3);
        asm!("mov cr3, {}", in(reg) cr3, options(nostack));
        (0x80_0000_0000u64 as *mut u64).write_volatile(0xBAD);
    }
    kprintln!("microkernel: the write outside the cell went through (containment failed)");
}
