//! Cases 11-12: a task destroyed under waiting threads; bad arguments.
//!
//! Case 11 blocks three threads on one thread of another task (awaiting
//! its reply, in a closed receive from it, queued sending to it) and
//! destroys that task: each must wake with `PartnerDestroyed` in the right
//! phase (ABI §9.2, §9.3), and the id must be stale afterwards.
//!
//! Case 12 feeds each kind of malformed argument the ABI names to the
//! kernel and checks the error code; the root thread must survive them
//! all. Calls that would change something if wrongly accepted are aimed
//! at a halted thread or at addresses that hold nothing.

use core::arch::asm;
use core::sync::atomic::Ordering;

use microkernel_abi::syscall::{ThreadStateFlags, KEEP};
use microkernel_abi::{
    Error, ExchangeControl, FromSpecifier, IpcError, KernelInfoSelector, Rights, Syscall, TaskId,
    ThreadId, Timeout, Timeouts, PAGE_SIZE, USER_ADDRESS_END,
};
use microkernel_rt::user::{
    ipc, kernel_info, receive, schedule, send, syscall, thread_create, thread_delete,
};

use crate::cases::Context;
use crate::console::{Failure, OrFail};
use crate::layout::{LOCAL_UTCB_END, STACK_SLOTS, TASK_UTCB_BASE, UNMAPPED_IN_KTEST, WINDOW};
use crate::programs::{
    sink, tag, waiter, WAITER_RESULTS, WAITER_TARGET, WAIT_CALL, WAIT_RECEIVE, WAIT_SEND,
};
use crate::threads::{
    root_thread, thread_state, wait_for_state, wait_until, Scope, WORKER_PRIORITY,
};

/// Case 11.
pub fn destroyed_partner(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    for result in &WAITER_RESULTS {
        result.store(u64::MAX, Ordering::Release);
    }
    let task = scope.task()?;
    // Takes the first message (the call) and never answers or receives
    // from anyone else again.
    let target = scope.remote(task, sink, 0, WORKER_PRIORITY)?;
    wait_for_state(utcb, target, ThreadStateFlags::RECEIVING, 1_000_000)?;
    WAITER_TARGET.store(target.raw(), Ordering::Release);
    let caller = scope.local(waiter, WAIT_CALL, WORKER_PRIORITY)?;
    wait_for_state(utcb, caller, ThreadStateFlags::RECEIVING, 1_000_000)?;
    let receiver = scope.local(waiter, WAIT_RECEIVE, WORKER_PRIORITY)?;
    wait_for_state(utcb, receiver, ThreadStateFlags::RECEIVING, 1_000_000)?;
    let sender = scope.local(waiter, WAIT_SEND, WORKER_PRIORITY)?;
    wait_for_state(utcb, sender, ThreadStateFlags::SENDING, 1_000_000)?;
    let results = || {
        WAITER_RESULTS
            .each_ref()
            .map(|result| result.load(Ordering::Acquire))
    };
    ensure!(
        results() == [u64::MAX; 3],
        "a waiter finished before the task was destroyed: {:x?}",
        results()
    );

    scope.destroy(task).or_fail("space_control(Destroy)")?;
    let woken = wait_until(utcb, 1_000_000, || {
        results().iter().all(|&result| result != u64::MAX)
    });
    ensure!(
        woken,
        "waiters still blocked 1 s after their partner's task was destroyed: {:x?} (u64::MAX = blocked)",
        results()
    );
    let expected = [
        (
            "call (awaiting the reply)",
            IpcError::receive(Error::PartnerDestroyed),
        ),
        ("closed receive", IpcError::receive(Error::PartnerDestroyed)),
        ("send (queued)", IpcError::send(Error::PartnerDestroyed)),
    ];
    let got = results();
    for ((what, error), status) in expected.iter().zip(got) {
        ensure!(
            status == error.status(),
            "the {what} woke with status {status:#x}, expected {:#x} ({error:?})",
            error.status()
        );
    }

    utcb.message_registers[0] = tag(0x11, 0, 0).raw();
    let stale = send(utcb, target, Timeout::Zero);
    ensure!(
        stale == Err(IpcError::send(Error::InvalidThread)),
        "a send to the destroyed thread returned {stale:?}, expected InvalidThread"
    );
    let state = thread_state(target);
    ensure!(
        state == Err(Error::InvalidThread),
        "exchange_registers on the destroyed thread returned {state:?}"
    );
    Ok(())
}

/// A system call with any number: returns RAX, the six argument registers
/// and R12..R15 as the kernel left them.
fn raw_syscall(number: u64, arguments: [u64; 6], high: [u64; 4]) -> (u64, [u64; 6], [u64; 4]) {
    let [mut rdi, mut rsi, mut rdx, mut r10, mut r8, mut r9] = arguments;
    let [mut r12, mut r13, mut r14, mut r15] = high;
    let status: u64;
    // SAFETY: the numbers this is used with name no system call, which the
    // kernel must refuse without effect (ABI §9); the register convention
    // is that of `microkernel_rt::user::syscall`, with R12..R15 passed in
    // and read back to check that they are preserved.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number => status,
            inout("rdi") rdi,
            inout("rsi") rsi,
            inout("rdx") rdx,
            inout("r10") r10,
            inout("r8") r8,
            inout("r9") r9,
            inout("r12") r12,
            inout("r13") r13,
            inout("r14") r14,
            inout("r15") r15,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (status, [rdi, rsi, rdx, r10, r8, r9], [r12, r13, r14, r15])
}

/// A known system call with arguments the kernel must refuse; returns its
/// error.
fn refused(number: Syscall, arguments: [u64; 6]) -> Result<(), Error> {
    // SAFETY: every use below passes an argument the ABI says is refused,
    // and aims the call at something where acceptance would change nothing
    // ktest relies on: a halted thread of the case, unmapped addresses, or
    // reads only (debug_write, kernel_info).
    let (status, _) = unsafe { syscall(number, arguments) };
    Error::check(status)
}

fn expect(
    what: impl core::fmt::Display,
    got: Result<(), Error>,
    expected: Error,
) -> Result<(), Failure> {
    ensure!(
        got == Err(expected),
        "{what}: returned {got:?}, expected {expected:?}"
    );
    Ok(())
}

/// Case 12.
pub fn bad_arguments(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    let root = root_thread();

    for number in [12u64, 13, 0x100, u64::MAX] {
        let high = [0x1212, 0x1313, 0x1414, 0x1515];
        let (status, registers, kept) = raw_syscall(number, [1, 2, 3, 4, 5, 6], high);
        expect(
            "an unknown system call number",
            Error::check(status),
            Error::InvalidSyscall,
        )?;
        ensure!(
            registers == [0; 6],
            "syscall {number:#x}: argument registers came back {registers:x?}, expected zeros"
        );
        ensure!(
            kept == high,
            "syscall {number:#x}: R12..R15 came back {kept:x?}"
        );
    }

    let bad_ranges = [
        (
            0xFFFF_8000_0000_0000,
            16,
            "debug_write from the kernel half",
        ),
        (
            0xFFFF_FFFF_8020_0000,
            16,
            "debug_write from the kernel image",
        ),
        (
            0x0000_8000_0000_0000,
            16,
            "debug_write from a non-canonical address",
        ),
        (UNMAPPED_IN_KTEST, 16, "debug_write from an unmapped page"),
        (
            USER_ADDRESS_END - 8,
            16,
            "debug_write across the end of user space",
        ),
        (u64::MAX - 7, 16, "debug_write of a wrapping range"),
    ];
    for (address, length, what) in bad_ranges {
        expect(
            what,
            refused(Syscall::DebugWrite, [address, length, 0, 0, 0, 0]),
            Error::BadAddress,
        )?;
    }
    let text = b"ktest";
    expect(
        "debug_write of 1025 bytes",
        refused(
            Syscall::DebugWrite,
            [text.as_ptr() as u64, 1025, 0, 0, 0, 0],
        ),
        Error::InvalidArgument,
    )?;

    let stale = scope.halted_local()?;
    scope.delete(stale).or_fail("deleting a halted thread")?;
    utcb.message_registers[0] = tag(0x12, 0, 0).raw();
    let never_used = ThreadId::new(ThreadId::MAX_INDEX, 1).unwrap_or(ThreadId::NIL);
    for (to, what) in [
        (stale, "a deleted thread"),
        (never_used, "an index never used"),
        (root, "the caller itself"),
        (ThreadId::interrupt(0), "an interrupt pseudo-thread"),
    ] {
        let result = send(utcb, to, Timeout::Zero);
        ensure!(
            result == Err(IpcError::send(Error::InvalidThread)),
            "send to {what} ({to:?}) returned {result:?}, expected a send-phase InvalidThread"
        );
    }
    let result = receive(utcb, FromSpecifier::Thread(stale), Timeout::Zero);
    ensure!(
        result == Err(IpcError::receive(Error::InvalidThread)),
        "receive from a deleted thread returned {result:?}, expected a receive-phase InvalidThread"
    );
    let nothing = Timeouts {
        send: Timeout::Zero,
        receive: Timeout::Zero,
    };
    let result = ipc(utcb, ThreadId::NIL, FromSpecifier::Nobody, nothing);
    ensure!(
        result == Ok(ThreadId::NIL),
        "ipc with nil to and from (no phases) returned {result:?}"
    );
    // SAFETY: the id is stale; a wrongly accepted delete hits no live
    // thread of ktest.
    let deleted_again = unsafe { thread_delete(stale) };
    expect(
        "deleting a deleted thread",
        deleted_again,
        Error::InvalidThread,
    )?;

    let own_task = TaskId::from_raw(
        kernel_info(KernelInfoSelector::CurrentTask).or_fail("kernel_info(task)")?,
    );
    for (task, address, what, error) in [
        (
            own_task,
            LOCAL_UTCB_END + 8,
            "a misaligned UTCB",
            Error::BadAddress,
        ),
        (
            own_task,
            0xFFFF_8000_0000_0000,
            "a kernel-half UTCB",
            Error::BadAddress,
        ),
        (
            own_task,
            USER_ADDRESS_END,
            "a UTCB above user space",
            Error::BadAddress,
        ),
        (
            TaskId::NIL,
            LOCAL_UTCB_END,
            "the nil task",
            Error::NoSuchTask,
        ),
    ] {
        // SAFETY: the UTCB addresses lie outside every range ktest uses
        // (`LOCAL_UTCB_END` is the first page above ktest's UTCB pages).
        let result = unsafe { thread_create(task, ThreadId::NIL, address) };
        if let Ok(thread) = result {
            // SAFETY: the thread was just created and never started.
            let _ = unsafe { thread_delete(thread) };
        }
        ensure!(
            result == Err(error),
            "thread_control(Create) with {what} returned {result:?}, expected {error:?}"
        );
    }
    // SAFETY: as above; the pager word is checked before anything is made.
    let result = unsafe { thread_create(own_task, ThreadId::ANY, LOCAL_UTCB_END) };
    if let Ok(thread) = result {
        // SAFETY: the thread was just created and never started.
        let _ = unsafe { thread_delete(thread) };
    }
    ensure!(
        result == Err(Error::InvalidThread),
        "thread_control(Create) with the pager ANY returned {result:?}, expected InvalidThread"
    );
    let task = scope.task()?;
    let utcb = TASK_UTCB_BASE + STACK_SLOTS * PAGE_SIZE;
    scope
        .halted_remote(task, utcb)
        .or_fail("thread_control(Create) in a new task")?;
    let twice = scope.halted_remote(task, utcb);
    ensure!(
        twice == Err(Error::AlreadyExists),
        "a second thread with the same UTCB address returned {twice:?}, expected AlreadyExists"
    );
    let root_destroyed = microkernel_rt::user::space_destroy(own_task);
    ensure!(
        root_destroyed == Err(Error::NotPermitted),
        "space_control(Destroy) of the root task returned {root_destroyed:?}, expected NotPermitted"
    );
    expect(
        "thread_control with operation 2",
        refused(Syscall::ThreadControl, [2, 0, 0, 0, 0, 0]),
        Error::InvalidArgument,
    )?;
    expect(
        "space_control with operation 7",
        refused(Syscall::SpaceControl, [7, 0, 0, 0, 0, 0]),
        Error::InvalidArgument,
    )?;

    let halted = scope.halted_local()?;
    let set_ip = ExchangeControl::SET_INSTRUCTION_POINTER.bits();
    let set_sp = ExchangeControl::SET_STACK_POINTER.bits();
    for (control, ip, sp, what, error) in [
        (
            set_ip,
            0x0000_8000_0000_0000,
            0,
            "a non-canonical instruction pointer",
            Error::BadAddress,
        ),
        (
            set_ip,
            0xFFFF_8000_0000_0000,
            0,
            "a kernel-half instruction pointer",
            Error::BadAddress,
        ),
        (
            set_ip,
            USER_ADDRESS_END,
            0,
            "an instruction pointer in the last page",
            Error::BadAddress,
        ),
        (
            set_sp,
            0,
            0x0000_8000_0000_0000,
            "a non-canonical stack pointer",
            Error::BadAddress,
        ),
        (
            ExchangeControl::HALT.bits() | ExchangeControl::RESUME.bits(),
            0,
            0,
            "HALT with RESUME",
            Error::InvalidArgument,
        ),
        (
            1 << 7,
            0,
            0,
            "an unknown control bit",
            Error::InvalidArgument,
        ),
    ] {
        expect(
            format_args!("exchange_registers with {what}"),
            refused(
                Syscall::ExchangeRegisters,
                [halted.raw(), control, ip, sp, 0, 0],
            ),
            error,
        )?;
    }
    let state = thread_state(halted).or_fail("reading the halted thread's state")?;
    ensure!(
        state.contains(ThreadStateFlags::HALTED),
        "the thread is no longer halted after refused exchange_registers: {state:?}"
    );

    expect(
        "kernel_info(99)",
        refused(Syscall::KernelInfo, [99, 0, 0, 0, 0, 0]),
        Error::InvalidArgument,
    )?;
    expect(
        "schedule with priority 256",
        refused(Syscall::Schedule, [halted.raw(), 256, KEEP, 0, 0, 0]),
        Error::InvalidArgument,
    )?;
    let short = schedule(halted, None, Some(50)).map(|_| ());
    expect(
        "schedule with a 50 us timeslice",
        short,
        Error::InvalidArgument,
    )?;
    let window = microkernel_abi::Fpage::new(WINDOW, 12, Rights::FULL).or_fail("window")?;
    expect(
        "unmap with flag bit 1",
        refused(Syscall::Unmap, [window.raw(), 2, 0, 0, 0, 0]),
        Error::InvalidArgument,
    )?;
    expect(
        "unmap of a flexpage with reserved bit 3",
        refused(Syscall::Unmap, [window.raw() | 8, 0, 0, 0, 0, 0]),
        Error::InvalidItem,
    )?;
    expect(
        "interrupt_control with operation 3",
        refused(Syscall::InterruptControl, [3, 0, 0, 0, 0, 0]),
        Error::InvalidArgument,
    )?;
    expect(
        "interrupt_control for interrupt 256",
        refused(Syscall::InterruptControl, [0, 256, root.raw(), 0, 0, 0]),
        Error::InvalidArgument,
    )?;

    let me = kernel_info(KernelInfoSelector::CurrentThread).or_fail("kernel_info after it all")?;
    ensure!(
        me == root.raw(),
        "kernel_info(CurrentThread) is {me:#x} after the bad calls"
    );
    Ok(())
}
