//! A server VM: one 9P server in its own unikernel VM (docs/runtime-vm.md).
//!
//! The image is a `servers/runtime-vm` ELF, loaded like the microkernel
//! (kernel window, identity and direct maps, `BootInfo` in RDI) with
//! `hvm_abi::BOOT_MODE_SERVER_VM`; the link BAR's 2 MiB at 0xE000_0000 is mapped
//! identically too, so the runtime needs no page-table code. The cell sees:
//! - PCI configuration mechanism #1 with a host bridge and its one link
//!   device at 00:01.0 (`devices::pci_io`), the BAR emulated through EPT
//!   violations;
//! - an emulated x2APIC with the TSC-deadline timer (shared with Linux
//!   cells): its heartbeat timer, [`hvm_abi::LINK_VECTOR`] when its link
//!   device signals and [`hvm_abi::COMMAND_VECTOR`] when cell 0 injected a
//!   command; HLT waits in software for one of them;
//! - the server-VM hypercalls (`hypercall.rs` refuses the rest);
//! - COM1 / port 0xE9 output as its console, every other port silent,
//!   except the ports of the devices its manifest assigns (`devices`),
//!   which its I/O bitmaps let through to the device without an exit
//!   (`Hypervisor::io_bitmaps`, docs/threat-model.md).
//!
//! Everything else it does is hostile until checked: unknown MSRs get #GP,
//! an access outside its memory and its BAR fails the cell (EPT violation),
//! and so does a triple fault; its manifest policy then restarts it alone.

use alloc::string::String;

use hvm_logic::cpuid;
use hvm_logic::exit::IoAccess;
use hvm_logic::link::LINK_BAR;
use kasane_manifest::CellKind;

use super::linux::{emulated_apic_entry, emulated_msr, software_hlt};
use super::{answer_cpuid, console_ports, hold_for_cell0, host_cpuid, load_kernel_image};
use super::{Entry, Guest, Machine, Outcome};
use crate::cell::{Cell, Platform};
use crate::BootModules;

pub(crate) struct ServerVm;

impl Guest for ServerVm {
    /// Loads the pristine runtime image and its modules into zeroed memory
    /// and resets the platform: a new link device, no pending command, an
    /// unarmed watchdog (it arms at the first heartbeat).
    fn boot(
        &self,
        cell: &mut Cell,
        modules: &BootModules,
        manifest: &[u8],
    ) -> Result<Entry, String> {
        let bar = u64::from(LINK_BAR);
        let mode = hvm_abi::BOOT_MODE_SERVER_VM;
        let entry = load_kernel_image(cell, modules, manifest, mode, Some((bar, bar + (2 << 20))))?;
        cell.platform = Platform::new(CellKind::ServerVm, cell.platform.links.len());
        cell.watchdog.disarm();
        cell.command = 0;
        Ok(entry)
    }

    /// The emulated APIC's timer bounds the turn; its highest pending
    /// vector is offered (SDM 27.6 "Event injection").
    fn before_entry(&self, machine: &mut Machine<'_>, cell: &mut Cell, now: u64) -> Option<u64> {
        emulated_apic_entry(machine, cell, now)
    }

    /// The Linux cell's CPUID: x2APIC, TSC-deadline, the TSC rate (leaves
    /// 0x15/0x16), which the runtime's timer needs.
    fn cpuid(&self, machine: &mut Machine<'_>, cell: &mut Cell) {
        let vmcs = machine.vmcs;
        let regs = &mut cell.regs;
        let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
        let answer = cpuid::linux(leaf, subleaf, false, machine.tsc_hz, host_cpuid);
        answer_cpuid(regs, answer);
        vmcs.skip_instruction();
    }

    fn vmcall(&self, _machine: &mut Machine<'_>, _cell: &mut Cell) -> Outcome {
        Outcome::Hypercall
    }

    /// COM1 and port 0xE9 print; every other port reads as all ones and
    /// ignores writes (nothing is there).
    fn io(&self, machine: &mut Machine<'_>, cell: &mut Cell, access: IoAccess) -> Outcome {
        console_ports(machine, cell, access)
    }

    fn msr(&self, machine: &mut Machine<'_>, cell: &mut Cell, write: bool) {
        emulated_msr(machine, cell, write);
    }

    /// HLT waits in software until the timer, the link or a command raises
    /// a vector; with interrupts off nothing could wake it, so that is a
    /// failure (the `hang` verb instead spins, for the watchdog).
    fn hlt(&self, machine: &mut Machine<'_>, cell: &mut Cell) -> Outcome {
        software_hlt(machine, cell)
    }

    fn external_interrupt(
        &self,
        machine: &mut Machine<'_>,
        _cell: &mut Cell,
        vector: u8,
    ) -> Outcome {
        hold_for_cell0(machine, vector)
    }
}
