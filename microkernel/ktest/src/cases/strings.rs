//! Case 4: string items copied across address spaces, and their failures.
//!
//! The string agent (module `programs`) runs in another task. Round 1 sends
//! it 300 bytes into a 512-byte buffer; it answers with their sum and a
//! string of the bytes XOR 0x5A into ktest's receive buffer, so both copy
//! directions are compared byte for byte. Round 2 finds its buffer
//! unmapped: both sides must fail with `StringFault` and `error_detail`
//! must name the buffer (ABI §6.2). Round 3 offers 16 bytes for 300:
//! `MessageTooLong` on both sides. Round 4 sends two strings to the
//! waiting agent's two buffers (the fast path's two-item case): each lands
//! whole in its own buffer.

use microkernel_abi::utcb::ReceiveBuffer;
use microkernel_abi::{
    Error, FromSpecifier, IpcError, MessageTag, StringItem, ThreadId, Timeout, Timeouts, TypedItem,
    Utcb,
};
use microkernel_rt::user::{ipc_with_items, receive};
use microkernel_rt::utcb::ReceiveTargets;

use crate::cases::Context;
use crate::console::{Failure, OrFail};
use crate::layout::UNMAPPED;
use crate::programs::{
    string_agent, tag, STRING_BUFFER, STRING_BUFFER_LENGTH, STRING_ECHO, STRING_REPORT,
    STRING_REQUEST, STRING_XOR,
};
use crate::threads::{root_thread, Scope, PATIENCE, PATIENT, WORKER_PRIORITY};

const LENGTH: u64 = 300;

fn pattern(index: u64) -> u8 {
    (index * 7 + 3) as u8
}

/// Puts a one-string-item request for `source` in the message registers.
fn put_request(utcb: &mut Utcb, source: u64) {
    utcb.message_registers[0] = tag(STRING_REQUEST, 0, 2).raw();
    let item = TypedItem::String(StringItem {
        address: source,
        length: LENGTH,
    });
    utcb.message_registers[1..3].copy_from_slice(&item.encode());
}

/// Receives the agent's `STRING_REPORT`; returns (status word, error_detail).
fn agent_report(utcb: &mut Utcb, agent: ThreadId, round: u32) -> Result<(u64, u64), Failure> {
    receive(utcb, FromSpecifier::Thread(agent), PATIENCE)
        .or_fail("waiting for the string agent's report")?;
    let report = MessageTag::from_raw(utcb.message_registers[0]);
    ensure!(
        report.label() == STRING_REPORT && report.untyped() == 2,
        "round {round}: the agent sent tag {:#x}, expected its report",
        report.raw()
    );
    Ok((utcb.message_registers[1], utcb.message_registers[2]))
}

fn in_unmapped_buffer(address: u64) -> bool {
    (UNMAPPED..UNMAPPED + STRING_BUFFER_LENGTH).contains(&address)
}

/// Case 4.
pub fn string_copy(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    let task = scope.task()?;
    let agent = scope.remote(task, string_agent, root_thread().raw(), WORKER_PRIORITY)?;
    let source = scope.frame()?;
    let answer = scope.frame()?;
    let mut sum = 0u64;
    for index in 0..LENGTH {
        // SAFETY: `source` is a frame lent to this case alone; no Rust
        // object lives there.
        unsafe { ((source + index) as *mut u8).write_volatile(pattern(index)) };
        sum += u64::from(pattern(index));
    }

    // Round 1: a string each way.
    let buffer = ReceiveBuffer {
        address: answer,
        length: 4096,
    };
    // SAFETY: `answer` is a frame lent to this case alone that no Rust
    // object uses; it is read only with volatile reads after the IPC, and
    // the buffer is withdrawn right after the call.
    unsafe { utcb.set_receive_buffer(0, buffer) };
    put_request(utcb, source);
    // SAFETY: the message holds one string item of a frame of this case,
    // which the kernel only reads; the receive buffer is set up above.
    let result = unsafe { ipc_with_items(utcb, agent, FromSpecifier::Thread(agent), PATIENT) };
    utcb.clear_receive_targets();
    ensure!(
        result.is_ok(),
        "round 1 (300 bytes into a 512-byte buffer in another task): {result:?}"
    );
    let reply = MessageTag::from_raw(utcb.message_registers[0]);
    if reply.label() == STRING_REPORT {
        fail!(
            "round 1: the agent's receive failed with status {:#x}",
            utcb.message_registers[1]
        );
    }
    ensure!(
        reply.label() == STRING_ECHO && reply.untyped() == 3 && reply.typed() == 2,
        "round 1: reply tag {:#x}",
        reply.raw()
    );
    let words = &utcb.message_registers;
    ensure!(
        words[1] == sum,
        "round 1: the agent's bytes sum to {}, sent {sum}",
        words[1]
    );
    ensure!(
        words[2] == STRING_BUFFER && words[3] == LENGTH,
        "round 1: the agent saw the item as ({:#x}, {}), expected ({STRING_BUFFER:#x}, {LENGTH})",
        words[2],
        words[3]
    );
    let received = TypedItem::decode([words[4], words[5]]);
    let expected = TypedItem::String(StringItem {
        address: answer,
        length: LENGTH,
    });
    ensure!(
        received == Ok(expected),
        "round 1: ktest saw the answer item as {received:?}, expected {expected:?}"
    );
    for index in 0..LENGTH {
        // SAFETY: `answer` is this case's frame; the kernel wrote it during
        // the completed IPC and nothing writes it now.
        let byte = unsafe { ((answer + index) as *const u8).read_volatile() };
        ensure!(
            byte == pattern(index) ^ STRING_XOR,
            "round 1: answer byte {index} is {byte:#x}, expected {:#x}",
            pattern(index) ^ STRING_XOR
        );
    }

    // Round 2: the receive buffer is not mapped.
    let send_only = Timeouts {
        send: PATIENCE,
        receive: Timeout::Zero,
    };
    put_request(utcb, source);
    // SAFETY: as in round 1, without a receive phase.
    let result = unsafe { ipc_with_items(utcb, agent, FromSpecifier::Nobody, send_only) };
    let detail = utcb.error_detail;
    ensure!(
        result == Err(IpcError::send(Error::StringFault)),
        "round 2 (buffer not mapped): ktest's send returned {result:?}, expected a send-phase StringFault"
    );
    ensure!(
        in_unmapped_buffer(detail),
        "round 2: ktest's error_detail is {detail:#x}, expected an address in the agent's buffer at {UNMAPPED:#x}"
    );
    let (status, detail) = agent_report(utcb, agent, 2)?;
    let expected = IpcError::receive(Error::StringFault).status();
    ensure!(
        status == expected,
        "round 2: the agent's receive ended with status {status:#x}, expected {expected:#x}"
    );
    ensure!(
        in_unmapped_buffer(detail),
        "round 2: the agent's error_detail is {detail:#x}, expected an address in {UNMAPPED:#x}+512"
    );

    // Round 3: the receive buffer is too short.
    put_request(utcb, source);
    // SAFETY: as in round 2.
    let result = unsafe { ipc_with_items(utcb, agent, FromSpecifier::Nobody, send_only) };
    ensure!(
        result == Err(IpcError::send(Error::MessageTooLong)),
        "round 3 (300 bytes for a 16-byte buffer): ktest's send returned {result:?}, expected a send-phase MessageTooLong"
    );
    let (status, _) = agent_report(utcb, agent, 3)?;
    let expected = IpcError::receive(Error::MessageTooLong).status();
    ensure!(
        status == expected,
        "round 3: the agent's receive ended with status {status:#x}, expected {expected:#x}"
    );

    // Round 4: two string items into two buffers, the agent waiting (it
    // reported and received in one IPC), so the fast path carries them.
    let (status, _) = agent_report(utcb, agent, 4)?;
    ensure!(status == 0, "round 4: the agent is not ready: {status:#x}");
    utcb.message_registers[0] = tag(STRING_REQUEST, 0, 4).raw();
    utcb.message_registers[1..3].copy_from_slice(&string(source, 10));
    utcb.message_registers[3..5].copy_from_slice(&string(source + 10, LENGTH - 10));
    // SAFETY: two string items of this case's frame, which the kernel only
    // reads; no receive buffer is set (the answer is untyped).
    let result = unsafe { ipc_with_items(utcb, agent, FromSpecifier::Thread(agent), PATIENT) };
    ensure!(
        result.is_ok(),
        "round 4 (two strings): ktest's call returned {result:?}"
    );
    let answer = MessageTag::from_raw(utcb.message_registers[0]);
    let sum = |range: core::ops::Range<u64>| range.map(|i| u64::from(pattern(i))).sum::<u64>();
    let expected = [10, sum(0..10), LENGTH - 10, sum(10..LENGTH)];
    ensure!(
        answer.label() == STRING_ECHO && utcb.message_registers[1..5] == expected,
        "round 4: the agent saw (length, sum) pairs {:?}, expected {expected:?} (tag {:#x})",
        &utcb.message_registers[1..5],
        answer.raw()
    );
    Ok(())
}

fn string(address: u64, length: u64) -> [u64; 2] {
    TypedItem::String(StringItem { address, length }).encode()
}
