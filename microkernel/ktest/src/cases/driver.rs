//! Case 13: what a user-level driver gets from the kernel, and who may not.
//!
//! The root task (ktest here) may forward five hypercalls to hvm
//! (`hvm_call`; `NotSupported` when bare), map a device window above the
//! cell's memory (`device_map`), and use the PCI configuration ports. The
//! checks: hvm's other calls and unknown numbers are refused before hvm
//! sees them; a window over the cell's RAM or the local APIC is refused; a
//! window goes only where nothing is mapped; the link interrupts
//! 0x50..0x57 can be associated and 0x58 cannot; and a thread of another task
//! is refused both calls and faults (#GP, vector 13) on the ports
//! (docs/microkernel-abi.md §9.11, §9.12). Port grants
//! (`space_control(GrantPorts)`): the PCI ports and overlaps are refused;
//! a task uses its granted ports and faults one port past them.

use microkernel_abi::boot::{LINK_INTERRUPTS, LINK_INTERRUPT_BASE};
use microkernel_abi::{Error, FromSpecifier, EXCEPTION_LABEL, PAGE_SIZE};
use microkernel_rt::pci;
use microkernel_rt::user::{
    device_map, hvm_call, interrupt_associate, interrupt_dissociate, receive, send,
    space_grant_ports, HvmCallError,
};

use crate::cases::Context;
use crate::console::Failure;
use crate::pager::{fault_mark, find_exception};
use crate::programs::tag;
use crate::threads::{own_utcb, park, root_thread, wait_until, Scope, PATIENCE, WORKER_PRIORITY};

/// Where the case maps a device window in ktest's space (nothing else is
/// there; the mapping stays, as device pages cannot be unmapped).
const DEVICE_ADDRESS: u64 = 0x6800_0000_0000;
/// Where the probe asks for one in its own task.
const PROBE_ADDRESS: u64 = 0x6900_0000_0000;
/// A physical page above any test cell's memory and below the APIC.
const DEVICE_PHYSICAL: u64 = 0xE000_0000;
/// The probe's report.
const PROBE_LABEL: u64 = 0xD1;

fn code(result: Result<u64, HvmCallError>) -> u64 {
    match result {
        Ok(_) => 0,
        Err(HvmCallError::Kernel(error)) => error.code(),
        Err(HvmCallError::Hypervisor(code)) => 0x100 + code,
    }
}

/// Ports the case grants a task: no device answers there (all ones, bare
/// or under hvm), so reading them is harmless.
const GRANTED_PORTS: (u16, u16) = (0x2E0, 8);

/// A thread of a task granted [`GRANTED_PORTS`]: reads each, reports the
/// last value, and once ktest answers reads the port after them, which
/// must fault.
pub fn port_probe(_: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    let (first, count) = GRANTED_PORTS;
    let mut value = 0u8;
    for port in first..first + count {
        // SAFETY: a port of no device; no memory effects.
        unsafe {
            core::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack))
        };
    }
    utcb.message_registers[0] = tag(PROBE_LABEL, 1, 0).raw();
    utcb.message_registers[1] = value.into();
    let _ = send(utcb, root_thread(), PATIENCE);
    let _ = receive(utcb, FromSpecifier::Thread(root_thread()), PATIENCE);
    let past = first + count;
    // SAFETY: as above; the kernel must refuse it with #GP.
    unsafe { core::arch::asm!("in al, dx", in("dx") past, out("al") _, options(nomem, nostack)) };
    park()
}

/// A thread of another task: tries both calls, reports, then reads a
/// configuration port, which must fault.
pub fn driver_probe(_: u64) -> ! {
    // SAFETY: first and only call in this thread.
    let utcb = unsafe { own_utcb() };
    let hvm = code(hvm_call(2, 0, 0));
    let window =
        device_map(DEVICE_PHYSICAL, PAGE_SIZE, PROBE_ADDRESS).map_or_else(|e| e.code(), |()| 0);
    utcb.message_registers[0] = tag(PROBE_LABEL, 2, 0).raw();
    utcb.message_registers[1] = hvm;
    utcb.message_registers[2] = window;
    let _ = send(utcb, root_thread(), PATIENCE);
    let _ = pci::read(pci::address(0, 0, 0, 0));
    park()
}

/// Case 13.
pub fn driver_mechanisms(context: &mut Context) -> Result<(), Failure> {
    let info = context.info;
    // hvm_call: refusals first, in either mode.
    for (call, expected) in [
        (4, Error::NotPermitted),  // PowerOff
        (1, Error::NotPermitted),  // ConsoleWrite
        (10, Error::NotPermitted), // ConsoleRead
        (14, Error::InvalidArgument),
        (u64::MAX, Error::InvalidArgument),
    ] {
        let got = hvm_call(call, 0, 0);
        ensure!(
            got == Err(HvmCallError::Kernel(expected)),
            "hvm_call({call:#x}) returned {got:?}, expected {expected:?}"
        );
    }
    // CellStatus of cell 0: running under hvm, not supported bare.
    let status = hvm_call(2, 0, 0);
    let under_hvm = match status {
        Ok(1) => true,
        Err(HvmCallError::Kernel(Error::NotSupported)) => false,
        other => fail!("hvm_call(CellStatus, 0) returned {other:?}"),
    };
    if under_hvm {
        let got = hvm_call(2, 999, 0);
        ensure!(
            got == Err(HvmCallError::Hypervisor(5)),
            "CellStatus of cell 999 returned {got:?}, expected hvm's NoSuchCell"
        );
    }

    // device_map: never over RAM or the APIC; then a good window, once.
    let ram = info.memory_physical_base;
    for (physical, what) in [
        (ram, "a page of the cell's memory"),
        (0, "physical page 0"),
        (0xFEE0_0000, "the local APIC"),
    ] {
        let got = device_map(physical, PAGE_SIZE, DEVICE_ADDRESS);
        ensure!(
            got == Err(Error::InvalidArgument),
            "device_map of {what} ({physical:#x}) returned {got:?}"
        );
    }
    let got = device_map(DEVICE_PHYSICAL, PAGE_SIZE, context.info.memory_base);
    ensure!(
        got == Err(Error::AlreadyExists),
        "device_map over ktest's own memory returned {got:?}"
    );
    let got = device_map(DEVICE_PHYSICAL, 2 * PAGE_SIZE, DEVICE_ADDRESS);
    ensure!(
        got == Ok(()),
        "device_map of a free window returned {got:?}"
    );
    let got = device_map(DEVICE_PHYSICAL, PAGE_SIZE, DEVICE_ADDRESS);
    ensure!(
        got == Err(Error::AlreadyExists),
        "device_map over a mapped device window returned {got:?}"
    );

    // The configuration ports work for the root task (no fault; what
    // answers depends on the machine: hvm's bus only exists with a link).
    let first = pci::read(pci::address(0, 0, 0, 0));
    let again = pci::read(pci::address(0, 0, 0, 0));
    ensure!(
        first == again,
        "00:00.0's identifier changed between two reads ({first:#x}, {again:#x})"
    );

    // The link interrupts are there to associate (they fire only under
    // hvm, with a link); one past them is not.
    let root = root_thread();
    let got = interrupt_associate(LINK_INTERRUPT_BASE, root);
    ensure!(
        got == Ok(()),
        "Associate of link interrupt 0x50 returned {got:?}"
    );
    let got = interrupt_associate(LINK_INTERRUPT_BASE, root);
    ensure!(
        got == Err(Error::AlreadyExists),
        "a second Associate of 0x50 returned {got:?}"
    );
    let got = interrupt_dissociate(LINK_INTERRUPT_BASE);
    ensure!(got == Ok(()), "Dissociate of 0x50 returned {got:?}");
    let past = LINK_INTERRUPT_BASE + LINK_INTERRUPTS;
    let got = interrupt_associate(past, root);
    ensure!(
        got == Err(Error::InvalidArgument),
        "Associate of interrupt {past:#x} returned {got:?}"
    );

    // Another task: refused, and the ports fault.
    let mut scope = Scope::new();
    let utcb = &mut *context.utcb;
    let mark = fault_mark();
    let task = scope.task()?;
    let probe = scope.remote(task, driver_probe, 0, WORKER_PRIORITY)?;
    let got = receive(utcb, FromSpecifier::Thread(probe), PATIENCE);
    ensure!(got.is_ok(), "no report from the probe: {got:?}");
    let words = [utcb.message_registers[1], utcb.message_registers[2]];
    let refused = Error::NotPermitted.code();
    ensure!(
        words == [refused, refused],
        "another task's hvm_call and device_map gave codes {words:?}, expected NotPermitted ({refused})"
    );
    let faulted = wait_until(utcb, 1_000_000, || find_exception(mark, probe).is_some());
    let record = find_exception(mark, probe);
    ensure!(
        faulted && record.is_some_and(|r| r.label == EXCEPTION_LABEL && r.words[0] == 13),
        "another task's configuration-port read did not fault with #GP: {record:?}"
    );

    // Port grants: never the PCI ports, never overlapping, never from
    // another task (the probe above is refused device_map the same way:
    // the check is the same `root` test).
    let (first, count) = GRANTED_PORTS;
    let granted = scope.task()?;
    let id = scope.task_id(granted);
    let got = space_grant_ports(id, 0xCF8, 8);
    ensure!(
        got == Err(Error::NotPermitted),
        "a grant of the PCI ports returned {got:?}"
    );
    let got = space_grant_ports(id, first, count);
    ensure!(
        got == Ok(()),
        "a grant of {first:#x}+{count} returned {got:?}"
    );
    let got = space_grant_ports(scope.task_id(task), first + 4, 1);
    ensure!(
        got == Err(Error::AlreadyExists),
        "an overlapping grant returned {got:?}"
    );
    let mark = fault_mark();
    let probe = scope.remote(granted, port_probe, 0, WORKER_PRIORITY)?;
    let got = receive(utcb, FromSpecifier::Thread(probe), PATIENCE);
    ensure!(
        got.is_ok() && find_exception(mark, probe).is_none(),
        "the granted ports faulted or the probe did not report: {got:?}"
    );
    utcb.message_registers[0] = tag(PROBE_LABEL, 0, 0).raw();
    let got = send(utcb, probe, PATIENCE);
    ensure!(got.is_ok(), "the port probe took no answer: {got:?}");
    let faulted = wait_until(utcb, 1_000_000, || find_exception(mark, probe).is_some());
    let record = find_exception(mark, probe);
    ensure!(
        faulted && record.is_some_and(|r| r.label == EXCEPTION_LABEL && r.words[0] == 13),
        "the port past the grant did not fault with #GP: {record:?}"
    );
    Ok(())
}
