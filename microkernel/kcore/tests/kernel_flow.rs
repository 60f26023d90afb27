//! End-to-end flows through the core modules, as the kernel drives them.
//!
//! A toy kernel glues the thread table, run queues, IPC engine, transfer
//! planner and mapping database together the way `microkernel/src` is meant
//! to, so that the hand-offs between modules are tested, not only each
//! module alone.
//!
//! Invariants checked: a page fault resolved by the pager's map item ends
//! with the page mapped in the faulting task; threads blocked in IPC are
//! absent from the run queues and come back when woken; destroying a task
//! removes its threads and the mappings derived from it.

use std::collections::BTreeMap;

use microkernel_abi::{
    Error, Fpage, FromSpecifier, MapItem, MessageTag, Rights, TaskId, ThreadId, Timeout, Timeouts,
    TypedItem, PAGE_FAULT_LABEL,
};
use microkernel_core::ipc::{IpcEngine, IpcRequest, Outcome, Transfer};
use microkernel_core::mapping::{Change, MappingDatabase};
use microkernel_core::scheduler::RunQueues;
use microkernel_core::table::VersionedTable;
use microkernel_core::transfer::{plan, Action, ReceiveTargets};

struct Thread {
    task: TaskId,
    pager: ThreadId,
    message: Vec<u64>,
    fault: Option<u64>,
}

struct Kernel {
    threads: VersionedTable<ThreadId, Thread>,
    tasks: VersionedTable<TaskId, ()>,
    queues: RunQueues,
    ipc: IpcEngine,
    mappings: MappingDatabase,
    page_tables: BTreeMap<(TaskId, u64), (u64, Rights)>,
    now: u64,
}

impl Kernel {
    fn new() -> Kernel {
        Kernel {
            threads: VersionedTable::new(64),
            tasks: VersionedTable::new(16),
            queues: RunQueues::new(),
            ipc: IpcEngine::new(),
            mappings: MappingDatabase::new(),
            page_tables: BTreeMap::new(),
            now: 0,
        }
    }

    fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Install {
                    space,
                    address,
                    frame,
                    rights,
                } => {
                    self.page_tables.insert((space, address), (frame, rights));
                }
                Change::Restrict {
                    space,
                    address,
                    rights,
                } => {
                    if let Some(entry) = self.page_tables.get_mut(&(space, address)) {
                        entry.1 = rights;
                    }
                }
                Change::Remove { space, address } => {
                    self.page_tables.remove(&(space, address));
                }
            }
        }
    }

    fn create_thread(&mut self, task: TaskId, pager: ThreadId) -> ThreadId {
        let id = self
            .threads
            .insert(Thread {
                task,
                pager,
                message: vec![0; 64],
                fault: None,
            })
            .unwrap();
        self.ipc.register(id).unwrap();
        self.queues.add(id.index(), 128, 10_000);
        self.queues.make_ready(id.index());
        id
    }

    /// The kernel's side of a message transfer: untyped words copied,
    /// typed items planned and carried out, page faults synthesized.
    fn transfer(
        threads: &mut VersionedTable<ThreadId, Thread>,
        mappings: &mut MappingDatabase,
        changes: &mut Vec<Change>,
        transfer: Transfer,
    ) -> Result<(), Error> {
        let sender = threads.get(transfer.sender).ok_or(Error::InvalidThread)?;
        let sender_task = sender.task;
        let mut message = sender.message.clone();
        if let Some(address) = sender.fault {
            let tag = MessageTag::new(PAGE_FAULT_LABEL, 3, 0)?;
            message[0] = tag.raw();
            message[1] = address;
            message[2] = 0x40_0000;
            message[3] = Rights::READ.bits();
        }
        let receiver = threads.get(transfer.receiver).ok_or(Error::InvalidThread)?;
        let receiver_task = receiver.task;
        // The reply to a page fault may map anywhere in the faulting space.
        let targets = if receiver.fault.is_some() {
            ReceiveTargets {
                window: Fpage::complete(Rights::FULL),
                ..ReceiveTargets::NONE
            }
        } else {
            ReceiveTargets::NONE
        };
        let tag = MessageTag::from_raw(message[0]);
        let typed = &message[1 + tag.untyped()..1 + tag.words()];
        let planned = plan(tag, typed, &targets)?;
        for item in &planned {
            if let Action::Map { placement, grant } = item.action {
                mappings.map_fpage(
                    sender_task,
                    placement.source,
                    receiver_task,
                    placement.destination_base,
                    grant,
                    changes,
                )?;
            }
        }
        let receiver = threads
            .get_mut(transfer.receiver)
            .ok_or(Error::InvalidThread)?;
        receiver.message[..=tag.words()].copy_from_slice(&message[..=tag.words()]);
        for (position, item) in planned.iter().enumerate() {
            let at = 1 + tag.untyped() + 2 * position;
            receiver.message[at..at + 2].copy_from_slice(&item.received);
        }
        receiver.fault = None;
        Ok(())
    }

    fn ipc(&mut self, caller: ThreadId, request: IpcRequest) -> Outcome {
        let mut changes = Vec::new();
        let Kernel {
            threads, mappings, ..
        } = self;
        let step = self.ipc.ipc(caller, request, self.now, |transfer| {
            Kernel::transfer(threads, mappings, &mut changes, transfer)
        });
        self.apply(changes);
        for wakeup in &step.woken {
            self.queues.make_ready(wakeup.thread.index());
        }
        match step.caller {
            Outcome::Blocked => self.queues.block(caller.index()),
            Outcome::Completed(_) => {}
        }
        self.ipc.check_invariants().unwrap();
        step.caller
    }

    fn page_fault(&mut self, thread: ThreadId, address: u64) -> Outcome {
        let pager = self.threads.get(thread).unwrap().pager;
        self.threads.get_mut(thread).unwrap().fault = Some(address);
        self.ipc(
            thread,
            IpcRequest {
                to: pager,
                from: FromSpecifier::Thread(pager),
                timeouts: Timeouts::NEVER,
            },
        )
    }
}

#[test]
fn a_page_fault_is_resolved_by_the_pager() {
    let mut kernel = Kernel::new();
    let root_task = kernel.tasks.insert(()).unwrap();
    let mut changes = Vec::new();
    for page in 0..4u64 {
        let address = 0x100_0000 + page * 0x1000;
        kernel
            .mappings
            .insert_root(root_task, address, address, Rights::FULL, &mut changes)
            .unwrap();
    }
    kernel.apply(changes);
    let pager = kernel.create_thread(root_task, ThreadId::NIL);
    let task = kernel.tasks.insert(()).unwrap();
    let client = kernel.create_thread(task, pager);

    // The pager waits for faults.
    let waiting = IpcRequest {
        to: ThreadId::NIL,
        from: FromSpecifier::Any,
        timeouts: Timeouts::NEVER,
    };
    assert_eq!(kernel.ipc(pager, waiting), Outcome::Blocked);
    assert!(!kernel.queues.is_ready(pager.index()));

    // The client faults; its fault becomes a call to the pager.
    assert_eq!(kernel.page_fault(client, 0x40_2345), Outcome::Blocked);
    assert!(!kernel.queues.is_ready(client.index()));
    assert!(kernel.queues.is_ready(pager.index()));
    let request = &kernel.threads.get(pager).unwrap().message;
    let tag = MessageTag::from_raw(request[0]);
    assert_eq!(tag.label(), PAGE_FAULT_LABEL);
    assert_eq!(request[1], 0x40_2345);

    // The pager answers with a map item for the faulting page.
    let item = TypedItem::Map(MapItem {
        send_base: 0x40_2000,
        fpage: Fpage::new(0x100_1000, 12, Rights::READ | Rights::WRITE).unwrap(),
        grant: false,
    });
    let reply = &mut kernel.threads.get_mut(pager).unwrap().message;
    reply[0] = MessageTag::new(0, 0, 2).unwrap().raw();
    reply[1..3].copy_from_slice(&item.encode());
    let reply_and_wait = IpcRequest {
        to: client,
        from: FromSpecifier::Any,
        timeouts: Timeouts {
            send: Timeout::Zero,
            receive: Timeout::Never,
        },
    };
    assert_eq!(kernel.ipc(pager, reply_and_wait), Outcome::Blocked);
    assert!(kernel.queues.is_ready(client.index()));
    assert_eq!(
        kernel.page_tables.get(&(task, 0x40_2000)),
        Some(&(0x100_1000, Rights::READ | Rights::WRITE))
    );
    kernel.mappings.check_invariants().unwrap();

    // Destroying the task takes its thread and its mappings with it.
    let mut changes = Vec::new();
    kernel.mappings.destroy_space(task, &mut changes);
    kernel.apply(changes);
    assert!(!kernel.page_tables.contains_key(&(task, 0x40_2000)));
    kernel.ipc.unregister(client);
    kernel.queues.remove(client.index());
    kernel.threads.remove(client).unwrap();
    kernel.tasks.remove(task).unwrap();
    assert!(kernel.threads.get(client).is_none());
    assert_eq!(kernel.page_tables.len(), 4);
}

#[test]
fn a_deleted_pager_does_not_leave_its_client_hanging() {
    let mut kernel = Kernel::new();
    let root_task = kernel.tasks.insert(()).unwrap();
    let pager = kernel.create_thread(root_task, ThreadId::NIL);
    let client = kernel.create_thread(root_task, pager);
    assert_eq!(kernel.page_fault(client, 0x5000), Outcome::Blocked);
    for wakeup in kernel.ipc.unregister(pager) {
        assert_eq!(wakeup.thread, client);
        assert_eq!(wakeup.result.unwrap_err().error, Error::PartnerDestroyed);
        kernel.queues.make_ready(wakeup.thread.index());
    }
    kernel.queues.remove(pager.index());
    kernel.threads.remove(pager);
    assert!(kernel.queues.is_ready(client.index()));
    assert_eq!(kernel.queues.current(), Some(client.index()));
}
