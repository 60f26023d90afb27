//! The hypercall ABI of hvm and the boot information handed to cell 0.
//!
//! This crate is the contract between hvm and the code it runs. Everything in
//! it is plain data; hvm treats every value a guest passes as untrusted and
//! checks it (see `docs/hypercalls.md`).
//!
//! Hypercalls use `VMCALL` with the call number in RAX and arguments in RDI,
//! RSI, RDX and R10. On return RAX holds a status (0 = success, otherwise a
//! [`HypercallError`] code) and RDX a call-specific value.
#![no_std]
#![forbid(unsafe_code)]

/// Version of the hypercall ABI returned by [`Hypercall::Version`].
pub const ABI_VERSION: u64 = 1;

/// Hypercall numbers (RAX at `VMCALL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Hypercall {
    /// RDX <- [`ABI_VERSION`].
    Version = 0,
    /// Write RSI bytes at guest-physical RDI to the console (at most
    /// [`CONSOLE_WRITE_MAX`] bytes per call).
    ConsoleWrite = 1,
    /// RDX <- [`CellState`] of cell RDI as a number.
    CellStatus = 2,
    /// Privileged (cell 0 only): perform [`CellControl`] RSI on cell RDI.
    CellControl = 3,
    /// Privileged (cell 0 only): power the machine off; RDI = 0 for a clean
    /// shutdown, any other value reports a failure.
    PowerOff = 4,
    /// Tell hvm's watchdog the calling cell is alive.
    Heartbeat = 5,
    /// The calling cell reports a fault it detected in itself: RDI = code.
    /// hvm fails the cell as its manifest says.
    FaultReport = 6,
    /// RDX <- the calling cell's index.
    CellSelf = 7,
    /// Give the rest of this time slice to other cells (an idle loop's
    /// way to wait without interrupts).
    Yield = 8,
    /// RDX <- the generation of link RDI: 0 while its peer cell has not
    /// started, then 1, plus one for every restart of the peer. A change
    /// means the peer is new and the link was reset: send a `Hello`.
    LinkStatus = 9,
    /// Privileged (cell 0 only): RDX <- the next byte of console input
    /// (COM1), or [`NO_CONSOLE_INPUT`] when none is waiting. Never blocks.
    ConsoleRead = 10,
    /// Privileged (cell 0 only): write a [`CellInfo`] about cell RDI at
    /// guest-physical RSI (checked against the caller's memory).
    CellInfo = 11,
    /// Server VMs only: RDX <- the pending injection op
    /// ([`CellControl::Crash`]..=[`CellControl::Garbage`] as a number) or 0,
    /// and clears it. hvm raises [`COMMAND_VECTOR`] when one is set.
    TakeCommand = 12,
    /// Privileged (cell 0 only): RDX <- VM exits of cell RDI so far.
    ExitCount = 13,
}

impl Hypercall {
    /// Decodes a raw call number; unknown numbers are `None`.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            0 => Self::Version,
            1 => Self::ConsoleWrite,
            2 => Self::CellStatus,
            3 => Self::CellControl,
            4 => Self::PowerOff,
            5 => Self::Heartbeat,
            6 => Self::FaultReport,
            7 => Self::CellSelf,
            8 => Self::Yield,
            9 => Self::LinkStatus,
            10 => Self::ConsoleRead,
            11 => Self::CellInfo,
            12 => Self::TakeCommand,
            13 => Self::ExitCount,
            _ => return None,
        })
    }

    /// Whether a server VM may make this call (docs/hypercalls.md); hvm
    /// answers the rest with [`HypercallError::Denied`].
    pub fn server_vm_may(self) -> bool {
        matches!(
            self,
            Self::Version
                | Self::ConsoleWrite
                | Self::Heartbeat
                | Self::FaultReport
                | Self::CellSelf
                | Self::Yield
                | Self::LinkStatus
                | Self::TakeCommand
        )
    }
}

/// What [`Hypercall::ConsoleRead`] answers when no byte is waiting (a value
/// no byte can have).
pub const NO_CONSOLE_INPUT: u64 = 0x100;

/// Largest buffer one [`Hypercall::ConsoleWrite`] accepts.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// Status codes returned in RAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum HypercallError {
    /// The call number is not defined.
    UnknownCall = 1,
    /// A guest-physical range lies outside the caller's memory.
    BadAddress = 2,
    /// The caller may not make this call (privileged calls are cell 0's).
    Denied = 3,
    /// An argument is out of range.
    BadArgument = 4,
    /// No cell has that index.
    NoSuchCell = 5,
}

impl HypercallError {
    /// Decodes a status; 0 (success) and unknown codes are `None`.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            1 => Self::UnknownCall,
            2 => Self::BadAddress,
            3 => Self::Denied,
            4 => Self::BadArgument,
            5 => Self::NoSuchCell,
            _ => return None,
        })
    }

    /// What a person reading a log needs to know.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownCall => "unknown hypercall",
            Self::BadAddress => "address outside the cell's memory",
            Self::Denied => "hypercall not permitted for this cell",
            Self::BadArgument => "bad hypercall argument",
            Self::NoSuchCell => "no such cell",
        }
    }
}

/// Operations of [`Hypercall::CellControl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum CellControl {
    /// Start a stopped cell from its pristine image.
    Start = 1,
    /// Stop a cell.
    Stop = 2,
    /// Stop and start again.
    Restart = 3,
    /// Failure injection (server VMs): the server panics and the runtime
    /// reports it with `FaultReport`.
    Crash = 10,
    /// Failure injection: a real triple fault.
    TripleFault = 11,
    /// Failure injection: a write beyond the cell's memory (EPT violation).
    WildWrite = 12,
    /// Failure injection: interrupts off and a loop for ever (the
    /// heartbeat watchdog catches it).
    Hang = 13,
    /// Failure injection: bytes that are not 9P on the cell's link.
    Garbage = 14,
}

impl CellControl {
    /// Decodes an operation; unknown values are `None`.
    pub fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            1 => Self::Start,
            2 => Self::Stop,
            3 => Self::Restart,
            10 => Self::Crash,
            11 => Self::TripleFault,
            12 => Self::WildWrite,
            13 => Self::Hang,
            14 => Self::Garbage,
            _ => return None,
        })
    }

    /// Whether this op is a failure the guest performs itself.
    pub fn is_injection(self) -> bool {
        self as u64 >= 10
    }

    /// The verb's name, as `/dev/vm/N/ctl` takes it.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Crash => "crash",
            Self::TripleFault => "triple-fault",
            Self::WildWrite => "wild-write",
            Self::Hang => "hang",
            Self::Garbage => "garbage",
        }
    }
}

/// A server VM's vector for its link device; cell 0's for link i is this
/// plus i (docs/hypercalls.md "Links").
pub const LINK_VECTOR: u8 = 0x50;
/// Guest-physical address of link 0's BAR in cell 0 (and of a server VM's
/// one link); cell 0's link i is at this plus i times [`LINK_BAR_STRIDE`].
pub const LINK_BAR: u64 = 0xE000_0000;
/// Distance between the BARs of cell 0's links.
pub const LINK_BAR_STRIDE: u64 = 0x1_0000;
/// A server VM's vector for a pending command ([`Hypercall::TakeCommand`]).
pub const COMMAND_VECTOR: u8 = 0x51;

/// A cell's kind as [`CellInfo::kind`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CellKindCode {
    Microkernel = 1,
    Linux = 2,
    ServerVm = 3,
}

/// Length of [`CellInfo::name`].
pub const CELL_NAME_LEN: usize = 32;
/// Length of [`CellInfo::last_failure`].
pub const FAILURE_LEN: usize = 160;

/// What [`Hypercall::CellInfo`] writes about a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CellInfo {
    /// [`CellKindCode`] as a number.
    pub kind: u32,
    /// [`CellState`] as a number.
    pub state: u32,
    /// Restarts after failures so far.
    pub restarts: u32,
    /// The manifest's restart limit.
    pub restart_limit: u32,
    /// Cell 0's link index to this cell, or `u32::MAX`.
    pub link: u32,
    /// The manifest's name, NUL padded.
    pub name: [u8; CELL_NAME_LEN],
    /// The last failure hvm logged for the cell, NUL padded (empty if none).
    pub last_failure: [u8; FAILURE_LEN],
}

impl CellInfo {
    /// An all-zero record (no link).
    pub const fn empty() -> Self {
        Self {
            kind: 0,
            state: 0,
            restarts: 0,
            restart_limit: 0,
            link: u32::MAX,
            name: [0; CELL_NAME_LEN],
            last_failure: [0; FAILURE_LEN],
        }
    }

    /// Copies `text` into a NUL-padded field, cut at a character boundary.
    pub fn put(field: &mut [u8], text: &str) {
        let mut end = text.len().min(field.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        field.fill(0);
        field[..end].copy_from_slice(&text.as_bytes()[..end]);
    }

    /// A NUL-padded field as text (up to the first NUL; `"?"` if not UTF-8).
    pub fn text(field: &[u8]) -> &str {
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        core::str::from_utf8(&field[..end]).unwrap_or("?")
    }

    /// The cell's name.
    pub fn name(&self) -> &str {
        Self::text(&self.name)
    }

    /// The last failure hvm logged for the cell (empty if none).
    pub fn last_failure(&self) -> &str {
        Self::text(&self.last_failure)
    }
}

/// Life-cycle states of a cell, as [`Hypercall::CellStatus`] reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum CellState {
    /// Described by the manifest but not started.
    Created = 0,
    /// Running (or runnable).
    Running = 1,
    /// Stopped on request or after a failure, not to be restarted.
    Stopped = 2,
    /// Failed and waiting for its restart.
    Failed = 3,
}

/// Magic value at the start of [`BootInfo`] ("KSNBOOT1").
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"KSNBOOT1");

/// How the microkernel was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum BootMode {
    /// hvm runs it as a VT-x guest (cell 0); use hypercalls.
    VmxGuest = 1,
    /// No VT-x: hvm handed over the machine; the kernel owns the hardware.
    Bare = 2,
}

/// [`BootInfo::mode`] of a server VM (`servers/runtime-vm`) under hvm: one
/// link at PCI 00:01.0, [`LINK_VECTOR`] and [`COMMAND_VECTOR`], the
/// server-VM hypercalls. A plain number beside [`BootMode`], which only the
/// microkernel's two modes use.
pub const BOOT_MODE_SERVER_VM: u32 = 3;

/// Most boot modules a [`BootInfo`] lists.
pub const MAX_MODULES: usize = 32;

/// Longest module name, in bytes (NUL padded).
pub const MODULE_NAME_LEN: usize = 32;

/// A boot module placed in the cell's memory.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BootModule {
    /// Physical address (as the cell sees it) of the first byte.
    pub phys: u64,
    /// Length in bytes.
    pub len: u64,
    /// Name from the manifest, NUL padded.
    pub name: [u8; MODULE_NAME_LEN],
}

impl BootModule {
    /// The name up to the first NUL, or `"?"` if it is not UTF-8.
    pub fn name(&self) -> &str {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MODULE_NAME_LEN);
        core::str::from_utf8(&self.name[..end]).unwrap_or("?")
    }
}

/// Longest argument string handed to the kernel.
pub const ARGS_LEN: usize = 256;

/// What hvm tells the microkernel at entry (RDI holds its physical address,
/// and it is also mapped through the direct map).
///
/// Virtual memory at entry: the cell's physical memory is mapped at
/// `direct_map_base + phys`, identically at `phys` (the kernel may drop that),
/// and the kernel image at its link address. Interrupts are disabled.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`BootMode`] as a number.
    pub mode: u32,
    /// Index of this cell (0 for the microkernel).
    pub cell: u32,
    /// First physical address of the cell's memory.
    pub memory_base: u64,
    /// Bytes of memory the cell owns, from `memory_base`.
    pub memory_size: u64,
    /// First physical address not used by the kernel image, boot modules,
    /// page tables or this structure: free memory runs from here to the end.
    pub free_base: u64,
    /// Virtual address where physical address 0 is mapped.
    pub direct_map_base: u64,
    /// Physical address of the compiled manifest (0 if none).
    pub manifest_phys: u64,
    /// Length of the compiled manifest.
    pub manifest_len: u64,
    /// I/O port of the serial console the kernel may drive in bare mode.
    pub serial_port: u16,
    /// Reserved, zero.
    pub reserved: [u8; 6],
    /// Number of valid entries in `modules`.
    pub module_count: u64,
    /// The boot modules.
    pub modules: [BootModule; MAX_MODULES],
    /// Length of `args`.
    pub args_len: u64,
    /// Kernel arguments from the manifest (`args = "..."`), UTF-8.
    pub args: [u8; ARGS_LEN],
}

impl BootInfo {
    /// The boot mode, or `None` for a value this version does not know.
    pub fn boot_mode(&self) -> Option<BootMode> {
        match self.mode {
            1 => Some(BootMode::VmxGuest),
            2 => Some(BootMode::Bare),
            _ => None,
        }
    }

    /// Whether the image runs as a server VM ([`BOOT_MODE_SERVER_VM`]).
    pub fn server_vm(&self) -> bool {
        self.mode == BOOT_MODE_SERVER_VM
    }

    /// The argument string (empty if it is not valid UTF-8).
    pub fn args(&self) -> &str {
        let len = (self.args_len as usize).min(ARGS_LEN);
        core::str::from_utf8(&self.args[..len]).unwrap_or("")
    }

    /// The valid module entries.
    pub fn modules(&self) -> &[BootModule] {
        &self.modules[..(self.module_count as usize).min(MAX_MODULES)]
    }
}

/// Virtual address of the direct map of physical memory in the microkernel.
pub const DIRECT_MAP_BASE: u64 = 0xFFFF_8000_0000_0000;

/// Virtual base of the kernel image window: physical `memory_base + x` is
/// mapped at `KERNEL_WINDOW_BASE + x` for the first 1 GiB of the cell.
pub const KERNEL_WINDOW_BASE: u64 = 0xFFFF_FFFF_8000_0000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_numbers_round_trip() {
        for raw in 0..16 {
            if let Some(call) = Hypercall::from_raw(raw) {
                assert_eq!(call as u64, raw);
            }
        }
        assert_eq!(Hypercall::from_raw(99), None);
    }

    #[test]
    fn errors_round_trip_and_success_is_not_an_error() {
        assert_eq!(HypercallError::from_raw(0), None);
        for raw in 1..=5 {
            let error = HypercallError::from_raw(raw).expect("defined code");
            assert_eq!(error as u64, raw);
            assert!(!error.as_str().is_empty());
        }
    }

    #[test]
    fn boot_info_args_are_bounded() {
        let mut info = BootInfo {
            magic: BOOT_INFO_MAGIC,
            mode: 2,
            cell: 0,
            memory_base: 0,
            memory_size: 0,
            free_base: 0,
            direct_map_base: DIRECT_MAP_BASE,
            manifest_phys: 0,
            manifest_len: 0,
            serial_port: 0x3f8,
            reserved: [0; 6],
            module_count: 99,
            modules: [BootModule {
                phys: 0,
                len: 0,
                name: [0; MODULE_NAME_LEN],
            }; MAX_MODULES],
            args_len: 9999,
            args: [b'a'; ARGS_LEN],
        };
        assert_eq!(info.args().len(), ARGS_LEN);
        assert_eq!(info.modules().len(), MAX_MODULES);
        info.mode = 7;
        assert_eq!(info.boot_mode(), None);
        info.mode = BOOT_MODE_SERVER_VM;
        assert_eq!(info.boot_mode(), None);
        assert!(info.server_vm());
    }

    #[test]
    fn a_server_vm_may_make_only_its_eight_calls() {
        let allowed: [u64; 8] = [0, 1, 5, 6, 7, 8, 9, 12];
        for raw in 0..32 {
            if let Some(call) = Hypercall::from_raw(raw) {
                assert_eq!(call.server_vm_may(), allowed.contains(&raw), "{call:?}");
            }
        }
    }

    #[test]
    fn control_ops_round_trip_and_injections_are_marked() {
        for raw in 0..32 {
            if let Some(op) = CellControl::from_raw(raw) {
                assert_eq!(op as u64, raw);
                assert_eq!(op.is_injection(), raw >= 10, "{}", op.verb());
            }
        }
        assert_eq!(CellControl::from_raw(14), Some(CellControl::Garbage));
        assert_eq!(CellControl::from_raw(15), None);
    }

    #[test]
    fn cell_info_fields_are_nul_padded_and_cut_whole() {
        let mut info = CellInfo::empty();
        CellInfo::put(&mut info.name, "ramfs-vm");
        assert_eq!(CellInfo::text(&info.name), "ramfs-vm");
        let long = "é".repeat(100);
        CellInfo::put(&mut info.last_failure, &long);
        assert_eq!(CellInfo::text(&info.last_failure).len(), FAILURE_LEN);
        CellInfo::put(&mut info.name, &"ab".repeat(40)[..33]);
        assert_eq!(CellInfo::text(&info.name).len(), CELL_NAME_LEN);
        assert_eq!(core::mem::size_of::<CellInfo>(), 20 + 32 + 160);
    }
}
