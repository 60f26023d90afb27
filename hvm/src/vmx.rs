//! VMX operation: turning VT-x on, creating cells and building their VMCS.
//!
//! The order follows SDM Vol. 3 chapter 25.11.3 ("Initializing a VMCS") and
//! 24.7 ("Enabling and entering VMX operation"). Every decision that can be
//! made from plain values is made in `hvm_logic`; this module reads MSRs,
//! executes VMX instructions and copies bytes. The map of hvm's modules:
//! `vmcs.rs` (the current VMCS, behind a token), `run.rs` (the run loop and
//! the exits common to all cells), `guest/` (what each kind of cell gets),
//! `hypercall.rs`, `devices.rs` (emulated PCI, ports, MMIO), `cell.rs`,
//! `clock.rs` (the TSC rate).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hvm_logic::cell::{Life, Policy, Watchdog};
use hvm_logic::clock::Rate;
use hvm_logic::controls::{self, msr, ChosenControls, VmxCapabilities};
use hvm_logic::ept::{Access, Format, PageTables, TableMemory};
use hvm_logic::guest::GuestMemory;
use hvm_logic::link;
use hvm_logic::vmcs::{access_rights, Field};
use kasane_manifest::{BootCell, OnFailure};

use crate::arch::{self, GuestRegisters};
use crate::cell::{Cell, Link, Platform};
use crate::guest::{self, Entry};
use crate::memory::FrameAllocator;
use crate::vmcs::Vmcs;
use crate::BootModules;

/// Why VT-x cannot be used (printed in the `hvm: vmx=off (...)` line).
pub fn unavailable_reason() -> Option<&'static str> {
    let cpuid = raw_cpuid::CpuId::new();
    let features = cpuid.get_feature_info()?;
    if !features.has_vmx() {
        return Some("cpu has no VT-x");
    }
    // SAFETY: IA32_FEATURE_CONTROL exists on every CPU that reports VMX
    // (SDM Vol. 3 24.7).
    let control = unsafe { arch::rdmsr(msr::IA32_FEATURE_CONTROL) };
    let locked = control & 1 != 0;
    if locked && control & (1 << 2) == 0 {
        return Some("VT-x disabled by firmware (IA32_FEATURE_CONTROL locked)");
    }
    None
}

fn read_capabilities() -> VmxCapabilities {
    // SAFETY: the VMX capability MSRs exist when CPUID reports VMX; the TRUE
    // ones exist when IA32_VMX_BASIC[55] is set, and the secondary and EPT
    // MSRs when the primary controls allow secondary controls (SDM A.1–A.10).
    unsafe {
        let basic = arch::rdmsr(msr::IA32_VMX_BASIC);
        let true_controls = basic & (1 << 55) != 0;
        let pick =
            |plain: u32, true_msr: u32| arch::rdmsr(if true_controls { true_msr } else { plain });
        let procbased = pick(
            msr::IA32_VMX_PROCBASED_CTLS,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS,
        );
        let secondary = (procbased >> 32) & (1 << 31) != 0;
        VmxCapabilities {
            basic,
            pinbased: pick(
                msr::IA32_VMX_PINBASED_CTLS,
                msr::IA32_VMX_TRUE_PINBASED_CTLS,
            ),
            procbased,
            exit: pick(msr::IA32_VMX_EXIT_CTLS, msr::IA32_VMX_TRUE_EXIT_CTLS),
            entry: pick(msr::IA32_VMX_ENTRY_CTLS, msr::IA32_VMX_TRUE_ENTRY_CTLS),
            procbased2: if secondary {
                arch::rdmsr(msr::IA32_VMX_PROCBASED_CTLS2)
            } else {
                0
            },
            ept_vpid: if secondary {
                arch::rdmsr(msr::IA32_VMX_EPT_VPID_CAP)
            } else {
                0
            },
            misc: arch::rdmsr(msr::IA32_VMX_MISC),
            cr0_fixed0: arch::rdmsr(msr::IA32_VMX_CR0_FIXED0),
            cr0_fixed1: arch::rdmsr(msr::IA32_VMX_CR0_FIXED1),
            cr4_fixed0: arch::rdmsr(msr::IA32_VMX_CR4_FIXED0),
            cr4_fixed1: arch::rdmsr(msr::IA32_VMX_CR4_FIXED1),
        }
    }
}

/// EPT tables in host frames.
struct HostTables<'a>(&'a mut FrameAllocator);

impl TableMemory for HostTables<'_> {
    fn allocate(&mut self) -> Option<u64> {
        self.0.allocate(4096, 4096)
    }
    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        // SAFETY: `phys` is a zeroed frame from the allocator, identity
        // mapped and owned by these tables alone.
        unsafe { &mut *(phys as *mut [u64; 512]) }
    }
}

/// Everything VMX needs across cells.
pub struct Hypervisor {
    pub(crate) caps: VmxCapabilities,
    pub(crate) chosen: ChosenControls,
    msr_bitmap: u64,
    /// Cell 0 owns the local APIC: its bitmap also passes the x2APIC MSRs.
    cell0_msr_bitmap: u64,
    pub(crate) cells: Vec<Cell>,
    /// Cell 0's links, by number (`hvm_logic::link`).
    pub(crate) links: Vec<Link>,
    /// A cell to run next out of turn (a directed switch, `run.rs`).
    pub(crate) directed: Option<usize>,
    /// Directed switches since the round robin last chose.
    pub(crate) directed_streak: u32,
    /// External interrupts taken while another cell ran, for cell 0.
    pub(crate) for_cell0: Vec<u8>,
    /// The cell whose [`crate::cell::SWITCHED_MSRS`] are in the CPU.
    pub(crate) msrs_of: Option<usize>,
    /// The TSC rate measured at boot (`clock.rs`): slices, watchdog
    /// periods and what cells are told through CPUID.
    pub(crate) clock: Rate,
}

/// What `hvm: vmx=on ...` reports.
pub struct Summary {
    pub chosen: ChosenControls,
    pub clock: Rate,
}

/// Turns VMX on. Returns a reason string when it cannot be used. `clock`
/// is the TSC rate the cells will be told and timed by.
pub fn enable(frames: &mut FrameAllocator, clock: Rate) -> Result<Hypervisor, String> {
    let caps = read_capabilities();
    let chosen = controls::choose(&caps)
        .map_err(|missing| format!("missing {} controls {:#x}", missing.field, missing.bits))?;
    // SAFETY: IA32_FEATURE_CONTROL exists (checked by unavailable_reason);
    // setting lock + VMX-outside-SMX on an unlocked MSR is what firmware
    // would do (SDM 24.7).
    unsafe {
        let control = arch::rdmsr(msr::IA32_FEATURE_CONTROL);
        if control & 1 == 0 {
            arch::wrmsr(msr::IA32_FEATURE_CONTROL, control | 0b101);
        }
    }
    // SDM 24.8 "Restrictions on VMX operation": CR0/CR4 fixed bits, CR4.VMXE.
    // SAFETY: the fixed bits only add NE/PE/PG (already set) and VMXE.
    unsafe {
        arch::write_cr0(controls::fixed_bits(
            arch::read_cr0(),
            caps.cr0_fixed0,
            caps.cr0_fixed1,
        ));
        arch::write_cr4(controls::fixed_bits(
            arch::read_cr4() | (1 << 13),
            caps.cr4_fixed0,
            caps.cr4_fixed1,
        ));
    }
    // CR4.OSXSAVE lets hvm execute XSETBV for a Linux cell (SDM Vol. 1
    // 13.3); hvm itself never uses the extended state.
    if arch::cpuid(1, 0).2 & (1 << 26) != 0 {
        // SAFETY: XSAVE is supported, so setting OSXSAVE is allowed.
        unsafe { arch::write_cr4(arch::read_cr4() | (1 << 18)) };
    }
    let vmxon_region = frames
        .allocate(4096, 4096)
        .ok_or("no memory for the VMXON region")?;
    // SAFETY: a fresh frame owned by hvm; the first 4 bytes hold the
    // revision id (SDM 25.11.5).
    unsafe { (vmxon_region as *mut u32).write(caps.revision_id()) };
    // SAFETY: preconditions established above.
    if !unsafe { arch::vmxon(vmxon_region) } {
        return Err("VMXON failed".into());
    }
    let msr_bitmap = frames
        .allocate(4096, 4096)
        .ok_or("no memory for the MSR bitmap")?;
    build_msr_bitmap(msr_bitmap, false);
    let cell0_msr_bitmap = frames
        .allocate(4096, 4096)
        .ok_or("no memory for the MSR bitmap")?;
    build_msr_bitmap(cell0_msr_bitmap, true);
    Ok(Hypervisor {
        caps,
        chosen,
        msr_bitmap,
        cell0_msr_bitmap,
        cells: Vec::new(),
        links: Vec::new(),
        directed: None,
        directed_streak: 0,
        for_cell0: Vec::new(),
        msrs_of: None,
        clock,
    })
}

impl Hypervisor {
    /// I/O bitmaps that open the ports of the cell's devices (the
    /// manifest's `devices`), or none for a cell without devices, which
    /// exits on every port. Only these frames give a cell a real port.
    fn io_bitmaps(
        &self,
        frames: &mut FrameAllocator,
        description: &BootCell,
    ) -> Result<Option<u64>, String> {
        if description.devices.is_empty() {
            return Ok(None);
        }
        if !self.caps.io_bitmaps_usable() {
            return Err(
                "its devices need the \"use I/O bitmaps\" control, which this CPU lacks".into(),
            );
        }
        let page = frames
            .allocate(controls::IO_BITMAPS_BYTES as u64, 4096)
            .ok_or("no memory for the I/O bitmaps")?;
        let mut open: Vec<(u16, u16)> = Vec::new();
        for device in description
            .devices
            .iter()
            .filter_map(|name| kasane_manifest::device(name))
        {
            // A PCI device's ports start at its BAR, wherever the firmware put it.
            let base = match device.pci {
                None => 0,
                Some((vendor, id)) => {
                    let base = device.io_base(crate::pci::read).ok_or_else(|| {
                        format!(
                            "its device {} ({vendor:04x}:{id:04x}) has no I/O BAR on PCI bus 0",
                            device.name
                        )
                    })?;
                    log!(
                        "cell {}: device {} at port {:#x}",
                        description.name,
                        device.name,
                        base
                    );
                    base
                }
            };
            open.extend(
                device
                    .ports
                    .iter()
                    .map(|&(first, count)| (base.saturating_add(first), count)),
            );
        }
        // SAFETY: two fresh frames owned by hvm, mapped in no cell's EPT.
        let bytes = unsafe { &mut *(page as *mut [u8; controls::IO_BITMAPS_BYTES]) };
        controls::build_io_bitmaps(bytes, &open);
        Ok(Some(page))
    }
}

/// Fills a fresh frame with an MSR bitmap (`hvm_logic::msr`).
fn build_msr_bitmap(page: u64, apic: bool) {
    // SAFETY: `page` is a fresh 4 KiB frame owned by hvm.
    let bytes = unsafe { &mut *(page as *mut [u8; 4096]) };
    hvm_logic::msr::build_bitmap(bytes, apic);
}

impl Hypervisor {
    /// The line `hvm: vmx=on ...` prints.
    pub fn summary(&self) -> Summary {
        Summary {
            chosen: self.chosen,
            clock: self.clock,
        }
    }

    /// Creates cell `index` from its description: memory, EPT, VMCS, image.
    pub fn create_cell(
        &mut self,
        frames: &mut FrameAllocator,
        index: u32,
        description: &BootCell,
        modules: &BootModules,
        manifest: &[u8],
        has_link: &[bool],
    ) -> Result<(), String> {
        let size = u64::from(description.memory_mib) << 20;
        let host_base = frames.allocate(size, 2 << 20).ok_or_else(|| {
            format!(
                "not enough memory for {} MiB ({} MiB free)",
                description.memory_mib,
                frames.free_bytes() >> 20
            )
        })?;
        let mut tables = HostTables(frames);
        let ept = PageTables::new(&mut tables, Format::Ept, self.caps.ept_2mib_pages())
            .map_err(|_| String::from("no memory for EPT"))?;
        ept.map(&mut tables, 0, host_base, size, Access::ALL)
            .map_err(|_| String::from("EPT build failed"))?;
        let vmcs = frames
            .allocate(4096, 4096)
            .ok_or("no memory for the VMCS")?;
        // SAFETY: fresh frame; revision id in the first 4 bytes (SDM 25.2).
        unsafe { (vmcs as *mut u32).write(self.caps.revision_id()) };
        let policy = match description.on_failure {
            OnFailure::Stop => Policy::Stop,
            OnFailure::Restart => Policy::Restart {
                limit: description.restart_limit,
            },
            OnFailure::Poweroff => Policy::Poweroff,
        };
        let guest = guest::of(description.kind)
            .ok_or_else(|| format!("kind {:?} is not supported", description.kind))?;
        let watchdog = Watchdog::new(u64::from(description.heartbeat_ms) * self.clock.per_ms());
        let own_link = link::number(has_link.iter().copied(), index as usize);
        let links = link::count(has_link.iter().copied());
        if index == 0 {
            self.links = (0..links).map(|_| Link::new(None)).collect();
        }
        let devices = match (index, own_link) {
            (0, _) => links,
            (_, Some(_)) => 1,
            (_, None) => 0,
        };
        self.cells.push(Cell {
            index,
            description: description.clone(),
            guest,
            memory: GuestMemory { host_base, size },
            life: Life::new(policy),
            vmcs,
            eptp: ept.eptp(),
            regs: GuestRegisters::default(),
            launched: false,
            line: Vec::new(),
            platform: Platform::new(description.kind, devices),
            watchdog,
            link: own_link,
            command: 0,
            exits: 0,
            last_failure: String::new(),
            control: None,
            switched_msrs: [0; crate::cell::SWITCHED_MSRS.len()],
            io_bitmaps: self.io_bitmaps(frames, description)?,
        });
        let position = self.cells.len() - 1;
        if let Some(link) = own_link.and_then(|n| self.links.get_mut(n)) {
            link.peer = Some(position);
        }
        self.load(position, modules, manifest)
    }

    /// Loads (or reloads) the cell's pristine image through its kind and
    /// resets its vCPU; a link whose peer this cell is starts a new
    /// generation.
    pub(crate) fn load(
        &mut self,
        position: usize,
        modules: &BootModules,
        manifest: &[u8],
    ) -> Result<(), String> {
        let cell = &mut self.cells[position];
        let guest = cell.guest;
        let entry = guest.boot(cell, modules, manifest)?;
        let bitmap = if entry.owns_apic {
            self.cell0_msr_bitmap
        } else {
            self.msr_bitmap
        };
        self.reset_vcpu(position, bitmap, &entry);
        // A restarted cell starts with its switched MSRs at zero.
        self.cells[position].switched_msrs = [0; crate::cell::SWITCHED_MSRS.len()];
        if self.msrs_of == Some(position) {
            self.msrs_of = None;
        }
        let restarted = self
            .links
            .iter_mut()
            .enumerate()
            .find(|(_, l)| l.peer == Some(position));
        if let Some((number, link)) = restarted {
            link.to_peer.clear();
            link.to_cell0.clear();
            link.generation += 1;
            // After a restart (not the first start), cell 0's driver hears
            // of the new peer at once (its link vector), rather than when
            // an answer is overdue.
            if link.generation > 1 {
                crate::run::raise_link_vector(&mut self.for_cell0, number);
            }
        }
        let cell = &mut self.cells[position];
        cell.command = 0;
        cell.life.started();
        Ok(())
    }

    /// Puts a cell's vCPU in its reset state, as at first boot or after a
    /// restart: a cleared VMCS made current (so the next entry is a
    /// VMLAUNCH, SDM 25.1), the controls with the cell's MSR bitmap, host
    /// state, the given guest entry state and registers, and no stale EPT
    /// translations.
    fn reset_vcpu(&mut self, position: usize, msr_bitmap: u64, entry: &Entry) {
        let cell = &mut self.cells[position];
        // SAFETY: the cell's VMCS region, initialised by create_cell(); no
        // other token is alive while a cell is loaded (between turns).
        let vmcs =
            unsafe { Vmcs::clear_and_load(cell.vmcs) }.expect("VMCLEAR/VMPTRLD of a cell's VMCS");
        cell.regs = entry.registers;
        cell.launched = false;
        cell.drop_line();
        let (vpid, eptp, io_bitmaps) = (cell.index as u16 + 1, cell.eptp, cell.io_bitmaps);
        // SAFETY: the controls keep the cell in its EPT (this cell's
        // tables), exit on every port (controls::choose) and on the MSRs
        // its bitmap does not pass; the host state is hvm's own.
        unsafe {
            self.write_controls(&vmcs, vpid, eptp, msr_bitmap, io_bitmaps);
            write_host_state(&vmcs);
        }
        self.write_guest_state(&vmcs, entry);
        if self.caps.invept_single_context() {
            // SAFETY: VMX is on and single-context INVEPT is supported.
            unsafe { arch::invept_single(eptp) };
        }
    }

    /// Writes the VM-execution, exit and entry controls (SDM 25.6-25.8).
    ///
    /// # Safety
    /// `eptp` is the cell's own EPT, `msr_bitmap` a bitmap page built by
    /// `build_msr_bitmap`, and `io_bitmaps` (when given) two frames built
    /// by `Hypervisor::io_bitmaps` for this cell's own devices: they bound
    /// what the cell reaches.
    unsafe fn write_controls(
        &self,
        vmcs: &Vmcs,
        vpid: u16,
        eptp: u64,
        msr_bitmap: u64,
        io_bitmaps: Option<u64>,
    ) {
        // SAFETY: forwarded to the caller; the other values are the
        // controls `controls::choose` computed, which exit on every port,
        // HLT and CR access hvm needs to see.
        let write = |field, value| unsafe { vmcs.write_control(field, value) };
        let c = &self.chosen;
        write(Field::PinBasedControls, u64::from(c.pinbased.bits()));
        let mut procbased = c.procbased;
        if let Some(bitmaps) = io_bitmaps {
            // SDM 25.6.4: with "use I/O bitmaps", A and B decide per port
            // and "unconditional I/O exiting" is ignored.
            procbased |= controls::ProcBased::USE_IO_BITMAPS;
            write(Field::IoBitmapA, bitmaps);
            write(Field::IoBitmapB, bitmaps + 4096);
        }
        write(Field::ProcBasedControls, u64::from(procbased.bits()));
        write(Field::ProcBasedControls2, u64::from(c.procbased2.bits()));
        write(Field::ExitControls, u64::from(c.exit.bits()));
        write(Field::EntryControls, u64::from(c.entry.bits()));
        write(Field::ExceptionBitmap, 0);
        write(Field::PageFaultErrorCodeMask, 0);
        write(Field::PageFaultErrorCodeMatch, 0);
        write(Field::Cr3TargetCount, 0);
        write(Field::ExitMsrStoreCount, 0);
        write(Field::ExitMsrLoadCount, 0);
        write(Field::EntryMsrLoadCount, 0);
        write(Field::EntryInterruptionInfo, 0);
        write(Field::MsrBitmap, msr_bitmap);
        write(Field::EptPointer, eptp);
        if c.vpid() {
            write(Field::VirtualProcessorId, u64::from(vpid));
        }
        if c.preemption_timer() {
            write(Field::PreemptionTimerValue, u64::from(u32::MAX));
        }
        // SDM 25.4.2: all ones means "no shadow VMCS".
        write(Field::VmcsLinkPointer, u64::MAX);
        // CR bits VMX forces are owned by hvm; the guest reads its own values.
        let ug = c.unrestricted_guest();
        let cr0_forced = (self.caps.cr0_fixed0 | !self.caps.cr0_fixed1) & 0xFFFF_FFFF;
        let cr0_mask = if ug {
            cr0_forced & !0x8000_0001
        } else {
            cr0_forced
        };
        write(Field::Cr0GuestHostMask, cr0_mask);
        write(
            Field::Cr4GuestHostMask,
            (self.caps.cr4_fixed0 | !self.caps.cr4_fixed1) & 0xFFFF_FFFF,
        );
    }

    fn write_guest_state(&self, vmcs: &Vmcs, entry: &Entry) {
        let write = |field, value| vmcs.write(field, value);
        // SDM 27.3.1 "Checks on the guest state area" for 64-bit guests.
        let (cr0, cr4) = (entry.cr0, entry.cr4);
        write(
            Field::GuestCr0,
            controls::fixed_bits(cr0, self.caps.cr0_fixed0, self.caps.cr0_fixed1),
        );
        write(Field::Cr0ReadShadow, cr0);
        write(
            Field::GuestCr4,
            controls::fixed_bits(cr4, self.caps.cr4_fixed0, self.caps.cr4_fixed1),
        );
        write(Field::Cr4ReadShadow, cr4);
        write(Field::GuestCr3, entry.cr3);
        write(Field::GuestEfer, entry.efer);
        write(Field::GuestPat, 0x0007_0406_0007_0406);
        write(Field::GuestDebugctl, 0);
        write(Field::GuestDr7, 0x400);
        write(Field::GuestRsp, entry.rsp);
        write(Field::GuestRip, entry.rip);
        write(Field::GuestRflags, 0x2);
        write(Field::GuestPendingDebugExceptions, 0);
        write(Field::GuestInterruptibility, 0);
        write(Field::GuestActivityState, 0);
        write(Field::GuestSysenterCs, 0);
        write(Field::GuestSysenterEsp, 0);
        write(Field::GuestSysenterEip, 0);
        let segments = [
            (
                Field::GuestCsSelector,
                Field::GuestCsBase,
                Field::GuestCsLimit,
                Field::GuestCsAccessRights,
                entry.code,
                access_rights::CODE64,
            ),
            (
                Field::GuestSsSelector,
                Field::GuestSsBase,
                Field::GuestSsLimit,
                Field::GuestSsAccessRights,
                entry.data,
                access_rights::DATA,
            ),
            (
                Field::GuestDsSelector,
                Field::GuestDsBase,
                Field::GuestDsLimit,
                Field::GuestDsAccessRights,
                entry.data,
                access_rights::DATA,
            ),
            (
                Field::GuestEsSelector,
                Field::GuestEsBase,
                Field::GuestEsLimit,
                Field::GuestEsAccessRights,
                entry.data,
                access_rights::DATA,
            ),
            (
                Field::GuestFsSelector,
                Field::GuestFsBase,
                Field::GuestFsLimit,
                Field::GuestFsAccessRights,
                entry.data,
                access_rights::DATA,
            ),
            (
                Field::GuestGsSelector,
                Field::GuestGsBase,
                Field::GuestGsLimit,
                Field::GuestGsAccessRights,
                entry.data,
                access_rights::DATA,
            ),
        ];
        for (selector, base, limit, rights, value, ar) in segments {
            write(selector, value);
            write(base, 0);
            write(limit, 0xFFFF_FFFF);
            write(rights, u64::from(ar));
        }
        write(Field::GuestTrSelector, 0);
        write(Field::GuestTrBase, 0);
        write(Field::GuestTrLimit, 0x67);
        write(
            Field::GuestTrAccessRights,
            u64::from(access_rights::TSS_BUSY),
        );
        write(Field::GuestLdtrSelector, 0);
        write(Field::GuestLdtrBase, 0);
        write(Field::GuestLdtrLimit, 0);
        write(
            Field::GuestLdtrAccessRights,
            u64::from(access_rights::UNUSABLE),
        );
        write(Field::GuestGdtrBase, entry.gdt_base);
        write(Field::GuestGdtrLimit, u64::from(entry.gdt_limit));
        write(Field::GuestIdtrBase, 0);
        write(Field::GuestIdtrLimit, 0);
    }
}

/// Writes the host-state area (SDM 25.5, checked by 27.2.3).
///
/// # Safety
/// Called on this CPU, whose current CR0/CR3/CR4, GDT, IDT and TSS are the
/// ones hvm runs on: an exit resumes hvm with them.
unsafe fn write_host_state(vmcs: &Vmcs) {
    use x86_64::instructions::tables::{sgdt, sidt};
    // SAFETY: forwarded to the caller; every value is read from this CPU
    // or is hvm's own fixed selector.
    let write = |field, value| unsafe { vmcs.write_control(field, value) };
    write(Field::HostCr0, arch::read_cr0());
    write(Field::HostCr3, arch::read_cr3());
    write(Field::HostCr4, arch::read_cr4());
    write(Field::HostCsSelector, 0x08);
    for field in [
        Field::HostSsSelector,
        Field::HostDsSelector,
        Field::HostEsSelector,
    ] {
        write(field, 0x10);
    }
    write(Field::HostFsSelector, 0);
    write(Field::HostGsSelector, 0);
    write(Field::HostTrSelector, u64::from(crate::gdt::TSS_SELECTOR));
    write(Field::HostFsBase, 0);
    write(Field::HostGsBase, 0);
    write(Field::HostTrBase, crate::gdt::tss_address());
    write(Field::HostGdtrBase, sgdt().base.as_u64());
    write(Field::HostIdtrBase, sidt().base.as_u64());
    write(Field::HostSysenterCs, 0);
    write(Field::HostSysenterEsp, 0);
    write(Field::HostSysenterEip, 0);
    // SAFETY: EFER and PAT exist on every x86-64 CPU.
    unsafe {
        write(Field::HostEfer, arch::rdmsr(0xC000_0080));
        write(Field::HostPat, arch::rdmsr(0x277));
    }
}
