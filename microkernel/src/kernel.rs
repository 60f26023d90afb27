//! The kernel proper: threads, tasks, IPC, paging, scheduling, interrupts.
//!
//! Policy-free logic lives in `microkernel-core` (the IPC rendezvous, run
//! queues, mapping database, item planning, syscall decoding); this module
//! is the thin layer that owns the objects, copies bytes between address
//! spaces and applies page-table changes. All state sits in one
//! [`Kernel`] behind a lock taken on every kernel entry; the kernel runs
//! with interrupts off, so the lock is never contended except by the idle
//! loop's interrupt path.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use microkernel_abi::boot::{self as root_boot, RootBootInfo, RootModule};
use microkernel_abi::syscall::HVM_CELL_INFO_BYTES;
use microkernel_abi::syscall::{DEFAULT_PRIORITY, DEFAULT_TIMESLICE_MICROSECONDS};
use microkernel_abi::utcb::RECEIVE_BUFFER_COUNT;
use microkernel_abi::{
    Error, ExchangeControl, FromSpecifier, IpcError, KernelInfoSelector, MessageTag, ReceiveBuffer,
    Rights, TagFlags, TaskId, ThreadId, Timeout, Timeouts, EXCEPTION_LABEL, INTERRUPT_LABEL,
    PAGE_FAULT_LABEL,
};
use microkernel_core::device::{check_hvm_call, check_window, HvmForward, PortGrants, HVM_SUCCESS};
use microkernel_core::ipc::{IpcEngine, IpcRequest, IpcResult, Outcome, Transfer, Wakeup};
use microkernel_core::mapping::{Change, MappingDatabase};
use microkernel_core::scheduler::RunQueues;
use microkernel_core::syscall::{decode, Request};
use microkernel_core::table::VersionedTable;
use microkernel_core::transfer::{plan, plan_one_string, Action, ReceiveTargets};
use microkernel_core::user_address::UserRange;
use spin::Mutex;

use crate::arch::{self, Context, IoPorts, SYSCALL_VECTOR};
use crate::memory::{phys_to_virt, FramePool, PAGE};
use crate::paging::{user_page_pointer, AddressSpace};
use crate::{apic, console, kprintln, loader};

/// Length of one timer tick (the APIC timer is calibrated to it, apic.rs).
pub const TICK_MICROSECONDS: u64 = 1000;

const UTCB_ERROR_DETAIL: u64 = 0x20;
const UTCB_RECEIVE_WINDOW: u64 = 0x28;
const UTCB_MESSAGE_REGISTERS: u64 = 0x100;
const UTCB_RECEIVE_BUFFERS: u64 = 0x300;

/// A thread control block.
pub struct Thread {
    task: TaskId,
    /// Saved user registers (boxed: entry stubs write here by address).
    context: Box<Context>,
    utcb_address: u64,
    utcb_frame: u64,
    pager: ThreadId,
    /// Its task's page-table root with the space's PCID, as loaded into
    /// CR3 (`paging::cr3_load_value`), fixed for the thread's life: a
    /// task's threads die before its space does.
    space_root: u64,
    halted: bool,
    /// Whether it may use the PCI configuration ports (the root task's
    /// threads: a user-level driver's, docs/microkernel-abi.md §9.12).
    io_ports: bool,
    /// Whether its task holds port grants (set with the grant, so that no
    /// switch scans the grants).
    granted: bool,
    /// While the kernel runs a page-fault or exception IPC on the thread's
    /// behalf: its real user registers, restored when the pager replies.
    fault: Option<Box<Context>>,
}

/// The I/O bitmap `thread` runs with.
fn io_ports<'a>(thread: &Thread, grants: &'a PortGrants) -> IoPorts<'a> {
    if thread.io_ports {
        IoPorts::Pci
    } else if thread.granted {
        IoPorts::Granted(thread.task, grants)
    } else {
        IoPorts::Closed
    }
}

impl Thread {
    fn user_context(&mut self) -> &mut Context {
        match &mut self.fault {
            Some(saved) => saved,
            None => &mut self.context,
        }
    }

    fn utcb_word(&self, offset: u64) -> u64 {
        // SAFETY: the UTCB frame is the thread's own kernel-allocated page,
        // direct mapped; a racing user write only changes what is read.
        unsafe { core::ptr::read_volatile((phys_to_virt(self.utcb_frame) + offset) as *const u64) }
    }

    fn set_utcb_word(&self, offset: u64, value: u64) {
        // SAFETY: as in `utcb_word`; offsets stay inside the page.
        unsafe {
            core::ptr::write_volatile((phys_to_virt(self.utcb_frame) + offset) as *mut u64, value)
        }
    }
}

/// An address space.
pub struct Task {
    space: AddressSpace,
}

/// Everything the IPC transfer callback needs (all but the IPC engine).
pub struct Objects {
    threads: VersionedTable<ThreadId, Thread>,
    tasks: VersionedTable<TaskId, Task>,
    mappings: MappingDatabase,
    pool: FramePool,
    changes: Vec<Change>,
}

/// One interrupt the kernel delivers as IPC: the timer tick or one of
/// hvm's link interrupts.
#[derive(Clone, Copy)]
struct InterruptLine {
    handler: ThreadId,
    masked: bool,
    /// A link interrupt that came while masked, delivered at the
    /// acknowledge (hvm raises one per batch of work, so none may be lost;
    /// the timer's missed ticks are just dropped).
    latched: bool,
}

impl InterruptLine {
    const NONE: InterruptLine = InterruptLine {
        handler: ThreadId::NIL,
        masked: true,
        latched: false,
    };
}

/// The timer and every link interrupt.
const INTERRUPT_LINES: usize = 1 + root_boot::LINK_INTERRUPTS as usize;

/// The line of interrupt number `irq`, if the kernel has it
/// (docs/microkernel-abi.md §5, "Interrupts").
fn line_of(irq: u8) -> Option<usize> {
    let links =
        root_boot::LINK_INTERRUPT_BASE..root_boot::LINK_INTERRUPT_BASE + root_boot::LINK_INTERRUPTS;
    if irq == root_boot::TIMER_INTERRUPT {
        Some(0)
    } else if links.contains(&irq) {
        Some(1 + usize::from(irq - root_boot::LINK_INTERRUPT_BASE))
    } else {
        None
    }
}

/// What the kernel knows of the machine around it, for `hvm_call` and
/// `device_map`.
#[derive(Clone, Copy)]
pub struct Platform {
    /// Whether hvm runs the kernel (hypercalls work).
    pub under_hvm: bool,
    /// The cell's memory, physical `[start, end)`.
    pub ram: (u64, u64),
}

/// The whole kernel state.
pub struct Kernel {
    objects: Objects,
    ipc: IpcEngine,
    run_queues: RunQueues,
    kernel_root: u64,
    root_task: TaskId,
    root_thread: ThreadId,
    current: Option<ThreadId>,
    ticks: u64,
    interrupts: [InterruptLine; INTERRUPT_LINES],
    platform: Platform,
    /// I/O ports the root task opened to other tasks.
    port_grants: PortGrants,
}

/// The kernel, once booted.
pub static KERNEL: Mutex<Option<Kernel>> = Mutex::new(None);

impl Objects {
    fn apply_changes(&mut self) {
        for change in self.changes.drain(..) {
            match change {
                Change::Install {
                    space,
                    address,
                    frame,
                    rights,
                } => {
                    if let Some(task) = self.tasks.get(space) {
                        if task
                            .space
                            .map(&mut self.pool, address, frame, rights)
                            .is_none()
                        {
                            kprintln!(
                                "microkernel: out of page-table memory mapping {:#x}",
                                address
                            );
                        }
                    }
                }
                Change::Restrict {
                    space,
                    address,
                    rights,
                } => {
                    if let Some(task) = self.tasks.get(space) {
                        task.space.restrict(address, rights);
                    }
                }
                Change::Remove { space, address } => {
                    if let Some(task) = self.tasks.get(space) {
                        task.space.unmap(address);
                    }
                }
            }
        }
    }

    fn space(&self, task: TaskId) -> Option<&AddressSpace> {
        self.tasks.get(task).map(|t| &t.space)
    }
}

/// Copies a string between two address spaces, page piece by page piece,
/// through their page tables. On an unmapped or read-only page it returns
/// the address that failed.
fn copy_between(
    from: &AddressSpace,
    source: UserRange,
    to: &AddressSpace,
    destination: UserRange,
) -> Result<(), u64> {
    let mut done = 0;
    while done < source.length() {
        let source_address = source.start() + done;
        let destination_address = destination.start() + done;
        let chunk = (PAGE - source_address % PAGE)
            .min(PAGE - destination_address % PAGE)
            .min(source.length() - done);
        let from_pointer = user_page_pointer(from, source_address, false).ok_or(source_address)?;
        let to_pointer =
            user_page_pointer(to, destination_address, true).ok_or(destination_address)?;
        // SAFETY: both pointers are direct-map addresses of mapped frames,
        // valid for `chunk` bytes (chunks never cross a page).
        unsafe { core::ptr::copy(from_pointer, to_pointer, chunk as usize) };
        done += chunk;
    }
    Ok(())
}

/// Most pages one fast-path string range may touch: enough for the link's
/// MSIZE (8 216 bytes) plus a header at any alignment; a range over more
/// pages takes the general path.
const STRING_PAGES: usize = 4;

/// The pages of a fast-path string range, each translated once: the
/// direct-map address of every page's frame, and where in the first the
/// range starts.
struct Pages {
    frames: [*mut u8; STRING_PAGES],
    offset: u64,
}

impl Pages {
    /// `None` unless every page of `range` is mapped in `space` (writable,
    /// if `write`) and there are at most [`STRING_PAGES`] of them.
    fn of(space: &AddressSpace, range: UserRange, write: bool) -> Option<Pages> {
        let offset = range.start() % PAGE;
        let mut frames = [core::ptr::null_mut(); STRING_PAGES];
        let pages = (range.start() - offset..range.end()).step_by(PAGE as usize);
        for (n, page) in pages.enumerate() {
            *frames.get_mut(n)? = user_page_pointer(space, page, write)?;
        }
        Some(Pages { frames, offset })
    }
}

/// Copies `length` bytes from the range `from` to the range `to`, a piece
/// at a time, no piece crossing a page of either side.
///
/// # Safety
/// Both ranges were checked ([`Pages::of`]) for at least `length` bytes, and
/// no page table or frame has changed since.
unsafe fn copy_pages(from: &Pages, to: &Pages, length: u64) {
    let mut done = 0;
    while done < length {
        let (s, d) = (from.offset + done, to.offset + done);
        let chunk = (PAGE - s % PAGE).min(PAGE - d % PAGE).min(length - done);
        let source = from.frames[(s / PAGE) as usize].wrapping_add((s % PAGE) as usize);
        let destination = to.frames[(d / PAGE) as usize].wrapping_add((d % PAGE) as usize);
        // SAFETY: per the contract, both are direct-map addresses of mapped
        // frames (the destination's writable), valid for `chunk` bytes as
        // pieces never cross a page. A frame mapped in both spaces may make
        // them overlap, hence `copy`.
        unsafe { core::ptr::copy(source, destination, chunk as usize) };
        done += chunk;
    }
}

const REGISTER_WORDS: usize = 7;

fn read_registers(context: &Context) -> [u64; REGISTER_WORDS] {
    [
        context.r10,
        context.r8,
        context.r9,
        context.r12,
        context.r13,
        context.r14,
        context.r15,
    ]
}

fn write_registers(context: &mut Context, words: &[u64]) {
    let slots: [&mut u64; REGISTER_WORDS] = [
        &mut context.r10,
        &mut context.r8,
        &mut context.r9,
        &mut context.r12,
        &mut context.r13,
        &mut context.r14,
        &mut context.r15,
    ];
    for (slot, word) in slots.into_iter().zip(words) {
        *slot = *word;
    }
}

/// Moves one message from `sender` to `receiver` (the engine's callback).
fn transfer(objects: &mut Objects, Transfer { sender, receiver }: Transfer) -> Result<(), Error> {
    let sending = objects.threads.get(sender).ok_or(Error::InvalidThread)?;
    let mut message = [0u64; 64];
    message[..REGISTER_WORDS].copy_from_slice(&read_registers(&sending.context));
    let raw_tag = MessageTag::from_raw(message[0]);
    // Only the kernel's own fault messages keep the KERNEL flag.
    let tag = if sending.fault.is_some() {
        raw_tag
    } else {
        raw_tag.with_flags(TagFlags::empty())
    };
    tag.validate()?;
    message[0] = tag.raw();
    let words = tag.words();
    for (register, slot) in message
        .iter_mut()
        .enumerate()
        .take(words + 1)
        .skip(REGISTER_WORDS)
    {
        *slot = sending.utcb_word(UTCB_MESSAGE_REGISTERS + 8 * register as u64);
    }
    let sender_task = sending.task;
    let receiving = objects.threads.get(receiver).ok_or(Error::InvalidThread)?;
    let receiver_task = receiving.task;
    let typed_start = 1 + tag.untyped();
    if tag.typed() > 0 {
        let targets = if receiving.fault.is_some() {
            // The reply to a fault may map anywhere (ABI §5, page faults).
            ReceiveTargets {
                window: microkernel_abi::Fpage::complete(Rights::FULL),
                ..ReceiveTargets::NONE
            }
        } else {
            let mut buffers = [ReceiveBuffer::default(); RECEIVE_BUFFER_COUNT];
            for (n, buffer) in buffers.iter_mut().enumerate() {
                let at = UTCB_RECEIVE_BUFFERS + 16 * n as u64;
                *buffer = ReceiveBuffer {
                    address: receiving.utcb_word(at),
                    length: receiving.utcb_word(at + 8),
                };
            }
            ReceiveTargets::new(receiving.utcb_word(UTCB_RECEIVE_WINDOW), buffers)?
        };
        let planned = plan(
            tag,
            &message[typed_start..typed_start + tag.typed()],
            &targets,
        )?;
        for (n, item) in planned.iter().enumerate() {
            match item.action {
                Action::Copy {
                    source,
                    destination,
                } => {
                    let from = objects.space(sender_task).ok_or(Error::NoSuchTask)?;
                    let to = objects.space(receiver_task).ok_or(Error::NoSuchTask)?;
                    if let Err(address) = copy_between(from, source, to, destination) {
                        for thread in [sender, receiver] {
                            if let Some(t) = objects.threads.get(thread) {
                                t.set_utcb_word(UTCB_ERROR_DETAIL, address);
                            }
                        }
                        return Err(Error::StringFault);
                    }
                }
                Action::Map { placement, grant } => {
                    objects.mappings.map_fpage(
                        sender_task,
                        placement.source,
                        receiver_task,
                        placement.destination_base,
                        grant,
                        &mut objects.changes,
                    )?;
                    objects.apply_changes();
                }
                Action::Nothing => {}
            }
            message[typed_start + 2 * n..typed_start + 2 * n + 2].copy_from_slice(&item.received);
        }
    }
    let receiving = objects
        .threads
        .get_mut(receiver)
        .ok_or(Error::InvalidThread)?;
    write_registers(&mut receiving.context, &message[..REGISTER_WORDS]);
    for (register, word) in message
        .iter()
        .enumerate()
        .take(words + 1)
        .skip(REGISTER_WORDS)
    {
        receiving.set_utcb_word(UTCB_MESSAGE_REGISTERS + 8 * register as u64, *word);
    }
    Ok(())
}

impl Kernel {
    fn now(&self) -> u64 {
        self.ticks * TICK_MICROSECONDS
    }

    fn thread(&mut self, id: ThreadId) -> Option<&mut Thread> {
        self.objects.threads.get_mut(id)
    }

    /// Ends `id`'s IPC with `result` (a wakeup, or the caller's own outcome).
    fn finish_ipc(&mut self, id: ThreadId, result: IpcResult) {
        let Some(thread) = self.objects.threads.get_mut(id) else {
            return;
        };
        if let Some(saved) = thread.fault.take() {
            match result {
                Ok(_) => {
                    // The pager answered: retry the faulting instruction.
                    *thread.context = *saved;
                }
                Err(error) => {
                    thread.fault = Some(saved);
                    self.kill(id, "its pager failed to answer a fault", Some(error.error));
                    return;
                }
            }
        } else {
            let context = &mut thread.context;
            context.rdi = 0;
            context.rdx = 0;
            match result {
                Ok(sender) => {
                    context.rax = 0;
                    context.rsi = sender.raw();
                    if let Some(irq) = sender.interrupt_number() {
                        let tag = MessageTag::new(INTERRUPT_LABEL, 1, 0)
                            .map(|t| t.with_flags(TagFlags::KERNEL))
                            .unwrap_or(MessageTag::EMPTY);
                        write_registers(context, &[tag.raw(), u64::from(irq)]);
                    }
                }
                Err(error) => {
                    context.rax = error.status();
                    context.rsi = 0;
                }
            }
        }
        if !self.objects.threads.get(id).is_some_and(|t| t.halted) {
            self.run_queues.make_ready(id.index());
        }
    }

    fn wake_all(&mut self, wakeups: Vec<Wakeup>) {
        for wakeup in wakeups {
            self.finish_ipc(wakeup.thread, wakeup.result);
        }
    }

    /// Runs one `ipc` for `caller` (a system call or a kernel fault IPC).
    fn ipc(&mut self, caller: ThreadId, request: IpcRequest) {
        let now = self.now();
        let objects = &mut self.objects;
        let step = self.ipc.ipc(caller, request, now, |t| transfer(objects, t));
        match step.caller {
            Outcome::Completed(result) => self.finish_ipc(caller, result),
            Outcome::Blocked => self.run_queues.block(caller.index()),
        }
        self.wake_all(step.woken);
    }

    /// Turns a user fault into an IPC to the thread's pager, or ends the
    /// thread when it has none.
    fn fault_ipc(&mut self, id: ThreadId, label: u64, words: &[u64], what: &str) {
        let Some(pager) = self.thread(id).map(|t| t.pager) else {
            return;
        };
        if pager.is_nil() || !self.objects.threads.contains(pager) {
            let detail = *self.thread(id).expect("checked above").context;
            kprintln!(
                "microkernel: thread {:#x}: {} at rip={:#x} (word {:#x}) and no pager; ending it",
                id.raw(),
                what,
                detail.rip,
                words.first().copied().unwrap_or(0)
            );
            self.kill(id, what, None);
            return;
        }
        let thread = self.thread(id).expect("checked above");
        thread.fault = Some(Box::new(*thread.context));
        let tag = MessageTag::new(label, words.len(), 0)
            .map(|t| t.with_flags(TagFlags::KERNEL))
            .unwrap_or(MessageTag::EMPTY);
        let mut message = [0u64; REGISTER_WORDS];
        message[0] = tag.raw();
        message[1..=words.len()].copy_from_slice(words);
        write_registers(&mut thread.context, &message);
        self.ipc(
            id,
            IpcRequest {
                to: pager,
                from: FromSpecifier::Thread(pager),
                timeouts: Timeouts::NEVER,
            },
        );
    }

    /// Deletes a thread because it failed; the root thread's failure ends
    /// the system.
    fn kill(&mut self, id: ThreadId, why: &str, error: Option<Error>) {
        if id == self.root_thread {
            match error {
                Some(e) => kprintln!("microkernel: the root task failed: {} ({})", why, e),
                None => kprintln!("microkernel: the root task failed: {}", why),
            }
            console::power_off(false);
        }
        self.delete_thread(id);
    }

    fn delete_thread(&mut self, id: ThreadId) {
        let wakeups = self.ipc.unregister(id);
        self.run_queues.remove(id.index());
        if let Some(thread) = self.objects.threads.remove(id) {
            if let Some(task) = self.objects.tasks.get(thread.task) {
                task.space.unmap(thread.utcb_address);
            }
            self.objects.pool.release(thread.utcb_frame);
        }
        for line in &mut self.interrupts {
            if line.handler == id {
                *line = InterruptLine::NONE;
            }
        }
        if self.current == Some(id) {
            self.current = None;
        }
        self.wake_all(wakeups);
    }

    fn create_thread(
        &mut self,
        task: TaskId,
        pager: ThreadId,
        utcb: u64,
    ) -> Result<ThreadId, Error> {
        let space = self.objects.space(task).ok_or(Error::NoSuchTask)?;
        if space.occupied(utcb) {
            return Err(Error::AlreadyExists);
        }
        let frame = self.objects.pool.allocate().ok_or(Error::OutOfResources)?;
        let rw = Rights::READ | Rights::WRITE;
        let space = &self.objects.tasks.get(task).ok_or(Error::NoSuchTask)?.space;
        let space_root = crate::paging::cr3_load_value(space.cr3());
        if space.map(&mut self.objects.pool, utcb, frame, rw).is_none() {
            self.objects.pool.release(frame);
            return Err(Error::OutOfResources);
        }
        let thread = Thread {
            task,
            context: Box::new(Context::user(0, 0)),
            utcb_address: utcb,
            utcb_frame: frame,
            pager,
            space_root,
            halted: true,
            io_ports: task == self.root_task,
            granted: self.port_grants.holds(task),
            fault: None,
        };
        let id = match self.objects.threads.insert(thread) {
            Ok(id) => id,
            Err(e) => {
                if let Some(space) = self.objects.space(task) {
                    space.unmap(utcb);
                }
                self.objects.pool.release(frame);
                return Err(e);
            }
        };
        let _ = self.ipc.register(id);
        self.run_queues
            .add(id.index(), DEFAULT_PRIORITY, DEFAULT_TIMESLICE_MICROSECONDS);
        let thread = self.thread(id).expect("just inserted");
        thread.set_utcb_word(0, utcb);
        thread.set_utcb_word(8, id.raw());
        thread.set_utcb_word(16, task.raw());
        Ok(id)
    }

    fn destroy_task(&mut self, task: TaskId) {
        let doomed: Vec<ThreadId> = self
            .objects
            .threads
            .iter()
            .filter(|(_, t)| t.task == task)
            .map(|(id, _)| id)
            .collect();
        for id in doomed {
            self.delete_thread(id);
        }
        self.objects
            .mappings
            .destroy_space(task, &mut self.objects.changes);
        self.objects.apply_changes();
        if let Some(removed) = self.objects.tasks.remove(task) {
            removed.space.destroy(&mut self.objects.pool);
        }
        if self.port_grants.holds(task) {
            self.port_grants.revoke(task);
            arch::device_bitmap_changed();
        }
    }

    /// Handles a system call from `caller`.
    fn syscall(&mut self, caller: ThreadId) {
        let context = *self.thread(caller).expect("current thread exists").context;
        let number = context.rax;
        let arguments = [
            context.rdi,
            context.rsi,
            context.rdx,
            context.r10,
            context.r8,
            context.r9,
        ];
        let request = match decode(number, arguments) {
            Ok(request) => request,
            Err(error) => {
                let status = if number == 0 {
                    IpcError::send(error).status()
                } else {
                    error.code()
                };
                self.set_results(caller, Err(status), [0; 6]);
                return;
            }
        };
        if let Request::Ipc {
            to, from, timeouts, ..
        } = request
        {
            if to.is_thread() && to == caller
                || matches!(from, FromSpecifier::Thread(t) if t == caller)
            {
                let error = if to == caller {
                    IpcError::send(Error::InvalidThread)
                } else {
                    IpcError::receive(Error::InvalidThread)
                };
                self.set_results(caller, Err(error.status()), [0; 6]);
                return;
            }
            self.ipc(caller, IpcRequest { to, from, timeouts });
            return;
        }
        let result = self.other_syscall(caller, request);
        match result {
            Ok(results) => self.set_results(caller, Ok(()), results),
            Err(error) => self.set_results(caller, Err(error.code()), [0; 6]),
        }
    }

    fn set_results(&mut self, caller: ThreadId, status: Result<(), u64>, results: [u64; 6]) {
        if let Some(thread) = self.thread(caller) {
            let c = &mut thread.context;
            c.rax = status.err().unwrap_or(0);
            c.rdi = results[0];
            c.rsi = results[1];
            c.rdx = results[2];
            c.r10 = results[3];
            c.r8 = results[4];
            c.r9 = results[5];
        }
    }

    fn in_root_task(&self, caller: ThreadId) -> bool {
        self.objects
            .threads
            .get(caller)
            .is_some_and(|t| t.task == self.root_task)
    }

    fn other_syscall(&mut self, caller: ThreadId, request: Request) -> Result<[u64; 6], Error> {
        let caller_task = self
            .objects
            .threads
            .get(caller)
            .map(|t| t.task)
            .ok_or(Error::InvalidThread)?;
        let root = self.in_root_task(caller);
        match request {
            Request::Ipc { .. } => Err(Error::InvalidSyscall),
            Request::ThreadCreate { task, pager, utcb } => {
                if !root {
                    return Err(Error::NotPermitted);
                }
                let id = self.create_thread(task, pager, utcb.get())?;
                Ok([id.raw(), 0, 0, 0, 0, 0])
            }
            Request::ThreadDelete { thread } => {
                if !root {
                    return Err(Error::NotPermitted);
                }
                if !self.objects.threads.contains(thread) {
                    return Err(Error::InvalidThread);
                }
                if thread == self.root_thread {
                    kprintln!("microkernel: the root task finished");
                    console::power_off(true);
                }
                self.delete_thread(thread);
                Ok([0; 6])
            }
            Request::SpaceCreate => {
                if !root {
                    return Err(Error::NotPermitted);
                }
                let space = AddressSpace::new(&mut self.objects.pool, self.kernel_root)
                    .ok_or(Error::OutOfResources)?;
                let id = self.objects.tasks.insert(Task { space })?;
                Ok([id.raw(), 0, 0, 0, 0, 0])
            }
            Request::SpaceDestroy { task } => {
                if !root || task == self.root_task {
                    return Err(Error::NotPermitted);
                }
                if !self.objects.tasks.contains(task) {
                    return Err(Error::NoSuchTask);
                }
                self.destroy_task(task);
                Ok([0; 6])
            }
            Request::SpaceGrantPorts { task, first, count } => {
                if root && !self.objects.tasks.contains(task) {
                    return Err(Error::NoSuchTask);
                }
                self.port_grants
                    .grant(root, self.root_task, task, first, count)?;
                // The task may be the one whose grants are loaded.
                arch::device_bitmap_changed();
                Ok([0; 6])
            }
            Request::ExchangeRegisters {
                thread,
                control,
                instruction_pointer,
                stack_pointer,
                pager,
            } => {
                let target_task = self
                    .objects
                    .threads
                    .get(thread)
                    .map(|t| t.task)
                    .ok_or(Error::InvalidThread)?;
                if !root && target_task != caller_task {
                    return Err(Error::NotPermitted);
                }
                if let Some(pager) = pager {
                    if !pager.is_nil() && !self.objects.threads.contains(pager) {
                        return Err(Error::InvalidThread);
                    }
                }
                let state = self
                    .ipc
                    .state(thread)
                    .map(|s| s.state_flags())
                    .unwrap_or(microkernel_abi::ThreadStateFlags::empty());
                let t = self.objects.threads.get_mut(thread).expect("checked");
                let mut flags = state;
                if t.halted {
                    flags |= microkernel_abi::ThreadStateFlags::HALTED;
                }
                let old_pager = t.pager;
                let user = t.user_context();
                let (old_ip, old_sp) = (user.rip, user.rsp);
                if let Some(ip) = instruction_pointer {
                    user.rip = ip.get();
                }
                if let Some(sp) = stack_pointer {
                    user.rsp = sp.get();
                }
                if let Some(pager) = pager {
                    t.pager = pager;
                }
                if control.contains(ExchangeControl::HALT) {
                    t.halted = true;
                    self.run_queues.block(thread.index());
                }
                if control.contains(ExchangeControl::RESUME) {
                    t.halted = false;
                    if self
                        .ipc
                        .state(thread)
                        .is_some_and(|s| s.state_flags().is_empty())
                    {
                        self.run_queues.make_ready(thread.index());
                    }
                }
                let send = control.contains(ExchangeControl::CANCEL_SEND);
                let receive = control.contains(ExchangeControl::CANCEL_RECEIVE);
                if send || receive {
                    if let Some(wakeup) = self.ipc.cancel(thread, send, receive) {
                        self.finish_ipc(wakeup.thread, wakeup.result);
                    }
                }
                Ok([0, flags.bits(), old_ip, old_sp, old_pager.raw(), 0])
            }
            Request::Schedule {
                thread,
                priority,
                timeslice,
            } => {
                let target_task = self
                    .objects
                    .threads
                    .get(thread)
                    .map(|t| t.task)
                    .ok_or(Error::InvalidThread)?;
                let index = thread.index();
                let old_priority = self.run_queues.priority(index).unwrap_or(0);
                let old_timeslice = self.run_queues.timeslice(index).unwrap_or(0);
                if !root {
                    let caller_priority = self.run_queues.priority(caller.index()).unwrap_or(0);
                    if target_task != caller_task || priority.is_some_and(|p| p > caller_priority) {
                        return Err(Error::NotPermitted);
                    }
                }
                if let Some(p) = priority {
                    self.run_queues.set_priority(index, p);
                }
                if let Some(t) = timeslice {
                    self.run_queues.set_timeslice(index, t);
                }
                Ok([
                    0,
                    u64::from(old_priority),
                    u64::from(old_timeslice),
                    0,
                    0,
                    0,
                ])
            }
            Request::Yield => {
                self.run_queues.yield_thread(caller.index());
                Ok([0; 6])
            }
            Request::Unmap {
                fpage,
                include_self,
            } => {
                self.objects.mappings.unmap(
                    caller_task,
                    fpage,
                    include_self,
                    &mut self.objects.changes,
                );
                self.objects.apply_changes();
                Ok([0; 6])
            }
            Request::InterruptAssociate { irq, handler } => {
                if !root {
                    return Err(Error::NotPermitted);
                }
                let line = line_of(irq).ok_or(Error::InvalidArgument)?;
                if !self.objects.threads.contains(handler) {
                    return Err(Error::InvalidThread);
                }
                if !self.interrupts[line].handler.is_nil() {
                    return Err(Error::AlreadyExists);
                }
                self.interrupts[line] = InterruptLine {
                    handler,
                    masked: false,
                    latched: false,
                };
                Ok([0; 6])
            }
            Request::InterruptDissociate { irq } => {
                if !root {
                    return Err(Error::NotPermitted);
                }
                let line = line_of(irq).ok_or(Error::InvalidArgument)?;
                let handler = self.interrupts[line].handler;
                self.ipc.clear_interrupt(irq, handler);
                self.interrupts[line] = InterruptLine::NONE;
                Ok([0; 6])
            }
            Request::InterruptAcknowledge { irq } => {
                let line = line_of(irq).ok_or(Error::InvalidArgument)?;
                if self.interrupts[line].handler != caller {
                    return Err(Error::NotPermitted);
                }
                self.interrupts[line].masked = false;
                if core::mem::take(&mut self.interrupts[line].latched) {
                    self.raise(irq);
                }
                Ok([0; 6])
            }
            Request::HvmCall { call, arg0, arg1 } => {
                let forward = check_hvm_call(root, self.platform.under_hvm, call)?;
                self.hvm_call(caller_task, forward, call, arg0, arg1)
            }
            Request::DeviceMap {
                physical,
                destination,
            } => {
                check_window(root, physical, destination.length(), self.platform.ram)?;
                self.device_map(caller_task, physical, destination)?;
                Ok([0; 6])
            }
            Request::DebugWrite { buffer } => {
                let space = self.objects.space(caller_task).ok_or(Error::NoSuchTask)?;
                let mut bytes = [0u8; 1024];
                let length = buffer.length() as usize;
                for (offset, slot) in bytes.iter_mut().enumerate().take(length) {
                    let pointer = user_page_pointer(space, buffer.start() + offset as u64, false)
                        .ok_or(Error::BadAddress)?;
                    // SAFETY: a direct-map pointer into a mapped frame.
                    *slot = unsafe { pointer.read() };
                }
                console::write_bytes(&bytes[..length]);
                Ok([length as u64, 0, 0, 0, 0, 0])
            }
            Request::KernelInfo { selector } => {
                let value = match selector {
                    KernelInfoSelector::ApiVersion => microkernel_abi::ABI_VERSION,
                    KernelInfoSelector::CurrentThread => caller.raw(),
                    KernelInfoSelector::CurrentTask => caller_task.raw(),
                    KernelInfoSelector::ClockMicroseconds => self.now(),
                    KernelInfoSelector::UtcbAddress => self
                        .objects
                        .threads
                        .get(caller)
                        .map(|t| t.utcb_address)
                        .unwrap_or(0),
                    KernelInfoSelector::ConsoleInput if !self.in_root_task(caller) => {
                        return Err(Error::NotPermitted)
                    }
                    KernelInfoSelector::ConsoleInput => {
                        console::read_byte().map_or(microkernel_abi::NO_CONSOLE_INPUT, u64::from)
                    }
                };
                Ok([value, 0, 0, 0, 0, 0])
            }
        }
    }

    /// Delivers interrupt `irq` (which has a line) to its handler: masks
    /// it and wakes the handler if it is receiving, else leaves it pending
    /// in the IPC engine; a masked link interrupt is latched.
    fn raise(&mut self, irq: u8) {
        let Some(line) = line_of(irq) else {
            return;
        };
        let state = &mut self.interrupts[line];
        if state.handler.is_nil() {
            return;
        }
        if state.masked {
            state.latched = irq != root_boot::TIMER_INTERRUPT;
            return;
        }
        state.masked = true;
        let handler = state.handler;
        if let Ok(Some(wakeup)) = self.ipc.raise_interrupt(irq, handler) {
            self.finish_ipc(wakeup.thread, wakeup.result);
        }
    }

    /// hvm injected link vector `vector` (hvm's contract 2: link i's
    /// device has used buffers or a configuration change for cell 0).
    pub fn link_interrupt(&mut self, vector: u8) {
        self.raise(vector - arch::LINK_VECTOR + root_boot::LINK_INTERRUPT_BASE);
    }

    /// Forwards a checked `hvm_call`; results: RDI hvm's status, RSI its
    /// value.
    fn hvm_call(
        &mut self,
        caller_task: TaskId,
        forward: HvmForward,
        call: u64,
        arg0: u64,
        arg1: u64,
    ) -> Result<[u64; 6], Error> {
        match forward {
            HvmForward::Plain => {
                // SAFETY: under hvm (checked); the forwarded calls pass no
                // buffer, only numbers hvm checks itself.
                let (status, value) = unsafe { arch::hypercall(call, arg0, arg1) };
                Ok([status, value, 0, 0, 0, 0])
            }
            HvmForward::CellInfo => {
                let length = HVM_CELL_INFO_BYTES;
                let destination = UserRange::new(arg1, length)?;
                let space = self.objects.space(caller_task).ok_or(Error::NoSuchTask)?;
                // The whole buffer must be writable before hvm is asked.
                for piece in destination.page_pieces() {
                    user_page_pointer(space, piece.start(), true).ok_or(Error::BadAddress)?;
                }
                // hvm writes into the kernel's own copy (heap memory, direct
                // mapped, so its physical address is known), never into the
                // root task's pages: they might change before the copy.
                let mut buffer = Box::new([0u8; HVM_CELL_INFO_BYTES as usize]);
                let physical = buffer.as_mut_ptr() as u64 - crate::memory::DIRECT_MAP;
                // SAFETY: under hvm; the buffer is cell memory of
                // HVM_CELL_INFO_BYTES, alive across the call.
                let (status, value) = unsafe { arch::hypercall(call, arg0, physical) };
                if status == HVM_SUCCESS {
                    let mut done = 0;
                    for piece in destination.page_pieces() {
                        let to = user_page_pointer(space, piece.start(), true)
                            .ok_or(Error::BadAddress)?;
                        let bytes = &buffer[done..done + piece.length() as usize];
                        // SAFETY: a direct-map pointer to a writable frame
                        // of the caller, valid for the piece (one page).
                        unsafe { core::ptr::copy(bytes.as_ptr(), to, bytes.len()) };
                        done += bytes.len();
                    }
                }
                Ok([status, value, 0, 0, 0, 0])
            }
        }
    }

    /// Maps the checked device window at `physical` over `destination` in
    /// the caller's space, uncached; every page there must be free.
    fn device_map(
        &mut self,
        caller_task: TaskId,
        physical: u64,
        destination: UserRange,
    ) -> Result<(), Error> {
        let space = &self
            .objects
            .tasks
            .get(caller_task)
            .ok_or(Error::NoSuchTask)?
            .space;
        let pages = (destination.start()..destination.end()).step_by(PAGE as usize);
        if pages.clone().any(|page| space.occupied(page)) {
            return Err(Error::AlreadyExists);
        }
        for (n, page) in pages.enumerate() {
            space
                .map_device(&mut self.objects.pool, page, physical + n as u64 * PAGE)
                .ok_or(Error::OutOfResources)?;
        }
        Ok(())
    }

    /// One timer tick: time, timeslices, IPC timeouts, the timer interrupt.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if let Some(current) = self.current {
            self.run_queues
                .charge(current.index(), TICK_MICROSECONDS as u32);
        }
        let now = self.now();
        let expired = self.ipc.expire(now);
        self.wake_all(expired);
        let period = root_boot::TIMER_INTERRUPT_PERIOD_MICROSECONDS / TICK_MICROSECONDS;
        if self.ticks.is_multiple_of(period) {
            self.raise(root_boot::TIMER_INTERRUPT);
        }
    }

    /// The fast path's plan for a string item (`item`, rewritten to what
    /// `receiver` sees) into receive buffer `slot`: the pages of source and
    /// destination, and the length, into `copy`. Only once every page it touches is
    /// known mapped, so the copy cannot fail; anything else (a fault included) is the general
    /// path's to handle and report, before anything changed.
    #[inline(never)]
    fn fast_string(
        &self,
        sender_task: TaskId,
        receiver: &Thread,
        slot: u64,
        item: &mut [u64],
        copy: &mut Option<(Pages, Pages, u64)>,
    ) -> Option<()> {
        let buffer = ReceiveBuffer {
            address: receiver.utcb_word(UTCB_RECEIVE_BUFFERS + 16 * slot),
            length: receiver.utcb_word(UTCB_RECEIVE_BUFFERS + 16 * slot + 8),
        };
        let (source, destination, received) = plan_one_string([item[0], item[1]], buffer)?;
        let from = Pages::of(self.objects.space(sender_task)?, source, false)?;
        let into = Pages::of(self.objects.space(receiver.task)?, destination, true)?;
        item.copy_from_slice(&received);
        *copy = Some((from, into, source.length()));
        Some(())
    }

    /// [`Kernel::fast_ipc`] of a message with string items, out of line.
    #[inline(never)]
    fn fast_ipc_strings(&mut self, caller: ThreadId) -> Option<bool> {
        self.fast_ipc::<true>(caller)
    }

    /// The IPC fast path: a register-only `call` or `reply_and_wait` to a
    /// thread that is already waiting (L4Ka's and seL4's fast path). It
    /// copies MR0–MR6 register to register and leaves the rendezvous
    /// bookkeeping to `IpcEngine::direct_exchange_untimed` (or, for a
    /// receive with a deadline, `direct_exchange`); anything unusual
    /// returns `None` and takes the general path, which ends in the same
    /// state. `None`: not taken; `Some(true)`: taken and already switched
    /// to the partner (it is the thread the run queues pick: no queue is
    /// scanned); `Some(false)`: taken, the caller must pick the next thread.
    ///
    /// Each thread is looked up once in the thread table, the tag and the
    /// timeouts are decoded only as far as this path needs, and the run
    /// queues change only when the caller does not simply hand its place
    /// to the partner (`RunQueues::hand_over`).
    ///
    /// `STRINGS` is false for the untyped path, which hands typed messages
    /// to its own copy with `STRINGS` true (`fast_ipc_strings`), so that
    /// the string code costs the untyped path nothing.
    fn fast_ipc<const STRINGS: bool>(&mut self, caller: ThreadId) -> Option<bool> {
        let thread = self.objects.threads.get(caller)?;
        let c = &*thread.context;
        if c.vector != SYSCALL_VECTOR || c.rax != 0 {
            return None;
        }
        let tag = MessageTag::from_raw(c.r10).with_flags(TagFlags::empty());
        let typed = tag.typed();
        if typed != 0 && !STRINGS {
            return self.fast_ipc_strings(caller);
        }
        // Untyped words (at most 63), or one or two string items (into
        // receive buffers 0 and 1, as `plan` puts them) with the whole
        // message in registers; other typed messages need full planning.
        let string =
            STRINGS && matches!(typed, 2 | 4) && tag.untyped() + 1 + typed <= REGISTER_WORDS;
        if (typed != 0 && !string) || tag.validate().is_err() {
            return None;
        }
        let to = ThreadId::from_raw(c.rdi);
        // Only the receive timeout matters (the partner waits, so the send
        // phase cannot block); "never", the usual one, needs no clock.
        let never = (c.rdx >> 32) as u32 == Timeout::Never.encode();
        // The usual receive phases, read off the raw words: from any (a
        // reply-and-wait) or from the destination (a call).
        let (from, timeouts) = (c.rsi, c.rdx);
        let reply_and_wait = from == ThreadId::ANY.raw();
        let untimed = never && (reply_and_wait || from == c.rdi);
        // The words move at the end, straight from the caller's saved
        // registers; only a string item's two words are rewritten first.
        let sender_context: *const Context = c;
        let item_at = 1 + tag.untyped();
        let (sender_task, sender_utcb) = (thread.task, thread.utcb_frame);
        let now = if never { 0 } else { self.now() };
        let (mut item, mut second) = ([0u64; 2], [0u64; 2]);
        let mut copies = [None, None];
        if string {
            let registers = read_registers(c);
            item.copy_from_slice(&registers[item_at..item_at + 2]);
            let receiver = self.objects.threads.get(to)?;
            self.fast_string(sender_task, receiver, 0, &mut item, &mut copies[0])?;
            if typed == 4 {
                second.copy_from_slice(&registers[item_at + 2..item_at + 4]);
                self.fast_string(sender_task, receiver, 1, &mut second, &mut copies[1])?;
            }
        }
        // The one look-up of the partner; the engine and the run queues
        // are other fields, so it stays borrowed across them.
        let receiver = self
            .objects
            .threads
            .get_mut(to)
            .filter(|t| t.fault.is_none() && !t.halted)?;
        let exchanged = if untimed {
            self.ipc.direct_exchange_untimed(caller, to, reply_and_wait)
        } else {
            let request = IpcRequest {
                to,
                from: FromSpecifier::from_thread_id(ThreadId::from_raw(from)),
                timeouts: Timeouts::decode(timeouts),
            };
            self.ipc.direct_exchange(caller, request, now)
        };
        if !exchanged {
            return None;
        }
        for (from, into, length) in copies.iter().flatten() {
            // SAFETY: fast_string checked both ranges; direct_exchange
            // changed no page table or frame since.
            unsafe { copy_pages(from, into, *length) };
        }
        let runs_next = self.run_queues.hand_over(caller.index(), to.index());
        if tag.untyped() >= REGISTER_WORDS {
            // MR7.. go UTCB to UTCB (ABI §7), word by word: a few words are
            // the usual case, cheaper than a call to `memmove`.
            let offset = UTCB_MESSAGE_REGISTERS + 8 * REGISTER_WORDS as u64;
            let from = (phys_to_virt(sender_utcb) + offset) as *const u64;
            let into = (phys_to_virt(receiver.utcb_frame) + offset) as *mut u64;
            for word in 0..tag.untyped() + 1 - REGISTER_WORDS {
                // SAFETY: both UTCB frames are kernel-allocated pages,
                // direct mapped, and distinct (two threads); at most 57
                // words from offset 0x138 stay inside them.
                unsafe { into.add(word).write(from.add(word).read()) };
            }
        }
        // SAFETY: the caller's context is boxed in a live thread (the
        // caller's, still current), not the receiver's: direct_exchange
        // refuses a call to oneself. Nothing was freed or moved since.
        let mut words = read_registers(unsafe { &*sender_context });
        words[0] = tag.raw();
        if string {
            words[item_at..item_at + 2].copy_from_slice(&item);
            if typed == 4 {
                words[item_at + 2..item_at + 4].copy_from_slice(&second);
            }
        }
        let r = &mut *receiver.context;
        write_registers(r, &words);
        r.rax = 0;
        r.rsi = caller.raw();
        r.rdi = 0;
        r.rdx = 0;
        if !runs_next {
            return Some(false);
        }
        // The partner runs next: switch to it here rather than look it up
        // again in `switch_to_next` (the same choice).
        let context: *mut Context = r;
        // SAFETY: the context is boxed in a live thread, which stays alive
        // until the kernel is entered again; its space has the kernel half.
        unsafe {
            arch::set_current_context(context, receiver.space_root, receiver.utcb_address, || {
                io_ports(receiver, &self.port_grants)
            })
        };
        self.current = Some(to);
        Some(true)
    }

    /// Handles a trap from the current thread's user mode; `true` when it
    /// has already switched to the thread that runs next.
    pub fn trap(&mut self) -> bool {
        let Some(current) = self.current else {
            return false;
        };
        if let Some(switched) = self.fast_ipc::<false>(current) {
            return switched;
        }
        let Some(thread) = self.objects.threads.get(current) else {
            return false;
        };
        let context = *thread.context;
        match context.vector {
            SYSCALL_VECTOR => self.syscall(current),
            v if v == u64::from(arch::TIMER_VECTOR) => {
                self.tick();
                apic::end_of_interrupt();
            }
            v if v == u64::from(arch::SPURIOUS_VECTOR) => {}
            v if v == u64::from(arch::ERROR_VECTOR) => apic::end_of_interrupt(),
            v if is_link_vector(v) => self.link_interrupt(v as u8),
            14 => {
                let address = arch::read_cr2();
                let code = context.error_code;
                let mut rights = Rights::READ;
                if code & 2 != 0 {
                    rights = Rights::WRITE;
                }
                // Bit 4 (I/D) is only reported with NX on (SDM Vol. 3 4.7);
                // a fault at the instruction pointer is a fetch either way.
                if code & 16 != 0 || address == context.rip {
                    rights = Rights::EXECUTE;
                }
                self.fault_ipc(
                    current,
                    PAGE_FAULT_LABEL,
                    &[address, context.rip, rights.bits()],
                    "page fault",
                );
            }
            vector => {
                let words = [vector, context.error_code, context.rip, context.rsp];
                self.fault_ipc(current, EXCEPTION_LABEL, &words, "exception");
            }
        }
        false
    }

    /// Picks the thread to run and makes it current; `false` if none is
    /// ready (the caller idles).
    pub fn switch_to_next(&mut self) -> bool {
        let Some(index) = self.run_queues.current() else {
            self.current = None;
            return false;
        };
        let Some(id) = self.objects.threads.id_at(index) else {
            self.run_queues.remove(index);
            return false;
        };
        if self.current == Some(id) {
            // Still the same thread: its context, space and UTCB are loaded.
            return true;
        }
        let thread = self
            .objects
            .threads
            .get_mut(id)
            .expect("id_at names a live thread");
        let root = thread.space_root;
        let context: *mut Context = &mut *thread.context;
        // SAFETY: the context is boxed in a live thread, which stays alive
        // until the kernel is entered again; the space has the kernel half.
        let io = || io_ports(thread, &self.port_grants);
        // SAFETY: as above.
        unsafe { arch::set_current_context(context, root, thread.utcb_address, io) };
        self.current = Some(id);
        true
    }
}

/// Builds the kernel and the root task. `root_module` is the root task's
/// ELF; `modules` every boot module; `window` the free memory for the root
/// task (physical, page aligned).
pub fn boot(
    mut pool: FramePool,
    root_name: &str,
    modules: &[(&str, u64, u64)],
    window: (u64, u64),
    args: &str,
    platform: Platform,
) -> Result<(), &'static str> {
    let kernel_root = arch::read_cr3() & !0xFFF;
    let mut objects = Objects {
        threads: VersionedTable::new(4096),
        tasks: VersionedTable::new(1024),
        mappings: MappingDatabase::new(),
        pool: FramePool::new(0, 0),
        changes: Vec::new(),
    };
    let space = AddressSpace::new(&mut pool, kernel_root)
        .ok_or("no memory for the root task's page tables")?;
    objects.pool = pool;
    let root_task = objects
        .tasks
        .insert(Task { space })
        .map_err(|_| "cannot create the root task")?;

    // Pages of the root task, collected first so segments sharing a page
    // share its frame (rights are the union).
    let mut pages: BTreeMap<u64, (u64, Rights)> = BTreeMap::new();
    let (_, elf_phys, elf_length) = *modules
        .iter()
        .find(|(name, _, _)| *name == root_name)
        .ok_or("the root task's module is missing")?;
    // SAFETY: hvm placed the module in cell memory, direct mapped, and
    // nothing writes it.
    let elf = unsafe {
        core::slice::from_raw_parts(phys_to_virt(elf_phys) as *const u8, elf_length as usize)
    };
    let entry = loader::load_elf(elf, &mut objects.pool, &mut pages)?;
    let stack_rights = Rights::READ | Rights::WRITE;
    for page in (root_boot::ROOT_STACK_TOP - root_boot::ROOT_STACK_SIZE..root_boot::ROOT_STACK_TOP)
        .step_by(PAGE as usize)
    {
        let frame = objects
            .pool
            .allocate()
            .ok_or("no memory for the root stack")?;
        pages.insert(page, (frame, stack_rights));
    }
    let info_frame = objects
        .pool
        .allocate()
        .ok_or("no memory for the root boot page")?;
    pages.insert(root_boot::ROOT_BOOT_INFO, (info_frame, Rights::READ));
    let mut info = RootBootInfo {
        magic: root_boot::ROOT_BOOT_MAGIC,
        task: root_task.raw(),
        thread: 0,
        memory_base: root_boot::ROOT_MEMORY_BASE,
        memory_size: window.1 - window.0,
        memory_physical_base: window.0,
        module_count: 0,
        modules: [RootModule {
            name: [0; 32],
            address: 0,
            length: 0,
        }; root_boot::ROOT_MAX_MODULES],
        args_length: 0,
        args: [0; 256],
    };
    let mut module_address = root_boot::ROOT_MODULES_BASE;
    for (slot, (name, phys, length)) in info.modules.iter_mut().zip(modules) {
        let n = name.len().min(31);
        slot.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        slot.address = module_address + (phys % PAGE);
        slot.length = *length;
        let first = phys - phys % PAGE;
        let end = (phys + length).div_ceil(PAGE) * PAGE;
        for frame in (first..end).step_by(PAGE as usize) {
            pages.insert(module_address, (frame, Rights::READ));
            module_address += PAGE;
        }
        info.module_count += 1;
    }
    let n = args.len().min(256);
    info.args[..n].copy_from_slice(&args.as_bytes()[..n]);
    info.args_length = n as u64;
    for (address, (frame, rights)) in pages {
        objects
            .mappings
            .insert_root(root_task, address, frame, rights, &mut objects.changes)
            .map_err(|_| "mapping the root task failed")?;
    }
    // Full rights: the root task loads programs into this memory, and a
    // mapping passes on at most the rights its source has.
    for (i, frame) in (window.0..window.1).step_by(PAGE as usize).enumerate() {
        let address = root_boot::ROOT_MEMORY_BASE + i as u64 * PAGE;
        objects
            .mappings
            .insert_root(
                root_task,
                address,
                frame,
                Rights::FULL,
                &mut objects.changes,
            )
            .map_err(|_| "mapping free memory failed")?;
        if objects.changes.len() > 512 {
            objects.apply_changes();
        }
    }
    objects.apply_changes();

    let mut kernel = Kernel {
        objects,
        ipc: IpcEngine::new(),
        run_queues: RunQueues::new(),
        kernel_root,
        root_task,
        root_thread: ThreadId::NIL,
        current: None,
        ticks: 0,
        interrupts: [InterruptLine::NONE; INTERRUPT_LINES],
        platform,
        port_grants: PortGrants::new(),
    };
    let thread = kernel
        .create_thread(root_task, ThreadId::NIL, root_boot::ROOT_UTCB)
        .map_err(|_| "cannot create the root thread")?;
    kernel.root_thread = thread;
    info.thread = thread.raw();
    // SAFETY: the boot page is a fresh frame, direct mapped, one page.
    unsafe { core::ptr::write_unaligned(phys_to_virt(info_frame) as *mut RootBootInfo, info) };
    let t = kernel.thread(thread).expect("just created");
    *t.context = Context::user(entry, root_boot::ROOT_STACK_TOP);
    t.context.rdi = root_boot::ROOT_BOOT_INFO;
    t.halted = false;
    kernel.run_queues.make_ready(thread.index());
    kprintln!(
        "microkernel: root task `{}` started: {} KiB free memory, {} kernel frames left",
        root_name,
        (window.1 - window.0) / 1024,
        kernel.objects.pool.available()
    );
    *KERNEL.lock() = Some(kernel);
    Ok(())
}

/// Whether `vector` is one hvm injects for a link (no EOI: it never went
/// through the local APIC).
fn is_link_vector(vector: u64) -> bool {
    let first = u64::from(arch::LINK_VECTOR);
    (first..first + u64::from(root_boot::LINK_INTERRUPTS)).contains(&vector)
}

/// Runs the next ready thread, idling until one is ready.
pub fn run_next() {
    loop {
        if KERNEL.lock().as_mut().is_some_and(|k| k.switch_to_next()) {
            return;
        }
        arch::wait_for_interrupt();
    }
}

/// Entry from user mode (any vector); the context is already saved.
#[no_mangle]
extern "C" fn trap_from_user() {
    if let Some(kernel) = KERNEL.lock().as_mut() {
        if kernel.trap() || kernel.switch_to_next() {
            return;
        }
    }
    run_next();
}

/// Entry from kernel mode: interrupts while idling; anything else is a bug.
#[no_mangle]
extern "C" fn trap_from_kernel(frame: *mut Context) {
    // SAFETY: the stub passes the frame it just pushed on the kernel stack.
    let frame = unsafe { &*frame };
    match frame.vector {
        v if v == u64::from(arch::TIMER_VECTOR) => {
            if let Some(kernel) = KERNEL.lock().as_mut() {
                kernel.tick();
            }
            apic::end_of_interrupt();
        }
        v if v == u64::from(arch::SPURIOUS_VECTOR) => {}
        v if v == u64::from(arch::ERROR_VECTOR) => apic::end_of_interrupt(),
        v if is_link_vector(v) => {
            if let Some(kernel) = KERNEL.lock().as_mut() {
                kernel.link_interrupt(v as u8);
            }
        }
        vector => {
            panic!(
                "kernel exception {} (error {:#x}) at rip={:#x} cr2={:#x} cs={:#x} rsp={:#x} rflags={:#x} frame={:#x} rax={:#x} rcx={:#x} r11={:#x} ss={:#x}",
                vector,
                frame.error_code,
                frame.rip,
                arch::read_cr2(),
                frame.cs,
                frame.rsp,
                frame.rflags,
                frame as *const Context as u64,
                frame.rax,
                frame.rcx,
                frame.r11,
                frame.ss
            );
        }
    }
}
