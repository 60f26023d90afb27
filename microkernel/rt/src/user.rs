//! User-side `syscall` wrappers: raw ones, and safe ones where sound.
//!
//! Compiled only for `target_os = "none"` (user tasks on x86-64). The raw
//! wrappers load registers as `microkernel_abi::syscall` lays out and
//! return what the kernel left in them. The safe wrappers cover the calls that cannot
//! change memory the caller's Rust code relies on.
//!
//! Invariants:
//! - Only this module issues `syscall`; every asm block names RCX and R11
//!   as clobbered (the CPU writes them) and relies on the kernel to
//!   preserve RBX, RBP, RSP and, except for `ipc`, R12..R15.
//! - Calls that map, unmap, grant or redirect threads of the caller's own
//!   task are `unsafe fn`s with a `# Safety` section; safe `ipc` refuses
//!   typed items and works only on the caller's real UTCB.

use core::arch::asm;

use microkernel_abi::error::{Error, IpcError};
use microkernel_abi::item::Fpage;
use microkernel_abi::message::{FromSpecifier, MessageTag, REGISTER_MESSAGE_REGISTERS};
use microkernel_abi::syscall::{
    ExchangeControl, InterruptControlOperation, KernelInfoSelector, SpaceControlOperation, Syscall,
    ThreadControlOperation, ThreadStateFlags, UnmapFlags, KEEP, MAX_DEBUG_WRITE,
};
use microkernel_abi::thread::{TaskId, ThreadId};
use microkernel_abi::timeout::{Timeout, Timeouts};
use microkernel_abi::utcb::Utcb;

/// Issues a non-IPC system call. Returns RAX and the six argument
/// registers as the kernel left them.
///
/// # Safety
///
/// The call must not change memory or threads that the caller's Rust code
/// relies on: see the `# Safety` sections of the typed wrappers below for
/// what each call can do. `Syscall::Ipc` is not allowed here (it uses
/// R12..R15 as well); use [`ipc_raw`].
pub unsafe fn syscall(number: Syscall, arguments: [u64; 6]) -> (u64, [u64; 6]) {
    let [mut rdi, mut rsi, mut rdx, mut r10, mut r8, mut r9] = arguments;
    let status: u64;
    // SAFETY: the register convention of `microkernel_abi::syscall`: the kernel reads
    // RAX and the six argument registers, writes results into the same
    // registers, and the CPU overwrites RCX and R11; all are operands or
    // clobbers here. The kernel preserves every other register and does
    // not use the user stack. What the call does to memory is the caller's
    // contract above; without `nomem` the compiler assumes memory changed.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number.number() => status,
            inout("rdi") rdi,
            inout("rsi") rsi,
            inout("rdx") rdx,
            inout("r10") r10,
            inout("r8") r8,
            inout("r9") r9,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (status, [rdi, rsi, rdx, r10, r8, r9])
}

/// Issues `ipc` with MR0..MR6 in registers. Returns RAX and the sender
/// (RSI); on a completed receive phase `registers` holds the received
/// MR0..MR6.
///
/// # Safety
///
/// `utcb` must be the calling thread's UTCB (the kernel reads and writes
/// MR7..MR63 there), and every typed item in the message, the receive
/// window and the receive buffers must be acceptable to the caller's Rust
/// code: a map item lets the receiver write the pages, a grant item removes
/// them from this task, and a receive may write into the buffers and
/// replace pages in the window.
pub unsafe fn ipc_raw(
    utcb: *mut Utcb,
    to: ThreadId,
    from: FromSpecifier,
    timeouts: Timeouts,
    registers: &mut [u64; REGISTER_MESSAGE_REGISTERS],
) -> (u64, ThreadId) {
    // The kernel writes the UTCB behind the compiler's back; exposing the
    // pointer's provenance makes that write visible to the memory model.
    let _ = utcb.expose_provenance();
    let [mut mr0, mut mr1, mut mr2, mut mr3, mut mr4, mut mr5, mut mr6] = *registers;
    let status: u64;
    let mut sender = from.to_thread_id().raw();
    // SAFETY: the `ipc` register convention: RDI to, RSI from (sender out),
    // RDX timeouts, R10, R8, R9, R12..R15 = MR0..MR6 both ways, RCX and R11
    // destroyed by the CPU, everything else preserved. Memory effects are
    // the caller's contract above.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") Syscall::Ipc.number() => status,
            inlateout("rdi") to.raw() => _,
            inout("rsi") sender,
            inlateout("rdx") timeouts.encode() => _,
            inout("r10") mr0,
            inout("r8") mr1,
            inout("r9") mr2,
            inout("r12") mr3,
            inout("r13") mr4,
            inout("r14") mr5,
            inout("r15") mr6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    *registers = [mr0, mr1, mr2, mr3, mr4, mr5, mr6];
    (status, ThreadId::from_raw(sender))
}

/// The calling thread's UTCB, found at `gs:[0]`.
pub fn current_utcb() -> *mut Utcb {
    let address: u64;
    // SAFETY: the kernel sets every thread's GS base to its UTCB and
    // writes the UTCB's own address into its first word before the thread
    // first runs (see `microkernel_abi::utcb`), so this is a read of a mapped word.
    unsafe {
        asm!(
            "mov {}, gs:[0]",
            out(reg) address,
            options(nostack, readonly, preserves_flags),
        );
    }
    core::ptr::with_exposed_provenance_mut(address as usize)
}

/// Sends and/or receives an untyped message through the caller's UTCB:
/// MR0 (the tag) and the words after it are taken from and returned in
/// `utcb.message_registers`. Returns the sender of the received message
/// (nil when there was no receive phase).
///
/// Refuses, with a send-phase [`Error::InvalidItem`], a message with typed
/// items, and with [`Error::InvalidArgument`] a `utcb` that is not the
/// caller's own; use [`ipc_with_items`] for those.
pub fn ipc(
    utcb: &mut Utcb,
    to: ThreadId,
    from: FromSpecifier,
    timeouts: Timeouts,
) -> Result<ThreadId, IpcError> {
    if !core::ptr::eq(utcb, current_utcb()) {
        return Err(IpcError::send(Error::InvalidArgument));
    }
    if !to.is_nil() && MessageTag::from_raw(utcb.message_registers[0]).typed() != 0 {
        return Err(IpcError::send(Error::InvalidItem));
    }
    // SAFETY: `utcb` is the caller's UTCB (checked above) and exclusively
    // borrowed, the message has no typed items, and the receive window and
    // buffers were set only through the unsafe setters of
    // `crate::utcb::ReceiveTargets` (the ABI crate has no others), whose
    // contracts cover every later receive.
    unsafe { ipc_with_items(utcb, to, from, timeouts) }
}

/// Like [`ipc`], but typed items are sent.
///
/// # Safety
///
/// `utcb` must be the caller's UTCB, and the typed items must be
/// acceptable as described for [`ipc_raw`].
pub unsafe fn ipc_with_items(
    utcb: &mut Utcb,
    to: ThreadId,
    from: FromSpecifier,
    timeouts: Timeouts,
) -> Result<ThreadId, IpcError> {
    let mut registers = [0u64; REGISTER_MESSAGE_REGISTERS];
    registers.copy_from_slice(&utcb.message_registers[..REGISTER_MESSAGE_REGISTERS]);
    let pointer: *mut Utcb = utcb;
    // SAFETY: forwarded from this function's contract.
    let (status, sender) = unsafe { ipc_raw(pointer, to, from, timeouts, &mut registers) };
    IpcError::from_status(status)?;
    if from != FromSpecifier::Nobody {
        utcb.message_registers[..REGISTER_MESSAGE_REGISTERS].copy_from_slice(&registers);
    }
    Ok(sender)
}

/// Sends the message in the UTCB to `to` and waits for its reply
/// (L4 X.2, "Call").
pub fn call(utcb: &mut Utcb, to: ThreadId, timeouts: Timeouts) -> Result<(), IpcError> {
    ipc(utcb, to, FromSpecifier::Thread(to), timeouts).map(|_| ())
}

/// Sends the message in the UTCB to `to` without waiting for an answer.
pub fn send(utcb: &mut Utcb, to: ThreadId, timeout: Timeout) -> Result<(), IpcError> {
    let timeouts = Timeouts {
        send: timeout,
        receive: Timeout::Zero,
    };
    ipc(utcb, to, FromSpecifier::Nobody, timeouts).map(|_| ())
}

/// Waits for a message from `from` (a thread or any); returns its sender.
pub fn receive(
    utcb: &mut Utcb,
    from: FromSpecifier,
    timeout: Timeout,
) -> Result<ThreadId, IpcError> {
    let timeouts = Timeouts {
        send: Timeout::Zero,
        receive: timeout,
    };
    ipc(utcb, ThreadId::NIL, from, timeouts)
}

/// Replies to `client` (without waiting: a client that is not waiting for
/// the reply loses it) and waits for the next request from anyone
/// (L4 X.2, "ReplyWait"). Returns the next request's sender.
pub fn reply_and_wait(
    utcb: &mut Utcb,
    client: ThreadId,
    timeout: Timeout,
) -> Result<ThreadId, IpcError> {
    let timeouts = Timeouts {
        send: Timeout::Zero,
        receive: timeout,
    };
    ipc(utcb, client, FromSpecifier::Any, timeouts)
}

/// Writes up to [`MAX_DEBUG_WRITE`] bytes to the kernel console; returns
/// how many were written.
pub fn debug_write(bytes: &[u8]) -> Result<usize, Error> {
    let length = (bytes.len() as u64).min(MAX_DEBUG_WRITE);
    let arguments = [bytes.as_ptr() as u64, length, 0, 0, 0, 0];
    // SAFETY: `debug_write` only reads `length` bytes at the address, which
    // the shared borrow keeps valid for the call.
    let (status, results) = unsafe { syscall(Syscall::DebugWrite, arguments) };
    Error::check(status)?;
    Ok(results[0] as usize)
}

/// Writes all of `text` to the kernel console.
pub fn debug_print(text: &str) -> Result<(), Error> {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let written = debug_write(rest)?;
        if written == 0 {
            return Err(Error::NotSupported);
        }
        rest = rest.get(written..).unwrap_or_default();
    }
    Ok(())
}

/// Reads one kernel fact.
pub fn kernel_info(selector: KernelInfoSelector) -> Result<u64, Error> {
    // SAFETY: `kernel_info` changes no state.
    let (status, results) =
        unsafe { syscall(Syscall::KernelInfo, [selector as u64, 0, 0, 0, 0, 0]) };
    Error::check(status)?;
    Ok(results[0])
}

/// Gives the rest of the timeslice to threads of the same priority.
pub fn yield_now() {
    // SAFETY: `yield` changes no memory. It cannot fail.
    let _ = unsafe { syscall(Syscall::Yield, [0; 6]) };
}

/// Sets a thread's priority and/or timeslice (`None` keeps the value);
/// returns the old priority and timeslice in microseconds.
pub fn schedule(
    thread: ThreadId,
    priority: Option<u8>,
    timeslice_microseconds: Option<u32>,
) -> Result<(u8, u32), Error> {
    let arguments = [
        thread.raw(),
        priority.map_or(KEEP, u64::from),
        timeslice_microseconds.map_or(KEEP, u64::from),
        0,
        0,
        0,
    ];
    // SAFETY: scheduling parameters change no memory.
    let (status, results) = unsafe { syscall(Syscall::Schedule, arguments) };
    Error::check(status)?;
    let priority = u8::try_from(results[1]).map_err(|_| Error::NotSupported)?;
    let timeslice = u32::try_from(results[2]).map_err(|_| Error::NotSupported)?;
    Ok((priority, timeslice))
}

/// Creates an empty task (root task only).
pub fn space_create() -> Result<TaskId, Error> {
    let arguments = [SpaceControlOperation::Create as u64, 0, 0, 0, 0, 0];
    // SAFETY: a new task shares no memory with the caller.
    let (status, results) = unsafe { syscall(Syscall::SpaceControl, arguments) };
    Error::check(status)?;
    Ok(TaskId::from_raw(results[0]))
}

/// Destroys a task with its threads and mappings (root task only).
pub fn space_destroy(task: TaskId) -> Result<(), Error> {
    let arguments = [
        SpaceControlOperation::Destroy as u64,
        task.raw(),
        0,
        0,
        0,
        0,
    ];
    // SAFETY: mappings derived from the destroyed task vanish from other
    // tasks, but the kernel never lets the root task (the only caller) be
    // destroyed, and memory the root task owns is never derived from
    // another task's.
    let (status, _) = unsafe { syscall(Syscall::SpaceControl, arguments) };
    Error::check(status)
}

/// Opens `count` I/O ports from `first` to `task` for the task's life
/// (root task only; never to itself, never overlapping another grant or
/// the PCI configuration ports).
pub fn space_grant_ports(task: TaskId, first: u16, count: u16) -> Result<(), Error> {
    let arguments = [
        SpaceControlOperation::GrantPorts as u64,
        task.raw(),
        first.into(),
        count.into(),
        0,
        0,
    ];
    // SAFETY: the call changes only which ports `task` may use.
    let (status, _) = unsafe { syscall(Syscall::SpaceControl, arguments) };
    Error::check(status)
}

/// Creates a halted thread in `task` with `pager`, its UTCB at
/// `utcb_address` (root task only).
///
/// # Safety
///
/// If `task` is the caller's own, the kernel maps the new UTCB page at
/// `utcb_address`, which must not hold memory the caller uses.
pub unsafe fn thread_create(
    task: TaskId,
    pager: ThreadId,
    utcb_address: u64,
) -> Result<ThreadId, Error> {
    let arguments = [
        ThreadControlOperation::Create as u64,
        task.raw(),
        pager.raw(),
        utcb_address,
        0,
        0,
    ];
    // SAFETY: forwarded from this function's contract.
    let (status, results) = unsafe { syscall(Syscall::ThreadControl, arguments) };
    Error::check(status)?;
    Ok(ThreadId::from_raw(results[0]))
}

/// Deletes a thread (root task only).
///
/// # Safety
///
/// A thread of the caller's own task ends without unwinding: whatever it
/// borrowed or locked stays borrowed or locked, and its stack must not be
/// reused while something may still point into it.
pub unsafe fn thread_delete(thread: ThreadId) -> Result<(), Error> {
    let arguments = [
        ThreadControlOperation::Delete as u64,
        thread.raw(),
        0,
        0,
        0,
        0,
    ];
    // SAFETY: forwarded from this function's contract.
    let (status, _) = unsafe { syscall(Syscall::ThreadControl, arguments) };
    Error::check(status)
}

/// What `exchange_registers` reports about a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadRegisters {
    /// Halted, sending, receiving.
    pub state: ThreadStateFlags,
    /// Instruction pointer before the call.
    pub instruction_pointer: u64,
    /// Stack pointer before the call.
    pub stack_pointer: u64,
    /// Pager before the call.
    pub pager: ThreadId,
}

/// Reads and changes a thread's registers, pager and run state.
///
/// # Safety
///
/// For a thread of the caller's own task, the new instruction and stack
/// pointers must start code that is sound to run on that stack, and
/// cancelling its IPC must be something its code handles.
pub unsafe fn exchange_registers(
    thread: ThreadId,
    control: ExchangeControl,
    instruction_pointer: u64,
    stack_pointer: u64,
    pager: ThreadId,
) -> Result<ThreadRegisters, Error> {
    let arguments = [
        thread.raw(),
        control.bits(),
        instruction_pointer,
        stack_pointer,
        pager.raw(),
        0,
    ];
    // SAFETY: forwarded from this function's contract.
    let (status, results) = unsafe { syscall(Syscall::ExchangeRegisters, arguments) };
    Error::check(status)?;
    Ok(ThreadRegisters {
        state: ThreadStateFlags::from_bits_retain(results[1]),
        instruction_pointer: results[2],
        stack_pointer: results[3],
        pager: ThreadId::from_raw(results[4]),
    })
}

/// Revokes `fpage.rights()` from every mapping derived from the caller's
/// pages in `fpage`, and from those pages too with
/// [`UnmapFlags::INCLUDE_SELF`].
///
/// # Safety
///
/// With `INCLUDE_SELF`, pages of the caller disappear or lose rights: no
/// Rust object may live there. Without it, memory shared with other tasks
/// by mapping stops being shared, which the caller's protocol must expect.
pub unsafe fn unmap(fpage: Fpage, flags: UnmapFlags) -> Result<(), Error> {
    // SAFETY: forwarded from this function's contract.
    let (status, _) = unsafe { syscall(Syscall::Unmap, [fpage.raw(), flags.bits(), 0, 0, 0, 0]) };
    Error::check(status)
}

/// Makes `handler` the thread that interrupt `irq` messages go to (root
/// task only).
pub fn interrupt_associate(irq: u8, handler: ThreadId) -> Result<(), Error> {
    interrupt_control(InterruptControlOperation::Associate, irq, handler)
}

/// Masks interrupt `irq` and forgets its handler (root task only).
pub fn interrupt_dissociate(irq: u8) -> Result<(), Error> {
    interrupt_control(InterruptControlOperation::Dissociate, irq, ThreadId::NIL)
}

/// Unmasks interrupt `irq` after its message was handled (handler only).
pub fn interrupt_acknowledge(irq: u8) -> Result<(), Error> {
    interrupt_control(InterruptControlOperation::Acknowledge, irq, ThreadId::NIL)
}

fn interrupt_control(
    operation: InterruptControlOperation,
    irq: u8,
    handler: ThreadId,
) -> Result<(), Error> {
    let arguments = [operation as u64, u64::from(irq), handler.raw(), 0, 0, 0];
    // SAFETY: interrupt routing changes no memory of the caller.
    let (status, _) = unsafe { syscall(Syscall::InterruptControl, arguments) };
    Error::check(status)
}

/// Why an [`hvm_call`] failed: the kernel refused it (not the root task,
/// a call it does not forward, bare mode: `NotSupported`), or hvm did
/// (its `hvm_abi::HypercallError` code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvmCallError {
    /// The microkernel's error.
    Kernel(Error),
    /// hvm's status code.
    Hypervisor(u64),
}

impl core::fmt::Display for HvmCallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HvmCallError::Kernel(error) => write!(f, "{error}"),
            HvmCallError::Hypervisor(code) => match hvm_abi::HypercallError::from_raw(*code) {
                Some(error) => f.write_str(error.as_str()),
                None => write!(f, "hvm error {code}"),
            },
        }
    }
}

/// Forwards hypercall `call` with arguments `arg0`, `arg1` to hvm (root
/// task only; `microkernel_abi::syscall::HVM_CALLS` only). Returns hvm's
/// value (its RDX).
pub fn hvm_call(call: u64, arg0: u64, arg1: u64) -> Result<u64, HvmCallError> {
    if call == microkernel_abi::syscall::HVM_CELL_INFO {
        // Its buffer is for `cell_info`, which owns one of the right size.
        return Err(HvmCallError::Kernel(Error::InvalidArgument));
    }
    // SAFETY: the forwarded calls other than CellInfo pass no buffer and
    // change no memory of the caller.
    let (status, results) = unsafe { syscall(Syscall::HvmCall, [call, arg0, arg1, 0, 0, 0]) };
    Error::check(status).map_err(HvmCallError::Kernel)?;
    match results[0] {
        0 => Ok(results[1]),
        code => Err(HvmCallError::Hypervisor(code)),
    }
}

/// What hvm knows of cell `cell` (its `CellInfo` hypercall).
pub fn cell_info(cell: u32) -> Result<hvm_abi::CellInfo, HvmCallError> {
    const _: () = assert!(
        core::mem::size_of::<hvm_abi::CellInfo>() as u64
            == microkernel_abi::syscall::HVM_CELL_INFO_BYTES
    );
    let mut info = hvm_abi::CellInfo::empty();
    let arguments = [
        microkernel_abi::syscall::HVM_CELL_INFO,
        u64::from(cell),
        &raw mut info as u64,
        0,
        0,
        0,
    ];
    // SAFETY: the kernel writes exactly size_of::<CellInfo>() bytes into
    // `info`, a plain-data struct every byte pattern of which is valid
    // (integers and byte arrays), and nothing else.
    let (status, results) = unsafe { syscall(Syscall::HvmCall, arguments) };
    Error::check(status).map_err(HvmCallError::Kernel)?;
    match results[0] {
        0 => Ok(info),
        code => Err(HvmCallError::Hypervisor(code)),
    }
}

/// Maps `length` bytes of device memory at physical `physical` (outside
/// the cell's memory) at `address` in the caller's space, uncached (root
/// task only; both page aligned, every page at `address` unmapped).
///
/// Safe: it only adds pages where nothing was; using them takes `unsafe`
/// volatile accesses.
pub fn device_map(physical: u64, length: u64, address: u64) -> Result<(), Error> {
    // SAFETY: the kernel maps only over unmapped pages, so no memory the
    // caller's Rust code uses changes.
    let (status, _) = unsafe { syscall(Syscall::DeviceMap, [physical, length, address, 0, 0, 0]) };
    Error::check(status)
}
