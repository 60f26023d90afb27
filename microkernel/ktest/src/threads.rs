//! Creating threads and tasks, starting them, and cleaning up after a case.
//!
//! Every thread ktest starts, in its own task or in one it created, begins
//! at the trampoline `ktest_thread_start` (module `entry`) on a fresh
//! stack. The trampoline looks its thread id up in the start table below
//! and calls the entry function with its argument. The table lives in
//! ktest's data, which the pager maps into created tasks, so a thread
//! there finds its entry the same way. A thread is created halted
//! (`thread_control(Create)`), given its priority (`schedule`) and started
//! with `exchange_registers(SET_INSTRUCTION_POINTER | SET_STACK_POINTER |
//! RESUME)` (ABI §9.2, §9.4).
//!
//! A [`Scope`] owns what one case creates: on drop it deletes its threads,
//! destroys its tasks and returns their frames, so a failed case cannot
//! leave a spinning thread behind to disturb the next one.
//!
//! Invariants:
//! - Only the root thread creates or deletes threads and tasks, so the
//!   start table has one writer; slots are still claimed with atomics
//!   because the pager and new threads read it concurrently.
//! - A start-table slot is written completely before its thread is
//!   resumed, and cleared only after the thread is deleted or its task
//!   destroyed.
//! - A UTCB address is never handed out twice (the ABI does not say when a
//!   deleted thread's UTCB page goes away).
//! - A local thread's stack returns to the allocator only after the kernel
//!   confirmed the thread's deletion.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use microkernel_abi::syscall::ThreadStateFlags;
use microkernel_abi::{
    Error, ExchangeControl, FromSpecifier, IpcError, KernelInfoSelector, TaskId, ThreadId, Timeout,
    Timeouts, Utcb, PAGE_SIZE,
};
use microkernel_rt::user::{
    current_utcb, exchange_registers, ipc_raw, kernel_info, receive, schedule, space_create,
    space_destroy, thread_create, thread_delete,
};

use crate::console::{Failure, OrFail};
use crate::frames::{FrameAllocator, FRAME_SIZE};
use crate::layout::{
    stack_top, LOCAL_STACK_FRAMES, LOCAL_UTCB_BASE, LOCAL_UTCB_END, STACK_SLOTS, TASK_UTCB_BASE,
};

/// What a started thread runs; it never returns (a thread cannot end
/// itself: it parks until the root thread deletes it).
pub type Entry = fn(u64) -> !;

/// The frames of the free-memory window.
pub static FRAMES: FrameAllocator = FrameAllocator::new();

static ROOT_THREAD: AtomicU64 = AtomicU64::new(0);
static ROOT_TASK: AtomicU64 = AtomicU64::new(0);
static PAGER_THREAD: AtomicU64 = AtomicU64::new(0);
static ANCHOR_THREAD: AtomicU64 = AtomicU64::new(0);
static NEXT_LOCAL_UTCB: AtomicU64 = AtomicU64::new(LOCAL_UTCB_BASE);

/// The root thread (the one the kernel started).
pub fn root_thread() -> ThreadId {
    ThreadId::from_raw(ROOT_THREAD.load(Ordering::Acquire))
}

/// The pager of every thread ktest starts (nil before setup).
pub fn pager_thread() -> ThreadId {
    ThreadId::from_raw(PAGER_THREAD.load(Ordering::Acquire))
}

/// A thread of ktest that is created but never started: it never sends,
/// so a receive from it is a sleep.
pub fn anchor_thread() -> ThreadId {
    ThreadId::from_raw(ANCHOR_THREAD.load(Ordering::Acquire))
}

/// ktest's own task.
pub fn root_task() -> TaskId {
    TaskId::from_raw(ROOT_TASK.load(Ordering::Acquire))
}

/// Records the root thread's and task's ids; called once, first thing.
pub fn set_root(thread: ThreadId, task: TaskId) {
    ROOT_THREAD.store(thread.raw(), Ordering::Release);
    ROOT_TASK.store(task.raw(), Ordering::Release);
}

struct StartSlot {
    thread: AtomicU64,
    task: AtomicU64,
    entry: AtomicUsize,
    argument: AtomicU64,
}

const START_SLOTS: usize = 64;

static START_TABLE: [StartSlot; START_SLOTS] = [const {
    StartSlot {
        thread: AtomicU64::new(0),
        task: AtomicU64::new(0),
        entry: AtomicUsize::new(0),
        argument: AtomicU64::new(0),
    }
}; START_SLOTS];

fn claim_start_slot(thread: ThreadId, task: TaskId, entry: Entry, argument: u64) -> bool {
    for slot in &START_TABLE {
        if slot
            .thread
            .compare_exchange(0, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            slot.task.store(task.raw(), Ordering::Relaxed);
            slot.entry.store(entry as usize, Ordering::Relaxed);
            slot.argument.store(argument, Ordering::Relaxed);
            // Publishes the fields above: readers match on `thread` first.
            slot.thread.store(thread.raw(), Ordering::Release);
            return true;
        }
    }
    false
}

fn find_slot(thread: ThreadId) -> Option<&'static StartSlot> {
    if !thread.is_thread() {
        return None;
    }
    START_TABLE
        .iter()
        .find(|slot| slot.thread.load(Ordering::Acquire) == thread.raw())
}

/// The task of a thread ktest started (`None` for others).
pub fn task_of(thread: ThreadId) -> Option<TaskId> {
    find_slot(thread).map(|slot| TaskId::from_raw(slot.task.load(Ordering::Relaxed)))
}

/// The entry and argument of a started thread.
pub fn start_of(thread: ThreadId) -> Option<(Entry, u64)> {
    let slot = find_slot(thread)?;
    let raw = slot.entry.load(Ordering::Relaxed);
    // SAFETY: `claim_start_slot` is the only writer of `entry`, and it
    // stores an `Entry` cast to `usize` before publishing the slot with the
    // Release store that `find_slot`'s Acquire load matched; fn pointers
    // and `usize` have the same size on x86-64.
    let entry = unsafe { core::mem::transmute::<usize, Entry>(raw) };
    Some((entry, slot.argument.load(Ordering::Relaxed)))
}

fn release_thread_slot(thread: ThreadId) {
    if let Some(slot) = find_slot(thread) {
        slot.thread.store(0, Ordering::Release);
    }
}

fn release_task_slots(task: TaskId) {
    for slot in &START_TABLE {
        let thread = slot.thread.load(Ordering::Acquire);
        if thread != 0 && thread != u64::MAX && slot.task.load(Ordering::Relaxed) == task.raw() {
            slot.thread.store(0, Ordering::Release);
        }
    }
}

/// The calling thread's UTCB as a Rust reference.
///
/// # Safety
///
/// Call at most once per thread, and reach the UTCB only through the
/// returned reference afterwards: two live `&mut Utcb` of one thread would
/// alias.
pub unsafe fn own_utcb() -> &'static mut Utcb {
    // SAFETY: the kernel maps each thread's UTCB page at its GS base for
    // the thread's lifetime and no other thread of ktest touches it; the
    // caller promises this is the only reference.
    unsafe { &mut *current_utcb() }
}

/// The calling thread's id, from its UTCB.
pub fn current_thread() -> ThreadId {
    // SAFETY: the kernel wrote `thread_id` into this thread's UTCB at
    // creation and never changes it; a volatile read of one word does not
    // create a reference that could alias the thread's own `&mut Utcb`.
    let raw = unsafe { core::ptr::addr_of!((*current_utcb()).thread_id).read_volatile() };
    ThreadId::from_raw(raw)
}

/// Blocks the calling thread for good (until the root deletes it).
pub fn park() -> ! {
    loop {
        let mut registers = [0u64; 7];
        let timeouts = Timeouts {
            send: Timeout::Zero,
            receive: Timeout::Never,
        };
        // SAFETY: a receive-only IPC from the anchor, a thread that never
        // runs and so never sends: nothing is delivered, so neither the
        // receive window nor buffers nor message registers are written.
        // The UTCB pointer is the caller's own (gs:[0]).
        let _ = unsafe {
            ipc_raw(
                current_utcb(),
                ThreadId::NIL,
                FromSpecifier::from_thread_id(anchor_thread()),
                timeouts,
                &mut registers,
            )
        };
        // Only reached if the kernel woke the thread anyway: do not spin.
        microkernel_rt::user::yield_now();
    }
}

/// Microseconds on the kernel's clock (0 if it cannot be read).
pub fn now() -> u64 {
    kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0)
}

/// A relative timeout.
pub const fn micros(microseconds: u32) -> Timeout {
    Timeout::Relative { microseconds }
}

/// How long a case waits for something that should happen at once.
pub const PATIENCE: Timeout = micros(2_000_000);

/// Send and receive both limited by [`PATIENCE`].
pub const PATIENT: Timeouts = Timeouts {
    send: PATIENCE,
    receive: PATIENCE,
};

/// Blocks the caller for `microseconds` by receiving from the anchor.
pub fn sleep(utcb: &mut Utcb, microseconds: u32) -> Result<(), Failure> {
    match receive(
        utcb,
        FromSpecifier::Thread(anchor_thread()),
        micros(microseconds),
    ) {
        Err(error) if error == IpcError::receive(Error::Timeout) => Ok(()),
        other => fail!("sleeping (receive from a thread that never sends) returned {other:?}"),
    }
}

/// What `exchange_registers` with an empty control word reports.
pub fn thread_state(thread: ThreadId) -> Result<ThreadStateFlags, Error> {
    // SAFETY: an empty control word only reads the thread's state.
    let registers =
        unsafe { exchange_registers(thread, ExchangeControl::empty(), 0, 0, ThreadId::NIL) }?;
    Ok(registers.state)
}

/// Polls until `thread` is blocked with `flag` (1 ms steps, at most about
/// `microseconds`).
pub fn wait_for_state(
    utcb: &mut Utcb,
    thread: ThreadId,
    flag: ThreadStateFlags,
    microseconds: u64,
) -> Result<(), Failure> {
    let start = now();
    loop {
        let state = thread_state(thread).or_fail("exchange_registers (read state)")?;
        if state.contains(flag) {
            return Ok(());
        }
        if now().saturating_sub(start) > microseconds {
            fail!("thread {thread:?} never reached state {flag:?} (now {state:?})");
        }
        sleep(utcb, 1_000)?;
    }
}

/// The trampoline's address: where every started thread begins.
pub fn trampoline() -> u64 {
    crate::entry::ktest_thread_start as *const () as u64
}

/// Gives a created, halted thread its priority and starts it at the
/// trampoline with `stack_top` as its stack pointer.
fn start(thread: ThreadId, stack_top: u64, priority: u8) -> Result<(), Failure> {
    schedule(thread, Some(priority), None).or_fail("schedule (new thread)")?;
    let control = ExchangeControl::SET_INSTRUCTION_POINTER
        | ExchangeControl::SET_STACK_POINTER
        | ExchangeControl::RESUME;
    // SAFETY: the thread is new and halted; it starts at the trampoline on
    // a stack that nothing else uses (a fresh local stack, or a stack slot
    // of its own in a created task), and its start slot is filled.
    unsafe { exchange_registers(thread, control, trampoline(), stack_top, ThreadId::NIL) }
        .or_fail("exchange_registers (start)")?;
    Ok(())
}

/// Creates the pager and the anchor, the threads every case relies on.
pub fn setup(pager_entry: Entry, pager_priority: u8) -> Result<(), Failure> {
    let own_task = root_task();
    let anchor = create_local(ThreadId::NIL)?;
    ANCHOR_THREAD.store(anchor.raw(), Ordering::Release);
    let stack = FRAMES
        .allocate(LOCAL_STACK_FRAMES)
        .ok_or_else(|| Failure::from_arguments(format_args!("no frames for the pager stack")))?;
    let pager = create_local(ThreadId::NIL)?;
    ensure!(
        claim_start_slot(pager, own_task, pager_entry, 0),
        "start table full"
    );
    PAGER_THREAD.store(pager.raw(), Ordering::Release);
    start(
        pager,
        stack + LOCAL_STACK_FRAMES as u64 * FRAME_SIZE,
        pager_priority,
    )
}

/// Creates a halted thread in ktest's own task with a fresh UTCB page.
fn create_local(pager: ThreadId) -> Result<ThreadId, Failure> {
    let utcb = NEXT_LOCAL_UTCB.fetch_add(PAGE_SIZE, Ordering::Relaxed);
    ensure!(utcb < LOCAL_UTCB_END, "out of UTCB addresses");
    let task = root_task();
    // SAFETY: `utcb` comes from a range above the root UTCB that ktest
    // uses for nothing else and hands out once, so the page the kernel maps
    // there holds no memory of ktest.
    unsafe { thread_create(task, pager, utcb) }.or_fail("thread_control(Create) in ktest")
}

struct LocalThread {
    id: ThreadId,
    /// First page of its stack; 0 for a thread that was never started.
    stack: u64,
}

struct TaskRecord {
    id: TaskId,
    next_slot: u64,
    destroyed: bool,
}

/// A task created in a [`Scope`].
#[derive(Clone, Copy, Debug)]
pub struct TaskHandle(usize);

const SCOPE_THREADS: usize = 16;
const SCOPE_TASKS: usize = 4;
const SCOPE_FRAMES: usize = 8;

/// What one case created; released on drop.
pub struct Scope {
    threads: [Option<LocalThread>; SCOPE_THREADS],
    tasks: [Option<TaskRecord>; SCOPE_TASKS],
    frames: [Option<u64>; SCOPE_FRAMES],
}

impl Scope {
    /// Nothing created yet.
    pub fn new() -> Scope {
        Scope {
            threads: [const { None }; SCOPE_THREADS],
            tasks: [const { None }; SCOPE_TASKS],
            frames: [None; SCOPE_FRAMES],
        }
    }

    fn keep_thread(&mut self, thread: LocalThread) -> Result<(), Failure> {
        match self.threads.iter_mut().find(|entry| entry.is_none()) {
            Some(entry) => {
                *entry = Some(thread);
                Ok(())
            }
            None => fail!("a case created more than {SCOPE_THREADS} threads"),
        }
    }

    /// A thread in ktest's own task, created and never started.
    pub fn halted_local(&mut self) -> Result<ThreadId, Failure> {
        let id = create_local(pager_thread())?;
        self.keep_thread(LocalThread { id, stack: 0 })?;
        Ok(id)
    }

    /// A thread in ktest's own task running `entry(argument)`.
    pub fn local(
        &mut self,
        entry: Entry,
        argument: u64,
        priority: u8,
    ) -> Result<ThreadId, Failure> {
        let stack = FRAMES
            .allocate(LOCAL_STACK_FRAMES)
            .ok_or_else(|| Failure::from_arguments(format_args!("out of frames for a stack")))?;
        let id = match create_local(pager_thread()) {
            Ok(id) => id,
            Err(failure) => {
                FRAMES.free(stack, LOCAL_STACK_FRAMES);
                return Err(failure);
            }
        };
        self.keep_thread(LocalThread { id, stack })?;
        ensure!(
            claim_start_slot(id, root_task(), entry, argument),
            "start table full"
        );
        start(id, stack + LOCAL_STACK_FRAMES as u64 * FRAME_SIZE, priority)?;
        Ok(id)
    }

    /// A new, empty task.
    pub fn task(&mut self) -> Result<TaskHandle, Failure> {
        let Some(index) = self.tasks.iter().position(|task| task.is_none()) else {
            fail!("a case created more than {SCOPE_TASKS} tasks");
        };
        let id = space_create().or_fail("space_control(Create)")?;
        self.tasks[index] = Some(TaskRecord {
            id,
            next_slot: 0,
            destroyed: false,
        });
        Ok(TaskHandle(index))
    }

    /// The id of a task of this scope.
    pub fn task_id(&self, task: TaskHandle) -> TaskId {
        self.tasks[task.0]
            .as_ref()
            .map_or(TaskId::NIL, |record| record.id)
    }

    /// A thread in `task` running `entry(argument)`, paged by ktest's pager.
    pub fn remote(
        &mut self,
        task: TaskHandle,
        entry: Entry,
        argument: u64,
        priority: u8,
    ) -> Result<ThreadId, Failure> {
        self.remote_with_pager(task, entry, argument, priority, pager_thread())
    }

    /// A thread in `task` with its UTCB at `utcb`, created and never
    /// started; it goes with its task. Returns the kernel's answer as is.
    /// `utcb` must lie above the UTCB pages of the task's stack slots.
    pub fn halted_remote(&mut self, task: TaskHandle, utcb: u64) -> Result<ThreadId, Error> {
        let id = self.task_id(task);
        // SAFETY: the task is not ktest's own, so no memory of ktest is at
        // `utcb`.
        unsafe { thread_create(id, ThreadId::NIL, utcb) }
    }

    /// A thread in `task` running `entry(argument)` with the given pager.
    pub fn remote_with_pager(
        &mut self,
        task: TaskHandle,
        entry: Entry,
        argument: u64,
        priority: u8,
        pager: ThreadId,
    ) -> Result<ThreadId, Failure> {
        let Some(record) = self.tasks[task.0].as_mut() else {
            fail!("no such task in this case");
        };
        let slot = record.next_slot;
        ensure!(
            slot < STACK_SLOTS,
            "out of stack slots in task {:?}",
            record.id
        );
        record.next_slot += 1;
        let utcb = TASK_UTCB_BASE + slot * PAGE_SIZE;
        // SAFETY: the task is not ktest's own, so no memory of ktest is at
        // `utcb`; the address is fresh in that task.
        let id = unsafe { thread_create(record.id, pager, utcb) }
            .or_fail("thread_control(Create) in a created task")?;
        ensure!(
            claim_start_slot(id, record.id, entry, argument),
            "start table full"
        );
        start(id, stack_top(slot), priority)?;
        Ok(id)
    }

    /// A zeroed page of the free-memory window, returned when the scope
    /// ends (after its tasks are gone, so nobody else maps it any more).
    pub fn frame(&mut self) -> Result<u64, Failure> {
        let Some(index) = self.frames.iter().position(|frame| frame.is_none()) else {
            fail!("a case took more than {SCOPE_FRAMES} frames");
        };
        let Some(frame) = FRAMES.allocate(1) else {
            fail!("out of frames");
        };
        // SAFETY: the allocator handed this page of the read/write window
        // to this scope alone; no Rust object lives there.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, FRAME_SIZE as usize) };
        self.frames[index] = Some(frame);
        Ok(frame)
    }

    /// Deletes a local thread of this scope now.
    pub fn delete(&mut self, thread: ThreadId) -> Result<(), Error> {
        for entry in self.threads.iter_mut() {
            if entry.as_ref().is_some_and(|local| local.id == thread) {
                if let Some(local) = entry.take() {
                    return delete_local(local);
                }
            }
        }
        Err(Error::InvalidThread)
    }

    /// Destroys a task of this scope now.
    pub fn destroy(&mut self, task: TaskHandle) -> Result<(), Error> {
        match self.tasks[task.0].as_mut() {
            Some(record) if !record.destroyed => {
                space_destroy(record.id)?;
                record.destroyed = true;
                release_task_slots(record.id);
                crate::pager::release_task_frames(record.id);
                Ok(())
            }
            _ => Err(Error::NoSuchTask),
        }
    }
}

fn delete_local(thread: LocalThread) -> Result<(), Error> {
    // SAFETY: threads of a scope run only the programs of this crate, which
    // keep no lock and no borrow of anything outside their own stack that
    // could outlive them; the stack is reused only after the kernel
    // confirmed the deletion.
    unsafe { thread_delete(thread.id) }?;
    release_thread_slot(thread.id);
    if thread.stack != 0 {
        FRAMES.free(thread.stack, LOCAL_STACK_FRAMES);
    }
    Ok(())
}

impl Drop for Scope {
    fn drop(&mut self) {
        for entry in self.threads.iter_mut() {
            if let Some(thread) = entry.take() {
                let id = thread.id;
                if let Err(error) = delete_local(thread) {
                    say!("ktest: note: deleting thread {id:?} failed: {error:?}");
                }
            }
        }
        let mut all_destroyed = true;
        for index in 0..SCOPE_TASKS {
            if self.tasks[index]
                .as_ref()
                .is_some_and(|record| !record.destroyed)
            {
                if let Err(error) = self.destroy(TaskHandle(index)) {
                    say!("ktest: note: destroying a task failed: {error:?}");
                    all_destroyed = false;
                }
            }
        }
        if !all_destroyed {
            // A surviving task may still map the frames: never reuse them.
            return;
        }
        for frame in self.frames.iter_mut() {
            if let Some(frame) = frame.take() {
                FRAMES.free(frame, 1);
            }
        }
    }
}

/// Priority of the threads cases start: just above the root thread, so a
/// started thread runs until it blocks before the root goes on.
pub const WORKER_PRIORITY: u8 = microkernel_abi::syscall::DEFAULT_PRIORITY + 1;

/// Polls `condition` every millisecond for at most about `microseconds`;
/// returns whether it became true.
pub fn wait_until(utcb: &mut Utcb, microseconds: u64, condition: impl Fn() -> bool) -> bool {
    let start = now();
    loop {
        if condition() {
            return true;
        }
        if now().saturating_sub(start) > microseconds || sleep(utcb, 1_000).is_err() {
            return condition();
        }
    }
}
