//! What differs between kinds of guest, behind one trait: [`Guest`].
//!
//! The run loop (`run.rs`) decodes every exit into a `VmExit` and handles
//! what is the same for every cell itself: control registers, EPT
//! violations (device pages or a failure), fatal exits. Where a microkernel
//! cell and a Linux cell differ — how the image is loaded, CPUID, MSRs,
//! ports, HLT, VMCALL, XSETBV, interrupts — it asks the cell's [`Guest`].
//! Each kind is one file:
//!
//! - `microkernel.rs`: cell 0, the microkernel. It owns the local APIC
//!   (its MSRs pass through) and gets hypercalls.
//! - `linux.rs`: a stock Linux kernel on an emulated PC: x2APIC, I/O APIC,
//!   COM1, the link as a virtio PCI device; no hypercalls.
//!
//! - `servervm.rs`: a 9P server in its own unikernel VM
//!   (`servers/runtime-vm`): loaded like the microkernel, an emulated
//!   x2APIC for its timer and link/command vectors, one link device, the
//!   server-VM hypercalls.

mod linux;
mod microkernel;
mod servervm;

use alloc::string::String;

use hvm_logic::cpuid::Registers;
use hvm_logic::exit::IoAccess;
use kasane_manifest::CellKind;

use crate::arch::{self, GuestRegisters};
use crate::cell::Cell;
use crate::devices;
use crate::vmcs::Vmcs;
use crate::BootModules;

/// The kind of guest a manifest's `kind` names; `None` for kinds this hvm
/// does not run yet.
pub(crate) fn of(kind: CellKind) -> Option<&'static dyn Guest> {
    match kind {
        CellKind::Microkernel => Some(&microkernel::Microkernel),
        CellKind::Linux => Some(&linux::Linux),
        CellKind::ServerVm => Some(&servervm::ServerVm),
    }
}

/// What the run loop does after a kind has handled an exit.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Enter the cell again.
    Resume,
    /// End the cell's turn.
    Yield,
    /// The cell made a hypercall (VMCALL): run it (`hypercall.rs`).
    Hypercall,
    /// A link device was notified: move bytes, then resume.
    Notify,
    /// The cell failed: apply its manifest policy.
    Fail(String),
}

impl From<devices::Exit> for Outcome {
    fn from(exit: devices::Exit) -> Self {
        match exit {
            devices::Exit::Done => Outcome::Resume,
            devices::Exit::Notify => Outcome::Notify,
            devices::Exit::Reset(why) => Outcome::Fail(alloc::format!("reset requested ({why})")),
            devices::Exit::Fail(what) => Outcome::Fail(what),
        }
    }
}

/// A vCPU's starting state in 64-bit mode.
pub(crate) struct Entry {
    pub rip: u64,
    pub rsp: u64,
    pub cr3: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub code: u64,
    pub data: u64,
    pub cr0: u64,
    pub cr4: u64,
    pub efer: u64,
    /// General registers at entry (the boot protocol's argument).
    pub registers: GuestRegisters,
    /// The cell owns the physical local APIC: its x2APIC MSRs pass.
    pub owns_apic: bool,
}

/// What an exit handler may use besides the cell.
pub(crate) struct Machine<'a> {
    /// The cell's VMCS, current.
    pub vmcs: &'a Vmcs,
    /// The TSC rate hvm measured (CPUID leaves 0x15 and 0x16).
    pub tsc_hz: u64,
    /// The CPU can enter a guest in the HLT activity state
    /// (IA32_VMX_MISC[6], SDM A.6).
    pub hlt_activity: bool,
    /// Physical interrupts that came while this cell ran, for cell 0.
    pub for_cell0: &'a mut alloc::vec::Vec<u8>,
}

/// A kind of guest: how it boots and how its exits are answered. Every
/// method runs with the cell's VMCS current (`machine.vmcs`); the ones that
/// answer an instruction advance RIP themselves.
pub(crate) trait Guest: Sync {
    /// Loads the cell's pristine image into its (zeroed) memory and says
    /// how the vCPU starts. Also resets what the kind keeps across a
    /// restart.
    fn boot(
        &self,
        cell: &mut Cell,
        modules: &BootModules,
        manifest: &[u8],
    ) -> Result<Entry, String>;

    /// Once per turn, before the first entry.
    fn begin_turn(&self, _machine: &mut Machine<'_>, _cell: &mut Cell) {}

    /// Before every entry: offer pending interrupts. Returns the TSC value
    /// by which the cell wants to run again (a timer), if any.
    fn before_entry(&self, _machine: &mut Machine<'_>, _cell: &mut Cell, _now: u64) -> Option<u64> {
        None
    }

    /// CPUID (SDM 26.1.2: always exits).
    fn cpuid(&self, machine: &mut Machine<'_>, cell: &mut Cell);

    /// VMCALL.
    fn vmcall(&self, machine: &mut Machine<'_>, cell: &mut Cell) -> Outcome;

    /// Port I/O that is not PCI configuration (string I/O never gets here).
    fn io(&self, machine: &mut Machine<'_>, cell: &mut Cell, access: IoAccess) -> Outcome;

    /// RDMSR or WRMSR of an MSR the bitmap does not pass.
    fn msr(&self, machine: &mut Machine<'_>, cell: &mut Cell, write: bool);

    /// HLT.
    fn hlt(&self, machine: &mut Machine<'_>, cell: &mut Cell) -> Outcome;

    /// A physical interrupt arrived while the cell ran.
    fn external_interrupt(&self, machine: &mut Machine<'_>, cell: &mut Cell, vector: u8)
        -> Outcome;

    /// The interrupt window the kind asked for opened (the run loop has
    /// already stopped asking).
    fn interrupt_window(&self, _machine: &mut Machine<'_>, _cell: &mut Cell) {}

    /// XSETBV. Refused with #GP unless the kind lets the guest own XCR0.
    fn xsetbv(&self, machine: &mut Machine<'_>, _cell: &mut Cell) {
        machine.vmcs.inject_exception(13, Some(0));
    }
}

/// CPUID on the host, as `hvm_logic::cpuid` takes it.
fn host_cpuid(leaf: u32, subleaf: u32) -> Registers {
    let (a, b, c, d) = arch::cpuid(leaf, subleaf);
    [a, b, c, d]
}

/// Puts a CPUID answer in the guest's registers.
fn answer_cpuid(regs: &mut GuestRegisters, [a, b, c, d]: Registers) {
    regs.rax = u64::from(a);
    regs.rbx = u64::from(b);
    regs.rcx = u64::from(c);
    regs.rdx = u64::from(d);
}

/// A physical interrupt taken while a cell other than cell 0 ran waits for
/// cell 0's turn (cell 0 owns the local APIC, SDM 27.6 "Event injection"),
/// which this yield hastens.
fn hold_for_cell0(machine: &mut Machine<'_>, vector: u8) -> Outcome {
    machine.for_cell0.push(vector);
    Outcome::Yield
}

/// Loads a kernel-window ELF image (the microkernel, or a server VM's
/// runtime) with its modules at guest-physical 0 and says how the vCPU
/// starts: 64-bit, hvm's GDT, RDI = the `BootInfo` (`loader.rs`).
fn load_kernel_image(
    cell: &Cell,
    modules: &BootModules,
    manifest: &[u8],
    mode: u32,
    extra_identity: Option<(u64, u64)>,
) -> Result<Entry, String> {
    let description = &cell.description;
    let image = modules.find(&description.image).ok_or_else(|| {
        alloc::format!("boot module `{}` (its image) is missing", description.image)
    })?;
    let mut extra = alloc::vec::Vec::new();
    for name in &description.modules {
        let bytes = modules
            .find(name)
            .ok_or_else(|| alloc::format!("boot module `{name}` is missing"))?;
        extra.push((name.as_str(), bytes));
    }
    let layout = crate::loader::CellLayout {
        host_base: cell.memory.host_base,
        guest_base: 0,
        size: cell.memory.size,
    };
    let entry = crate::loader::load_microkernel(
        layout,
        mode,
        cell.index,
        image,
        &extra,
        manifest,
        &description.args,
        extra_identity,
    )
    .map_err(|e| alloc::format!("{e}"))?;
    Ok(Entry {
        rip: entry.rip,
        rsp: entry.rsp,
        cr3: entry.cr3,
        gdt_base: entry.gdt_base,
        gdt_limit: entry.gdt_limit,
        code: 0x08,
        data: 0x10,
        cr0: 0x8005_0033, // PG, AM, WP, NE, ET, MP, PE
        cr4: 0x0000_06A0, // PAE, PGE, OSFXSR, OSXMMEXCPT
        efer: 0xD00,      // NXE, LMA, LME
        registers: GuestRegisters {
            rdi: entry.rdi,
            ..Default::default()
        },
        owns_apic: false,
    })
}

/// Ports of cell 0 and server VMs: COM1 and port 0xE9 print, LSR says the
/// transmitter is empty, every other port reads all ones and ignores
/// writes.
fn console_ports(machine: &mut Machine<'_>, cell: &mut Cell, access: IoAccess) -> Outcome {
    let mask = match access.size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    };
    if access.input {
        let value: u64 = match access.port {
            0x3FD => 0x60, // LSR: transmitter empty
            0x3F8..=0x3FF => 0,
            _ => mask,
        };
        cell.regs.rax = (cell.regs.rax & !mask) | value;
    } else if matches!(access.port, 0x3F8 | 0xE9) {
        let byte = cell.regs.rax as u8;
        cell.console(&[byte]);
    }
    machine.vmcs.skip_instruction();
    Outcome::Resume
}
