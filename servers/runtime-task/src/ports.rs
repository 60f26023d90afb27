//! Port I/O for a task server's drivers, on the ports core granted it.
//!
//! Core asks the microkernel to open a server's device ports to its task
//! alone (`space_control(GrantPorts)`, docs/microkernel-abi.md): the TSS's
//! I/O permission bitmap then lets these instructions through for those
//! ports, and an `in` or `out` on any other port raises #GP (SDM Vol. 1
//! §19.5.2), which core, the task's pager, sees as the end of the link.
//! So these functions are safe: port I/O moves no memory of the task's
//! (the devices given to tasks do no bus-master DMA,
//! docs/threat-model.md), and a port that is not the task's faults.

use core::arch::asm;

/// Reads a byte from `port`.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: see the module's note: no memory effects; the TSS bitmap
    // decides whether the port is this task's.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack)) };
    value
}

/// Writes a byte to `port`.
pub fn outb(port: u16, value: u8) {
    // SAFETY: as `inb`.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) }
}

/// Reads a 16-bit word from `port`.
pub fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as `inb`.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") value, options(nomem, nostack)) };
    value
}

/// Writes a 16-bit word to `port`.
pub fn outw(port: u16, value: u16) {
    // SAFETY: as `inb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack)) }
}
