//! Case 0: what the kernel tells the root task about itself.
//!
//! The boot page and `kernel_info` must agree on who the root thread and
//! task are, the ABI version must be the one this crate was built for, and
//! the UTCB must be where both `gs:[0]` and `kernel_info` say.

use microkernel_abi::boot::ROOT_UTCB;
use microkernel_abi::{KernelInfoSelector, ABI_VERSION};
use microkernel_rt::user::{current_utcb, kernel_info as info_of};

use crate::cases::Context;
use crate::console::{Failure, OrFail};

/// Case 0.
pub fn kernel_info(context: &mut Context) -> Result<(), Failure> {
    let info = context.info;
    let version = info_of(KernelInfoSelector::ApiVersion).or_fail("kernel_info(ApiVersion)")?;
    ensure!(
        version == ABI_VERSION,
        "ABI version {version}, built for {ABI_VERSION}"
    );
    let thread = info_of(KernelInfoSelector::CurrentThread).or_fail("CurrentThread")?;
    ensure!(
        thread == info.thread,
        "CurrentThread {thread:#x}, boot page says {:#x}",
        info.thread
    );
    let task = info_of(KernelInfoSelector::CurrentTask).or_fail("CurrentTask")?;
    ensure!(
        task == info.task,
        "CurrentTask {task:#x}, boot page says {:#x}",
        info.task
    );
    let utcb = info_of(KernelInfoSelector::UtcbAddress).or_fail("UtcbAddress")?;
    ensure!(
        utcb == ROOT_UTCB,
        "UtcbAddress {utcb:#x}, expected {ROOT_UTCB:#x}"
    );
    let gs = current_utcb() as u64;
    ensure!(
        gs == ROOT_UTCB,
        "gs:[0] is {gs:#x}, expected {ROOT_UTCB:#x}"
    );
    ensure!(
        context.utcb.self_address == ROOT_UTCB,
        "UTCB self_address {:#x}",
        context.utcb.self_address
    );
    ensure!(
        context.utcb.thread_id == info.thread && context.utcb.task_id == info.task,
        "UTCB ids thread {:#x} task {:#x}, boot page {:#x} {:#x}",
        context.utcb.thread_id,
        context.utcb.task_id,
        info.thread,
        info.task
    );
    Ok(())
}
