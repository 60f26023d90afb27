//! Cases 8-10: timer interrupts, round-robin preemption, priority order.
//!
//! The timer case makes the root thread the handler of `TIMER_INTERRUPT`
//! and checks each message as ABI §5 "Interrupts" describes it. The
//! scheduling cases observe the order in which threads ran through
//! counters and a log in ktest's memory (module `programs`), against the
//! rules of ABI §9.5: the first ready thread of the highest priority runs,
//! round robin within a priority, and a thread made ready at a higher
//! priority preempts at once.

use core::sync::atomic::Ordering;

use microkernel_abi::boot::{TIMER_INTERRUPT, TIMER_INTERRUPT_PERIOD_MICROSECONDS};
use microkernel_abi::syscall::ThreadStateFlags;
use microkernel_abi::{
    Error, FromSpecifier, IpcError, MessageTag, ThreadId, Timeout, Utcb, INTERRUPT_LABEL,
};
use microkernel_rt::user::{
    interrupt_acknowledge, interrupt_associate, interrupt_dissociate, receive, send,
};

use crate::cases::Context;
use crate::console::{Failure, OrFail};
use crate::programs::{
    order_logger, spinner, tag, wakeup_logger, ORDER_LOG, ORDER_LOG_LENGTH, ORDER_USED,
    SPIN_COUNTERS,
};
use crate::threads::{micros, now, root_thread, sleep, wait_for_state, Scope};

/// Interrupt messages the timer case takes.
const TICKS: u64 = 5;

fn receive_ticks(utcb: &mut Utcb) -> Result<(), Failure> {
    let source = ThreadId::interrupt(TIMER_INTERRUPT);
    let mut first = 0;
    for tick in 0..TICKS {
        let sender = receive(utcb, FromSpecifier::Thread(source), micros(200_000))
            .or_fail("waiting 200 ms for a timer interrupt message")?;
        if tick == 0 {
            first = now();
        }
        ensure!(
            sender == source,
            "message {tick} came from {sender:?}, expected {source:?}"
        );
        let message = MessageTag::from_raw(utcb.message_registers[0]);
        ensure!(
            message.label() == INTERRUPT_LABEL && message.is_from_kernel(),
            "message {tick}: tag {:#x}, expected INTERRUPT_LABEL with the KERNEL flag",
            message.raw()
        );
        ensure!(
            message.untyped() >= 1 && utcb.message_registers[1] == u64::from(TIMER_INTERRUPT),
            "message {tick}: {} words, MR1 = {:#x}, expected the interrupt number",
            message.untyped(),
            utcb.message_registers[1]
        );
        interrupt_acknowledge(TIMER_INTERRUPT).or_fail("interrupt_control(Acknowledge)")?;
    }
    // Messages 2..=TICKS come at distinct ticks after the first was taken.
    let span = now().saturating_sub(first);
    let least =
        (TICKS - 2) * TIMER_INTERRUPT_PERIOD_MICROSECONDS - TIMER_INTERRUPT_PERIOD_MICROSECONDS / 2;
    ensure!(
        span >= least,
        "{TICKS} timer messages within {span} us: more than one per tick"
    );
    Ok(())
}

/// Case 8.
pub fn timer_interrupt(context: &mut Context) -> Result<(), Failure> {
    let utcb = &mut *context.utcb;
    let root = root_thread();
    interrupt_associate(TIMER_INTERRUPT, root).or_fail("interrupt_control(Associate)")?;
    let ticks = receive_ticks(utcb);
    let again = interrupt_associate(TIMER_INTERRUPT, root);
    let dissociated = interrupt_dissociate(TIMER_INTERRUPT);
    ticks?;
    ensure!(
        again == Err(Error::AlreadyExists),
        "a second Associate returned {again:?}, expected AlreadyExists"
    );
    dissociated.or_fail("interrupt_control(Dissociate)")?;
    let late = receive(
        utcb,
        FromSpecifier::Thread(ThreadId::interrupt(TIMER_INTERRUPT)),
        micros(50_000),
    );
    ensure!(
        late == Err(IpcError::receive(Error::Timeout)),
        "after Dissociate a receive from the timer returned {late:?}, expected a Timeout"
    );
    Ok(())
}

/// Priority of the spinning threads: below the root's.
const SPIN_PRIORITY: u8 = 100;

/// Case 9: two threads that never enter the kernel, at one priority below
/// the root, both keep running while the root sleeps.
pub fn preemption_round_robin(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    for counter in &SPIN_COUNTERS {
        counter.store(0, Ordering::Release);
    }
    scope.local(spinner, 0, SPIN_PRIORITY)?;
    scope.local(spinner, 1, SPIN_PRIORITY)?;
    let counts = || {
        SPIN_COUNTERS
            .each_ref()
            .map(|counter| counter.load(Ordering::Acquire))
    };
    ensure!(
        counts() == [0, 0],
        "threads below the root's priority ran while the root was ready: {:?}",
        counts()
    );
    sleep(utcb, 100_000)?;
    let first = counts();
    ensure!(
        first[0] > 0 && first[1] > 0,
        "after 100 ms the spinners counted {first:?}: one never ran"
    );
    sleep(utcb, 100_000)?;
    let second = counts();
    ensure!(
        second[0] > first[0] && second[1] > first[1],
        "in a second 100 ms the spinners went from {first:?} to {second:?}: round robin stopped"
    );
    Ok(())
}

fn order_log() -> ([u64; ORDER_LOG_LENGTH], usize) {
    let used = ORDER_USED.load(Ordering::Acquire).min(ORDER_LOG_LENGTH);
    (
        ORDER_LOG
            .each_ref()
            .map(|entry| entry.load(Ordering::Acquire)),
        used,
    )
}

fn reset_order_log() {
    ORDER_USED.store(0, Ordering::Release);
    for entry in &ORDER_LOG {
        entry.store(0, Ordering::Release);
    }
}

fn check_log(expected: &[u64], when: &str) -> Result<(), Failure> {
    let (log, used) = order_log();
    ensure!(
        &log[..used] == expected,
        "{when}: threads ran in the order {:?}, expected {expected:?}",
        &log[..used]
    );
    Ok(())
}

/// Case 10.
pub fn priority_order(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;

    // Made ready together, lowest first: they must run highest first.
    reset_order_log();
    for priority in [110u8, 120, 127] {
        scope.local(order_logger, u64::from(priority), priority)?;
    }
    check_log(&[], "before the root blocked")?;
    sleep(utcb, 20_000)?;
    check_log(&[127, 120, 110], "three ready threads")?;

    // Woken by the root: a higher one at once, a lower one only when the
    // root blocks.
    reset_order_log();
    let high = scope.local(wakeup_logger, 200, 200)?;
    wait_for_state(utcb, high, ThreadStateFlags::RECEIVING, 1_000_000)?;
    let low = scope.local(wakeup_logger, 100, 100)?;
    wait_for_state(utcb, low, ThreadStateFlags::RECEIVING, 1_000_000)?;
    check_log(&[], "both waiting")?;
    utcb.message_registers[0] = tag(0x1F, 0, 0).raw();
    send(utcb, high, Timeout::Zero).or_fail("waking the priority-200 thread")?;
    check_log(&[200], "right after waking a higher-priority thread")?;
    utcb.message_registers[0] = tag(0x1F, 0, 0).raw();
    send(utcb, low, Timeout::Zero).or_fail("waking the priority-100 thread")?;
    check_log(&[200], "right after waking a lower-priority thread")?;
    sleep(utcb, 10_000)?;
    check_log(&[200, 100], "after the root blocked")?;
    Ok(())
}
