//! `core_system::Kernel` over the microkernel's system calls.
//!
//! [`Microkernel`] owns what core's logic must not touch: core's UTCB, the
//! frames lent to processes, the executable arena and the text cache. A
//! process's task is a [`ProcessTask`]: its address space, its one thread
//! and its pages.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use core_abi::layout::{STACK_TOP, UTCB};
use core_system::{Kernel, Reply, Thread};
use microkernel_abi::{
    ExchangeControl, FromSpecifier, KernelInfoSelector, MessageTag, Rights, StringItem, TaskId,
    ThreadId, Timeout, Timeouts, TypedItem, Utcb,
};
use microkernel_rt::console::print;
use microkernel_rt::frames::FrameBitmap;
use microkernel_rt::user::{
    exchange_registers, ipc_with_items, kernel_info, space_create, space_destroy, thread_create,
};

use crate::process::{Memory, TextCache};
use crate::task_server::ANSWER_LIMIT;
use crate::vm_server::ServerLink;

/// A process's task: its address space, its thread and its pages.
pub struct ProcessTask {
    task: TaskId,
    thread: ThreadId,
    memory: Memory,
    /// The program's entry point, where [`Kernel::start`] starts it.
    entry: u64,
}

/// The microkernel, as core's logic sees it.
pub struct Microkernel {
    pub me: ThreadId,
    /// Core's UTCB. The task servers' transport takes its own reference
    /// while a servant call runs (see `task_server::utcb`); this one is
    /// used only between servant calls.
    pub utcb: &'static mut Utcb,
    pub frames: Box<FrameBitmap>,
    pub arena: Box<FrameBitmap>,
    pub text: TextCache,
}

/// Writes a reply into core's message registers: MR1 status, MR2 and MR3
/// words, and a string item over its data if there is any. The data must
/// stay alive until the IPC that sends it.
pub fn load_reply(utcb: &mut Utcb, reply: &Reply) {
    let typed = if reply.data.is_some() { 2 } else { 0 };
    let Ok(tag) = MessageTag::new(0, 3, typed) else {
        return;
    };
    let registers = &mut utcb.message_registers;
    registers[0] = tag.raw();
    registers[1] = reply.status;
    registers[2] = reply.words[0];
    registers[3] = reply.words[1];
    if let Some(bytes) = &reply.data {
        let [first, second] = TypedItem::String(StringItem {
            address: bytes.as_ptr() as u64,
            length: bytes.len() as u64,
        })
        .encode();
        registers[4] = first;
        registers[5] = second;
    }
}

impl Kernel for Microkernel {
    type Task = ProcessTask;
    type Link = ServerLink;

    const ANSWER_LIMIT: u64 = ANSWER_LIMIT;

    fn now(&mut self) -> u64 {
        kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0)
    }

    fn log(&mut self, message: core::fmt::Arguments<'_>) {
        print(message);
    }

    fn create(
        &mut self,
        pid: u32,
        program: &[u8],
        identity: (char, u64),
        argv: &[String],
    ) -> Result<(ProcessTask, Thread), String> {
        let mut memory = Memory::default();
        let loaded = memory
            .load(
                program,
                identity,
                &mut self.frames,
                &mut self.arena,
                &mut self.text,
            )
            .and_then(|entry| {
                memory.set_arguments(&mut self.frames, self.me.raw(), u64::from(pid), argv)?;
                Ok(entry)
            });
        let entry = match loaded {
            Ok(entry) => entry,
            Err(e) => {
                memory.release(&mut self.frames);
                return Err(e);
            }
        };
        let task = match space_create() {
            Ok(task) => task,
            Err(e) => {
                memory.release(&mut self.frames);
                return Err(format!("space_create: {e:?}"));
            }
        };
        // SAFETY: the task is new and not core's own; core is its pager.
        let thread = match unsafe { thread_create(task, self.me, UTCB) } {
            Ok(thread) => thread,
            Err(e) => {
                let _ = space_destroy(task);
                memory.release(&mut self.frames);
                return Err(format!("thread_create: {e:?}"));
            }
        };
        let process = ProcessTask {
            task,
            thread,
            memory,
            entry,
        };
        Ok((process, Thread(thread.raw())))
    }

    fn start(&mut self, task: &ProcessTask) -> Result<(), String> {
        let control = ExchangeControl::SET_INSTRUCTION_POINTER
            | ExchangeControl::SET_STACK_POINTER
            | ExchangeControl::RESUME;
        // SAFETY: a new thread of another task, started at its ELF entry
        // on the stack the layout gives it.
        unsafe { exchange_registers(task.thread, control, task.entry, STACK_TOP, ThreadId::NIL) }
            .map(|_| ())
            .map_err(|e| format!("exchange_registers: {e:?}"))
    }

    fn fault(&mut self, task: &mut ProcessTask, address: u64) -> bool {
        let Some(item) = task.memory.resolve(address, &mut self.frames) else {
            return false;
        };
        let Ok(tag) = MessageTag::new(0, 0, 2) else {
            return true;
        };
        let [first, second] = TypedItem::Map(item).encode();
        self.utcb.clear_receive_targets();
        self.utcb.message_registers[0] = tag.raw();
        self.utcb.message_registers[1] = first;
        self.utcb.message_registers[2] = second;
        let timeouts = Timeouts {
            send: Timeout::Zero,
            receive: Timeout::Zero,
        };
        // SAFETY: the item maps a page core lends to this process alone
        // (or shared read-only text); core's own UTCB.
        let _ = unsafe { ipc_with_items(self.utcb, task.thread, FromSpecifier::Nobody, timeouts) };
        true
    }

    fn destroy(&mut self, task: ProcessTask) {
        let _ = space_destroy(task.task);
        task.memory.release(&mut self.frames);
    }

    fn kilobytes(&self, task: &ProcessTask) -> u64 {
        task.memory.kilobytes()
    }

    fn send(&mut self, reply: &Reply) {
        let client = ThreadId::from_raw(reply.client.0);
        self.utcb.clear_receive_targets();
        load_reply(self.utcb, reply);
        let timeouts = Timeouts {
            send: Timeout::Zero,
            receive: Timeout::Zero,
        };
        // SAFETY: core's own UTCB with no receive targets; the only item is
        // a string item over the reply's data, which lives across the call.
        let result = unsafe { ipc_with_items(self.utcb, client, FromSpecifier::Nobody, timeouts) };
        if let Err(e) = result {
            print(format_args!("core: reply to {client:?} failed: {e:?}\n"));
        }
    }

    fn buffer_alias(&self, task: &ProcessTask, address: u64, length: usize) -> Option<u64> {
        let pages = &task.memory.pages;
        core_system::buffer_alias(address, length, |page| {
            let entry = pages.get(&page)?;
            Some((entry.frame, entry.rights.contains(Rights::WRITE)))
        })
    }

    fn ready(&mut self, link: &mut ServerLink) -> bool {
        link.vm().is_none_or(|server| server.ready())
    }

    fn restart(&mut self, link: ServerLink) -> Result<ServerLink, String> {
        match link {
            ServerLink::Task(server) => server
                .restart(self.me, &mut self.arena, &mut self.text)
                .map(ServerLink::Task),
            ServerLink::Vm(server) => server
                .restart()
                .map(|server| ServerLink::Vm(alloc::boxed::Box::new(server))),
            // Core never restarts a server process (core_system's
            // userlink gives its link up first).
            ServerLink::User(_) => Err(String::from("a server process is not restarted by core")),
        }
    }
}
