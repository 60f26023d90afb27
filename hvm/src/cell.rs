//! A cell as hvm holds it: memory, VMCS region, registers, platform, life.
//!
//! Also the console line buffer: a cell's output is printed a whole line at
//! a time, prefixed with the cell's name (cell 0 prints bare), so lines
//! from different cells stay whole on the one serial port.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use hvm_logic::cell::{Life, Watchdog};
use hvm_logic::guest::GuestMemory;
use hvm_logic::ioapic::Ioapic;
use hvm_logic::lapic::Lapic;
use hvm_logic::link;
use hvm_logic::uart::Uart;
use hvm_logic::virtio::{ConfigPorts, Console, Pipe};
use kasane_manifest::{BootCell, CellKind};

use crate::arch::GuestRegisters;
use crate::guest::Guest;
use crate::serial;

/// A cell: its memory, VMCS, EPT and life.
pub(crate) struct Cell {
    pub index: u32,
    pub description: BootCell,
    /// What kind of guest runs here (microkernel, Linux).
    pub guest: &'static dyn Guest,
    pub memory: GuestMemory,
    pub life: Life,
    /// The VMCS region (host physical); see `vmcs::Vmcs`.
    pub vmcs: u64,
    pub eptp: u64,
    pub regs: GuestRegisters,
    pub launched: bool,
    /// Bytes of console output waiting for a newline.
    pub line: Vec<u8>,
    /// The emulated platform (Linux cells; cell 0 uses `pci` and `links`).
    pub platform: Platform,
    pub watchdog: Watchdog,
    /// Cell 0's link to this cell, if it has one (`hvm_logic::link`).
    pub link: Option<usize>,
    /// A control command (injection op 10..=14) for the guest to take with
    /// `TakeCommand`; 0 when none is pending.
    pub command: u64,
    /// VM exits of this cell so far (`ExitCount`).
    pub exits: u64,
    /// The last failure hvm logged for this cell (`CellInfo`).
    pub last_failure: String,
    /// A start, stop or restart cell 0 asked for, applied by the run loop.
    pub control: Option<hvm_abi::CellControl>,
    /// The cell's I/O bitmaps A and B (two frames, host physical) when
    /// its manifest assigns it devices: their ports pass without an exit.
    pub io_bitmaps: Option<u64>,
    /// The cell's values of the MSRs VMX neither saves nor loads
    /// ([`SWITCHED_MSRS`]), while another cell's are in the CPU.
    pub switched_msrs: [u64; SWITCHED_MSRS.len()],
}

/// MSRs every cell writes directly (`hvm_logic::msr::PASSTHROUGH`) that
/// VM exits and entries do not switch (SDM 28.3 saves and 27.3.2 loads
/// only the SYSENTER MSRs, EFER, PAT and the FS/GS bases): hvm swaps them
/// when another cell's turn begins, so that one cell's SYSCALL entry
/// (say Linux's) never becomes another's (cell 0's user space).
/// (TSC_AUX is left out: it exists only with RDTSCP, and no cell's
/// correctness depends on it; Linux's getcpu reads its CPU number there,
/// which is 0 in every cell.)
pub const SWITCHED_MSRS: [u32; 5] = [
    0xC000_0081, // STAR
    0xC000_0082, // LSTAR
    0xC000_0083, // CSTAR
    0xC000_0084, // SFMASK
    0xC000_0102, // KERNEL_GS_BASE
];

impl Cell {
    /// Buffers the cell's console output per line (cell 0's partial line
    /// goes out when it reads console input).
    pub fn console(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.line.push(byte);
            if byte == b'\n' || self.line.len() >= 512 {
                self.flush_line();
            }
        }
    }

    /// Prints what the cell wrote since its last newline.
    pub fn flush_line(&mut self) {
        if !self.line.is_empty() {
            if self.index != 0 {
                serial::write_bytes(self.description.name.as_bytes());
                serial::write_bytes(b"| ");
            }
            serial::write_bytes(&self.line);
            self.line.clear();
        }
    }

    /// Forgets a partial line (the vCPU is reset).
    pub fn drop_line(&mut self) {
        self.line.clear();
    }
}

/// What hvm emulates for a cell besides the CPU.
pub(crate) struct Platform {
    /// PCI configuration mechanism #1.
    pub pci: ConfigPorts,
    /// This cell's ends of links: cell 0 has one per link (link i at
    /// 00:(1+i).0), a Linux cell or server VM its one link at 00:01.0.
    pub links: Vec<Console>,
    /// Local APIC (Linux cells).
    pub lapic: Lapic,
    /// COM1 (Linux cells).
    pub uart: Uart,
    /// The I/O APIC's registers (Linux cells).
    pub ioapic: Option<Ioapic>,
    /// The vCPU executed HLT and waits for an interrupt.
    pub halted: bool,
    /// Physical interrupts that came while the cell could not take them
    /// (cell 0, which owns the local APIC): injected when it can.
    pub held: Vec<u8>,
}

impl Platform {
    /// The platform of a cell of `kind` with `links` link devices.
    pub fn new(kind: CellKind, links: usize) -> Self {
        let cell0 = kind == CellKind::Microkernel;
        Self {
            pci: ConfigPorts::default(),
            links: (0..links)
                .map(|i| {
                    let bar = link::cell0_bar(i)
                        .filter(|_| cell0)
                        .unwrap_or(link::LINK_BAR);
                    Console::new(kind == CellKind::Linux, bar)
                })
                .collect(),
            lapic: Lapic::new(),
            uart: Uart::new(),
            ioapic: (kind == CellKind::Linux).then(Ioapic::new),
            halted: false,
            held: Vec::new(),
        }
    }
}

/// A link between cell 0 and another cell: bytes in flight each way and
/// the generation cell 0 reads to notice that its peer was restarted.
pub(crate) struct Link {
    /// The peer's position in hvm's cells (`None`: it could not be
    /// created, and the link never comes up).
    pub peer: Option<usize>,
    pub to_peer: Box<Pipe>,
    pub to_cell0: Box<Pipe>,
    pub generation: u64,
    /// Refused chains logged so far (the log is bounded).
    pub logged: u32,
}

impl Link {
    pub fn new(peer: Option<usize>) -> Self {
        Self {
            peer,
            to_peer: Box::new(Pipe::new()),
            to_cell0: Box::new(Pipe::new()),
            generation: 0,
            logged: 0,
        }
    }
}
