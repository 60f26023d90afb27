//! Cases 5-7: map and recursive unmap, grant, and a user-level pager.
//!
//! Cases 5 and 6 drive two memory agents (module `programs`), A and B, each
//! in its own task with its receive window at `WINDOW`. ktest maps one of
//! its frames to A; A maps (case 5) or grants (case 6) it on to B. Whether
//! a task still has the page is observed from outside: ktest asks the
//! agent to read it; a thread without the page faults to ktest's pager,
//! which logs the fault and never answers, so the request times out and
//! the fault log names the thread and the address.
//!
//! Case 7 makes the root thread itself the pager of a thread in a fresh
//! task and checks every page-fault message it gets (ABI §5).

use microkernel_abi::{
    Error, Fpage, FromSpecifier, IpcError, MapItem, MessageTag, Rights, ThreadId, Timeout,
    Timeouts, TypedItem, UnmapFlags, Utcb, PAGE_FAULT_LABEL,
};
use microkernel_rt::user::{call, ipc_with_items, receive, unmap};

use crate::cases::Context;
use crate::console::{Failure, OrFail};
use crate::layout::{stack_top, STACK_SIZE, WINDOW};
use crate::pager::{fault_mark, find_fault, put_map_reply, resolve};
use crate::programs::{
    memory_agent, pager_child, tag, AGENT_MAP_IN, AGENT_PASS, AGENT_READ, AGENT_WRITE, CHILD_DONE,
    CHILD_MAGIC,
};
use crate::threads::{micros, root_thread, trampoline, Scope, PATIENCE, PATIENT, WORKER_PRIORITY};

const MAGIC_FIRST: u64 = 0x6D61_7030_0000_0001;
const MAGIC_SECOND: u64 = 0x6D61_7030_0000_0002;

/// How long ktest waits for an agent that is expected to fault instead.
const FAULT_WAIT: Timeout = micros(200_000);

fn read_frame(address: u64) -> u64 {
    // SAFETY: callers pass addresses inside frames lent to the running
    // case, which hold no Rust object.
    unsafe { (address as *const u64).read_volatile() }
}

fn write_frame(address: u64, value: u64) {
    // SAFETY: as for `read_frame`.
    unsafe { (address as *mut u64).write_volatile(value) }
}

/// Calls a memory agent with an untyped command; returns its three words.
fn agent_command(
    utcb: &mut Utcb,
    agent: ThreadId,
    label: u64,
    words: &[u64],
    receive_timeout: Timeout,
) -> Result<[u64; 3], IpcError> {
    utcb.message_registers[0] = tag(label, words.len(), 0).raw();
    utcb.message_registers[1..=words.len()].copy_from_slice(words);
    let timeouts = Timeouts {
        send: PATIENCE,
        receive: receive_timeout,
    };
    call(utcb, agent, timeouts)?;
    let registers = &utcb.message_registers;
    Ok([registers[1], registers[2], registers[3]])
}

/// Maps ktest's frame `page` (read/write) into `agent`'s window.
fn map_to_agent(utcb: &mut Utcb, agent: ThreadId, page: u64) -> Result<[u64; 3], Failure> {
    let fpage = Fpage::new(page, 12, Rights::READ | Rights::WRITE).or_fail("frame flexpage")?;
    let item = TypedItem::Map(MapItem {
        send_base: 0,
        fpage,
        grant: false,
    });
    utcb.message_registers[0] = tag(AGENT_MAP_IN, 0, 2).raw();
    utcb.message_registers[1..3].copy_from_slice(&item.encode());
    // SAFETY: lends a frame of this case to another task; ktest reads and
    // writes that frame only with volatile accesses, so changes the other
    // task makes break nothing.
    unsafe { ipc_with_items(utcb, agent, FromSpecifier::Thread(agent), PATIENT) }
        .or_fail("sending a map item to agent A")?;
    let registers = &utcb.message_registers;
    Ok([registers[1], registers[2], registers[3]])
}

/// Checks an agent's answer to a map or grant: the received flexpage is
/// the window page with read/write rights, and the page holds `value`.
fn check_received(name: &str, answer: [u64; 3], value: u64) -> Result<(), Failure> {
    let received = Fpage::from_raw(answer[0]);
    let expected = Fpage::new(WINDOW, 12, Rights::READ | Rights::WRITE).or_fail("window")?;
    ensure!(
        received == Ok(expected),
        "{name} received the flexpage {:#x} ({received:?}), expected {expected:?}",
        answer[0]
    );
    ensure!(
        answer[1] == value,
        "{name} reads {:#x} in the received page, expected {value:#x}",
        answer[1]
    );
    Ok(())
}

/// Checks that `agent` no longer has the window page: its read must fault
/// to the pager instead of answering.
fn check_lost(utcb: &mut Utcb, name: &str, agent: ThreadId, mark: usize) -> Result<(), Failure> {
    let result = agent_command(utcb, agent, AGENT_READ, &[WINDOW], FAULT_WAIT);
    ensure!(
        result == Err(IpcError::receive(Error::Timeout)),
        "{name} should have lost the page, but its read returned {result:?}"
    );
    ensure!(
        find_fault(mark, agent, WINDOW).is_some(),
        "{name} did not fault to its pager at {WINDOW:#x}"
    );
    Ok(())
}

/// Case 5: ktest maps a page to A, A maps it on to B, ktest unmaps it
/// (without its own mapping): both A and B lose it, ktest keeps it.
pub fn map_unmap_recursive(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    let page = scope.frame()?;
    write_frame(page, MAGIC_FIRST);
    let task_a = scope.task()?;
    let a = scope.remote(task_a, memory_agent, 0, WORKER_PRIORITY)?;
    let task_b = scope.task()?;
    let b = scope.remote(task_b, memory_agent, 0, WORKER_PRIORITY)?;

    let answer = map_to_agent(utcb, a, page)?;
    check_received("A", answer, MAGIC_FIRST)?;
    let answer = agent_command(utcb, a, AGENT_PASS, &[b.raw(), 0], PATIENCE)
        .or_fail("asking A to map the page to B")?;
    ensure!(
        answer[0] == 0,
        "A's map to B failed with status {:#x}",
        answer[0]
    );
    check_received("B", [answer[1], answer[2], 0], MAGIC_FIRST)?;
    agent_command(utcb, b, AGENT_WRITE, &[WINDOW + 8, MAGIC_SECOND], PATIENCE)
        .or_fail("asking B to write the page")?;
    let seen = read_frame(page + 8);
    ensure!(
        seen == MAGIC_SECOND,
        "B wrote {MAGIC_SECOND:#x} through its mapping, ktest's page holds {seen:#x}"
    );

    let mark = fault_mark();
    let fpage = Fpage::new(page, 12, Rights::FULL).or_fail("frame flexpage")?;
    // SAFETY: without INCLUDE_SELF only the mappings derived from ktest's
    // page go; ktest's own mapping (a root mapping) stays.
    unsafe { unmap(fpage, UnmapFlags::empty()) }.or_fail("unmap")?;
    ensure!(
        read_frame(page) == MAGIC_FIRST && read_frame(page + 8) == MAGIC_SECOND,
        "ktest's own page changed after unmap"
    );
    check_lost(utcb, "A", a, mark)?;
    check_lost(utcb, "B", b, mark)?;
    Ok(())
}

/// Case 6: A grants the page ktest mapped to it on to B: B has it (still
/// shared with ktest), A does not.
pub fn grant(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    let page = scope.frame()?;
    write_frame(page, MAGIC_FIRST);
    let task_a = scope.task()?;
    let a = scope.remote(task_a, memory_agent, 0, WORKER_PRIORITY)?;
    let task_b = scope.task()?;
    let b = scope.remote(task_b, memory_agent, 0, WORKER_PRIORITY)?;

    let answer = map_to_agent(utcb, a, page)?;
    check_received("A", answer, MAGIC_FIRST)?;
    let answer = agent_command(utcb, a, AGENT_PASS, &[b.raw(), 1], PATIENCE)
        .or_fail("asking A to grant the page to B")?;
    ensure!(
        answer[0] == 0,
        "A's grant to B failed with status {:#x}",
        answer[0]
    );
    check_received("B", [answer[1], answer[2], 0], MAGIC_FIRST)?;

    write_frame(page, MAGIC_SECOND);
    let answer = agent_command(utcb, b, AGENT_READ, &[WINDOW], PATIENCE)
        .or_fail("asking B to read the granted page")?;
    ensure!(
        answer[0] == MAGIC_SECOND,
        "B reads {:#x} after ktest wrote {MAGIC_SECOND:#x}: the granted page is not ktest's",
        answer[0]
    );
    let mark = crate::pager::fault_mark();
    check_lost(utcb, "A (after granting)", a, mark)
}

/// Case 7: the root thread pages a thread in an empty task; the thread
/// runs ktest's code from the pages it is given and reports by IPC.
pub fn user_pager(context: &mut Context) -> Result<(), Failure> {
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    let root = root_thread();
    let task = scope.task()?;
    let task_id = scope.task_id(task);
    let child = scope.remote_with_pager(task, pager_child, root.raw(), WORKER_PRIORITY, root)?;
    let entry = trampoline();
    let stack = stack_top(0) - STACK_SIZE..stack_top(0);
    let mut faults = 0u32;
    let mut stack_written = false;
    loop {
        ensure!(faults < 64, "more than 64 page faults without a report");
        let sender = receive(utcb, FromSpecifier::Thread(child), PATIENCE)
            .or_fail("waiting for the paged thread")?;
        ensure!(
            sender == child,
            "message from {sender:?}, expected {child:?}"
        );
        let message = MessageTag::from_raw(utcb.message_registers[0]);
        if message.label() == CHILD_DONE {
            ensure!(
                !message.is_from_kernel(),
                "the thread's report arrived with the KERNEL flag it forged"
            );
            let words = &utcb.message_registers;
            ensure!(
                words[1] == root.raw() ^ CHILD_MAGIC && words[2] == child.raw(),
                "report words {:#x} {:#x}, expected {:#x} {:#x}",
                words[1],
                words[2],
                root.raw() ^ CHILD_MAGIC,
                child.raw()
            );
            break;
        }
        ensure!(
            message.label() == PAGE_FAULT_LABEL && message.untyped() == 3,
            "fault {faults}: tag {:#x}, expected PAGE_FAULT_LABEL with 3 words",
            message.raw()
        );
        ensure!(
            message.is_from_kernel(),
            "fault {faults}: page-fault message without the KERNEL flag"
        );
        let [address, instruction, access] = [
            utcb.message_registers[1],
            utcb.message_registers[2],
            utcb.message_registers[3],
        ];
        let access = Rights::from_bits_retain(access);
        if faults == 0 {
            ensure!(
                address == entry && instruction == entry,
                "first fault at {address:#x} (ip {instruction:#x}), expected the entry {entry:#x}"
            );
            ensure!(
                access.contains(Rights::EXECUTE),
                "first fault (instruction fetch) reports access {access:?}"
            );
        }
        if stack.contains(&address) && access.contains(Rights::WRITE) {
            stack_written = true;
        }
        let Some(item) = resolve(task_id, address) else {
            fail!("fault {faults} at {address:#x} (ip {instruction:#x}) outside the task's layout");
        };
        put_map_reply(&mut utcb.message_registers, item);
        let reply = Timeouts {
            send: Timeout::Zero,
            receive: Timeout::Zero,
        };
        // SAFETY: the reply maps one page from `resolve`: an image page of
        // ktest (at most ktest's own rights) or a frame lent to that task.
        unsafe { ipc_with_items(utcb, child, FromSpecifier::Nobody, reply) }
            .or_fail("replying to the page fault")?;
        faults += 1;
    }
    ensure!(
        faults >= 3,
        "only {faults} page faults for code, data and stack"
    );
    ensure!(stack_written, "no write fault on the thread's stack");
    Ok(())
}
