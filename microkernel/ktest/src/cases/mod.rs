//! The test cases and the loop that runs them.
//!
//! A case is a function that returns `Ok(())` or a [`Failure`] saying what
//! went wrong; it creates its threads and tasks in a
//! [`Scope`](crate::threads::Scope), which cleans up whether it passed or
//! not. Every wait in a case is bounded (`PATIENCE` or shorter), so a
//! kernel that loses a message makes a case fail instead of hanging the
//! suite. `docs/microkernel-tests.md` says what each case proves.

mod basics;
mod driver;
mod ipc;
mod lifecycle;
mod memory;
mod scheduling;
mod strings;

use microkernel_abi::boot::RootBootInfo;
use microkernel_abi::Utcb;

use crate::console::Failure;

/// What every case gets: the root thread's UTCB and the boot page.
pub struct Context {
    /// The root thread's UTCB.
    pub utcb: &'static mut Utcb,
    /// The boot page.
    pub info: &'static RootBootInfo,
}

/// A case.
type Case = fn(&mut Context) -> Result<(), Failure>;

/// Every case, in the order they run.
const CASES: &[(&str, Case)] = &[
    ("kernel_info", basics::kernel_info),
    ("call_reply_same_task", ipc::call_reply_same_task),
    ("call_reply_cross_task", ipc::call_reply_cross_task),
    ("timeouts", ipc::timeouts),
    ("receive_from_any", ipc::receive_from_any),
    ("fast_path_edges", ipc::fast_path_edges),
    ("string_copy", strings::string_copy),
    ("map_unmap_recursive", memory::map_unmap_recursive),
    ("grant", memory::grant),
    ("user_pager", memory::user_pager),
    ("timer_interrupt", scheduling::timer_interrupt),
    ("preemption_round_robin", scheduling::preemption_round_robin),
    ("priority_order", scheduling::priority_order),
    ("destroyed_partner", lifecycle::destroyed_partner),
    ("bad_arguments", lifecycle::bad_arguments),
    ("driver_mechanisms", driver::driver_mechanisms),
];

/// Runs every case, printing one line each; returns (passed, failed).
pub fn run_all(context: &mut Context) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in CASES {
        let result = case(context);
        // A case may leave receive targets behind when it fails early.
        context.utcb.clear_receive_targets();
        match result {
            Ok(()) => {
                passed += 1;
                say!("ktest: ok {name}");
            }
            Err(failure) => {
                failed += 1;
                say!("ktest: FAIL {name}: {failure}");
            }
        }
    }
    (passed, failed)
}
