//! The pager thread: serves the page faults of the tasks ktest creates.
//!
//! ABI §5 "Page faults": a fault becomes a `call` from the faulting thread
//! to its pager with `PAGE_FAULT_LABEL` and the KERNEL flag, MR1 = fault
//! address, MR2 = instruction pointer, MR3 = attempted access. The pager
//! answers with a map item covering the address (for that reply the whole
//! address space is the receive window). The policy ([`resolve`], table in
//! `layout`): ktest's image pages at the same address, fresh zeroed frames
//! for stacks and scratch memory, nothing anywhere else.
//!
//! A fault the policy refuses is recorded in the fault log and not
//! answered, so the faulting thread stays blocked until its task is
//! destroyed: the memory cases read the log to see that a thread really
//! lost a page. Exceptions and unexpected messages are logged the same way.
//!
//! Invariants:
//! - The pager lends only ktest's image pages (with at most ktest's own
//!   rights: the kernel intersects) and frames it took from the allocator
//!   for the faulting task; each such frame is in the ledger under that
//!   task until the task is destroyed, and only then goes back.
//! - The pager takes no lock: it runs above every other thread of ktest,
//!   and the allocator, the ledger and the log are lock-free.
//! - The fault log has one writer, the pager thread.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use microkernel_abi::{
    Fpage, FromSpecifier, MapItem, MessageTag, Rights, TaskId, ThreadId, Timeout, Timeouts,
    TypedItem, EXCEPTION_LABEL, PAGE_FAULT_LABEL,
};
use microkernel_rt::user::ipc_with_items;

use crate::frames::FRAME_SIZE;
use crate::layout::{is_fresh_memory, is_image};
use crate::threads::{own_utcb, root_task, task_of, FRAMES};

/// Priority of the pager: above every thread a case starts.
pub const PAGER_PRIORITY: u8 = 250;

const PAGE_MASK: u64 = FRAME_SIZE - 1;

struct LedgerEntry {
    task: AtomicU64,
    frame: AtomicU64,
}

const LEDGER_ENTRIES: usize = 512;

static LEDGER: [LedgerEntry; LEDGER_ENTRIES] = [const {
    LedgerEntry {
        task: AtomicU64::new(0),
        frame: AtomicU64::new(0),
    }
}; LEDGER_ENTRIES];

fn record_frame(task: TaskId, frame: u64) -> bool {
    for entry in &LEDGER {
        if entry
            .task
            .compare_exchange(0, task.raw(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            entry.frame.store(frame, Ordering::Release);
            return true;
        }
    }
    false
}

/// Returns the frames lent to `task`; call only after it was destroyed.
pub fn release_task_frames(task: TaskId) {
    for entry in &LEDGER {
        if entry.task.load(Ordering::Acquire) == task.raw() {
            let frame = entry.frame.swap(0, Ordering::AcqRel);
            if frame != 0 {
                FRAMES.free(frame, 1);
            }
            entry.task.store(0, Ordering::Release);
        }
    }
}

/// The map item that answers a fault of `task` at `address`, if the policy
/// serves it. Fresh frames are zeroed and entered in the ledger. A fault
/// of ktest's own threads is never served: ktest's memory is all mapped,
/// so such a fault is a bug to report, not to paper over.
pub fn resolve(task: TaskId, address: u64) -> Option<MapItem> {
    if task == root_task() {
        return None;
    }
    let page = address & !PAGE_MASK;
    let source = if is_image(page) {
        // ktest's own page; the kernel cuts the rights to ktest's.
        Fpage::new(page, 12, Rights::FULL).ok()?
    } else if is_fresh_memory(page) {
        let frame = FRAMES.allocate(1)?;
        // SAFETY: the allocator gave this page of the read/write window to
        // the pager alone, and no Rust object lives there.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, FRAME_SIZE as usize) };
        if !record_frame(task, frame) {
            FRAMES.free(frame, 1);
            return None;
        }
        Fpage::new(frame, 12, Rights::READ | Rights::WRITE).ok()?
    } else {
        return None;
    };
    // The receive window of a fault reply is the whole space, so the page
    // lands at `send_base` (ABI §6.2).
    Some(MapItem {
        send_base: page,
        fpage: source,
        grant: false,
    })
}

/// One message the pager did not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// Who sent it.
    pub thread: ThreadId,
    /// Its label (`PAGE_FAULT_LABEL`, `EXCEPTION_LABEL` or other).
    pub label: u64,
    /// MR1..MR3: for a page fault the address, instruction pointer and
    /// attempted access.
    pub words: [u64; 3],
}

const FAULT_LOG_ENTRIES: usize = 32;

static FAULT_LOG: [[AtomicU64; 5]; FAULT_LOG_ENTRIES] =
    [const { [const { AtomicU64::new(0) }; 5] }; FAULT_LOG_ENTRIES];
static FAULT_COUNT: AtomicUsize = AtomicUsize::new(0);

fn log_fault(record: FaultRecord) {
    let index = FAULT_COUNT.load(Ordering::Relaxed);
    if let Some(entry) = FAULT_LOG.get(index) {
        let fields = [
            record.thread.raw(),
            record.label,
            record.words[0],
            record.words[1],
            record.words[2],
        ];
        for (slot, value) in entry.iter().zip(fields) {
            slot.store(value, Ordering::Relaxed);
        }
    }
    // Publishes the entry; counts on past the end so readers see overflow.
    FAULT_COUNT.store(index + 1, Ordering::Release);
}

/// How many unanswered messages the pager has logged so far.
pub fn fault_mark() -> usize {
    FAULT_COUNT.load(Ordering::Acquire)
}

/// The first page fault logged at or after `mark` from `thread` on the
/// page of `address`.
pub fn find_fault(mark: usize, thread: ThreadId, address: u64) -> Option<FaultRecord> {
    let count = fault_mark().min(FAULT_LOG_ENTRIES);
    (mark..count).find_map(|index| {
        let entry = &FAULT_LOG[index];
        let record = FaultRecord {
            thread: ThreadId::from_raw(entry[0].load(Ordering::Relaxed)),
            label: entry[1].load(Ordering::Relaxed),
            words: [
                entry[2].load(Ordering::Relaxed),
                entry[3].load(Ordering::Relaxed),
                entry[4].load(Ordering::Relaxed),
            ],
        };
        let matches = record.thread == thread
            && record.label == PAGE_FAULT_LABEL
            && record.words[0] & !PAGE_MASK == address & !PAGE_MASK;
        matches.then_some(record)
    })
}

/// The first exception logged at or after `mark` from `thread`.
pub fn find_exception(mark: usize, thread: ThreadId) -> Option<FaultRecord> {
    let count = fault_mark().min(FAULT_LOG_ENTRIES);
    (mark..count).find_map(|index| {
        let entry = &FAULT_LOG[index];
        let record = FaultRecord {
            thread: ThreadId::from_raw(entry[0].load(Ordering::Relaxed)),
            label: entry[1].load(Ordering::Relaxed),
            words: [
                entry[2].load(Ordering::Relaxed),
                entry[3].load(Ordering::Relaxed),
                entry[4].load(Ordering::Relaxed),
            ],
        };
        (record.thread == thread && record.label == EXCEPTION_LABEL).then_some(record)
    })
}

/// Label 0, no untyped words, one typed item.
const MAP_REPLY_TAG: MessageTag = match MessageTag::new(0, 0, 2) {
    Ok(tag) => tag,
    Err(_) => panic!("a one-item tag is valid"),
};

/// Writes `item` as the only typed item of the message in `registers`.
pub fn put_map_reply(registers: &mut [u64], item: MapItem) {
    let [first, second] = TypedItem::Map(item).encode();
    registers[0] = MAP_REPLY_TAG.raw();
    registers[1] = first;
    registers[2] = second;
}

/// The pager thread's program.
pub fn pager_main(_: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    utcb.clear_receive_targets();
    let mut reply_to = ThreadId::NIL;
    loop {
        let timeouts = Timeouts {
            send: Timeout::Zero,
            receive: Timeout::Never,
        };
        // SAFETY: the UTCB is this thread's; its receive window and buffers
        // are clear, so receiving writes only message registers. The reply
        // (if any) carries one map item from `resolve`: an image page of
        // ktest (with at most ktest's own rights, so code stays read-only)
        // or a frame lent to the faulting task alone.
        let result = unsafe { ipc_with_items(utcb, reply_to, FromSpecifier::Any, timeouts) };
        reply_to = ThreadId::NIL;
        let Ok(sender) = result else {
            // A reply to a thread that is gone, or a receive error: the
            // next round receives again without replying.
            continue;
        };
        let tag = MessageTag::from_raw(utcb.message_registers[0]);
        let words = [
            utcb.message_registers[1],
            utcb.message_registers[2],
            utcb.message_registers[3],
        ];
        let is_fault = tag.is_from_kernel() && tag.label() == PAGE_FAULT_LABEL;
        let item = if is_fault {
            task_of(sender).and_then(|task| resolve(task, words[0]))
        } else {
            None
        };
        match item {
            Some(item) => {
                put_map_reply(&mut utcb.message_registers, item);
                reply_to = sender;
            }
            None => {
                let label = tag.label();
                log_fault(FaultRecord {
                    thread: sender,
                    label,
                    words,
                });
                let kind = match (tag.is_from_kernel(), label) {
                    (true, PAGE_FAULT_LABEL) => "page fault",
                    (true, EXCEPTION_LABEL) => "exception",
                    _ => "message",
                };
                say!(
                    "ktest: note: pager leaves {kind} unanswered: thread {sender:?} \
                     words {:#x} {:#x} {:#x}",
                    words[0],
                    words[1],
                    words[2]
                );
            }
        }
    }
}
