//! How the kernel starts the root task, and what it tells it.
//!
//! The root task is the ELF boot module the manifest names with
//! `args = "root=NAME"`. The kernel loads it (static, non-PIE, linked in
//! user space) and starts one thread in it:
//!
//! | what | where |
//! |---|---|
//! | ELF segments | their link addresses, fresh zeroed frames, rights from `p_flags` |
//! | UTCB | [`ROOT_UTCB`] |
//! | stack | [`ROOT_STACK_SIZE`] bytes ending at [`ROOT_STACK_TOP`] |
//! | this boot page (read only) | [`ROOT_BOOT_INFO`]; RDI holds its address at entry |
//! | boot modules (read only) | from [`ROOT_MODULES_BASE`], each page aligned |
//! | all free memory (read/write/execute) | from [`ROOT_MEMORY_BASE`], contiguous |
//!
//! The free memory is the root task's to hand out: the kernel enters every
//! page in the mapping database as a root mapping (the sigma0 role), so the
//! root task maps or grants from it to serve other tasks' page faults.
//! The root thread has priority [`crate::syscall::DEFAULT_PRIORITY`] and no
//! pager: a fault in it ends it.
//!
//! When the root thread deletes itself (`thread_control(Delete)` with its
//! own id) the kernel powers the machine off cleanly; if it is killed by a
//! fault the kernel powers off reporting a failure.

/// "KSNROOT1".
pub const ROOT_BOOT_MAGIC: u64 = u64::from_le_bytes(*b"KSNROOT1");

/// The root thread's UTCB page.
pub const ROOT_UTCB: u64 = 0x7FFF_0000_0000;
/// First address above the root thread's stack.
pub const ROOT_STACK_TOP: u64 = 0x7FFE_F000_0000;
/// Size of the root thread's stack.
pub const ROOT_STACK_SIZE: u64 = 64 * 1024;
/// The read-only [`RootBootInfo`] page.
pub const ROOT_BOOT_INFO: u64 = 0x7FFE_0000_0000;
/// Where the boot modules are mapped.
pub const ROOT_MODULES_BASE: u64 = 0x6000_0000_0000;
/// Where the free memory is mapped.
pub const ROOT_MEMORY_BASE: u64 = 0x5000_0000_0000;

/// Most modules listed.
pub const ROOT_MAX_MODULES: usize = 32;

/// A boot module as the root task sees it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct RootModule {
    /// Name (NUL padded), as in the manifest.
    pub name: [u8; 32],
    /// User address of its first byte.
    pub address: u64,
    /// Its length in bytes.
    pub length: u64,
}

impl RootModule {
    /// The name up to the first NUL (`"?"` if it is not UTF-8).
    pub fn name(&self) -> &str {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..end]).unwrap_or("?")
    }
}

/// The root task's boot page.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct RootBootInfo {
    /// [`ROOT_BOOT_MAGIC`].
    pub magic: u64,
    /// The root task's id (raw).
    pub task: u64,
    /// The root thread's id (raw).
    pub thread: u64,
    /// First address of the free memory window ([`ROOT_MEMORY_BASE`]).
    pub memory_base: u64,
    /// Bytes of free memory mapped there.
    pub memory_size: u64,
    /// Physical address of the window's first page (for DMA-capable
    /// drivers later; user code otherwise has no use for it).
    pub memory_physical_base: u64,
    /// Valid entries in `modules`.
    pub module_count: u64,
    /// The boot modules, including the root task's own ELF.
    pub modules: [RootModule; ROOT_MAX_MODULES],
    /// Bytes of the kernel's argument string in `args`.
    pub args_length: u64,
    /// The manifest's `args` for cell 0.
    pub args: [u8; 256],
}

impl RootBootInfo {
    /// The valid module entries.
    pub fn modules(&self) -> &[RootModule] {
        &self.modules[..(self.module_count as usize).min(ROOT_MAX_MODULES)]
    }

    /// The argument string (empty if not UTF-8).
    pub fn args(&self) -> &str {
        let length = (self.args_length as usize).min(self.args.len());
        core::str::from_utf8(&self.args[..length]).unwrap_or("")
    }
}

const _: () = assert!(core::mem::size_of::<RootBootInfo>() <= 4096);

/// The interrupt number of the kernel's timer tick: a handler associated
/// with it (`interrupt_control(Associate)`) gets a message every
/// [`TIMER_INTERRUPT_PERIOD_MICROSECONDS`] of kernel time.
pub const TIMER_INTERRUPT: u8 = 0;

/// Period of [`TIMER_INTERRUPT`] messages.
pub const TIMER_INTERRUPT_PERIOD_MICROSECONDS: u64 = 10_000;

/// The interrupt number of hvm's link 0 (`interrupt_control(Associate)`);
/// link i is `LINK_INTERRUPT_BASE + i`, for i below [`LINK_INTERRUPTS`].
/// hvm injects vector 0x50 + i into cell 0 when link i's device has used
/// buffers or a configuration change for it (docs/hypercalls.md); the
/// kernel turns it into a message from `ThreadId::interrupt(0x50 + i)`.
/// In bare mode they never fire.
pub const LINK_INTERRUPT_BASE: u8 = 0x50;

/// How many link interrupts there are.
pub const LINK_INTERRUPTS: u8 = 8;
