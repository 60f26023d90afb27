//! Cases 1-3b: call and reply, timeouts, receive from any, fast-path edges.
//!
//! Call/reply runs against the echo server (label + 1, every word
//! inverted) in ktest's own task and in another task, with ten words so
//! that MR7 onward travel through the UTCB. Timeouts are measured on the
//! kernel's clock. The open receive must report each sender's id and take
//! queued senders first come, first served (ABI §9.1).

use core::sync::atomic::Ordering;

use microkernel_abi::syscall::ThreadStateFlags;
use microkernel_abi::{Error, FromSpecifier, IpcError, MessageTag, ThreadId, Timeout, Timeouts};
use microkernel_rt::user::{call, ipc, receive, send};

use crate::cases::Context;
use crate::console::{Failure, OrFail};
use crate::programs::{
    echo_server, echo_word, order_logger, parked, sender, sink, spinner, tag, ORDER_LOG,
    ORDER_USED, SENDER_LABEL, SEND_RESULTS,
};
use crate::threads::{
    micros, now, sleep, wait_for_state, wait_until, Scope, PATIENCE, PATIENT, WORKER_PRIORITY,
};

const ECHO_WORDS: usize = 10;

fn echo_request_word(round: u64, index: usize) -> u64 {
    (round << 40) | (index as u64 * 0x1111) | 0xA000_0000
}

/// Three calls to `server`, each checked word by word.
fn echo_rounds(context: &mut Context, server: ThreadId) -> Result<(), Failure> {
    for round in 0..3u64 {
        let label = 0x100 + round;
        let registers = &mut context.utcb.message_registers;
        registers[0] = tag(label, ECHO_WORDS, 0).raw();
        for (index, register) in registers
            .iter_mut()
            .enumerate()
            .take(ECHO_WORDS + 1)
            .skip(1)
        {
            *register = echo_request_word(round, index);
        }
        let result = call(context.utcb, server, PATIENT);
        let registers = &context.utcb.message_registers;
        ensure!(
            result.is_ok(),
            "call round {round} to {server:?}: {result:?}"
        );
        let reply = MessageTag::from_raw(registers[0]);
        ensure!(
            reply.label() == label + 1 && reply.untyped() == ECHO_WORDS && reply.typed() == 0,
            "round {round}: reply tag {:#x}, expected label {:#x} with {ECHO_WORDS} words",
            reply.raw(),
            label + 1
        );
        ensure!(
            !reply.is_from_kernel(),
            "round {round}: a thread's reply carries the KERNEL flag"
        );
        for (index, &word) in registers.iter().enumerate().take(ECHO_WORDS + 1).skip(1) {
            let expected = echo_word(echo_request_word(round, index));
            ensure!(
                word == expected,
                "round {round}: MR{index} came back {word:#x}, expected {expected:#x}"
            );
        }
    }
    Ok(())
}

/// Case 1a: call/reply with a server thread of ktest's own task.
pub fn call_reply_same_task(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let server = scope.local(echo_server, 0, WORKER_PRIORITY)?;
    echo_rounds(context, server)
}

/// Case 1b: call/reply with a server thread in another address space.
pub fn call_reply_cross_task(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let task = scope.task()?;
    let server = scope.remote(task, echo_server, 0, WORKER_PRIORITY)?;
    echo_rounds(context, server)
}

/// Runs `operation` and returns its result and the microseconds it took.
fn timed<T>(operation: impl FnOnce() -> T) -> (T, u64) {
    let before = now();
    let result = operation();
    (result, now().saturating_sub(before))
}

/// Case 2: receive and send timeouts fire, and not early.
pub fn timeouts(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    let silent = scope.halted_local()?;

    let (result, elapsed) = timed(|| receive(utcb, FromSpecifier::Thread(silent), micros(20_000)));
    ensure!(
        result == Err(IpcError::receive(Error::Timeout)),
        "receive from a thread that never sends: {result:?}, expected a receive-phase Timeout"
    );
    ensure!(
        elapsed >= 20_000,
        "a 20000 us receive timeout fired after {elapsed} us"
    );
    ensure!(
        elapsed < 1_000_000,
        "a 20000 us receive timeout fired only after {elapsed} us"
    );

    utcb.message_registers[0] = tag(0x71, 0, 0).raw();
    let result = send(utcb, silent, Timeout::Zero);
    ensure!(
        result == Err(IpcError::send(Error::Timeout)),
        "send with zero timeout to a halted thread: {result:?}, expected a send-phase Timeout"
    );

    utcb.message_registers[0] = tag(0x72, 0, 0).raw();
    let (result, elapsed) = timed(|| send(utcb, silent, micros(15_000)));
    ensure!(
        result == Err(IpcError::send(Error::Timeout)),
        "send with a 15000 us timeout to a halted thread: {result:?}"
    );
    ensure!(
        elapsed >= 15_000,
        "a 15000 us send timeout fired after {elapsed} us"
    );

    // Blocked, but in a closed receive from someone else.
    let busy = scope.local(parked, 0, WORKER_PRIORITY)?;
    wait_for_state(utcb, busy, ThreadStateFlags::RECEIVING, 1_000_000)?;
    utcb.message_registers[0] = tag(0x73, 0, 0).raw();
    let result = send(utcb, busy, Timeout::Zero);
    ensure!(
        result == Err(IpcError::send(Error::Timeout)),
        "send with zero timeout to a thread receiving from another: {result:?}"
    );

    // A call whose server takes the message and never answers: the send
    // phase completes, the receive phase times out.
    let deaf = scope.local(sink, 0, WORKER_PRIORITY)?;
    wait_for_state(utcb, deaf, ThreadStateFlags::RECEIVING, 1_000_000)?;
    utcb.message_registers[0] = tag(0x74, 0, 0).raw();
    let timeouts = Timeouts {
        send: PATIENCE,
        receive: micros(20_000),
    };
    let (result, elapsed) = timed(|| ipc(utcb, deaf, FromSpecifier::Thread(deaf), timeouts));
    ensure!(
        result == Err(IpcError::receive(Error::Timeout)),
        "call to a server that never replies: {result:?}, expected a receive-phase Timeout"
    );
    ensure!(
        elapsed >= 20_000,
        "a call's 20000 us receive timeout fired after {elapsed} us"
    );
    Ok(())
}

/// Case 3: an open receive takes two queued senders in arrival order and
/// reports who each was.
pub fn receive_from_any(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    for result in &SEND_RESULTS {
        result.store(u64::MAX, Ordering::Release);
    }
    let first = scope.local(sender, 0, WORKER_PRIORITY)?;
    wait_for_state(utcb, first, ThreadStateFlags::SENDING, 1_000_000)?;
    let second = scope.local(sender, 1, WORKER_PRIORITY)?;
    wait_for_state(utcb, second, ThreadStateFlags::SENDING, 1_000_000)?;
    for (index, expected) in [first, second].into_iter().enumerate() {
        let from = receive(utcb, FromSpecifier::Any, PATIENCE)
            .or_fail("open receive with two senders queued")?;
        ensure!(
            from == expected,
            "open receive #{index} reported sender {from:?}, expected {expected:?}"
        );
        let message = MessageTag::from_raw(utcb.message_registers[0]);
        ensure!(
            message.label() == SENDER_LABEL && message.untyped() == 2,
            "open receive #{index}: tag {:#x}",
            message.raw()
        );
        ensure!(
            utcb.message_registers[1] == expected.raw()
                && utcb.message_registers[2] == index as u64,
            "open receive #{index}: words {:#x} {:#x}, expected {:#x} {index}",
            utcb.message_registers[1],
            utcb.message_registers[2],
            expected.raw()
        );
    }
    let delivered = wait_until(utcb, 1_000_000, || {
        SEND_RESULTS
            .iter()
            .all(|result| result.load(Ordering::Acquire) == 0)
    });
    ensure!(
        delivered,
        "the senders' send phases ended with {:#x} and {:#x}, expected success",
        SEND_RESULTS[0].load(Ordering::Acquire),
        SEND_RESULTS[1].load(Ordering::Acquire)
    );
    Ok(())
}

/// Case 3b: the fast path's edges. A call to a waiting partner that is not
/// the thread the scheduler picks next (a ready thread of higher priority
/// than the partner runs first), a call to a partner that waits, but for
/// another thread (a closed receive), and a call to a partner that is
/// running but not receiving (it was preempted); the general path refuses
/// the last two with a send-phase timeout.
pub fn fast_path_edges(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    let task = scope.task()?;
    let server = scope.remote(task, echo_server, 0, 110)?;
    wait_for_state(utcb, server, ThreadStateFlags::RECEIVING, 1_000_000)?;
    ORDER_USED.store(0, Ordering::Release);
    for entry in &ORDER_LOG {
        entry.store(0, Ordering::Release);
    }
    scope.local(order_logger, 120, 120)?;
    ensure!(
        ORDER_USED.load(Ordering::Acquire) == 0,
        "a thread below the root's priority ran while the root was ready"
    );
    utcb.message_registers[0] = tag(0x3B, 1, 0).raw();
    utcb.message_registers[1] = 0x1234;
    let result = call(utcb, server, PATIENT);
    ensure!(result.is_ok(), "call to a waiting server: {result:?}");
    ensure!(
        utcb.message_registers[1] == echo_word(0x1234),
        "the reply's MR1 is {:#x}, expected {:#x}",
        utcb.message_registers[1],
        echo_word(0x1234)
    );
    let used = ORDER_USED.load(Ordering::Acquire);
    ensure!(
        used == 1 && ORDER_LOG[0].load(Ordering::Acquire) == 120,
        "the priority-120 thread did not run before the priority-110 server \
         answered ({used} log entries)"
    );

    // Receiving, but from another thread: not a partner for the root.
    let asleep = scope.remote(task, parked, 0, 110)?;
    wait_for_state(utcb, asleep, ThreadStateFlags::RECEIVING, 1_000_000)?;
    utcb.message_registers[0] = tag(0x3D, 1, 0).raw();
    let timeouts = Timeouts {
        send: Timeout::Zero,
        receive: PATIENCE,
    };
    let result = ipc(utcb, asleep, FromSpecifier::Thread(asleep), timeouts);
    ensure!(
        result == Err(IpcError::send(Error::Timeout)),
        "call with a zero send timeout to a thread waiting for another: {result:?}"
    );

    let busy = scope.local(spinner, 0, 100)?;
    // The root sleeps, the spinner runs and is preempted when the root wakes.
    sleep(utcb, 10_000)?;
    utcb.message_registers[0] = tag(0x3C, 0, 0).raw();
    let timeouts = Timeouts {
        send: Timeout::Zero,
        receive: PATIENCE,
    };
    let result = ipc(utcb, busy, FromSpecifier::Thread(busy), timeouts);
    ensure!(
        result == Err(IpcError::send(Error::Timeout)),
        "call with a zero send timeout to a preempted, running thread: {result:?}"
    );
    Ok(())
}
