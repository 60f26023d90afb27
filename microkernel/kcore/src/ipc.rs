//! The IPC rendezvous state machine: who waits for whom, and what wakes.
//!
//! This is the decision logic of L4 X.2, "IPC", without any copying: the
//! engine says when a message moves from one thread to another by calling
//! the kernel's transfer function (which copies registers, UTCB words and
//! typed items), and says which threads finished their IPC with what result.
//! The kernel then sets their return registers and makes them ready.
//!
//! An `ipc` has a send phase (if `to` is not nil) and then a receive phase
//! (if `from` is not nil). A phase that finds its partner waiting completes
//! at once; otherwise the thread blocks until a partner comes, its timeout
//! runs out, the IPC is cancelled, or the partner is destroyed. `call` is
//! "send to X, then receive from X"; the caller is then *awaiting a reply*,
//! so that the server's reply with a zero send timeout always finds it.
//!
//! Invariants:
//! - A thread blocked sending is in exactly one sender queue, that of its
//!   destination, in arrival order; nothing else is in sender queues.
//! - A thread has a deadline in the timeout queue exactly when it is
//!   blocked with a finite timeout.
//! - No thread waits for a thread that does not exist: destroying a thread
//!   wakes everyone sending to it, receiving from it or awaiting its reply
//!   with [`Error::PartnerDestroyed`] instead of leaving them hung.
//! - A failed send phase skips the receive phase; a transfer that fails
//!   fails both sides, so a message is delivered whole or not at all.
//! - Interrupts are messages from pseudo-threads ([`ThreadId::interrupt`]):
//!   one pending bit per interrupt and handler, delivered on the handler's
//!   next matching receive. No transfer call is made for them.
//! - Cascades (a sender whose message was taken goes on to its own receive
//!   phase, which may take another message) run from a work list, never by
//!   recursion.

use alloc::vec::Vec;

use microkernel_abi::{
    Error, FromSpecifier, IpcError, ThreadId, ThreadStateFlags, Timeout, Timeouts,
};

use crate::timeout::TimeoutQueue;

/// What a thread is doing in IPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpcState {
    /// Not in an IPC (running, ready or halted: the scheduler's business).
    Idle,
    /// Blocked in the send phase, queued at `to`; afterwards it will
    /// receive as `then` says.
    Sending {
        /// The destination.
        to: ThreadId,
        /// The receive phase still to come, if any.
        then: Option<ReceivePhase>,
    },
    /// Blocked in an open or closed receive.
    Receiving {
        /// Whom it accepts a message from.
        from: FromSpecifier,
    },
    /// Blocked after `call` for the reply of `from`.
    AwaitingReply {
        /// The thread it called.
        from: ThreadId,
    },
}

impl IpcState {
    /// The IPC part of what `exchange_registers` reports (the kernel adds
    /// [`ThreadStateFlags::HALTED`] itself).
    pub fn state_flags(self) -> ThreadStateFlags {
        match self {
            IpcState::Idle => ThreadStateFlags::empty(),
            IpcState::Sending { .. } => ThreadStateFlags::SENDING,
            IpcState::Receiving { .. } | IpcState::AwaitingReply { .. } => {
                ThreadStateFlags::RECEIVING
            }
        }
    }
}

/// A receive phase: whom from, and how long to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivePhase {
    /// Whom a message is accepted from (never `Nobody`).
    pub from: FromSpecifier,
    /// How long to wait, from the start of the phase.
    pub timeout: Timeout,
}

/// The arguments of one `ipc` system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpcRequest {
    /// Destination of the send phase; nil for none.
    pub to: ThreadId,
    /// Source of the receive phase.
    pub from: FromSpecifier,
    /// Both timeouts.
    pub timeouts: Timeouts,
}

/// How an IPC ended: the sender of the received message (nil if there was
/// no receive phase), or the error.
pub type IpcResult = Result<ThreadId, IpcError>;

/// A message to copy now, from `sender`'s registers and UTCB to
/// `receiver`'s. The kernel returns an error (e.g. a string fault) to fail
/// the IPC on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Whose message.
    pub sender: ThreadId,
    /// Who gets it.
    pub receiver: ThreadId,
}

/// A thread whose blocked IPC has ended: set its results and make it ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wakeup {
    /// The thread.
    pub thread: ThreadId,
    /// Its IPC's result.
    pub result: IpcResult,
}

/// What happened to the caller of [`IpcEngine::ipc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The IPC finished; return to the caller with this result.
    Completed(IpcResult),
    /// The caller blocks; a later [`Wakeup`] ends its IPC.
    Blocked,
}

/// The result of one [`IpcEngine::ipc`]: the caller's outcome and the
/// other threads whose IPC ended, in the order they ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The caller's outcome.
    pub caller: Outcome,
    /// Other threads to wake.
    pub woken: Vec<Wakeup>,
}

const INTERRUPT_WORDS: usize = 4;

#[derive(Clone, Debug)]
struct Slot {
    id: ThreadId,
    state: IpcState,
    first_sender: Option<u32>,
    last_sender: Option<u32>,
    next_in_queue: Option<u32>,
    previous_in_queue: Option<u32>,
    pending_interrupts: [u64; INTERRUPT_WORDS],
}

impl Slot {
    fn new(id: ThreadId) -> Slot {
        Slot {
            id,
            state: IpcState::Idle,
            first_sender: None,
            last_sender: None,
            next_in_queue: None,
            previous_in_queue: None,
            pending_interrupts: [0; INTERRUPT_WORDS],
        }
    }
}

enum SendOutcome {
    Delivered,
    Blocked,
    Failed(IpcError),
}

/// A receive phase still to run for a thread whose send phase just ended
/// because its message was taken.
struct PendingReceive {
    thread: u32,
    phase: ReceivePhase,
    partner: ThreadId,
}

/// The IPC state of every thread, indexed by thread-table index.
#[derive(Default)]
pub struct IpcEngine {
    slots: Vec<Option<Slot>>,
    timeouts: TimeoutQueue<u32>,
}

impl IpcEngine {
    /// No threads.
    pub fn new() -> Self {
        IpcEngine::default()
    }

    /// Adds a new thread, idle. [`Error::AlreadyExists`] if its index is
    /// taken (the kernel must unregister the previous occupant first).
    pub fn register(&mut self, id: ThreadId) -> Result<(), Error> {
        if !id.is_thread() {
            return Err(Error::InvalidThread);
        }
        let index = id.index() as usize;
        if self.slots.len() <= index {
            self.slots
                .try_reserve(index + 1 - self.slots.len())
                .map_err(|_| Error::OutOfResources)?;
            self.slots.resize(index + 1, None);
        }
        match self.slots.get_mut(index) {
            Some(slot @ None) => {
                *slot = Some(Slot::new(id));
                Ok(())
            }
            _ => Err(Error::AlreadyExists),
        }
    }

    fn live(&self, id: ThreadId) -> Option<u32> {
        match self.slots.get(id.index() as usize) {
            Some(Some(slot)) if slot.id == id => Some(id.index()),
            _ => None,
        }
    }

    fn slot(&self, index: u32) -> &Slot {
        match self.slots.get(index as usize) {
            Some(Some(slot)) => slot,
            // Only indices produced by `live` or read from live links reach
            // here.
            _ => panic!("IPC engine: dangling thread index {index}"),
        }
    }

    fn slot_mut(&mut self, index: u32) -> &mut Slot {
        match self.slots.get_mut(index as usize) {
            Some(Some(slot)) => slot,
            _ => panic!("IPC engine: dangling thread index {index}"),
        }
    }

    /// A thread's IPC state, for `exchange_registers`.
    pub fn state(&self, id: ThreadId) -> Option<IpcState> {
        self.live(id).map(|index| self.slot(index).state)
    }

    /// The earliest IPC deadline, for programming the timer.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timeouts.next_deadline()
    }

    fn enqueue_sender(&mut self, destination: u32, sender: u32) {
        let old_last = self.slot(destination).last_sender;
        {
            let slot = self.slot_mut(sender);
            slot.previous_in_queue = old_last;
            slot.next_in_queue = None;
        }
        match old_last {
            Some(last) => self.slot_mut(last).next_in_queue = Some(sender),
            None => self.slot_mut(destination).first_sender = Some(sender),
        }
        self.slot_mut(destination).last_sender = Some(sender);
    }

    fn dequeue_sender(&mut self, destination: u32, sender: u32) {
        let (next, previous) = {
            let slot = self.slot(sender);
            (slot.next_in_queue, slot.previous_in_queue)
        };
        match previous {
            Some(previous) => self.slot_mut(previous).next_in_queue = next,
            None => self.slot_mut(destination).first_sender = next,
        }
        match next {
            Some(next) => self.slot_mut(next).previous_in_queue = previous,
            None => self.slot_mut(destination).last_sender = previous,
        }
        let slot = self.slot_mut(sender);
        slot.next_in_queue = None;
        slot.previous_in_queue = None;
    }

    /// Ends whatever `index` is blocked in, without waking it; the caller
    /// decides the result.
    fn make_idle(&mut self, index: u32) {
        if let IpcState::Sending { to, .. } = self.slot(index).state {
            if let Some(destination) = self.live(to) {
                self.dequeue_sender(destination, index);
            }
        }
        self.slot_mut(index).state = IpcState::Idle;
        self.timeouts.cancel(index);
    }

    fn block(&mut self, index: u32, state: IpcState, timeout: Timeout, now: u64) {
        self.slot_mut(index).state = state;
        if let Some(deadline) = timeout.deadline(now) {
            self.timeouts.insert(index, deadline);
        }
    }

    fn accepts(state: IpcState, sender: ThreadId) -> bool {
        match state {
            IpcState::Receiving { from } => from.accepts(sender),
            IpcState::AwaitingReply { from } => from == sender,
            IpcState::Idle | IpcState::Sending { .. } => false,
        }
    }

    fn take_interrupt(&mut self, index: u32, from: FromSpecifier) -> Option<ThreadId> {
        let pending = &mut self.slot_mut(index).pending_interrupts;
        let irq = match from {
            FromSpecifier::Any => {
                let word = pending.iter().position(|&bits| bits != 0)?;
                (word * 64 + pending[word].trailing_zeros() as usize) as u8
            }
            FromSpecifier::Thread(id) => {
                let irq = id.interrupt_number()?;
                if pending[irq as usize / 64] & (1 << (irq % 64)) == 0 {
                    return None;
                }
                irq
            }
            FromSpecifier::Nobody => return None,
        };
        pending[irq as usize / 64] &= !(1 << (irq % 64));
        Some(ThreadId::interrupt(irq))
    }

    // The phase helpers take the step's shared pieces (clock, transfer
    // function, wake list) one by one; bundling them would only add a type.
    #[allow(clippy::too_many_arguments)]
    fn send_phase<F>(
        &mut self,
        caller: u32,
        to: ThreadId,
        then: Option<ReceivePhase>,
        timeout: Timeout,
        now: u64,
        transfer: &mut F,
        woken: &mut Vec<Wakeup>,
    ) -> SendOutcome
    where
        F: FnMut(Transfer) -> Result<(), Error>,
    {
        let caller_id = self.slot(caller).id;
        let Some(destination) = self.live(to).filter(|&destination| destination != caller) else {
            return SendOutcome::Failed(IpcError::send(Error::InvalidThread));
        };
        if Self::accepts(self.slot(destination).state, caller_id) {
            self.make_idle(destination);
            let moved = transfer(Transfer {
                sender: caller_id,
                receiver: to,
            });
            return match moved {
                Ok(()) => {
                    woken.push(Wakeup {
                        thread: to,
                        result: Ok(caller_id),
                    });
                    SendOutcome::Delivered
                }
                Err(error) => {
                    woken.push(Wakeup {
                        thread: to,
                        result: Err(IpcError::receive(error)),
                    });
                    SendOutcome::Failed(IpcError::send(error))
                }
            };
        }
        if timeout.is_zero() {
            return SendOutcome::Failed(IpcError::send(Error::Timeout));
        }
        self.block(caller, IpcState::Sending { to, then }, timeout, now);
        self.enqueue_sender(destination, caller);
        SendOutcome::Blocked
    }

    /// Runs a receive phase for `receiver`; `None` means it blocked.
    /// `partner` is the destination of its send phase, if it had one, so
    /// that "receive from the thread I just sent to" becomes awaiting a
    /// reply.
    #[allow(clippy::too_many_arguments)]
    fn receive_phase<F>(
        &mut self,
        receiver: u32,
        phase: ReceivePhase,
        partner: Option<ThreadId>,
        now: u64,
        transfer: &mut F,
        woken: &mut Vec<Wakeup>,
        cascade: &mut Vec<PendingReceive>,
    ) -> Option<IpcResult>
    where
        F: FnMut(Transfer) -> Result<(), Error>,
    {
        let receiver_id = self.slot(receiver).id;
        if let FromSpecifier::Thread(source) = phase.from {
            let is_live_other = self.live(source).is_some_and(|index| index != receiver);
            if !is_live_other && source.interrupt_number().is_none() {
                return Some(Err(IpcError::receive(Error::InvalidThread)));
            }
        }
        if let Some(interrupt) = self.take_interrupt(receiver, phase.from) {
            return Some(Ok(interrupt));
        }
        let sender = match phase.from {
            FromSpecifier::Any => self.slot(receiver).first_sender,
            FromSpecifier::Thread(source) => self.live(source).filter(|&index| {
                matches!(self.slot(index).state, IpcState::Sending { to, .. } if to == receiver_id)
            }),
            FromSpecifier::Nobody => None,
        };
        if let Some(sender) = sender {
            let IpcState::Sending { then, .. } = self.slot(sender).state else {
                // Sender queues hold only sending threads.
                return Some(Err(IpcError::receive(Error::InvalidThread)));
            };
            let sender_id = self.slot(sender).id;
            self.make_idle(sender);
            let moved = transfer(Transfer {
                sender: sender_id,
                receiver: receiver_id,
            });
            return Some(match moved {
                Ok(()) => {
                    match then {
                        Some(next) => cascade.push(PendingReceive {
                            thread: sender,
                            phase: next,
                            partner: receiver_id,
                        }),
                        None => woken.push(Wakeup {
                            thread: sender_id,
                            result: Ok(ThreadId::NIL),
                        }),
                    }
                    Ok(sender_id)
                }
                Err(error) => {
                    woken.push(Wakeup {
                        thread: sender_id,
                        result: Err(IpcError::send(error)),
                    });
                    Err(IpcError::receive(error))
                }
            });
        }
        if phase.timeout.is_zero() {
            return Some(Err(IpcError::receive(Error::Timeout)));
        }
        let state = match (phase.from, partner) {
            (FromSpecifier::Thread(source), Some(partner)) if source == partner => {
                IpcState::AwaitingReply { from: source }
            }
            (from, _) => IpcState::Receiving { from },
        };
        self.block(receiver, state, phase.timeout, now);
        None
    }

    fn run_cascade<F>(
        &mut self,
        now: u64,
        transfer: &mut F,
        woken: &mut Vec<Wakeup>,
        cascade: &mut Vec<PendingReceive>,
    ) where
        F: FnMut(Transfer) -> Result<(), Error>,
    {
        while let Some(pending) = cascade.pop() {
            let id = self.slot(pending.thread).id;
            if let Some(result) = self.receive_phase(
                pending.thread,
                pending.phase,
                Some(pending.partner),
                now,
                transfer,
                woken,
                cascade,
            ) {
                woken.push(Wakeup { thread: id, result });
            }
        }
    }

    /// Performs `caller`'s `ipc` at time `now` (microseconds). `transfer`
    /// is called for each message that moves, before the step returns.
    pub fn ipc<F>(
        &mut self,
        caller: ThreadId,
        request: IpcRequest,
        now: u64,
        mut transfer: F,
    ) -> Step
    where
        F: FnMut(Transfer) -> Result<(), Error>,
    {
        let mut woken = Vec::new();
        let Some(index) = self.live(caller) else {
            return Step {
                caller: Outcome::Completed(Err(IpcError::send(Error::InvalidThread))),
                woken,
            };
        };
        if self.slot(index).state != IpcState::Idle {
            // A blocked thread cannot make a system call: a kernel bug.
            return Step {
                caller: Outcome::Completed(Err(IpcError::send(Error::InvalidArgument))),
                woken,
            };
        }
        let then = match request.from {
            FromSpecifier::Nobody => None,
            from => Some(ReceivePhase {
                from,
                timeout: request.timeouts.receive,
            }),
        };
        let partner = (!request.to.is_nil()).then_some(request.to);
        if let Some(to) = partner {
            match self.send_phase(
                index,
                to,
                then,
                request.timeouts.send,
                now,
                &mut transfer,
                &mut woken,
            ) {
                SendOutcome::Delivered => {}
                SendOutcome::Blocked => {
                    return Step {
                        caller: Outcome::Blocked,
                        woken,
                    }
                }
                SendOutcome::Failed(error) => {
                    return Step {
                        caller: Outcome::Completed(Err(error)),
                        woken,
                    }
                }
            }
        }
        let Some(phase) = then else {
            return Step {
                caller: Outcome::Completed(Ok(ThreadId::NIL)),
                woken,
            };
        };
        let mut cascade = Vec::new();
        let result = self.receive_phase(
            index,
            phase,
            partner,
            now,
            &mut transfer,
            &mut woken,
            &mut cascade,
        );
        self.run_cascade(now, &mut transfer, &mut woken, &mut cascade);
        Step {
            caller: match result {
                Some(result) => Outcome::Completed(result),
                None => Outcome::Blocked,
            },
            woken,
        }
    }

    /// The fast path of `call` and `reply_and_wait` (L4's "IPC fast path"):
    /// the destination is already waiting for the caller, and the caller's
    /// receive phase will block (with its deadline, if its timeout is
    /// relative, as of `now`) because nothing is queued or pending for it.
    /// Then the step is a state change on two slots and one transfer the
    /// kernel does itself; nothing is allocated.
    ///
    /// Returns `true` when it took the step: the destination is now idle
    /// (the kernel wakes it with `Ok(caller)` after copying the message) and
    /// the caller blocks awaiting the reply (`call`) or receiving from any
    /// (`reply_and_wait`). Returns `false`, changing nothing, whenever the
    /// general [`IpcEngine::ipc`] must run; both paths end in the same
    /// states.
    pub fn direct_exchange(&mut self, caller: ThreadId, request: IpcRequest, now: u64) -> bool {
        // Each slot is looked up once, by index, its id compared with the
        // caller's (which also rules out nil and stale ids: a live slot
        // never holds either).
        let (index, destination) = (caller.index(), request.to.index());
        if index == destination || request.timeouts.receive.is_zero() {
            // A zero receive timeout fails at once when nothing is there:
            // the general path says so.
            return false;
        }
        let Some(Some(partner)) = self.slots.get(destination as usize) else {
            return false;
        };
        if partner.id != request.to || !Self::accepts(partner.state, caller) {
            return false;
        }
        let Some(Some(slot)) = self.slots.get(index as usize) else {
            return false;
        };
        if slot.id != caller || slot.state != IpcState::Idle {
            return false;
        }
        let next = match request.from {
            FromSpecifier::Thread(source) if source == request.to => {
                IpcState::AwaitingReply { from: source }
            }
            FromSpecifier::Any => {
                if slot.first_sender.is_some() || slot.pending_interrupts.iter().any(|&w| w != 0) {
                    return false;
                }
                IpcState::Receiving {
                    from: FromSpecifier::Any,
                }
            }
            _ => return false,
        };
        // `make_idle` for a receiver: it accepts the caller, so it is
        // receiving or awaiting a reply and in no sender queue; only its
        // state and its deadline (if any) go.
        if let Some(Some(partner)) = self.slots.get_mut(destination as usize) {
            partner.state = IpcState::Idle;
        }
        self.timeouts.cancel(destination);
        match request.timeouts.receive {
            Timeout::Never => {
                if let Some(Some(slot)) = self.slots.get_mut(index as usize) {
                    slot.state = next;
                }
            }
            timeout => self.block(index, next, timeout, now),
        }
        true
    }

    /// [`IpcEngine::direct_exchange`] for the usual case, in scalars: a
    /// call (`reply_and_wait` false: the caller then awaits `to`'s reply)
    /// or a reply-and-wait (the caller then receives from any), both with
    /// no receive timeout. The same checks and the same outcome; the
    /// kernel's fast path takes it without building an [`IpcRequest`].
    pub fn direct_exchange_untimed(
        &mut self,
        caller: ThreadId,
        to: ThreadId,
        reply_and_wait: bool,
    ) -> bool {
        let (index, destination) = (caller.index() as usize, to.index() as usize);
        if index == destination {
            return false;
        }
        let Some(Some(partner)) = self.slots.get(destination) else {
            return false;
        };
        if partner.id != to || !Self::accepts(partner.state, caller) {
            return false;
        }
        let Some(Some(slot)) = self.slots.get(index) else {
            return false;
        };
        if slot.id != caller || slot.state != IpcState::Idle {
            return false;
        }
        let next = if reply_and_wait {
            if slot.first_sender.is_some() || slot.pending_interrupts.iter().any(|&w| w != 0) {
                return false;
            }
            IpcState::Receiving {
                from: FromSpecifier::Any,
            }
        } else {
            IpcState::AwaitingReply { from: to }
        };
        if let Some(Some(partner)) = self.slots.get_mut(destination) {
            partner.state = IpcState::Idle;
        }
        if let Some(Some(slot)) = self.slots.get_mut(index) {
            slot.state = next;
        }
        self.timeouts.cancel(destination as u32);
        true
    }

    /// Ends every IPC whose deadline is at or before `now` with
    /// [`Error::Timeout`] in the phase it was in.
    pub fn expire(&mut self, now: u64) -> Vec<Wakeup> {
        let mut woken = Vec::new();
        for index in self.timeouts.expire(now) {
            if let Some(wakeup) = self.abort(index, Error::Timeout) {
                woken.push(wakeup);
            }
        }
        woken
    }

    fn abort(&mut self, index: u32, error: Error) -> Option<Wakeup> {
        let slot = self.slots.get(index as usize)?.as_ref()?;
        let (id, state) = (slot.id, slot.state);
        let result = match state {
            IpcState::Idle => return None,
            IpcState::Sending { .. } => IpcError::send(error),
            IpcState::Receiving { .. } | IpcState::AwaitingReply { .. } => IpcError::receive(error),
        };
        self.make_idle(index);
        Some(Wakeup {
            thread: id,
            result: Err(result),
        })
    }

    /// Cancels a blocked IPC (`exchange_registers` with `CANCEL_SEND` or
    /// `CANCEL_RECEIVE`): the thread wakes with [`Error::Cancelled`] if it
    /// is blocked in a phase that is named.
    pub fn cancel(&mut self, id: ThreadId, send: bool, receive: bool) -> Option<Wakeup> {
        let index = self.live(id)?;
        let named = match self.slot(index).state {
            IpcState::Idle => false,
            IpcState::Sending { .. } => send,
            IpcState::Receiving { .. } | IpcState::AwaitingReply { .. } => receive,
        };
        if named {
            self.abort(index, Error::Cancelled)
        } else {
            None
        }
    }

    /// Removes a destroyed thread. Everyone blocked sending to it,
    /// receiving from it or awaiting its reply wakes with
    /// [`Error::PartnerDestroyed`].
    pub fn unregister(&mut self, id: ThreadId) -> Vec<Wakeup> {
        let mut woken = Vec::new();
        let Some(index) = self.live(id) else {
            return woken;
        };
        self.make_idle(index);
        while let Some(sender) = self.slot(index).first_sender {
            if let Some(wakeup) = self.abort(sender, Error::PartnerDestroyed) {
                woken.push(wakeup);
            } else {
                // Not reachable while the invariants hold; never loop.
                self.dequeue_sender(index, sender);
            }
        }
        let waiting: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(position, slot)| {
                let slot = slot.as_ref()?;
                let waits = match slot.state {
                    IpcState::Receiving {
                        from: FromSpecifier::Thread(source),
                    } => source == id,
                    IpcState::AwaitingReply { from } => from == id,
                    _ => false,
                };
                waits.then_some(position as u32)
            })
            .collect();
        for waiter in waiting {
            if let Some(wakeup) = self.abort(waiter, Error::PartnerDestroyed) {
                woken.push(wakeup);
            }
        }
        if let Some(slot) = self.slots.get_mut(index as usize) {
            *slot = None;
        }
        woken
    }

    /// An interrupt for `handler` arrived (the kernel has masked it). If the
    /// handler waits for it, its IPC ends now with the interrupt's
    /// pseudo-thread as sender; otherwise it stays pending until the
    /// handler's next matching receive.
    pub fn raise_interrupt(&mut self, irq: u8, handler: ThreadId) -> Result<Option<Wakeup>, Error> {
        let index = self.live(handler).ok_or(Error::InvalidThread)?;
        let source = ThreadId::interrupt(irq);
        if let IpcState::Receiving { from } = self.slot(index).state {
            if from.accepts(source) {
                self.make_idle(index);
                return Ok(Some(Wakeup {
                    thread: handler,
                    result: Ok(source),
                }));
            }
        }
        self.slot_mut(index).pending_interrupts[irq as usize / 64] |= 1 << (irq % 64);
        Ok(None)
    }

    /// Forgets a pending interrupt (the interrupt was dissociated).
    pub fn clear_interrupt(&mut self, irq: u8, handler: ThreadId) {
        if let Some(index) = self.live(handler) {
            self.slot_mut(index).pending_interrupts[irq as usize / 64] &= !(1 << (irq % 64));
        }
    }

    /// The threads blocked sending to `id`, in queue order.
    pub fn senders(&self, id: ThreadId) -> Vec<ThreadId> {
        let mut senders = Vec::new();
        let Some(index) = self.live(id) else {
            return senders;
        };
        let mut cursor = self.slot(index).first_sender;
        while let Some(sender) = cursor {
            senders.push(self.slot(sender).id);
            cursor = self.slot(sender).next_in_queue;
        }
        senders
    }

    /// Checks the invariants of the module documentation; for tests.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut queued = 0;
        for (position, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let index = position as u32;
            if slot.id.index() != index {
                return Err("slot holds an id of another index");
            }
            let has_deadline = self.timeouts.deadline(index).is_some();
            match slot.state {
                IpcState::Idle => {
                    if has_deadline {
                        return Err("idle thread with a deadline");
                    }
                }
                IpcState::Sending { to, .. } => {
                    queued += 1;
                    if !self.senders(to).contains(&slot.id) {
                        return Err("sending thread missing from its destination's queue");
                    }
                }
                IpcState::Receiving { from } => {
                    if let FromSpecifier::Thread(source) = from {
                        if self.live(source).is_none() && source.interrupt_number().is_none() {
                            return Err("receiving from a thread that does not exist");
                        }
                    }
                    if from == FromSpecifier::Nobody {
                        return Err("receiving from nobody");
                    }
                }
                IpcState::AwaitingReply { from } => {
                    if self.live(from).is_none() {
                        return Err("awaiting the reply of a thread that does not exist");
                    }
                }
            }
            let mut length = 0;
            let mut previous = None;
            let mut cursor = slot.first_sender;
            while let Some(sender) = cursor {
                length += 1;
                if length > self.slots.len() {
                    return Err("cycle in a sender queue");
                }
                let member = self.slot(sender);
                if !matches!(member.state, IpcState::Sending { to, .. } if to == slot.id) {
                    return Err("queued thread is not sending to the queue's owner");
                }
                if member.previous_in_queue != previous {
                    return Err("broken backward link in a sender queue");
                }
                previous = Some(sender);
                cursor = member.next_in_queue;
            }
            if slot.last_sender != previous {
                return Err("sender queue tail is wrong");
            }
        }
        let total: usize = self
            .slots
            .iter()
            .flatten()
            .map(|slot| self.senders(slot.id).len())
            .sum();
        if total != queued {
            return Err("sender queues and sending threads disagree");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn thread(index: u32) -> ThreadId {
        ThreadId::new(index, 1).unwrap()
    }

    fn engine(threads: u32) -> IpcEngine {
        let mut engine = IpcEngine::new();
        for index in 0..threads {
            engine.register(thread(index)).unwrap();
        }
        engine
    }

    fn request(to: ThreadId, from: FromSpecifier, send: Timeout, receive: Timeout) -> IpcRequest {
        IpcRequest {
            to,
            from,
            timeouts: Timeouts { send, receive },
        }
    }

    fn call(to: ThreadId) -> IpcRequest {
        request(
            to,
            FromSpecifier::Thread(to),
            Timeout::Never,
            Timeout::Never,
        )
    }

    fn send(to: ThreadId, timeout: Timeout) -> IpcRequest {
        request(to, FromSpecifier::Nobody, timeout, Timeout::Zero)
    }

    fn receive(from: FromSpecifier, timeout: Timeout) -> IpcRequest {
        request(ThreadId::NIL, from, Timeout::Zero, timeout)
    }

    fn reply_and_wait(client: ThreadId) -> IpcRequest {
        request(client, FromSpecifier::Any, Timeout::Zero, Timeout::Never)
    }

    /// Runs an IPC and records the transfers it asked for.
    fn run(
        engine: &mut IpcEngine,
        caller: ThreadId,
        request: IpcRequest,
        now: u64,
    ) -> (Step, Vec<Transfer>) {
        let mut transfers = Vec::new();
        let step = engine.ipc(caller, request, now, |transfer| {
            transfers.push(transfer);
            Ok(())
        });
        engine.check_invariants().unwrap();
        (step, transfers)
    }

    fn wakeup(thread: ThreadId, result: IpcResult) -> Wakeup {
        Wakeup { thread, result }
    }

    #[test]
    fn call_then_reply_and_wait() {
        let (client, server) = (thread(0), thread(1));
        let mut engine = engine(2);
        let (step, _) = run(
            &mut engine,
            server,
            receive(FromSpecifier::Any, Timeout::Never),
            0,
        );
        assert_eq!(step.caller, Outcome::Blocked);

        let (step, transfers) = run(&mut engine, client, call(server), 1);
        assert_eq!(step.caller, Outcome::Blocked);
        assert_eq!(step.woken, [wakeup(server, Ok(client))]);
        assert_eq!(
            transfers,
            [Transfer {
                sender: client,
                receiver: server
            }]
        );
        assert_eq!(
            engine.state(client),
            Some(IpcState::AwaitingReply { from: server })
        );

        // The reply needs no send timeout: the client is waiting for it.
        let (step, transfers) = run(&mut engine, server, reply_and_wait(client), 2);
        assert_eq!(step.caller, Outcome::Blocked);
        assert_eq!(step.woken, [wakeup(client, Ok(server))]);
        assert_eq!(
            transfers,
            [Transfer {
                sender: server,
                receiver: client
            }]
        );
        assert_eq!(engine.state(client), Some(IpcState::Idle));
        assert_eq!(
            engine.state(server),
            Some(IpcState::Receiving {
                from: FromSpecifier::Any
            })
        );
    }

    #[test]
    fn call_before_the_server_waits() {
        let (client, server) = (thread(0), thread(1));
        let mut engine = engine(2);
        let (step, transfers) = run(&mut engine, client, call(server), 0);
        assert_eq!(step.caller, Outcome::Blocked);
        assert!(transfers.is_empty());
        assert_eq!(engine.senders(server), [client]);

        let (step, transfers) = run(
            &mut engine,
            server,
            receive(FromSpecifier::Any, Timeout::Never),
            5,
        );
        assert_eq!(step.caller, Outcome::Completed(Ok(client)));
        assert!(step.woken.is_empty(), "the client now awaits the reply");
        assert_eq!(
            transfers,
            [Transfer {
                sender: client,
                receiver: server
            }]
        );
        assert_eq!(
            engine.state(client),
            Some(IpcState::AwaitingReply { from: server })
        );
    }

    #[test]
    fn state_flags() {
        let (a, b) = (thread(0), thread(1));
        let mut engine = engine(2);
        let flags = |engine: &IpcEngine, id| engine.state(id).map(IpcState::state_flags);
        assert_eq!(flags(&engine, a), Some(ThreadStateFlags::empty()));
        run(&mut engine, a, call(b), 0);
        assert_eq!(flags(&engine, a), Some(ThreadStateFlags::SENDING));
        run(
            &mut engine,
            b,
            receive(FromSpecifier::Any, Timeout::Never),
            0,
        );
        assert_eq!(flags(&engine, a), Some(ThreadStateFlags::RECEIVING));
        assert_eq!(flags(&engine, ThreadId::NIL), None);
    }

    #[test]
    fn plain_send_wakes_the_sender_when_taken() {
        let (sender, receiver) = (thread(0), thread(1));
        let mut engine = engine(2);
        let (step, _) = run(&mut engine, sender, send(receiver, Timeout::Never), 0);
        assert_eq!(step.caller, Outcome::Blocked);
        let (step, _) = run(
            &mut engine,
            receiver,
            receive(FromSpecifier::Thread(sender), Timeout::Zero),
            1,
        );
        assert_eq!(step.caller, Outcome::Completed(Ok(sender)));
        assert_eq!(step.woken, [wakeup(sender, Ok(ThreadId::NIL))]);
    }

    #[test]
    fn zero_timeouts_poll() {
        let (a, b) = (thread(0), thread(1));
        let mut engine = engine(2);
        let (step, _) = run(&mut engine, a, send(b, Timeout::Zero), 0);
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::send(Error::Timeout)))
        );
        let (step, _) = run(
            &mut engine,
            a,
            receive(FromSpecifier::Any, Timeout::Zero),
            0,
        );
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::receive(Error::Timeout)))
        );
        assert_eq!(engine.next_deadline(), None);
    }

    #[test]
    fn reply_to_a_client_that_is_not_waiting_fails_without_receiving() {
        let (client, server) = (thread(0), thread(1));
        let mut engine = engine(2);
        let (step, _) = run(&mut engine, server, reply_and_wait(client), 0);
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::send(Error::Timeout)))
        );
        assert_eq!(engine.state(server), Some(IpcState::Idle));
    }

    #[test]
    fn closed_receive_ignores_other_senders() {
        let (a, b, receiver) = (thread(0), thread(1), thread(2));
        let mut engine = engine(3);
        run(&mut engine, a, send(receiver, Timeout::Never), 0);
        run(&mut engine, b, send(receiver, Timeout::Never), 0);
        let (step, _) = run(
            &mut engine,
            receiver,
            receive(FromSpecifier::Thread(b), Timeout::Zero),
            1,
        );
        assert_eq!(step.caller, Outcome::Completed(Ok(b)));
        assert_eq!(engine.senders(receiver), [a]);
        // A closed receive from `b` again blocks although `a` is queued.
        let (step, _) = run(
            &mut engine,
            receiver,
            receive(FromSpecifier::Thread(b), Timeout::Never),
            2,
        );
        assert_eq!(step.caller, Outcome::Blocked);
        // `a` cannot get through either.
        assert_eq!(engine.senders(receiver), [a]);
    }

    #[test]
    fn open_receive_takes_senders_in_arrival_order() {
        let receiver = thread(0);
        let mut engine = engine(4);
        for sender in 1..4 {
            run(
                &mut engine,
                thread(sender),
                send(receiver, Timeout::Never),
                sender as u64,
            );
        }
        for sender in 1..4 {
            let (step, _) = run(
                &mut engine,
                receiver,
                receive(FromSpecifier::Any, Timeout::Zero),
                10,
            );
            assert_eq!(step.caller, Outcome::Completed(Ok(thread(sender))));
        }
    }

    #[test]
    fn timeouts_fire_in_the_right_phase() {
        let (a, b) = (thread(0), thread(1));
        let mut engine = engine(2);
        let relative = Timeout::Relative { microseconds: 100 };
        run(
            &mut engine,
            a,
            request(b, FromSpecifier::Thread(b), relative, relative),
            1000,
        );
        assert_eq!(engine.next_deadline(), Some(1100));
        assert!(engine.expire(1099).is_empty());
        assert_eq!(
            engine.expire(1100),
            [wakeup(a, Err(IpcError::send(Error::Timeout)))]
        );
        assert!(engine.senders(b).is_empty());
        engine.check_invariants().unwrap();

        run(&mut engine, b, receive(FromSpecifier::Any, relative), 2000);
        assert_eq!(
            engine.expire(5000),
            [wakeup(b, Err(IpcError::receive(Error::Timeout)))]
        );
        engine.check_invariants().unwrap();
    }

    #[test]
    fn the_receive_timeout_of_a_call_starts_after_the_send() {
        let (client, server) = (thread(0), thread(1));
        let mut engine = engine(2);
        let timeouts = request(
            server,
            FromSpecifier::Thread(server),
            Timeout::Never,
            Timeout::Relative { microseconds: 50 },
        );
        run(&mut engine, client, timeouts, 0);
        assert_eq!(engine.next_deadline(), None);
        run(
            &mut engine,
            server,
            receive(FromSpecifier::Any, Timeout::Never),
            1000,
        );
        assert_eq!(engine.next_deadline(), Some(1050));
        assert_eq!(
            engine.expire(1050),
            [wakeup(client, Err(IpcError::receive(Error::Timeout)))]
        );
    }

    #[test]
    fn a_destroyed_server_wakes_its_callers_and_senders() {
        let (client, sender, server, waiting_client) = (thread(0), thread(1), thread(2), thread(3));
        let mut engine = engine(4);
        run(
            &mut engine,
            server,
            receive(FromSpecifier::Any, Timeout::Never),
            0,
        );
        run(&mut engine, client, call(server), 1);
        run(&mut engine, sender, send(server, Timeout::Never), 2);
        run(&mut engine, waiting_client, call(server), 3);
        let mut woken = engine.unregister(server);
        engine.check_invariants().unwrap();
        woken.sort_by_key(|wakeup| wakeup.thread);
        assert_eq!(
            woken,
            [
                wakeup(client, Err(IpcError::receive(Error::PartnerDestroyed))),
                wakeup(sender, Err(IpcError::send(Error::PartnerDestroyed))),
                wakeup(waiting_client, Err(IpcError::send(Error::PartnerDestroyed))),
            ]
        );
        let (step, _) = run(&mut engine, client, call(server), 4);
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::send(Error::InvalidThread)))
        );
    }

    #[test]
    fn a_destroyed_sender_leaves_the_queue() {
        let (a, b, receiver) = (thread(0), thread(1), thread(2));
        let mut engine = engine(3);
        run(&mut engine, a, send(receiver, Timeout::Never), 0);
        run(&mut engine, b, send(receiver, Timeout::Never), 0);
        assert!(engine.unregister(a).is_empty());
        engine.check_invariants().unwrap();
        assert_eq!(engine.senders(receiver), [b]);
    }

    #[test]
    fn stale_ids_are_rejected() {
        let mut engine = engine(2);
        engine.unregister(thread(1));
        let newer = ThreadId::new(1, 2).unwrap();
        engine.register(newer).unwrap();
        let (step, _) = run(&mut engine, thread(0), send(thread(1), Timeout::Never), 0);
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::send(Error::InvalidThread)))
        );
        let (step, _) = run(&mut engine, thread(1), send(thread(0), Timeout::Never), 0);
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::send(Error::InvalidThread)))
        );
        let (step, _) = run(
            &mut engine,
            thread(0),
            receive(FromSpecifier::Thread(thread(1)), Timeout::Never),
            0,
        );
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::receive(Error::InvalidThread)))
        );
        assert_eq!(
            engine.register(ThreadId::new(1, 3).unwrap()),
            Err(Error::AlreadyExists)
        );
        assert_eq!(engine.register(ThreadId::NIL), Err(Error::InvalidThread));
    }

    #[test]
    fn ipc_with_oneself_is_refused() {
        let mut engine = engine(1);
        let (step, _) = run(&mut engine, thread(0), call(thread(0)), 0);
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::send(Error::InvalidThread)))
        );
        let (step, _) = run(
            &mut engine,
            thread(0),
            receive(FromSpecifier::Thread(thread(0)), Timeout::Never),
            0,
        );
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::receive(Error::InvalidThread)))
        );
    }

    #[test]
    fn a_failed_transfer_fails_both_sides() {
        let (client, server) = (thread(0), thread(1));
        let mut engine = engine(2);
        run(
            &mut engine,
            server,
            receive(FromSpecifier::Any, Timeout::Never),
            0,
        );
        let step = engine.ipc(client, call(server), 1, |_| Err(Error::StringFault));
        engine.check_invariants().unwrap();
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::send(Error::StringFault)))
        );
        assert_eq!(
            step.woken,
            [wakeup(server, Err(IpcError::receive(Error::StringFault)))]
        );
        assert_eq!(engine.state(client), Some(IpcState::Idle));

        run(&mut engine, client, call(server), 2);
        let step = engine.ipc(
            server,
            receive(FromSpecifier::Any, Timeout::Never),
            3,
            |_| Err(Error::MessageTooLong),
        );
        engine.check_invariants().unwrap();
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::receive(Error::MessageTooLong)))
        );
        assert_eq!(
            step.woken,
            [wakeup(client, Err(IpcError::send(Error::MessageTooLong)))]
        );
    }

    #[test]
    fn cancel_ends_only_the_named_phase() {
        let (a, b) = (thread(0), thread(1));
        let mut engine = engine(2);
        run(&mut engine, a, call(b), 0);
        assert_eq!(engine.cancel(a, false, true), None);
        assert_eq!(
            engine.cancel(a, true, false),
            Some(wakeup(a, Err(IpcError::send(Error::Cancelled))))
        );
        engine.check_invariants().unwrap();
        run(
            &mut engine,
            a,
            receive(FromSpecifier::Any, Timeout::Never),
            0,
        );
        assert_eq!(
            engine.cancel(a, false, true),
            Some(wakeup(a, Err(IpcError::receive(Error::Cancelled))))
        );
        assert_eq!(engine.cancel(a, true, true), None);
    }

    #[test]
    fn interrupts_are_delivered_or_kept_pending() {
        let handler = thread(0);
        let mut engine = engine(1);
        assert_eq!(engine.raise_interrupt(7, handler), Ok(None));
        assert_eq!(engine.raise_interrupt(3, handler), Ok(None));
        let (step, transfers) = run(
            &mut engine,
            handler,
            receive(FromSpecifier::Any, Timeout::Never),
            0,
        );
        assert_eq!(step.caller, Outcome::Completed(Ok(ThreadId::interrupt(3))));
        assert!(transfers.is_empty());
        let from_seven = FromSpecifier::Thread(ThreadId::interrupt(7));
        let (step, _) = run(&mut engine, handler, receive(from_seven, Timeout::Zero), 0);
        assert_eq!(step.caller, Outcome::Completed(Ok(ThreadId::interrupt(7))));
        let (step, _) = run(&mut engine, handler, receive(from_seven, Timeout::Never), 0);
        assert_eq!(step.caller, Outcome::Blocked);
        assert_eq!(engine.raise_interrupt(3, handler), Ok(None));
        assert_eq!(
            engine.raise_interrupt(7, handler),
            Ok(Some(wakeup(handler, Ok(ThreadId::interrupt(7)))))
        );
        engine.clear_interrupt(3, handler);
        let (step, _) = run(
            &mut engine,
            handler,
            receive(FromSpecifier::Any, Timeout::Zero),
            0,
        );
        assert_eq!(
            step.caller,
            Outcome::Completed(Err(IpcError::receive(Error::Timeout)))
        );
        assert_eq!(
            engine.raise_interrupt(1, thread(5)),
            Err(Error::InvalidThread)
        );
    }

    #[test]
    fn a_taken_sender_goes_on_to_take_its_own_queue() {
        // `middle` sends to `server`, then receives from anyone; `client`
        // is already queued at `middle`. When `server` takes `middle`'s
        // message, `middle`'s receive phase takes `client`'s at once.
        let (client, middle, server) = (thread(0), thread(1), thread(2));
        let mut engine = engine(3);
        run(
            &mut engine,
            middle,
            request(server, FromSpecifier::Any, Timeout::Never, Timeout::Never),
            0,
        );
        run(&mut engine, client, send(middle, Timeout::Never), 1);
        let (step, transfers) = run(
            &mut engine,
            server,
            receive(FromSpecifier::Any, Timeout::Zero),
            2,
        );
        assert_eq!(step.caller, Outcome::Completed(Ok(middle)));
        assert_eq!(
            transfers,
            [
                Transfer {
                    sender: middle,
                    receiver: server
                },
                Transfer {
                    sender: client,
                    receiver: middle
                },
            ]
        );
        assert_eq!(
            step.woken,
            [
                wakeup(client, Ok(ThreadId::NIL)),
                wakeup(middle, Ok(client))
            ]
        );
    }

    #[derive(Clone, Debug)]
    enum Operation {
        Ipc {
            caller: u32,
            to: Option<u32>,
            from: Option<Option<u32>>,
            send: u8,
            receive: u8,
        },
        Expire {
            advance: u64,
        },
        Destroy {
            thread: u32,
        },
        Cancel {
            thread: u32,
        },
        Interrupt {
            irq: u8,
            handler: u32,
        },
    }

    const THREADS: u32 = 5;

    fn timeout(code: u8) -> Timeout {
        match code % 3 {
            0 => Timeout::Zero,
            1 => Timeout::Never,
            _ => Timeout::Relative { microseconds: 10 },
        }
    }

    fn operation() -> impl Strategy<Value = Operation> {
        let thread = 0..THREADS;
        prop_oneof![
            6 => (thread.clone(), proptest::option::of(thread.clone()), proptest::option::of(proptest::option::of(thread.clone())), any::<u8>(), any::<u8>())
                .prop_map(|(caller, to, from, send, receive)| Operation::Ipc { caller, to, from, send, receive }),
            2 => (0u64..20).prop_map(|advance| Operation::Expire { advance }),
            1 => thread.clone().prop_map(|thread| Operation::Destroy { thread }),
            1 => thread.clone().prop_map(|thread| Operation::Cancel { thread }),
            1 => (0u8..4, thread).prop_map(|(irq, handler)| Operation::Interrupt { irq, handler }),
        ]
    }

    proptest! {
        /// Random interleavings never break the invariants, every woken
        /// thread was blocked, and a thread's IPC ends at most once.
        #[test]
        fn random_interleavings_keep_the_invariants(operations in proptest::collection::vec(operation(), 1..120)) {
            let mut engine = IpcEngine::new();
            let mut versions = [1u32; THREADS as usize];
            for index in 0..THREADS {
                engine.register(thread(index)).unwrap();
            }
            let id = |versions: &[u32; THREADS as usize], index: u32| ThreadId::new(index, versions[index as usize]).unwrap();
            let mut now = 0;
            for operation in operations {
                let mut woken = Vec::new();
                match operation {
                    Operation::Ipc { caller, to, from, send, receive } => {
                        let caller = id(&versions, caller);
                        if engine.state(caller) != Some(IpcState::Idle) {
                            continue;
                        }
                        let request = IpcRequest {
                            to: to.map_or(ThreadId::NIL, |to| id(&versions, to)),
                            from: match from {
                                None => FromSpecifier::Nobody,
                                Some(None) => FromSpecifier::Any,
                                Some(Some(source)) => FromSpecifier::Thread(id(&versions, source)),
                            },
                            timeouts: Timeouts { send: timeout(send), receive: timeout(receive) },
                        };
                        let mut transfers = 0;
                        let step = engine.ipc(caller, request, now, |_| { transfers += 1; Ok(()) });
                        prop_assert!(transfers <= THREADS as usize);
                        if step.caller == Outcome::Blocked {
                            prop_assert_ne!(engine.state(caller), Some(IpcState::Idle));
                        } else {
                            prop_assert_eq!(engine.state(caller), Some(IpcState::Idle));
                        }
                        woken = step.woken;
                    }
                    Operation::Expire { advance } => {
                        now += advance;
                        woken = engine.expire(now);
                    }
                    Operation::Destroy { thread } => {
                        woken = engine.unregister(id(&versions, thread));
                        versions[thread as usize] += 1;
                        engine.register(id(&versions, thread)).unwrap();
                    }
                    Operation::Cancel { thread } => {
                        woken.extend(engine.cancel(id(&versions, thread), true, true));
                    }
                    Operation::Interrupt { irq, handler } => {
                        woken.extend(engine.raise_interrupt(irq, id(&versions, handler)).unwrap());
                    }
                }
                prop_assert_eq!(engine.check_invariants(), Ok(()));
                let mut seen = std::collections::BTreeSet::new();
                for wakeup in woken {
                    prop_assert!(seen.insert(wakeup.thread), "woken twice in one step");
                    prop_assert_eq!(engine.state(wakeup.thread), Some(IpcState::Idle));
                }
            }
        }
    }

    #[test]
    fn direct_exchange_matches_the_general_path() {
        use microkernel_abi::Timeouts;
        let client = ThreadId::new(1, 1).unwrap();
        let server = ThreadId::new(2, 1).unwrap();
        let build = || {
            let mut engine = IpcEngine::new();
            engine.register(client).unwrap();
            engine.register(server).unwrap();
            let wait = IpcRequest {
                to: ThreadId::NIL,
                from: FromSpecifier::Any,
                timeouts: Timeouts::NEVER,
            };
            assert_eq!(
                engine.ipc(server, wait, 0, |_| Ok(())).caller,
                Outcome::Blocked
            );
            engine
        };
        let call = IpcRequest {
            to: server,
            from: FromSpecifier::Thread(server),
            timeouts: Timeouts::NEVER,
        };
        let mut fast = build();
        assert!(fast.direct_exchange(client, call, 0));
        let mut slow = build();
        let step = slow.ipc(client, call, 0, |_| Ok(()));
        assert_eq!(step.caller, Outcome::Blocked);
        assert_eq!(
            step.woken,
            alloc::vec![Wakeup {
                thread: server,
                result: Ok(client)
            }]
        );
        for id in [client, server] {
            assert_eq!(fast.state(id), slow.state(id));
        }
        // The reply goes the fast way too: the client awaits the server.
        let reply = IpcRequest {
            to: client,
            from: FromSpecifier::Any,
            timeouts: Timeouts::NEVER,
        };
        assert!(fast.direct_exchange(server, reply, 0));
        assert_eq!(fast.state(client), Some(IpcState::Idle));
        assert_eq!(
            fast.state(server),
            Some(IpcState::Receiving {
                from: FromSpecifier::Any
            })
        );
        fast.check_invariants().unwrap();
    }

    #[test]
    fn direct_exchange_declines_when_the_general_path_is_needed() {
        use microkernel_abi::Timeouts;
        let client = ThreadId::new(1, 1).unwrap();
        let server = ThreadId::new(2, 1).unwrap();
        let mut engine = IpcEngine::new();
        engine.register(client).unwrap();
        engine.register(server).unwrap();
        let call = IpcRequest {
            to: server,
            from: FromSpecifier::Thread(server),
            timeouts: Timeouts::NEVER,
        };
        // The server is not receiving yet.
        assert!(!engine.direct_exchange(client, call, 0));
        assert_eq!(engine.state(client), Some(IpcState::Idle));
        // A zero receive timeout is the general path's; a relative one
        // blocks with its deadline.
        let wait = IpcRequest {
            to: ThreadId::NIL,
            from: FromSpecifier::Any,
            timeouts: Timeouts::NEVER,
        };
        engine.ipc(server, wait, 0, |_| Ok(()));
        let bounded = IpcRequest {
            timeouts: Timeouts {
                send: Timeout::Never,
                receive: Timeout::Relative { microseconds: 5 },
            },
            ..call
        };
        let zero = IpcRequest {
            timeouts: Timeouts {
                send: Timeout::Never,
                receive: Timeout::Zero,
            },
            ..call
        };
        assert!(!engine.direct_exchange(client, zero, 1000));
        assert!(engine.direct_exchange(client, bounded, 1000));
        assert_eq!(engine.next_deadline(), Some(1005));
        assert_eq!(
            engine.state(client),
            Some(IpcState::AwaitingReply { from: server })
        );
        // The deadline passes: the call's receive phase times out.
        let woken = engine.expire(1005);
        assert_eq!(woken.len(), 1);
        assert_eq!(engine.state(client), Some(IpcState::Idle));
        // A pending interrupt must be taken by an open receive first.
        engine.raise_interrupt(3, client).unwrap();
        let reply_and_wait = IpcRequest {
            to: server,
            from: FromSpecifier::Any,
            timeouts: Timeouts::NEVER,
        };
        assert!(!engine.direct_exchange(client, reply_and_wait, 0));
        engine.check_invariants().unwrap();
    }

    #[test]
    fn direct_exchange_declines_self_nil_stale_and_unwilling_partners() {
        use microkernel_abi::Timeouts;
        let client = ThreadId::new(1, 1).unwrap();
        let server = ThreadId::new(2, 1).unwrap();
        let other = ThreadId::new(3, 1).unwrap();
        let mut engine = IpcEngine::new();
        for id in [client, server, other] {
            engine.register(id).unwrap();
        }
        let call = |to: ThreadId| IpcRequest {
            to,
            from: FromSpecifier::Thread(to),
            timeouts: Timeouts::NEVER,
        };
        // The server waits for `other` only: a closed receive.
        let closed = IpcRequest {
            to: ThreadId::NIL,
            from: FromSpecifier::Thread(other),
            timeouts: Timeouts::NEVER,
        };
        engine.ipc(server, closed, 0, |_| Ok(()));
        assert!(!engine.direct_exchange(client, call(server), 0));
        // Nil, itself, a stale version of the server.
        assert!(!engine.direct_exchange(client, call(ThreadId::NIL), 0));
        assert!(!engine.direct_exchange(client, call(client), 0));
        let stale = ThreadId::new(2, 2).unwrap();
        assert!(!engine.direct_exchange(client, call(stale), 0));
        // A caller that is itself blocked (sending) is not idle.
        let send = IpcRequest {
            to: other,
            from: FromSpecifier::Nobody,
            timeouts: Timeouts::NEVER,
        };
        assert_eq!(
            engine.ipc(client, send, 0, |_| Ok(())).caller,
            Outcome::Blocked
        );
        assert!(!engine.direct_exchange(client, call(server), 0));
        // A partner that is sending, not receiving, is not waiting.
        assert!(!engine.direct_exchange(server, call(client), 0));
        // A destroyed partner: its callers find no slot.
        engine.unregister(server);
        assert!(!engine.direct_exchange(other, call(server), 0));
        engine.check_invariants().unwrap();
    }

    #[test]
    fn direct_exchange_untimed_matches_direct_exchange() {
        use microkernel_abi::Timeouts;
        let client = ThreadId::new(1, 1).unwrap();
        let server = ThreadId::new(2, 1).unwrap();
        let waiting = || {
            let mut engine = IpcEngine::new();
            engine.register(client).unwrap();
            engine.register(server).unwrap();
            let wait = IpcRequest {
                to: ThreadId::NIL,
                from: FromSpecifier::Any,
                timeouts: Timeouts::NEVER,
            };
            engine.ipc(server, wait, 0, |_| Ok(()));
            engine
        };
        let call = IpcRequest {
            to: server,
            from: FromSpecifier::Thread(server),
            timeouts: Timeouts::NEVER,
        };
        let reply = IpcRequest {
            to: client,
            from: FromSpecifier::Any,
            timeouts: Timeouts::NEVER,
        };
        let (mut a, mut b) = (waiting(), waiting());
        assert!(a.direct_exchange_untimed(client, server, false));
        assert!(b.direct_exchange(client, call, 0));
        for id in [client, server] {
            assert_eq!(a.state(id), b.state(id));
        }
        assert!(a.direct_exchange_untimed(server, client, true));
        assert!(b.direct_exchange(server, reply, 0));
        for id in [client, server] {
            assert_eq!(a.state(id), b.state(id));
        }
        a.check_invariants().unwrap();
        // Declines like direct_exchange: nobody waits for the server now,
        // a call to oneself, a stale id, a pending interrupt before an
        // open receive.
        assert!(!a.direct_exchange_untimed(server, client, false));
        assert!(!a.direct_exchange_untimed(client, client, false));
        assert!(!a.direct_exchange_untimed(client, ThreadId::new(2, 2).unwrap(), false));
        let mut c = waiting();
        c.raise_interrupt(3, client).unwrap();
        assert!(!c.direct_exchange_untimed(client, server, true));
        assert_eq!(
            c.state(server),
            Some(IpcState::Receiving {
                from: FromSpecifier::Any
            })
        );
        c.check_invariants().unwrap();
    }
}
