//! The cell run loop: turns, watchdogs, the link pump, exits and failures.
//!
//! Cells take turns (round robin) on the one CPU. Each turn enters the cell
//! and handles its exits until it yields, halts, fails or uses up its
//! slice. What is the same for every kind of cell is handled here; the
//! rest goes to the cell's `guest::Guest`. A failure is contained to the
//! cell: its manifest policy says whether it is stopped, restarted, or the
//! machine is powered off.

use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use hvm_logic::cell::{Decision, State};
use hvm_logic::controls;
use hvm_logic::exit::{CrAccess, RawExit, VmExit};
use hvm_logic::vmcs::Field;

use crate::arch;
use crate::cell::SWITCHED_MSRS;
use crate::devices;
use crate::guest::{Machine, Outcome};
use crate::vmcs::Vmcs;
use crate::vmx::Hypervisor;
use crate::{power_off, BootModules};

/// The vector cell 0 gets for its link 0 (link i: 0x50 + i).
const LINK_VECTOR: u8 = 0x50;

/// Whether the cell goes on after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Resume,
    Yield,
}

impl Hypervisor {
    /// Runs the cells until none is alive, then powers off.
    ///
    /// Cells take turns, each for at most a slice of 10 ms of TSC time
    /// measured by the VMX-preemption timer (SDM 26.5.1); a cell that
    /// yields, halts or fails gives up the rest of its turn. A halted Linux
    /// cell is skipped until its timer or a device raises an interrupt.
    pub fn run(mut self, modules: &BootModules, manifest: &[u8]) -> ! {
        let mut current = 0;
        loop {
            self.check_watchdogs();
            let Some(position) = self.next_runnable(current) else {
                log!("all cells stopped");
                power_off(true, "all cells stopped");
            };
            current = position + 1;
            if self.cells[position].life.state == State::Failed {
                let restart = self.load(position, modules, manifest);
                if let Err(reason) = restart {
                    let cell = &mut self.cells[position];
                    log!(
                        "cell {} ({}) restart failed: {}",
                        cell.index,
                        cell.description.name,
                        reason
                    );
                    cell.life.stopped();
                    continue;
                }
                let cell = &self.cells[position];
                log!(
                    "cell {} ({}) restarted (restart {} of {})",
                    cell.index,
                    cell.description.name,
                    cell.life.restarts,
                    cell.description.restart_limit
                );
            }
            if self.cells[position].life.alive() {
                self.pump_link();
                self.enter(position);
            }
        }
    }

    /// The next cell that can use the CPU, from `from` on (wrapping).
    fn next_runnable(&mut self, from: usize) -> Option<usize> {
        let n = self.cells.len();
        let now = arch::rdtsc();
        let mut any_alive = None;
        for i in 0..n {
            let position = (from + i) % n;
            let cell = &mut self.cells[position];
            if !cell.life.alive() {
                continue;
            }
            any_alive.get_or_insert(position);
            if cell.life.state == State::Failed || !cell.platform.halted {
                return Some(position);
            }
            cell.platform.lapic.update(now);
            if cell.platform.lapic.has_requests() {
                cell.platform.halted = false;
                return Some(position);
            }
        }
        // Every live cell is halted: run the first; it stays halted until an
        // interrupt is due (time passes while hvm loops).
        any_alive
    }

    fn check_watchdogs(&mut self) {
        let now = arch::rdtsc();
        for position in 0..self.cells.len() {
            let cell = &self.cells[position];
            if cell.life.state == State::Running && cell.watchdog.expired(now) {
                let what = format!(
                    "no heartbeat for longer than {} ms",
                    cell.description.heartbeat_ms
                );
                // SAFETY: the cell's initialised VMCS region; no other token
                // is alive between turns. fail() reads the cell's RIP.
                let vmcs = unsafe { Vmcs::load(cell.vmcs) }.expect("VMPTRLD of a cell's VMCS");
                self.fail(position, &vmcs, &what);
            }
        }
    }

    /// Moves bytes across the link both ways and raises the Linux cell's
    /// interrupts; every descriptor is checked against its owner's memory.
    pub(crate) fn pump_link(&mut self) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let peer = link.peer;
        let peer_running = self.cells[peer].life.state == State::Running;
        let mut faults: [Option<(usize, hvm_logic::virtio::Fault)>; 3] = [None; 3];
        for (step, position) in [0, peer, 0].into_iter().enumerate() {
            if position == peer && !peer_running {
                continue;
            }
            let cell = &mut self.cells[position];
            let Some(console) = cell.platform.link.as_mut() else {
                continue;
            };
            let (outbound, inbound) = if position == 0 {
                (&mut *link.to_peer, &mut *link.to_cell0)
            } else {
                (&mut *link.to_cell0, &mut *link.to_peer)
            };
            let memory = cell.memory;
            // SAFETY: the cell's memory is identity mapped in hvm, owned by
            // the cell, and the cell is not running (one CPU, hvm's turn).
            let bytes = unsafe {
                core::slice::from_raw_parts_mut(memory.host_base as *mut u8, memory.size as usize)
            };
            let mut ram = hvm_logic::guest::Ram::new(memory, bytes);
            let activity = console.process(&mut ram, outbound, inbound);
            if let Some(fault) = activity.fault {
                faults[step] = Some((position, fault));
            }
            if position == peer {
                if activity.transmitted > 0 {
                    cell.watchdog.feed(arch::rdtsc());
                }
                while let Some(vector) = console.take_interrupt() {
                    cell.platform.lapic.raise(vector);
                    cell.platform.halted = false;
                }
            } else {
                // Issue 12's contract 2 (docs/linux-cell.md, "The link"):
                // cell 0's driver hears of
                // used buffers and configuration changes as vector 0x50 +
                // link, MSI-X programmed or not (virtio-drivers polls the
                // ISR and programs none), through the path physical
                // interrupts take when cell 0 is not running.
                let mut raised =
                    activity.received > 0 || activity.transmitted > 0 || activity.fault.is_some();
                while console.take_interrupt().is_some() {
                    raised = true;
                }
                if raised && !self.for_cell0.contains(&LINK_VECTOR) {
                    self.for_cell0.push(LINK_VECTOR);
                }
            }
        }
        for (position, fault) in faults.into_iter().flatten() {
            if link.logged < 20 {
                link.logged += 1;
                let cell = &self.cells[position];
                log!(
                    "cell {} ({}) link: refused: {} (queue {})",
                    cell.index,
                    cell.description.name,
                    fault.error,
                    fault.queue
                );
            }
        }
    }

    /// Puts the cell's own values of the MSRs VMX does not switch into the
    /// CPU, keeping the previous cell's.
    fn switch_msrs(&mut self, position: usize) {
        if self.msrs_of == Some(position) {
            return;
        }
        if let Some(previous) = self.msrs_of {
            for (slot, &msr) in self.cells[previous]
                .switched_msrs
                .iter_mut()
                .zip(SWITCHED_MSRS.iter())
            {
                // SAFETY: every x86-64 CPU with VT-x has these MSRs.
                *slot = unsafe { arch::rdmsr(msr) };
            }
        }
        for (&value, &msr) in self.cells[position]
            .switched_msrs
            .iter()
            .zip(SWITCHED_MSRS.iter())
        {
            // SAFETY: the values are the cell's own (zero, or what it
            // wrote, which the CPU accepted then); hvm uses none of these
            // MSRs itself.
            unsafe { arch::wrmsr(msr, value) };
        }
        self.msrs_of = Some(position);
    }

    /// Enters a cell and handles exits until it must yield or stop.
    fn enter(&mut self, position: usize) {
        self.switch_msrs(position);
        // SAFETY: the cell's VMCS region, initialised by load(); the token
        // lives for this turn only and no other is alive.
        let vmcs =
            unsafe { Vmcs::load(self.cells[position].vmcs) }.expect("VMPTRLD of a cell's VMCS");
        let slice_end = arch::rdtsc() + 10 * self.clock.per_ms();
        let rate = self.caps.preemption_timer_rate();
        let guest = self.cells[position].guest;
        let mut machine = Machine {
            vmcs: &vmcs,
            tsc_hz: self.clock.hz,
            hlt_activity: self.hlt_activity(),
            for_cell0: &mut self.for_cell0,
        };
        guest.begin_turn(&mut machine, &mut self.cells[position]);
        loop {
            let now = arch::rdtsc();
            let mut machine = Machine {
                vmcs: &vmcs,
                tsc_hz: self.clock.hz,
                hlt_activity: self.hlt_activity(),
                for_cell0: &mut self.for_cell0,
            };
            let cell = &mut self.cells[position];
            let until = match guest.before_entry(&mut machine, cell, now) {
                Some(deadline) => slice_end.min(deadline),
                None => slice_end,
            };
            if self.chosen.preemption_timer() {
                let ticks = (until.saturating_sub(now) >> rate).min(u64::from(u32::MAX));
                vmcs.write(Field::PreemptionTimerValue, ticks);
            }
            // SAFETY: the token says the cell's VMCS is current, and load()
            // completed it (controls, host and guest state); `launched` is
            // false only for the first entry after its VMCLEAR.
            let status = unsafe { arch::run_guest(&mut cell.regs, cell.launched) };
            if status != 0 {
                let what = format!(
                    "VM entry failed (VM-instruction error {})",
                    vmcs.read(Field::InstructionError)
                );
                self.fail(position, &vmcs, &what);
                return;
            }
            cell.launched = true;
            vmcs.reinject_vectoring();
            let raw = RawExit {
                reason: vmcs.read(Field::ExitReason) as u32,
                qualification: vmcs.read(Field::ExitQualification),
                guest_physical: vmcs.read(Field::GuestPhysicalAddress),
                interruption_info: vmcs.read(Field::ExitInterruptionInfo) as u32,
            };
            match self.handle(position, &vmcs, VmExit::decode(raw)) {
                Flow::Resume => {}
                Flow::Yield => return,
            }
            if arch::rdtsc() >= slice_end {
                return;
            }
        }
    }

    /// SDM A.6: IA32_VMX_MISC[6], entry in the HLT activity state.
    fn hlt_activity(&self) -> bool {
        self.caps.misc & (1 << 6) != 0
    }

    /// A cell failed: report it with its RIP and apply its policy.
    pub(crate) fn fail(&mut self, position: usize, vmcs: &Vmcs, what: &str) {
        let cell = &mut self.cells[position];
        let rip = vmcs.read(Field::GuestRip);
        cell.flush_line();
        log!(
            "cell {} ({}) failed: {} rip={:#x}",
            cell.index,
            cell.description.name,
            what,
            rip
        );
        match cell.life.failed() {
            Decision::Restart { attempt } => {
                log!(
                    "cell {} ({}) will be restarted (attempt {} of {})",
                    cell.index,
                    cell.description.name,
                    attempt,
                    cell.description.restart_limit
                )
            }
            Decision::Stop => log!("cell {} ({}) stopped", cell.index, cell.description.name),
            Decision::StopAfterLimit { restarts } => log!(
                "cell {} ({}) stopped: restart limit reached after {} restarts",
                cell.index,
                cell.description.name,
                restarts
            ),
            Decision::PowerOff => {
                power_off(false, "a cell failed and its manifest policy is poweroff")
            }
        }
        if let Some(link) = self.link.as_mut().filter(|l| l.peer == position) {
            link.to_peer.clear();
            link.to_cell0.clear();
        }
    }

    /// Turns what a kind decided into the loop's next step.
    fn outcome(&mut self, position: usize, vmcs: &Vmcs, outcome: Outcome) -> Flow {
        match outcome {
            Outcome::Resume => Flow::Resume,
            Outcome::Yield => Flow::Yield,
            Outcome::Hypercall => self.hypercall(position, vmcs),
            Outcome::Notify => {
                self.pump_link();
                if position == 0 {
                    // Cell 0 is running: what the pump raised for it goes
                    // in now (held until it can take it), not at its next
                    // turn.
                    let mut machine = Machine {
                        vmcs,
                        tsc_hz: self.clock.hz,
                        hlt_activity: self.hlt_activity(),
                        for_cell0: &mut self.for_cell0,
                    };
                    let guest = self.cells[0].guest;
                    guest.begin_turn(&mut machine, &mut self.cells[0]);
                }
                Flow::Resume
            }
            Outcome::Fail(what) => {
                self.fail(position, vmcs, &what);
                Flow::Yield
            }
        }
    }

    /// One exit: the common cases here, the kind's through its `Guest`.
    fn handle(&mut self, position: usize, vmcs: &Vmcs, exit: VmExit) -> Flow {
        let guest = self.cells[position].guest;
        let mut machine = Machine {
            vmcs,
            tsc_hz: self.clock.hz,
            hlt_activity: self.hlt_activity(),
            for_cell0: &mut self.for_cell0,
        };
        let cell = &mut self.cells[position];
        let outcome = match exit {
            VmExit::Cpuid => {
                guest.cpuid(&mut machine, cell);
                Outcome::Resume
            }
            VmExit::Vmcall => guest.vmcall(&mut machine, cell),
            VmExit::Io(access) if access.string => {
                let what = format!("string I/O to port {:#x} is not emulated", access.port);
                Outcome::Fail(what)
            }
            VmExit::Io(access) => {
                if devices::pci_io(&mut cell.platform, &mut cell.regs, access) {
                    vmcs.skip_instruction();
                    Outcome::Resume
                } else {
                    guest.io(&mut machine, cell, access)
                }
            }
            VmExit::Rdmsr | VmExit::Wrmsr => {
                guest.msr(&mut machine, cell, exit == VmExit::Wrmsr);
                Outcome::Resume
            }
            VmExit::CrAccess(access) => {
                if self.emulate_cr(position, vmcs, access) {
                    vmcs.skip_instruction();
                    Outcome::Resume
                } else {
                    let what = format!(
                        "unsupported control-register access (CR{})",
                        access.register
                    );
                    Outcome::Fail(what)
                }
            }
            VmExit::Hlt => {
                let outcome = guest.hlt(&mut machine, cell);
                // Cell 0 idles with HLT; while another cell has work, it
                // gives that cell the rest of its turn rather than sleep
                // through it (its interrupts end other cells' turns, so it
                // would otherwise keep the CPU ten times longer than it
                // lets them run). It resumes after its HLT, as if woken.
                let sleeping = vmcs.read(Field::GuestActivityState) == 1;
                if position == 0 && matches!(outcome, Outcome::Resume) && sleeping {
                    let now = arch::rdtsc();
                    let others_busy = self.cells.iter_mut().enumerate().any(|(i, c)| {
                        if i == position || !c.life.alive() {
                            return false;
                        }
                        if !c.platform.halted {
                            return true;
                        }
                        c.platform.lapic.update(now);
                        c.platform.lapic.has_requests()
                    });
                    if others_busy {
                        vmcs.write(Field::GuestActivityState, 0);
                        return Flow::Yield;
                    }
                }
                outcome
            }
            VmExit::ExternalInterrupt { vector } => {
                guest.external_interrupt(&mut machine, cell, vector)
            }
            VmExit::InterruptWindow => {
                vmcs.interrupt_window(false);
                guest.interrupt_window(&mut machine, cell);
                Outcome::Resume
            }
            VmExit::PreemptionTimer => Outcome::Resume,
            VmExit::VmxInstruction => {
                vmcs.inject_exception(6, None);
                Outcome::Resume
            }
            VmExit::Xsetbv => {
                guest.xsetbv(&mut machine, cell);
                Outcome::Resume
            }
            VmExit::EptViolation(violation) => {
                let memory = cell.memory;
                match devices::mmio(vmcs, memory, &mut cell.platform, &mut cell.regs, violation) {
                    Some(exit) => exit.into(),
                    None => {
                        let kind = if violation.write {
                            "write"
                        } else if violation.fetch {
                            "instruction fetch"
                        } else {
                            "read"
                        };
                        let what = format!(
                            "EPT violation ({kind} at gpa={:#x}, outside the cell's memory)",
                            violation.guest_physical
                        );
                        Outcome::Fail(what)
                    }
                }
            }
            VmExit::TripleFault
            | VmExit::InvalidGuestState
            | VmExit::MsrLoading
            | VmExit::MachineCheckAtEntry
            | VmExit::EptMisconfig { .. }
            | VmExit::InitSignal
            | VmExit::StartupIpi
            | VmExit::ExceptionOrNmi { .. }
            | VmExit::Other(_) => {
                let mut what = String::new();
                let _ = match exit {
                    VmExit::Other(reason) => write!(what, "unhandled exit (basic reason {reason})"),
                    VmExit::ExceptionOrNmi { vector } => {
                        write!(what, "unexpected exception exit (vector {vector})")
                    }
                    _ => write!(
                        what,
                        "{} (qualification {:#x})",
                        exit.name(),
                        vmcs.read(Field::ExitQualification)
                    ),
                };
                Outcome::Fail(what)
            }
        };
        self.outcome(position, vmcs, outcome)
    }

    /// MOV to CR0 or CR4 (the guest/host masks own the bits VMX forces;
    /// SDM 25.6.6): the guest reads what it wrote, the CPU runs with the
    /// forced bits.
    fn emulate_cr(&mut self, position: usize, vmcs: &Vmcs, access: CrAccess) -> bool {
        if access.access_type != 0 || !matches!(access.register, 0 | 4) {
            return false;
        }
        let value = if access.gpr == 4 {
            vmcs.read(Field::GuestRsp)
        } else {
            match self.cells[position].regs.by_number(access.gpr) {
                Some(register) => *register,
                None => return false,
            }
        };
        if access.register == 0 {
            vmcs.write(Field::Cr0ReadShadow, value);
            vmcs.write(
                Field::GuestCr0,
                controls::fixed_bits(value, self.caps.cr0_fixed0, self.caps.cr0_fixed1),
            );
        } else {
            vmcs.write(Field::Cr4ReadShadow, value);
            vmcs.write(
                Field::GuestCr4,
                controls::fixed_bits(value, self.caps.cr4_fixed0, self.caps.cr4_fixed1),
            );
        }
        true
    }
}
