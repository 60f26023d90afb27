//! The runtime proper: start, heap, console, timer, the serve loop.
//!
//! `_start` (arch.rs) calls [`runtime_vm_start`] with the boot information's
//! physical address. The cell's memory is mapped identically, so the heap
//! (the cell's free memory above `BootInfo::free_base`) is DMA-able as it
//! is. Invariants of the serve loop:
//! - every wake-up (timer, link, command) is noted by its handler in
//!   `arch::PENDING` and handled by the loop, never in the handler;
//! - the loop only halts when nothing is pending and the device has handed
//!   nothing back (`arch::idle`), so no notification is lost;
//! - a heartbeat goes out at a quarter of the manifest's `heartbeat_ms`,
//!   so a VM that is merely busy never trips hvm's watchdog.

use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use hvm_abi::{BootInfo, Hypercall, BOOT_INFO_MAGIC};
use kasane_manifest::BootManifest;
use linked_list_allocator::LockedHeap;
use ninep_server::{FileServer, Session};

use crate::arch::{self, PENDING, PENDING_COMMAND};
use crate::command::{Verb, GARBAGE, WILD_ADDRESS};
use crate::link::{self, physical, Link};
use crate::stream::Reassembler;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// The largest 9P message the server accepts (as task servers).
pub const MSIZE: u32 = 8192 + 24;

/// What the image's main is given.
pub struct Boot {
    /// hvm's boot information (a copy).
    pub info: BootInfo,
    /// TSC ticks per second (CPUID leaf 0x15, which hvm fills).
    pub tsc_hz: u64,
    /// Ticks between heartbeats (0: none).
    pub heartbeat: u64,
}

impl Boot {
    /// Whether this is a server VM (else cell 0: the `vm-probe` image).
    pub fn server_vm(&self) -> bool {
        self.info.server_vm()
    }

    /// The boot module called `name`, as bytes of the cell's memory.
    pub fn module(&self, name: &str) -> Option<&'static [u8]> {
        let module = self.info.modules().iter().find(|m| m.name() == name)?;
        // SAFETY: hvm placed the module inside the cell's memory, which
        // is identity mapped; nothing writes it (the heap starts above).
        Some(unsafe { core::slice::from_raw_parts(module.phys as *const u8, module.len as usize) })
    }
}

static BOOT: spin::Once<Boot> = spin::Once::new();

/// The boot information (after start).
pub fn boot_info() -> &'static Boot {
    BOOT.get().expect("runtime-vm started")
}

unsafe extern "Rust" {
    /// Defined by [`crate::entry!`] in the image.
    fn runtime_vm_main(boot: &Boot) -> !;
}

/// Makes a hypercall with plain arguments.
pub fn hypercall(call: Hypercall, arg0: u64, arg1: u64) -> (u64, u64) {
    // SAFETY: callers pass addresses of their own memory as guest-physical
    // (`console`), or none.
    unsafe { arch::vmcall(call as u64, arg0, arg1) }
}

/// Writes to hvm's console (the cell's lines are prefixed with its name).
pub fn console(text: &str) {
    for chunk in text.as_bytes().chunks(hvm_abi::CONSOLE_WRITE_MAX as usize) {
        hypercall(
            Hypercall::ConsoleWrite,
            physical(chunk.as_ptr() as u64),
            chunk.len() as u64,
        );
    }
}

/// A line buffer on the stack, for printing without the heap.
struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.bytes.len() {
                self.flush();
            }
            self.bytes[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

impl Line {
    fn flush(&mut self) {
        let text = core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?\n");
        console(text);
        self.len = 0;
    }
}

/// Prints formatted text (no heap needed).
pub fn print(args: fmt::Arguments<'_>) {
    let mut line = Line {
        bytes: [0; 256],
        len: 0,
    };
    let _ = line.write_fmt(args);
    line.flush();
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

#[doc(hidden)]
pub fn print_line(args: fmt::Arguments<'_>) {
    print(format_args!("{args}\n"));
}

/// Seconds since the VM started, for file times.
pub fn clock_seconds() -> u32 {
    let hz = boot_info().tsc_hz.max(1);
    u32::try_from(arch::rdtsc() / hz).unwrap_or(u32::MAX)
}

fn tsc_hz() -> u64 {
    // CPUID 0x15: TSC = crystal * EBX / EAX, the crystal's rate in ECX.
    let [a, b, c, _] = arch::cpuid(0x15);
    if a != 0 && b != 0 && c != 0 {
        return u64::from(c) * u64::from(b) / u64::from(a);
    }
    let [mhz, _, _, _] = arch::cpuid(0x16);
    u64::from(mhz.max(1)) * 1_000_000
}

/// Arms the emulated x2APIC's TSC-deadline timer (SDM Vol. 3 11.5.4.1).
fn arm_timer(ticks: u64) {
    arm_deadline(arch::rdtsc() + ticks);
}

/// Arms the TSC-deadline timer for the absolute TSC value `deadline`.
fn arm_deadline(deadline: u64) {
    // SAFETY: IA32_TSC_DEADLINE on the server VM's emulated x2APIC.
    unsafe { arch::wrmsr(0x6E0, deadline) };
}

/// Enables the x2APIC (IA32_APIC_BASE EN|EXTD, SDM Vol. 3 11.12.1), its
/// spurious vector register, and the timer in TSC-deadline mode.
fn start_timer(ticks: u64) {
    // SAFETY: the emulated x2APIC of a server VM takes these MSRs.
    unsafe {
        arch::wrmsr(0x1B, 0xFEE0_0000 | (1 << 11) | (1 << 10));
        arch::wrmsr(0x80F, 0x1FF);
        arch::wrmsr(0x832, u64::from(arch::TIMER_VECTOR) | (0b10 << 17));
    }
    arm_timer(ticks);
}

#[no_mangle]
extern "C" fn runtime_vm_start(info_address: u64) -> ! {
    // SAFETY: hvm put the boot information at this guest-physical address,
    // identity mapped, and never changes it.
    let info = unsafe { (info_address as *const BootInfo).read_unaligned() };
    if info.magic != BOOT_INFO_MAGIC {
        console("runtime-vm: bad boot information\n");
        fault(0x10);
    }
    // SAFETY: boot, interrupts off, once.
    unsafe { arch::init_idt() };
    let heap_start = (info.free_base + 0xFFF) & !0xFFF;
    let heap_end = info.memory_base + info.memory_size;
    // SAFETY: [free_base, end of memory) is the cell's free memory, unused
    // by the image, the modules and the boot tables, identity mapped.
    unsafe {
        HEAP.lock()
            .init(heap_start as *mut u8, (heap_end - heap_start) as usize)
    };
    let tsc_hz = tsc_hz();
    // The manifest says how often hvm expects a heartbeat.
    let manifest_bytes =
        // SAFETY: hvm placed the manifest inside the cell's memory.
        unsafe { core::slice::from_raw_parts(info.manifest_phys as *const u8, info.manifest_len as usize) };
    let heartbeat_ms = BootManifest::decode(manifest_bytes)
        .ok()
        .and_then(|m| m.cells.get(info.cell as usize).map(|c| c.heartbeat_ms))
        .unwrap_or(0);
    let period_ms = if heartbeat_ms == 0 {
        100
    } else {
        u64::from(heartbeat_ms / 4).max(1)
    };
    let boot = Boot {
        info,
        tsc_hz,
        heartbeat: period_ms * (tsc_hz / 1000),
    };
    let server = boot.server_vm();
    let boot = BOOT.call_once(|| boot);
    if server {
        arch::NEEDS_EOI.store(true, Ordering::Relaxed);
        hypercall(Hypercall::Heartbeat, 0, 0);
        start_timer(boot.heartbeat);
    }
    // SAFETY: the image defines this function through `entry!`.
    unsafe { runtime_vm_main(boot) }
}

/// Reports a fault to hvm, which fails the cell as its manifest says.
fn fault(code: u64) -> ! {
    hypercall(Hypercall::FaultReport, code, 0);
    arch::halt_forever()
}

/// An exception the runtime cannot survive.
pub(crate) fn exception(vector: u64, rip: u64) -> ! {
    print(format_args!(
        "runtime-vm: exception {vector} at rip={rip:#x}; reporting the fault\n"
    ));
    fault(0x100 + vector)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    print(format_args!(
        "runtime-vm: panic: {}; reporting the fault\n",
        info.message()
    ));
    fault(1)
}

/// Performs a failure verb for real.
fn perform(verb: Verb, link: &mut Link) {
    print(format_args!("runtime-vm: performing `{}`\n", verb.name()));
    match verb {
        Verb::Crash => panic!("injected crash"),
        Verb::TripleFault => arch::triple_fault(),
        Verb::WildWrite => {
            // SAFETY: deliberately wrong: a store to a guest-physical
            // address beyond the cell's memory (mapped by hvm's boot
            // tables, backed by nothing), which hvm's EPT catches.
            unsafe { core::ptr::write_volatile(WILD_ADDRESS as *mut u64, 0xBAD) };
            print(format_args!("runtime-vm: the wild write returned?\n"));
        }
        Verb::Hang => arch::hang(),
        Verb::Garbage => {
            let _ = link.send(GARBAGE);
        }
    }
}

/// Serves `fs` on the VM's link for good.
pub fn serve<F: FileServer>(fs: &mut F) -> ! {
    let Some(function) = link::own_link() else {
        console("runtime-vm: no virtio console on PCI bus 0\n");
        fault(0x11);
    };
    let mut link = match Link::open(function) {
        Ok(link) => link,
        Err(why) => {
            print(format_args!("runtime-vm: link: {why}\n"));
            fault(0x12);
        }
    };
    print(format_args!(
        "runtime-vm: link up at {:02x}:{:02x}.{} (BAR {:#x}, DRIVER_OK); serving 9P, msize {}\n",
        function.bus, function.device, function.function, link.bar, MSIZE
    ));
    let mut session: Session<F> = Session::new(MSIZE);
    let mut stream = Reassembler::new();
    let mut answer: Vec<u8> = Vec::with_capacity(MSIZE as usize);
    let heartbeat = boot_info().heartbeat;
    let ticks_per_ms = (boot_info().tsc_hz / 1000).max(1);
    let started = arch::rdtsc();
    let mut next_heartbeat = started + heartbeat;
    // The deadline last written to the timer: written again only when it
    // changes, as each write exits to hvm (0: the first round arms it).
    let mut armed = 0;
    loop {
        let pending = PENDING.swap(0, Ordering::SeqCst);
        let now = arch::rdtsc();
        if heartbeat != 0 && now >= next_heartbeat {
            hypercall(Hypercall::Heartbeat, 0, 0);
            next_heartbeat = now + heartbeat;
        }
        if pending & PENDING_COMMAND != 0 {
            let (status, op) = hypercall(Hypercall::TakeCommand, 0, 0);
            if let Some(verb) = Verb::from_command(op).filter(|_| status == 0) {
                perform(verb, &mut link);
            }
        }
        if let Err(why) = link.receive(&mut |bytes| stream.push(bytes)) {
            print(format_args!("runtime-vm: link: {why}\n"));
            fault(0x13);
        }
        loop {
            match stream.next_frame(session.msize()) {
                Ok(Some(frame)) => {
                    answer.clear();
                    if session.handle(fs, frame, &mut answer).is_ok() && !answer.is_empty() {
                        if let Err(why) = link.send(&answer) {
                            print(format_args!("runtime-vm: link: {why}\n"));
                            fault(0x14);
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    print(format_args!(
                        "runtime-vm: the link's byte stream is not 9P ({error:?}); dropping it\n"
                    ));
                    stream.clear();
                    break;
                }
            }
        }
        // Requests the server finishes on its own (ninep_server's poll):
        // their answers go out with this round's.
        let now_ms = (arch::rdtsc() - started) / ticks_per_ms;
        for (id, completion) in fs.poll(now_ms) {
            answer.clear();
            session.complete(id, completion, &mut answer);
            if !answer.is_empty() {
                if let Err(why) = link.send(&answer) {
                    print(format_args!("runtime-vm: link: {why}\n"));
                    fault(0x14);
                }
            }
        }
        if let Err(why) = link.flush() {
            print(format_args!("runtime-vm: link: {why}\n"));
            fault(0x15);
        }
        // Sleep until the heartbeat or the server's next poll is due.
        let mut deadline = if heartbeat != 0 {
            next_heartbeat
        } else {
            u64::MAX
        };
        if let Some(ms) = fs.poll_delay_ms() {
            deadline = deadline.min(arch::rdtsc().saturating_add(ms.saturating_mul(ticks_per_ms)));
        }
        if deadline != u64::MAX && deadline != armed {
            arm_deadline(deadline);
            armed = deadline;
        }
        arch::idle(|| link.has_used());
    }
}

/// Waits for an interrupt unless `busy` says there is work (`sti; hlt`;
/// interrupts stay enabled afterwards).
pub fn wait_for_interrupt(busy: impl Fn() -> bool) {
    arch::idle(busy);
}

/// How many times vector 0x40, 0x50 or 0x51 (`slot` 0, 1, 2) was taken.
pub fn interrupts_taken(slot: usize) -> u32 {
    arch::TAKEN
        .get(slot)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Maps the 2 MiB around `physical` identically, uncached, in the boot
/// tables (cell 0's `vm-probe`: hvm maps a server VM's BAR itself).
pub fn map_device(address: u64) {
    use core::arch::asm;
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    let mask = 0x000F_FFFF_FFFF_F000u64;
    let table = |p: u64| p as *mut u64; // the cell is identity mapped
                                        // SAFETY: the tables are hvm's boot tables in this cell's memory
                                        // (identity mapped); only empty entries are filled, with a fresh
                                        // zeroed heap page for a missing directory; CR3 is reloaded to flush.
    unsafe {
        let pml4_entry = table(cr3 & mask).add(((address >> 39) & 511) as usize);
        let pdpt = pml4_entry.read_volatile() & mask;
        let pdpt_entry = table(pdpt).add(((address >> 30) & 511) as usize);
        if pdpt_entry.read_volatile() & 1 == 0 {
            let page = alloc::alloc::alloc_zeroed(
                alloc::alloc::Layout::from_size_align(4096, 4096).expect("page"),
            );
            pdpt_entry.write_volatile(physical(page as u64) | 0x3);
        }
        let directory = pdpt_entry.read_volatile() & mask;
        let entry = table(directory).add(((address >> 21) & 511) as usize);
        // Present, writable, PWT, PCD, 2 MiB page.
        entry.write_volatile((address & !0x1F_FFFF) | 0x9B);
        asm!("mov cr3, {}", in(reg) cr3, options(nostack));
    }
}
