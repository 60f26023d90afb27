//! VMX operation: turning VT-x on, building a cell's VMCS, and its exits.
//!
//! The order follows SDM Vol. 3 chapter 25.11.3 ("Initializing a VMCS") and
//! 24.7 ("Enabling and entering VMX operation"). Every decision that can be
//! made from plain values is made in `hvm_logic`; this module reads MSRs,
//! executes VMX instructions and copies bytes.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use alloc::boxed::Box;
use hvm_abi::{BootMode, CellState, Hypercall, HypercallError, CONSOLE_WRITE_MAX};
use hvm_logic::cell::{Decision, Life, Policy, State, Watchdog};
use hvm_logic::controls::{self, msr, ChosenControls, ProcBased, VmxCapabilities};
use hvm_logic::ept::{Access, Format, PageTables, TableMemory};
use hvm_logic::exit::{CrAccess, IoAccess, RawExit, VmExit};
use hvm_logic::guest::GuestMemory;
use hvm_logic::ioapic::Ioapic;
use hvm_logic::lapic::Lapic;
use hvm_logic::uart::Uart;
use hvm_logic::virtio::{ConfigPorts, Console, Pipe};
use hvm_logic::vmcs::{access_rights, Field};
use kasane_manifest::{BootCell, CellKind, OnFailure};

use crate::arch::{self, GuestRegisters};
use crate::devices::{self, Exit};
use crate::loader::{self, CellLayout};
use crate::memory::FrameAllocator;
use crate::{power_off, serial, BootModules};

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

pub(crate) fn write(field: Field, value: u64) {
    debug_assert!(field.fits(value));
    // SAFETY: only called while the VMCS of the cell being configured or run
    // is current; each caller sets fields as SDM chapter 25 describes.
    if !unsafe { arch::vmwrite(field.encoding(), value) } {
        log!("VMWRITE {:#x} <- {:#x} failed", field.encoding(), value);
    }
}

pub(crate) fn read(field: Field) -> u64 {
    // SAFETY: a VMCS is current whenever exits are handled.
    unsafe { arch::vmread(field.encoding()) }
}

/// A cell: its memory, VMCS, EPT and life.
struct Cell {
    index: u32,
    description: BootCell,
    memory: GuestMemory,
    life: Life,
    vmcs: u64,
    eptp: u64,
    regs: GuestRegisters,
    launched: bool,
    /// Bytes of console output waiting for a newline.
    line: Vec<u8>,
    /// The emulated platform (Linux cells; cell 0 uses `pci` and `link`).
    pub(crate) platform: Platform,
    watchdog: Watchdog,
}

/// What hvm emulates for a cell besides the CPU.
pub(crate) struct Platform {
    /// PCI configuration mechanism #1.
    pub pci: ConfigPorts,
    /// This cell's end of the link, if it has one.
    pub link: Option<Console>,
    /// Local APIC (Linux cells).
    pub lapic: Lapic,
    /// COM1 (Linux cells).
    pub uart: Uart,
    /// The I/O APIC's registers (Linux cells).
    pub ioapic: Option<Ioapic>,
    /// The vCPU executed HLT and waits for an interrupt.
    pub halted: bool,
}

impl Platform {
    fn new(kind: CellKind, linked: bool) -> Self {
        Self {
            pci: ConfigPorts::default(),
            link: linked.then(|| Console::new(kind == CellKind::Linux, devices::LINK_BAR)),
            lapic: Lapic::new(),
            uart: Uart::new(),
            ioapic: (kind == CellKind::Linux).then(Ioapic::new),
            halted: false,
        }
    }
}

/// The link between cell 0 and the Linux cell: bytes in flight each way and
/// the generation cell 0 reads to notice that its peer was restarted.
struct Link {
    peer: usize,
    to_peer: Box<Pipe>,
    to_cell0: Box<Pipe>,
    generation: u64,
    /// Refused chains logged so far (the log is bounded).
    logged: u32,
}

/// A vCPU's starting state in 64-bit mode.
struct GuestEntry {
    rip: u64,
    rsp: u64,
    cr3: u64,
    gdt_base: u64,
    gdt_limit: u16,
    code: u64,
    data: u64,
    cr0: u64,
    cr4: u64,
    efer: u64,
}

/// Everything VMX needs across cells.
pub struct Hypervisor {
    caps: VmxCapabilities,
    chosen: ChosenControls,
    msr_bitmap: u64,
    /// Cell 0 owns the local APIC: its bitmap also passes the x2APIC MSRs.
    cell0_msr_bitmap: u64,
    cells: Vec<Cell>,
    link: Option<Link>,
    /// External interrupts taken while another cell ran, for cell 0.
    pending_for_cell0: Vec<u8>,
}

/// TSC ticks per millisecond as hvm tells Linux (CPUID 0x15/0x16); also the
/// unit of watchdog periods.
pub const TSC_PER_MS: u64 = devices::TSC_HZ / 1000;
/// A cell's time slice, in TSC ticks (10 ms).
const SLICE: u64 = 10 * TSC_PER_MS;

/// What `hvm: vmx=on ...` reports.
pub struct Summary {
    pub chosen: ChosenControls,
}

/// Turns VMX on. Returns a reason string when it cannot be used.
pub fn enable(frames: &mut FrameAllocator) -> Result<Hypervisor, String> {
    let caps = read_capabilities();
    let chosen = controls::choose(&caps).map_err(|missing| {
        let mut reason = String::new();
        let _ = write!(
            reason,
            "missing {} controls {:#x}",
            missing.field, missing.bits
        );
        reason
    })?;
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
        link: None,
        pending_for_cell0: Vec::new(),
    })
}

/// MSRs a cell may touch directly (SDM 25.6.9: a clear bit means no exit).
/// Their values are the cell's own: FS/GS bases and the SYSCALL MSRs are not
/// used by hvm, and EFER/PAT are switched by the VMCS.
const PASSTHROUGH_MSRS: [u32; 13] = [
    0x0000_0174, // SYSENTER_CS (always saved and loaded, SDM 27.3.1, 28.3)
    0x0000_0175, // SYSENTER_ESP
    0x0000_0176, // SYSENTER_EIP
    0xC000_0080, // EFER (saved and loaded on every exit and entry)
    0xC000_0081, // STAR
    0xC000_0082, // LSTAR
    0xC000_0083, // CSTAR
    0xC000_0084, // SFMASK
    0xC000_0100, // FS_BASE
    0xC000_0101, // GS_BASE
    0xC000_0102, // KERNEL_GS_BASE
    0xC000_0103, // TSC_AUX
    0x0000_0277, // PAT (saved and loaded)
];

/// `apic` also passes the x2APIC register MSRs 0x800–0x8FF (SDM 11.12.1):
/// cell 0 drives the physical local APIC (its timer and EOI); hvm re-injects
/// the interrupts it delivers.
fn build_msr_bitmap(page: u64, apic: bool) {
    // SAFETY: `page` is a fresh 4 KiB frame owned by hvm.
    let bytes = unsafe { core::slice::from_raw_parts_mut(page as *mut u8, 4096) };
    bytes.fill(0xFF);
    for msr in PASSTHROUGH_MSRS {
        // Layout: read-low, read-high, write-low, write-high, 1 KiB each.
        let (base, bit) = if msr >= 0xC000_0000 {
            (1024, msr - 0xC000_0000)
        } else {
            (0, msr)
        };
        for half in [0usize, 2048] {
            bytes[half + base + (bit / 8) as usize] &= !(1 << (bit % 8));
        }
    }
    if apic {
        for half in [0usize, 2048] {
            bytes[half + 0x800 / 8..half + 0x900 / 8].fill(0);
        }
    }
    // Reading the TSC directly is harmless and fast.
    bytes[0x10 / 8] &= !(1 << (0x10 % 8));
}

impl Hypervisor {
    /// The line `hvm: vmx=on ...` prints.
    pub fn summary(&self) -> Summary {
        Summary {
            chosen: self.chosen,
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
        linked: bool,
    ) -> Result<(), String> {
        let size = u64::from(description.memory_mib) << 20;
        let host_base = frames.allocate(size, 2 << 20).ok_or_else(|| {
            let mut s = String::new();
            let _ = write!(
                s,
                "not enough memory for {} MiB ({} MiB free)",
                description.memory_mib,
                frames.free_bytes() >> 20
            );
            s
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
        let cell = Cell {
            index,
            description: description.clone(),
            memory: GuestMemory { host_base, size },
            life: Life::new(policy),
            vmcs,
            eptp: ept.eptp(),
            regs: GuestRegisters::default(),
            launched: false,
            line: Vec::new(),
            platform: Platform::new(description.kind, linked),
            watchdog: Watchdog::new(u64::from(description.heartbeat_ms) * TSC_PER_MS),
        };
        self.cells.push(cell);
        let position = self.cells.len() - 1;
        if description.kind == CellKind::Linux && self.link.is_none() {
            self.link = Some(Link {
                peer: position,
                to_peer: Box::new(Pipe::new()),
                to_cell0: Box::new(Pipe::new()),
                generation: 0,
                logged: 0,
            });
        }
        self.load(position, modules, manifest)
    }

    /// Loads a Linux cell's bzImage and initrd (boot.rst 64-bit protocol)
    /// and resets its platform; the link's peer is new.
    fn load_linux(&mut self, position: usize, modules: &BootModules) -> Result<(), String> {
        let cell = &mut self.cells[position];
        let missing = |name: &str| {
            let mut s = String::new();
            let _ = write!(s, "boot module `{name}` is missing");
            s
        };
        let kernel = modules
            .find(&cell.description.image)
            .ok_or_else(|| missing(&cell.description.image))?;
        let initrd = if cell.description.initrd.is_empty() {
            &[][..]
        } else {
            modules
                .find(&cell.description.initrd)
                .ok_or_else(|| missing(&cell.description.initrd))?
        };
        let layout = CellLayout {
            host_base: cell.memory.host_base,
            guest_base: 0,
            size: cell.memory.size,
        };
        let entry = crate::linux::load_linux(layout, kernel, initrd, &cell.description.cmdline)
            .map_err(|e| {
                let mut s = String::new();
                let _ = write!(s, "cannot boot `{}`: {e}", cell.description.image);
                s
            })?;
        cell.platform = Platform::new(CellKind::Linux, true);
        cell.watchdog.disarm();
        let registers = GuestRegisters {
            rsi: entry.rsi,
            ..Default::default()
        };
        // boot.rst: CS = __BOOT_CS (0x10), DS/ES/SS = __BOOT_DS (0x18),
        // long mode with the identity map, interrupts off, RSI = boot_params.
        let guest = GuestEntry {
            rip: entry.rip,
            rsp: entry.rsp,
            cr3: entry.cr3,
            gdt_base: entry.gdt_base,
            gdt_limit: entry.gdt_limit,
            code: 0x10,
            data: 0x18,
            cr0: 0x8000_0031, // PG, NE, ET, PE
            cr4: 0x20,        // PAE
            efer: 0x500,      // LMA, LME
        };
        self.reset_vcpu(position, registers, self.msr_bitmap, &guest);
        if let Some(link) = self.link.as_mut().filter(|l| l.peer == position) {
            link.to_peer.clear();
            link.to_cell0.clear();
            link.generation += 1;
        }
        self.cells[position].life.started();
        Ok(())
    }

    /// Loads (or reloads) the cell's pristine image and resets its vCPU.
    fn load(
        &mut self,
        position: usize,
        modules: &BootModules,
        manifest: &[u8],
    ) -> Result<(), String> {
        if self.cells[position].description.kind == CellKind::Linux {
            return self.load_linux(position, modules);
        }
        let cell = &mut self.cells[position];
        let kernel = modules.find(&cell.description.image).ok_or_else(|| {
            let mut s = String::new();
            let _ = write!(
                s,
                "boot module `{}` (its image) is missing",
                cell.description.image
            );
            s
        })?;
        let mut extra: Vec<(&str, &[u8])> = Vec::new();
        for name in &cell.description.modules {
            let bytes = modules.find(name).ok_or_else(|| {
                let mut s = String::new();
                let _ = write!(s, "boot module `{name}` is missing");
                s
            })?;
            extra.push((name.as_str(), bytes));
        }
        let layout = CellLayout {
            host_base: cell.memory.host_base,
            guest_base: 0,
            size: cell.memory.size,
        };
        let entry = loader::load_microkernel(
            layout,
            BootMode::VmxGuest,
            cell.index,
            kernel,
            &extra,
            manifest,
            &cell.description.args,
            None,
        )
        .map_err(|e| {
            let mut s = String::new();
            let _ = write!(s, "{e}");
            s
        })?;
        let registers = GuestRegisters {
            rdi: entry.rdi,
            ..Default::default()
        };
        let guest = GuestEntry {
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
        };
        // Only cell 0 is a microkernel, and it owns the local APIC.
        self.reset_vcpu(position, registers, self.cell0_msr_bitmap, &guest);
        self.cells[position].life.started();
        Ok(())
    }

    /// Puts a cell's vCPU in its reset state, as at first boot or after a
    /// restart: a cleared VMCS made current (so the next entry is a
    /// VMLAUNCH, SDM 25.1), the controls with the cell's MSR bitmap, host
    /// state, the given guest entry state and registers, and no stale EPT
    /// translations.
    fn reset_vcpu(
        &mut self,
        position: usize,
        registers: GuestRegisters,
        msr_bitmap: u64,
        guest: &GuestEntry,
    ) {
        let cell = &mut self.cells[position];
        // SAFETY: the VMCS region belongs to this cell.
        unsafe {
            arch::vmclear(cell.vmcs);
            arch::vmptrld(cell.vmcs);
        }
        cell.regs = registers;
        cell.launched = false;
        cell.line.clear();
        let (vpid, eptp) = (cell.index as u16 + 1, cell.eptp);
        self.write_controls(vpid, eptp, msr_bitmap);
        write_host_state();
        self.write_guest_state(guest);
        if self.caps.invept_single_context() {
            // SAFETY: VMX is on and single-context INVEPT is supported.
            unsafe { arch::invept_single(eptp) };
        }
    }

    fn write_controls(&self, vpid: u16, eptp: u64, msr_bitmap: u64) {
        let c = &self.chosen;
        write(Field::PinBasedControls, u64::from(c.pinbased.bits()));
        write(Field::ProcBasedControls, u64::from(c.procbased.bits()));
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

    fn write_guest_state(&self, entry: &GuestEntry) {
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

    /// Runs the cells until none is alive, then powers off.
    ///
    /// Cells take turns (round robin), each for at most [`SLICE`] TSC ticks
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
                let mut what = String::new();
                let _ = write!(
                    what,
                    "no heartbeat for longer than {} ms",
                    cell.description.heartbeat_ms
                );
                // SAFETY: the cell's VMCS; fail() reads its RIP.
                unsafe { arch::vmptrld(cell.vmcs) };
                self.fail(position, &what);
            }
        }
    }

    /// Moves bytes across the link both ways and raises the Linux cell's
    /// interrupts; every descriptor is checked against its owner's memory.
    fn pump_link(&mut self) {
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
                while console.take_interrupt().is_some() {}
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

    /// Enters a cell and handles exits until it must yield or stop.
    fn enter(&mut self, position: usize) {
        let cell = &mut self.cells[position];
        // SAFETY: the cell's VMCS is initialised; make it current.
        unsafe { arch::vmptrld(cell.vmcs) };
        let linux = cell.description.kind == CellKind::Linux;
        let slice_end = arch::rdtsc() + SLICE;
        let rate = self.caps.preemption_timer_rate();
        if position == 0 {
            self.inject_for_cell0();
        }
        loop {
            let now = arch::rdtsc();
            let cell = &mut self.cells[position];
            let mut until = slice_end;
            if linux {
                cell.platform.lapic.update(now);
                if let Some(expiry) = cell.platform.lapic.next_expiry() {
                    until = until.min(expiry);
                }
                offer_interrupt(&mut cell.platform.lapic);
            }
            if self.chosen.preemption_timer() {
                let ticks = (until.saturating_sub(now) >> rate).min(u64::from(u32::MAX));
                write(Field::PreemptionTimerValue, ticks);
            }
            // SAFETY: the VMCS is current and complete (load()).
            let status = unsafe { arch::run_guest(&mut cell.regs, cell.launched) };
            if status != 0 {
                let mut what = String::new();
                let _ = write!(
                    what,
                    "VM entry failed (VM-instruction error {})",
                    read(Field::InstructionError)
                );
                self.fail(position, &what);
                return;
            }
            cell.launched = true;
            reinject_vectoring();
            let raw = RawExit {
                reason: read(Field::ExitReason) as u32,
                qualification: read(Field::ExitQualification),
                guest_physical: read(Field::GuestPhysicalAddress),
                interruption_info: read(Field::ExitInterruptionInfo) as u32,
            };
            match self.handle(position, VmExit::decode(raw)) {
                Flow::Resume => {}
                Flow::Yield => return,
            }
            if arch::rdtsc() >= slice_end {
                return;
            }
        }
    }

    fn fail(&mut self, position: usize, what: &str) {
        let cell = &mut self.cells[position];
        let rip = read(Field::GuestRip);
        flush_line(cell);
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

    /// Runs a device exit of a Linux cell (or cell 0's link) and turns its
    /// outcome into a flow.
    fn device_exit(&mut self, position: usize, exit: Exit) -> Flow {
        match exit {
            Exit::Done => Flow::Resume,
            Exit::Notify => {
                self.pump_link();
                Flow::Resume
            }
            Exit::Reset(why) => {
                let mut what = String::new();
                let _ = write!(what, "reset requested ({why})");
                self.fail(position, &what);
                Flow::Yield
            }
            Exit::Fail(what) => {
                self.fail(position, &what);
                Flow::Yield
            }
        }
    }

    fn handle(&mut self, position: usize, exit: VmExit) -> Flow {
        let linux = self.cells[position].description.kind == CellKind::Linux;
        match exit {
            VmExit::Cpuid => {
                let cell = &mut self.cells[position];
                if linux {
                    devices::linux_cpuid(&mut cell.regs, read(Field::GuestCr4));
                } else {
                    emulate_cpuid(&mut cell.regs);
                }
                skip_instruction();
                Flow::Resume
            }
            VmExit::Vmcall if linux => {
                // Linux cells get no hypercalls: VMCALL is #UD (SDM 25.1.3).
                inject_exception(6, None);
                Flow::Resume
            }
            VmExit::Vmcall => {
                let flow = self.hypercall(position);
                if flow == Flow::Resume {
                    skip_instruction();
                }
                flow
            }
            VmExit::Io(access) => {
                if access.string {
                    let mut what = String::new();
                    let _ = write!(
                        what,
                        "string I/O to port {:#x} is not emulated",
                        access.port
                    );
                    self.fail(position, &what);
                    return Flow::Yield;
                }
                let cell = &mut self.cells[position];
                if devices::pci_io(&mut cell.platform, &mut cell.regs, access) {
                    skip_instruction();
                    return Flow::Resume;
                }
                if linux {
                    let exit = devices::linux_io(&mut cell.platform, &mut cell.regs, access);
                    if let Some(byte) = exit.1 {
                        console_from_cell(cell, &[byte]);
                    }
                    if exit.0 == Exit::Done {
                        skip_instruction();
                    }
                    return self.device_exit(position, exit.0);
                }
                emulate_io(cell, access);
                skip_instruction();
                Flow::Resume
            }
            VmExit::Rdmsr | VmExit::Wrmsr => {
                let cell = &mut self.cells[position];
                if linux {
                    devices::linux_msr(&mut cell.platform, &mut cell.regs, exit == VmExit::Wrmsr);
                } else {
                    emulate_msr(cell, exit == VmExit::Wrmsr);
                }
                Flow::Resume
            }
            VmExit::CrAccess(access) => {
                if self.emulate_cr(position, access) {
                    skip_instruction();
                    Flow::Resume
                } else {
                    let mut what = String::new();
                    let _ = write!(
                        what,
                        "unsupported control-register access (CR{})",
                        access.register
                    );
                    self.fail(position, &what);
                    Flow::Yield
                }
            }
            VmExit::Hlt if linux => {
                if read(Field::GuestRflags) & (1 << 9) == 0 {
                    self.fail(position, "halted with interrupts off");
                    return Flow::Yield;
                }
                skip_instruction();
                let cell = &mut self.cells[position];
                cell.platform.lapic.update(arch::rdtsc());
                if cell.platform.lapic.pending().is_some() {
                    return Flow::Resume;
                }
                // Wait in software: other cells run until an interrupt.
                cell.platform.halted = true;
                Flow::Yield
            }
            VmExit::Hlt => {
                let rflags = read(Field::GuestRflags);
                if rflags & (1 << 9) == 0 {
                    let cell = &mut self.cells[position];
                    flush_line(cell);
                    log!(
                        "cell {} ({}) halted with interrupts off; stopping it",
                        cell.index,
                        cell.description.name
                    );
                    cell.life.stopped();
                    return Flow::Yield;
                }
                skip_instruction();
                // An interrupt already held for cell 0 (it came while the
                // vCPU had interrupts off) ends the HLT at once: inject it
                // now that IF is 1 and the STI shadow is gone, rather than
                // rely on the interrupt-window exit to wake the HLT state
                // (SDM 26.2 says it does; Bochs 2.7 never wakes for it, and
                // the unacknowledged vector then blocks every later one).
                if position == 0 {
                    if let Some(vector) = self.take_pending() {
                        if PENDING.lock().is_empty() {
                            let procbased = read(Field::ProcBasedControls)
                                & !u64::from(ProcBased::INTERRUPT_WINDOW_EXITING.bits());
                            write(Field::ProcBasedControls, procbased);
                        }
                        inject_external(vector);
                        return Flow::Resume;
                    }
                }
                // SDM 27.4.2: enter in the HLT activity state; an interrupt
                // for the cell wakes it.
                if self.caps.misc & (1 << 6) != 0 {
                    write(Field::GuestActivityState, 1);
                }
                Flow::Resume
            }
            VmExit::ExternalInterrupt { vector } => {
                // Physical interrupts belong to cell 0, which owns the local
                // APIC (SDM 27.6 "Event injection"). Taken while another cell
                // ran, they wait for cell 0's turn, which comes now.
                if position == 0 {
                    self.deliver_interrupt(vector);
                    Flow::Resume
                } else {
                    self.pending_for_cell0.push(vector);
                    Flow::Yield
                }
            }
            VmExit::InterruptWindow => {
                let procbased = read(Field::ProcBasedControls)
                    & !u64::from(ProcBased::INTERRUPT_WINDOW_EXITING.bits());
                write(Field::ProcBasedControls, procbased);
                if position == 0 {
                    if let Some(vector) = self.take_pending() {
                        inject_external(vector);
                    }
                }
                Flow::Resume
            }
            VmExit::PreemptionTimer => Flow::Resume,
            VmExit::VmxInstruction => {
                inject_exception(6, None);
                Flow::Resume
            }
            VmExit::Xsetbv if linux => {
                let cell = &mut self.cells[position];
                if devices::xsetbv(&cell.regs) {
                    skip_instruction();
                } else {
                    inject_exception(13, Some(0));
                }
                Flow::Resume
            }
            VmExit::Xsetbv => {
                inject_exception(13, Some(0));
                Flow::Resume
            }
            VmExit::EptViolation(violation) => {
                let cell = &mut self.cells[position];
                let memory = cell.memory;
                if let Some(exit) =
                    devices::mmio(memory, &mut cell.platform, &mut cell.regs, violation)
                {
                    return self.device_exit(position, exit);
                }
                let kind = if violation.write {
                    "write"
                } else if violation.fetch {
                    "instruction fetch"
                } else {
                    "read"
                };
                let mut what = String::new();
                let _ = write!(
                    what,
                    "EPT violation ({kind} at gpa={:#x}, outside the cell's memory)",
                    violation.guest_physical
                );
                self.fail(position, &what);
                Flow::Yield
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
                        read(Field::ExitQualification)
                    ),
                };
                self.fail(position, &what);
                Flow::Yield
            }
        }
    }

    fn hypercall(&mut self, position: usize) -> Flow {
        let cell = &mut self.cells[position];
        let regs = &mut cell.regs;
        let (number, a0, a1) = (regs.rax, regs.rdi, regs.rsi);
        let mut value = 0;
        let result: Result<(), HypercallError> = match Hypercall::from_raw(number) {
            None => Err(HypercallError::UnknownCall),
            Some(Hypercall::Version) => {
                value = hvm_abi::ABI_VERSION;
                Ok(())
            }
            Some(Hypercall::ConsoleWrite) => {
                if a1 > CONSOLE_WRITE_MAX {
                    Err(HypercallError::BadArgument)
                } else {
                    match cell.memory.check(a0, a1) {
                        Ok(range) => {
                            // SAFETY: `range` is inside the cell's memory,
                            // identity mapped in hvm; the cell is not running.
                            let bytes = unsafe {
                                core::slice::from_raw_parts(
                                    range.host() as *const u8,
                                    range.len() as usize,
                                )
                            };
                            console_from_cell(cell, bytes);
                            Ok(())
                        }
                        Err(_) => Err(HypercallError::BadAddress),
                    }
                }
            }
            Some(Hypercall::CellSelf) => {
                value = u64::from(cell.index);
                Ok(())
            }
            Some(Hypercall::Heartbeat) => {
                cell.watchdog.feed(arch::rdtsc());
                Ok(())
            }
            Some(Hypercall::Yield) => {
                let regs = &mut self.cells[position].regs;
                regs.rax = 0;
                skip_instruction();
                return Flow::Yield;
            }
            Some(Hypercall::LinkStatus) => match (&self.link, a0) {
                (Some(link), 0) if self.cells[position].platform.link.is_some() => {
                    value = link.generation;
                    Ok(())
                }
                _ => Err(HypercallError::NoSuchCell),
            },
            Some(Hypercall::CellStatus) => {
                match self.cells.iter().find(|c| u64::from(c.index) == a0) {
                    Some(other) => {
                        value = match other.life.state {
                            State::Created => CellState::Created,
                            State::Running => CellState::Running,
                            State::Stopped => CellState::Stopped,
                            State::Failed => CellState::Failed,
                        } as u64;
                        Ok(())
                    }
                    None => Err(HypercallError::NoSuchCell),
                }
            }
            Some(Hypercall::CellControl) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::CellControl) => {
                if hvm_abi::CellControl::from_raw(a1).is_none() {
                    Err(HypercallError::BadArgument)
                } else {
                    // Only cell 0 exists so far, and it may not control itself.
                    Err(HypercallError::NoSuchCell)
                }
            }
            Some(Hypercall::ConsoleRead) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::ConsoleRead) => {
                // Cell 0 owns console input (core's /dev/cons). A reader
                // has a prompt or an echo without its newline yet: show it.
                flush_line(cell);
                value = crate::serial::read_byte().map_or(hvm_abi::NO_CONSOLE_INPUT, u64::from);
                Ok(())
            }
            Some(Hypercall::PowerOff) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::PowerOff) => {
                flush_line(cell);
                if a0 == 0 {
                    power_off(true, "requested by cell 0");
                }
                log!("cell 0 reports failure status {:#x}", a0);
                power_off(false, "cell 0 requested power-off with a failure status");
            }
            Some(Hypercall::FaultReport) => {
                let mut what = String::new();
                let _ = write!(what, "fault reported by the cell itself (code {a0:#x})");
                self.fail(position, &what);
                return Flow::Yield;
            }
        };
        let regs = &mut self.cells[position].regs;
        match result {
            Ok(()) => {
                regs.rax = 0;
                regs.rdx = value;
            }
            Err(error) => regs.rax = error as u64,
        }
        Flow::Resume
    }

    fn emulate_cr(&mut self, position: usize, access: CrAccess) -> bool {
        // Only MOV to CR0/CR4 exits (the masks own VMX-forced bits).
        if access.access_type != 0 || !matches!(access.register, 0 | 4) {
            return false;
        }
        let value = if access.gpr == 4 {
            read(Field::GuestRsp)
        } else {
            match self.cells[position].regs.by_number(access.gpr) {
                Some(register) => *register,
                None => return false,
            }
        };
        if access.register == 0 {
            write(Field::Cr0ReadShadow, value);
            write(
                Field::GuestCr0,
                controls::fixed_bits(value, self.caps.cr0_fixed0, self.caps.cr0_fixed1),
            );
        } else {
            write(Field::Cr4ReadShadow, value);
            write(
                Field::GuestCr4,
                controls::fixed_bits(value, self.caps.cr4_fixed0, self.caps.cr4_fixed1),
            );
        }
        true
    }

    fn deliver_interrupt(&mut self, vector: u8) {
        let interruptible = read(Field::GuestRflags) & (1 << 9) != 0
            && read(Field::GuestInterruptibility) & 0b11 == 0;
        if interruptible && read(Field::EntryInterruptionInfo) & (1 << 31) == 0 {
            inject_external(vector);
        } else {
            PENDING.lock().push(vector);
            let procbased = read(Field::ProcBasedControls)
                | u64::from(ProcBased::INTERRUPT_WINDOW_EXITING.bits());
            write(Field::ProcBasedControls, procbased);
        }
    }

    /// Queues the external interrupts taken while other cells ran.
    fn inject_for_cell0(&mut self) {
        let vectors = core::mem::take(&mut self.pending_for_cell0);
        for vector in vectors {
            self.deliver_interrupt(vector);
        }
    }

    fn take_pending(&mut self) -> Option<u8> {
        let mut pending = PENDING.lock();
        if pending.is_empty() {
            None
        } else {
            Some(pending.remove(0))
        }
    }
}

static PENDING: spin::Mutex<Vec<u8>> = spin::Mutex::new(Vec::new());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Resume,
    Yield,
}

pub(crate) fn skip_instruction() {
    let rip = read(Field::GuestRip);
    let length = read(Field::ExitInstructionLength);
    write(Field::GuestRip, rip + length);
    // Skipping an instruction ends STI/MOV-SS blocking (SDM 26.3.1.5).
    let interruptibility = read(Field::GuestInterruptibility);
    if interruptibility & 0b11 != 0 {
        write(Field::GuestInterruptibility, interruptibility & !0b11);
    }
}

/// Offers a Linux cell's highest pending APIC vector: injected when the
/// vCPU can take it (RFLAGS.IF and no STI/MOV-SS blocking, SDM 26.3.1.5),
/// otherwise an interrupt-window exit is requested (SDM 25.6.2).
fn offer_interrupt(lapic: &mut Lapic) {
    if read(Field::EntryInterruptionInfo) & (1 << 31) != 0 {
        return; // an event is already being injected (re-injection)
    }
    let Some(vector) = lapic.pending() else {
        return;
    };
    let open =
        read(Field::GuestRflags) & (1 << 9) != 0 && read(Field::GuestInterruptibility) & 0b11 == 0;
    if open {
        inject_external(vector);
        lapic.accept(vector);
    } else {
        let procbased =
            read(Field::ProcBasedControls) | u64::from(ProcBased::INTERRUPT_WINDOW_EXITING.bits());
        write(Field::ProcBasedControls, procbased);
    }
}

/// An exit during event delivery leaves the event in the IDT-vectoring
/// field; it is injected again on the next entry (SDM 28.2.4, 27.6.1).
fn reinject_vectoring() {
    let info = read(Field::IdtVectoringInfo);
    if info & (1 << 31) == 0 {
        return;
    }
    write(Field::EntryInterruptionInfo, info & !(1 << 12));
    if info & (1 << 11) != 0 {
        write(
            Field::EntryExceptionErrorCode,
            read(Field::IdtVectoringErrorCode),
        );
    }
    // Software interrupts and exceptions need their instruction length.
    if matches!((info >> 8) & 7, 4..=6) {
        write(
            Field::EntryInstructionLength,
            read(Field::ExitInstructionLength),
        );
    }
}

/// Injects an external interrupt (SDM 25.8.3, type 0).
fn inject_external(vector: u8) {
    write(Field::EntryInterruptionInfo, (1 << 31) | u64::from(vector));
    write(Field::GuestActivityState, 0);
}

/// Injects a hardware exception (type 3) with an optional error code.
pub(crate) fn inject_exception(vector: u8, error_code: Option<u32>) {
    let mut info = (1u64 << 31) | (3 << 8) | u64::from(vector);
    if let Some(code) = error_code {
        info |= 1 << 11;
        write(Field::EntryExceptionErrorCode, u64::from(code));
    }
    write(Field::EntryInterruptionInfo, info);
}

fn emulate_cpuid(regs: &mut GuestRegisters) {
    let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
    let (mut a, mut b, mut c, mut d) = arch::cpuid(leaf, subleaf);
    match leaf {
        1 => {
            c &= !(1 << 5); // no VMX for guests
            c |= 1 << 31; // a hypervisor is present
        }
        0x4000_0000 => {
            // Hypervisor vendor leaf: "KasaneHVM" (CPUID.1:ECX[31] convention).
            a = 0x4000_0001;
            b = u32::from_le_bytes(*b"Kasa");
            c = u32::from_le_bytes(*b"neHV");
            d = u32::from_le_bytes(*b"M\0\0\0");
        }
        0x4000_0001..=0x4000_00FF => (a, b, c, d) = (0, 0, 0, 0),
        _ => {}
    }
    regs.rax = u64::from(a);
    regs.rbx = u64::from(b);
    regs.rcx = u64::from(c);
    regs.rdx = u64::from(d);
}

/// A cell's view of ports: COM1 and port 0xE9 print, the rest is absent.
fn emulate_io(cell: &mut Cell, access: IoAccess) {
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
        return;
    }
    if matches!(access.port, 0x3F8 | 0xE9) {
        let byte = cell.regs.rax as u8;
        console_from_cell(cell, &[byte]);
    }
}

fn emulate_msr(cell: &mut Cell, is_write: bool) {
    let msr = cell.regs.rcx as u32;
    if is_write {
        let value = (cell.regs.rdx << 32) | (cell.regs.rax & 0xFFFF_FFFF);
        // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
        let current = unsafe { arch::rdmsr(0x1B) };
        // Cell 0 may switch the APIC it owns to x2APIC mode (bit 10, EXTD);
        // moving the base or disabling it is refused (SDM 11.12.5).
        if cell.index == 0 && msr == 0x1B && (value ^ current) & !(1 << 10) == 0 {
            // SAFETY: only EXTD changes; enabling x2APIC mode is allowed
            // from xAPIC mode and hvm itself never uses the APIC.
            unsafe { arch::wrmsr(0x1B, value) };
            skip_instruction();
            return;
        }
        // Writes to MSRs a cell does not own are refused with #GP.
        inject_exception(13, Some(0));
        return;
    }
    let value = match msr {
        0x3A => Some(1), // IA32_FEATURE_CONTROL: locked, VMX off
        // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
        0x1B => Some(unsafe { arch::rdmsr(0x1B) }),
        0xFE => Some(0),  // MTRRCAP: no MTRRs
        0x1A0 => Some(1), // MISC_ENABLE: fast strings
        _ => None,
    };
    match value {
        Some(v) => {
            cell.regs.rax = v & 0xFFFF_FFFF;
            cell.regs.rdx = v >> 32;
            skip_instruction();
        }
        None => inject_exception(13, Some(0)),
    }
}

/// Buffers a cell's output per line so lines from different cells stay whole
/// (cell 0's partial line goes out when it reads console input).
fn console_from_cell(cell: &mut Cell, bytes: &[u8]) {
    for &byte in bytes {
        cell.line.push(byte);
        if byte == b'\n' || cell.line.len() >= 512 {
            flush_line(cell);
        }
    }
}

fn flush_line(cell: &mut Cell) {
    if !cell.line.is_empty() {
        if cell.index != 0 {
            serial::write_bytes(cell.description.name.as_bytes());
            serial::write_bytes(b"| ");
        }
        serial::write_bytes(&cell.line);
        cell.line.clear();
    }
}

/// Writes the host-state area (SDM 25.5, checked by 27.2.3).
fn write_host_state() {
    use x86_64::instructions::tables::{sgdt, sidt};
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
