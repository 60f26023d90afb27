//! Decoding of system-call arguments into checked, typed requests.
//!
//! The kernel's entry code saves RAX (the number) and the six argument
//! registers and hands them here as `number` and `arguments[0..6]` (in the
//! register order of `microkernel_abi::syscall`). What comes back has every
//! id, address, flag word and flexpage checked for form; whether an id names
//! a live object and whether the caller may act on it is for the kernel to
//! check against its tables.
//!
//! Invariants:
//! - Decoding never panics and never trusts a word: anything malformed is
//!   an [`Error`], and reserved bits or unknown operations are rejected.
//! - User addresses come out as [`UserAddress`], [`UserPage`] or
//!   [`UserRange`], so the kernel cannot use an unchecked one by mistake.
//! - For `ipc` only the tag is checked here (and only if there is a send
//!   phase); bad thread ids are found by the IPC engine, which reports them
//!   in the right phase. The kernel reports a decoding error of `ipc` as a
//!   send-phase error.

use microkernel_abi::syscall::{
    KEEP, MAX_DEBUG_WRITE, MAX_DEVICE_WINDOW, MAX_TIMESLICE_MICROSECONDS,
    MIN_TIMESLICE_MICROSECONDS,
};
use microkernel_abi::{
    Error, ExchangeControl, Fpage, FromSpecifier, InterruptControlOperation, KernelInfoSelector,
    MessageTag, SpaceControlOperation, Syscall, TaskId, ThreadControlOperation, ThreadId, Timeouts,
    UnmapFlags, PAGE_SIZE,
};

use crate::user_address::{UserAddress, UserPage, UserRange};

/// A decoded system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `ipc`; MR1..MR6 stay in the saved registers.
    Ipc {
        /// Send-phase destination; nil for none.
        to: ThreadId,
        /// Receive-phase source.
        from: FromSpecifier,
        /// Both timeouts.
        timeouts: Timeouts,
        /// MR0 (checked if there is a send phase).
        tag: MessageTag,
    },
    /// `thread_control(Create)`.
    ThreadCreate {
        /// The task to create the thread in.
        task: TaskId,
        /// Its pager; nil for none (a fault then kills the thread).
        pager: ThreadId,
        /// Where its UTCB page goes in the task.
        utcb: UserPage,
    },
    /// `thread_control(Delete)`.
    ThreadDelete {
        /// The thread to delete.
        thread: ThreadId,
    },
    /// `space_control(Create)`.
    SpaceCreate,
    /// `space_control(Destroy)`.
    SpaceDestroy {
        /// The task to destroy.
        task: TaskId,
    },
    /// `space_control(GrantPorts)`, checked by `device::PortGrants`.
    SpaceGrantPorts {
        /// The task that gets the ports.
        task: TaskId,
        /// The first port.
        first: u64,
        /// How many.
        count: u64,
    },
    /// `exchange_registers`.
    ExchangeRegisters {
        /// The thread.
        thread: ThreadId,
        /// What to do.
        control: ExchangeControl,
        /// The new instruction pointer, if `SET_INSTRUCTION_POINTER`.
        instruction_pointer: Option<UserAddress>,
        /// The new stack pointer, if `SET_STACK_POINTER`.
        stack_pointer: Option<UserAddress>,
        /// The new pager, if `SET_PAGER` (may be nil).
        pager: Option<ThreadId>,
    },
    /// `schedule`.
    Schedule {
        /// The thread.
        thread: ThreadId,
        /// The new priority, or keep.
        priority: Option<u8>,
        /// The new timeslice in microseconds, or keep.
        timeslice: Option<u32>,
    },
    /// `yield`.
    Yield,
    /// `unmap`.
    Unmap {
        /// The caller's region; its rights are the rights to revoke.
        fpage: Fpage,
        /// Whether the caller's own mappings lose the rights too.
        include_self: bool,
    },
    /// `interrupt_control(Associate)`.
    InterruptAssociate {
        /// The interrupt.
        irq: u8,
        /// Its handler.
        handler: ThreadId,
    },
    /// `interrupt_control(Dissociate)`.
    InterruptDissociate {
        /// The interrupt.
        irq: u8,
    },
    /// `interrupt_control(Acknowledge)`.
    InterruptAcknowledge {
        /// The interrupt.
        irq: u8,
    },
    /// `debug_write`.
    DebugWrite {
        /// The bytes to print, in the caller's space.
        buffer: UserRange,
    },
    /// `kernel_info`.
    KernelInfo {
        /// What to report.
        selector: KernelInfoSelector,
    },
    /// `hvm_call`: the hypercall number and its two arguments, unchecked
    /// here (`device::check_hvm_call` decides).
    HvmCall {
        /// hvm_abi's call number.
        call: u64,
        /// RDI for hvm.
        arg0: u64,
        /// RSI for hvm (for `CellInfo` a user address).
        arg1: u64,
    },
    /// `device_map`.
    DeviceMap {
        /// Physical address of the window (checked by
        /// `device::check_window`).
        physical: u64,
        /// Where it goes in the caller's space, `length` bytes.
        destination: UserRange,
    },
}

fn thread_argument(word: u64) -> Result<ThreadId, Error> {
    let id = ThreadId::from_raw(word);
    if id.is_thread() {
        Ok(id)
    } else {
        Err(Error::InvalidThread)
    }
}

fn optional_thread_argument(word: u64) -> Result<ThreadId, Error> {
    if word == 0 {
        Ok(ThreadId::NIL)
    } else {
        thread_argument(word)
    }
}

fn task_argument(word: u64) -> Result<TaskId, Error> {
    let task = TaskId::from_raw(word);
    if task.version() == 0 {
        Err(Error::NoSuchTask)
    } else {
        Ok(task)
    }
}

fn irq_argument(word: u64) -> Result<u8, Error> {
    u8::try_from(word).map_err(|_| Error::InvalidArgument)
}

/// Decodes RAX and the six argument registers.
pub fn decode(number: u64, arguments: [u64; 6]) -> Result<Request, Error> {
    let [first, second, third, fourth, fifth, _sixth] = arguments;
    Ok(match Syscall::try_from(number)? {
        Syscall::Ipc => {
            let to = ThreadId::from_raw(first);
            let tag = MessageTag::from_raw(fourth);
            if !to.is_nil() {
                tag.validate()?;
            }
            Request::Ipc {
                to,
                from: FromSpecifier::from_thread_id(ThreadId::from_raw(second)),
                timeouts: Timeouts::decode(third),
                tag,
            }
        }
        Syscall::ThreadControl => match ThreadControlOperation::try_from(first)? {
            ThreadControlOperation::Create => Request::ThreadCreate {
                task: task_argument(second)?,
                pager: optional_thread_argument(third)?,
                utcb: UserPage::new(fourth)?,
            },
            ThreadControlOperation::Delete => Request::ThreadDelete {
                thread: thread_argument(second)?,
            },
        },
        Syscall::SpaceControl => match SpaceControlOperation::try_from(first)? {
            SpaceControlOperation::Create => Request::SpaceCreate,
            SpaceControlOperation::Destroy => Request::SpaceDestroy {
                task: task_argument(second)?,
            },
            SpaceControlOperation::GrantPorts => Request::SpaceGrantPorts {
                task: task_argument(second)?,
                first: third,
                count: fourth,
            },
        },
        Syscall::ExchangeRegisters => {
            let control = ExchangeControl::from_raw(second)?;
            Request::ExchangeRegisters {
                thread: thread_argument(first)?,
                control,
                instruction_pointer: control
                    .contains(ExchangeControl::SET_INSTRUCTION_POINTER)
                    .then(|| UserAddress::new(third))
                    .transpose()?,
                stack_pointer: control
                    .contains(ExchangeControl::SET_STACK_POINTER)
                    .then(|| UserAddress::new(fourth))
                    .transpose()?,
                pager: control
                    .contains(ExchangeControl::SET_PAGER)
                    .then(|| optional_thread_argument(fifth))
                    .transpose()?,
            }
        }
        Syscall::Schedule => {
            let priority = match second {
                KEEP => None,
                value => Some(u8::try_from(value).map_err(|_| Error::InvalidArgument)?),
            };
            let timeslice = match third {
                KEEP => None,
                value => {
                    let value = u32::try_from(value).map_err(|_| Error::InvalidArgument)?;
                    if !(MIN_TIMESLICE_MICROSECONDS..=MAX_TIMESLICE_MICROSECONDS).contains(&value) {
                        return Err(Error::InvalidArgument);
                    }
                    Some(value)
                }
            };
            Request::Schedule {
                thread: thread_argument(first)?,
                priority,
                timeslice,
            }
        }
        Syscall::Yield => Request::Yield,
        Syscall::Unmap => Request::Unmap {
            fpage: Fpage::from_raw(first)?,
            include_self: UnmapFlags::from_raw(second)?.contains(UnmapFlags::INCLUDE_SELF),
        },
        Syscall::InterruptControl => {
            let operation = InterruptControlOperation::try_from(first)?;
            let irq = irq_argument(second)?;
            match operation {
                InterruptControlOperation::Associate => Request::InterruptAssociate {
                    irq,
                    handler: thread_argument(third)?,
                },
                InterruptControlOperation::Dissociate => Request::InterruptDissociate { irq },
                InterruptControlOperation::Acknowledge => Request::InterruptAcknowledge { irq },
            }
        }
        Syscall::DebugWrite => {
            if second > MAX_DEBUG_WRITE {
                return Err(Error::InvalidArgument);
            }
            Request::DebugWrite {
                buffer: UserRange::new(first, second)?,
            }
        }
        Syscall::KernelInfo => Request::KernelInfo {
            selector: KernelInfoSelector::try_from(first)?,
        },
        Syscall::HvmCall => Request::HvmCall {
            call: first,
            arg0: second,
            arg1: third,
        },
        Syscall::DeviceMap => {
            if second % PAGE_SIZE != 0 || second == 0 || second > MAX_DEVICE_WINDOW {
                return Err(Error::InvalidArgument);
            }
            Request::DeviceMap {
                physical: first,
                destination: UserRange::new_aligned(third, second, PAGE_SIZE)?,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use microkernel_abi::{Rights, Timeout, USER_ADDRESS_END};

    fn thread(index: u32) -> u64 {
        ThreadId::new(index, 1).unwrap().raw()
    }

    #[test]
    fn unknown_numbers() {
        assert_eq!(decode(12, [0; 6]), Err(Error::InvalidSyscall));
        assert_eq!(decode(u64::MAX, [0; 6]), Err(Error::InvalidSyscall));
    }

    #[test]
    fn ipc() {
        let tag = MessageTag::new(5, 2, 0).unwrap();
        let timeouts = Timeouts {
            send: Timeout::Never,
            receive: Timeout::Zero,
        };
        assert_eq!(
            decode(0, [thread(1), u64::MAX, timeouts.encode(), tag.raw(), 0, 0]),
            Ok(Request::Ipc {
                to: ThreadId::from_raw(thread(1)),
                from: FromSpecifier::Any,
                timeouts,
                tag,
            })
        );
        let too_long = MessageTag::from_raw((40 << 6) | 40);
        assert_eq!(
            decode(0, [thread(1), 0, 0, too_long.raw(), 0, 0]),
            Err(Error::MessageTooLong)
        );
        // Without a send phase the tag is not looked at.
        assert!(decode(0, [0, thread(1), 0, too_long.raw(), 0, 0]).is_ok());
    }

    #[test]
    fn thread_and_space_control() {
        assert_eq!(
            decode(1, [0, TaskId::new(1, 1).unwrap().raw(), 0, 0x7000, 0, 0]),
            Ok(Request::ThreadCreate {
                task: TaskId::new(1, 1).unwrap(),
                pager: ThreadId::NIL,
                utcb: UserPage::new(0x7000).unwrap(),
            })
        );
        assert_eq!(decode(1, [0, 0, 0, 0x7000, 0, 0]), Err(Error::NoSuchTask));
        let task = TaskId::new(1, 1).unwrap().raw();
        assert_eq!(
            decode(1, [0, task, u64::MAX, 0x7000, 0, 0]),
            Err(Error::InvalidThread)
        );
        assert_eq!(
            decode(1, [0, task, 0, 0x7001, 0, 0]),
            Err(Error::BadAddress)
        );
        assert_eq!(
            decode(1, [0, task, 0, USER_ADDRESS_END, 0, 0]),
            Err(Error::BadAddress)
        );
        assert_eq!(decode(1, [1, 0, 0, 0, 0, 0]), Err(Error::InvalidThread));
        assert_eq!(decode(1, [2, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(decode(2, [0; 6]), Ok(Request::SpaceCreate));
        assert_eq!(decode(2, [1, 0, 0, 0, 0, 0]), Err(Error::NoSuchTask));
        assert_eq!(
            decode(2, [2, task, 0x170, 8, 0, 0]),
            Ok(Request::SpaceGrantPorts {
                task: TaskId::new(1, 1).unwrap(),
                first: 0x170,
                count: 8,
            })
        );
        assert_eq!(decode(2, [2, 0, 0x170, 8, 0, 0]), Err(Error::NoSuchTask));
        assert_eq!(
            decode(2, [3, task, 0, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
    }

    #[test]
    fn exchange_registers_checks_only_what_it_sets() {
        let control = ExchangeControl::SET_INSTRUCTION_POINTER | ExchangeControl::RESUME;
        assert_eq!(
            decode(
                3,
                [thread(2), control.bits(), 0x40_0000, u64::MAX, u64::MAX, 0]
            ),
            Ok(Request::ExchangeRegisters {
                thread: ThreadId::from_raw(thread(2)),
                control,
                instruction_pointer: Some(UserAddress::new(0x40_0000).unwrap()),
                stack_pointer: None,
                pager: None,
            })
        );
        // A kernel address as the new instruction pointer would make
        // `sysret` fault in ring 0.
        assert_eq!(
            decode(
                3,
                [thread(2), control.bits(), 0xFFFF_8000_0000_0000, 0, 0, 0]
            ),
            Err(Error::BadAddress)
        );
        let set_pager = ExchangeControl::SET_PAGER.bits();
        assert_eq!(
            decode(3, [thread(2), set_pager, 0, 0, u64::MAX, 0]),
            Err(Error::InvalidThread)
        );
        assert_eq!(
            decode(3, [thread(2), 1 << 9, 0, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
    }

    #[test]
    fn schedule_limits() {
        assert_eq!(
            decode(4, [thread(0), KEEP, KEEP, 0, 0, 0]),
            Ok(Request::Schedule {
                thread: ThreadId::from_raw(thread(0)),
                priority: None,
                timeslice: None
            })
        );
        assert!(decode(4, [thread(0), 255, 100, 0, 0, 0]).is_ok());
        assert_eq!(
            decode(4, [thread(0), 256, KEEP, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            decode(4, [thread(0), KEEP, 99, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            decode(4, [thread(0), KEEP, 1_000_001, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
    }

    #[test]
    fn unmap_interrupts_debug_and_info() {
        let fpage = Fpage::new(0x1000, 12, Rights::WRITE).unwrap();
        assert_eq!(
            decode(6, [fpage.raw(), 1, 0, 0, 0, 0]),
            Ok(Request::Unmap {
                fpage,
                include_self: true
            })
        );
        assert_eq!(
            decode(6, [fpage.raw(), 2, 0, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
        assert_eq!(decode(6, [0x1001, 0, 0, 0, 0, 0]), Err(Error::InvalidItem));
        assert_eq!(
            decode(7, [0, 4, thread(3), 0, 0, 0]),
            Ok(Request::InterruptAssociate {
                irq: 4,
                handler: ThreadId::from_raw(thread(3))
            })
        );
        assert_eq!(decode(7, [2, 256, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(decode(7, [0, 4, 0, 0, 0, 0]), Err(Error::InvalidThread));
        assert_eq!(
            decode(7, [2, 9, 0, 0, 0, 0]),
            Ok(Request::InterruptAcknowledge { irq: 9 })
        );
        assert_eq!(
            decode(8, [0x1000, 5, 0, 0, 0, 0]),
            Ok(Request::DebugWrite {
                buffer: UserRange::new(0x1000, 5).unwrap()
            })
        );
        assert_eq!(
            decode(8, [0x1000, 1025, 0, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            decode(8, [USER_ADDRESS_END - 1, 5, 0, 0, 0, 0]),
            Err(Error::BadAddress)
        );
        assert_eq!(
            decode(9, [3, 0, 0, 0, 0, 0]),
            Ok(Request::KernelInfo {
                selector: KernelInfoSelector::ClockMicroseconds
            })
        );
        assert_eq!(decode(9, [77, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(decode(5, [1, 2, 3, 4, 5, 6]), Ok(Request::Yield));
        assert_eq!(
            decode(10, [11, 2, 3, 4, 5, 6]),
            Ok(Request::HvmCall {
                call: 11,
                arg0: 2,
                arg1: 3
            })
        );
        assert_eq!(
            decode(11, [0xE000_0000, 0x8000, 0x4000_0000_0000, 0, 0, 0]),
            Ok(Request::DeviceMap {
                physical: 0xE000_0000,
                destination: UserRange::new(0x4000_0000_0000, 0x8000).unwrap(),
            })
        );
        for (length, destination, error) in [
            (0, 0x4000_0000_0000, Error::InvalidArgument),
            (0x800, 0x4000_0000_0000, Error::InvalidArgument),
            (
                MAX_DEVICE_WINDOW * 2,
                0x4000_0000_0000,
                Error::InvalidArgument,
            ),
            (0x1000, 0x4000_0000_0008, Error::BadAddress),
            (0x2000, USER_ADDRESS_END - 0x1000, Error::BadAddress),
        ] {
            assert_eq!(
                decode(11, [0xE000_0000, length, destination, 0, 0, 0]),
                Err(error),
                "{length:#x} at {destination:#x}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(number in 0u64..12, arguments in proptest::array::uniform6(proptest::prelude::any::<u64>())) {
            let _ = decode(number, arguments);
        }
    }
}
