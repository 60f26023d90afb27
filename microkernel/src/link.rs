//! Cell 0's end of the Linux link: a virtio console driven by virtio-drivers.
//!
//! hvm gives cell 0 a modern virtio-pci console at 00:01.0 (PCI
//! configuration through ports 0xCF8/0xCFC, its BAR emulated through EPT
//! violations). This module finds it, drives it with the `virtio-drivers`
//! crate's PCI transport and split virtqueues (no allocator: the HAL hands
//! out pages of the cell's free memory above `BootInfo.free_base`, and
//! physical equals DMA address inside the cell), and speaks the bridge
//! protocol (`bridge-protocol`) with the agent in the Linux cell.
//!
//! `test=linux-link` runs the whole scenario single-threaded with
//! interrupts off, giving the CPU back to hvm with the `Yield` hypercall
//! whenever there is nothing to do; a tick counter is printed all along.

use core::arch::asm;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use bridge_protocol::{Decoder, Frame, Message};
use hvm_abi::{BootInfo, Hypercall, DIRECT_MAP_BASE, KERNEL_WINDOW_BASE};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::{arch, kprintln};

const PAGE: u64 = 4096;
/// Ticks between counter lines (2.5 s at the 200 MHz hvm reports).
const TICK_PERIOD: u64 = 500_000_000;
/// Give up on the whole scenario after this many TSC ticks.
const SCENARIO_LIMIT: u64 = 400_000_000_000;
/// Pings timed for the round-trip figure.
const PINGS: usize = 8;

/// Next free physical page of the cell (bump allocation, never freed).
static NEXT_FREE: AtomicU64 = AtomicU64::new(0);
/// First physical byte of the cell (for kernel-window addresses).
static MEMORY_BASE: AtomicU64 = AtomicU64::new(0);
/// End of the cell's memory.
static MEMORY_END: AtomicU64 = AtomicU64::new(0);

fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC has no side effects.
    unsafe { asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

fn hypercall(call: Hypercall, arg0: u64) -> (u64, u64) {
    // SAFETY: only used under hvm (the selftest checks the mode); no
    // buffers are passed.
    unsafe { arch::hypercall(call as u64, arg0, 0) }
}

fn allocate_pages(pages: u64) -> u64 {
    let size = pages * PAGE;
    let at = NEXT_FREE.fetch_add(size, Ordering::Relaxed);
    assert!(
        at + size <= MEMORY_END.load(Ordering::Relaxed),
        "cell 0 is out of memory"
    );
    // SAFETY: [at, at+size) is free cell memory handed out once, reachable
    // through the direct map.
    unsafe { core::ptr::write_bytes((DIRECT_MAP_BASE + at) as *mut u8, 0, size as usize) };
    at
}

/// The HAL: DMA memory is free cell memory; physical = DMA address.
struct CellHal;

// SAFETY: dma_alloc returns zeroed, page-aligned memory owned by the caller
// and never reused; share() returns the physical address of the buffer it is
// given, which stays valid while virtio-drivers holds it.
unsafe impl Hal for CellHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let physical = allocate_pages(pages as u64);
        let virtual_address = (DIRECT_MAP_BASE + physical) as *mut u8;
        (physical, NonNull::new(virtual_address).expect("not null"))
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // map_device() mapped the BAR identically.
        NonNull::new(paddr as *mut u8).expect("not null")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        virtual_to_physical(buffer.as_ptr() as *mut u8 as u64)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// The boot page tables map the cell three ways (docs/architecture.md):
/// the kernel window, the direct map, and identically.
fn virtual_to_physical(address: u64) -> u64 {
    if address >= KERNEL_WINDOW_BASE {
        address - KERNEL_WINDOW_BASE + MEMORY_BASE.load(Ordering::Relaxed)
    } else if address >= DIRECT_MAP_BASE {
        address - DIRECT_MAP_BASE
    } else {
        address
    }
}

/// PCI configuration mechanism #1 through ports 0xCF8/0xCFC.
struct PortConfiguration;

fn config_address(function: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(function.bus) << 16)
        | (u32::from(function.device) << 11)
        | (u32::from(function.function) << 8)
        | u32::from(offset & 0xFC)
}

fn outl(port: u16, value: u32) {
    // SAFETY: the PCI configuration ports, emulated by hvm for this cell.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack)) }
}

fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as outl.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack)) };
    value
}

impl ConfigurationAccess for PortConfiguration {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        outl(0xCF8, config_address(function, offset));
        inl(0xCFC)
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, data: u32) {
        outl(0xCF8, config_address(function, offset));
        outl(0xCFC, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortConfiguration
    }
}

/// Maps the 2 MiB around `physical` identically (uncached), so the BAR's
/// registers are reachable at their physical address. hvm's boot tables
/// leave PDPT entries above the cell's memory empty.
fn map_device(physical: u64) {
    let direct = |p: u64| (DIRECT_MAP_BASE + p) as *mut u64;
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    let address_mask = 0x000F_FFFF_FFFF_F000u64;
    // SAFETY: the tables are the boot tables hvm built in this cell's
    // memory (direct mapped); only empty entries are filled, with a fresh
    // page for a missing directory; CR3 is reloaded to flush.
    unsafe {
        let pml4 = cr3 & address_mask;
        let pml4_entry = direct(pml4).add(((physical >> 39) & 511) as usize);
        let pdpt = pml4_entry.read_volatile() & address_mask;
        let pdpt_entry = direct(pdpt).add(((physical >> 30) & 511) as usize);
        if pdpt_entry.read_volatile() & 1 == 0 {
            let directory = allocate_pages(1);
            pdpt_entry.write_volatile(directory | 0x3);
        }
        let directory = pdpt_entry.read_volatile() & address_mask;
        let entry = direct(directory).add(((physical >> 21) & 511) as usize);
        // Present, writable, PWT, PCD, 2 MiB page.
        entry.write_volatile((physical & !0x1F_FFFF) | 0x9B);
        asm!("mov cr3, {}", in(reg) cr3, options(nostack));
    }
}

/// The device's registers, accessed directly (for the hostile test) with
/// plain `mov`s: hvm decodes the instruction of every MMIO access and
/// refuses anything else, so the compiler must not fold the load into an
/// arithmetic instruction.
struct Registers {
    base: u64,
}

impl Registers {
    fn read16(&self, offset: u64) -> u16 {
        let value: u16;
        // SAFETY: inside the mapped BAR; hvm emulates the access.
        unsafe {
            asm!("mov {0:x}, word ptr [{1}]", out(reg) value, in(reg) self.base + offset, options(nostack))
        };
        value
    }
    fn read32(&self, offset: u64) -> u32 {
        let value: u32;
        // SAFETY: as read16.
        unsafe {
            asm!("mov {0:e}, dword ptr [{1}]", out(reg) value, in(reg) self.base + offset, options(nostack))
        };
        value
    }
    fn read64(&self, offset: u64) -> u64 {
        let value: u64;
        // SAFETY: as read16.
        unsafe {
            asm!("mov {0}, qword ptr [{1}]", out(reg) value, in(reg) self.base + offset, options(nostack))
        };
        value
    }
    fn write8(&self, offset: u64, value: u8) {
        // SAFETY: as read16.
        unsafe {
            asm!("mov byte ptr [{1}], {0}", in(reg_byte) value, in(reg) self.base + offset, options(nostack))
        }
    }
    fn write16(&self, offset: u64, value: u16) {
        // SAFETY: as read16.
        unsafe {
            asm!("mov word ptr [{1}], {0:x}", in(reg) value, in(reg) self.base + offset, options(nostack))
        }
    }
    fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as read16.
        unsafe {
            asm!("mov dword ptr [{1}], {0:e}", in(reg) value, in(reg) self.base + offset, options(nostack))
        }
    }
}

const QUEUE_SIZE: usize = 4;
const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;
const VERSION_1: u64 = 1 << 32;

/// Features cell 0 asks for: only VIRTIO_F_VERSION_1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Features(u64);

impl bitflags::Flags for Features {
    const FLAGS: &'static [bitflags::Flag<Self>] =
        &[bitflags::Flag::new("VERSION_1", Features(VERSION_1))];
    type Bits = u64;
    fn bits(&self) -> u64 {
        self.0
    }
    fn from_bits_retain(bits: u64) -> Self {
        Features(bits)
    }
}

impl core::ops::BitAnd for Features {
    type Output = Self;
    fn bitand(self, other: Self) -> Self {
        Features(self.0 & other.0)
    }
}

/// The console: transport, queues, a receive buffer.
struct Console {
    transport: PciTransport,
    receive: VirtQueue<CellHal, QUEUE_SIZE>,
    transmit: VirtQueue<CellHal, QUEUE_SIZE>,
    buffer: &'static mut [u8],
    token: Option<u16>,
}

impl Console {
    fn open(
        root: &mut PciRoot<PortConfiguration>,
        function: DeviceFunction,
    ) -> Result<Self, &'static str> {
        let mut transport = PciTransport::new::<CellHal, PortConfiguration>(root, function)
            .map_err(|_| "the link device's PCI capabilities are not usable")?;
        let features = transport.begin_init(Features(VERSION_1));
        if features.0 & VERSION_1 == 0 {
            return Err("the link device does not offer VIRTIO_F_VERSION_1");
        }
        let receive = VirtQueue::new(&mut transport, RECEIVE_QUEUE, false, false)
            .map_err(|_| "cannot set up the receive queue")?;
        let transmit = VirtQueue::new(&mut transport, TRANSMIT_QUEUE, false, false)
            .map_err(|_| "cannot set up the transmit queue")?;
        transport.finish_init();
        let page = allocate_pages(1);
        // SAFETY: a fresh page of the cell, used only as this buffer.
        let buffer = unsafe {
            core::slice::from_raw_parts_mut((DIRECT_MAP_BASE + page) as *mut u8, PAGE as usize)
        };
        let mut console = Self {
            transport,
            receive,
            transmit,
            buffer,
            token: None,
        };
        console.post()?;
        Ok(console)
    }

    /// Offers the receive buffer to the device.
    fn post(&mut self) -> Result<(), &'static str> {
        if self.token.is_none() {
            // SAFETY: the buffer is not touched until pop_used returns it.
            let token = unsafe { self.receive.add(&[], &mut [&mut self.buffer[..]]) }
                .map_err(|_| "cannot post a receive buffer")?;
            self.token = Some(token);
            self.transport.notify(RECEIVE_QUEUE);
        }
        Ok(())
    }

    /// Bytes received, if any (copied into `out`).
    fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str> {
        let Some(token) = self.token else {
            return Ok(0);
        };
        if self.receive.peek_used() != Some(token) {
            return Ok(0);
        }
        // SAFETY: the same buffer that was added with this token.
        let len = unsafe {
            self.receive
                .pop_used(token, &[], &mut [&mut self.buffer[..]])
        }
        .map_err(|_| "the receive queue went wrong")? as usize;
        self.token = None;
        let n = len.min(out.len()).min(self.buffer.len());
        out[..n].copy_from_slice(&self.buffer[..n]);
        self.post()?;
        Ok(n)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        self.transmit
            .add_notify_wait_pop(&[bytes], &mut [], &mut self.transport)
            .map(|_| ())
            .map_err(|_| "the transmit queue went wrong")
    }

    fn send_frame(&mut self, request_id: u32, message: Message<'_>) -> Result<(), &'static str> {
        let frame = Frame {
            request_id,
            message,
        };
        let (buffer, length) = frame.to_buffer().map_err(|_| "cannot encode a frame")?;
        self.send(&buffer[..length])
    }
}

/// Where the scenario is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the agent's Hello (the first boot or a restart).
    WaitAgent,
    /// Our Hello request is out.
    WaitHello,
    /// Pinging.
    Ping,
    WaitUname,
    WaitCrash,
    Done,
}

struct Scenario {
    console: Console,
    decoder: Decoder,
    phase: Phase,
    round: u32,
    next_id: u32,
    awaited: u32,
    generation: u64,
    started: u64,
    agent_wait_start: u64,
    ping_sent: u64,
    pings: [u64; PINGS],
    ping_count: usize,
    nonce: u64,
    boot_figure: Option<u64>,
    restart_figure: Option<u64>,
}

/// Runs `test=linux-link`; returns when done (the kernel powers off).
pub fn run(info: &BootInfo) {
    MEMORY_BASE.store(info.memory_base, Ordering::Relaxed);
    MEMORY_END.store(info.memory_base + info.memory_size, Ordering::Relaxed);
    NEXT_FREE.store((info.free_base + PAGE - 1) & !(PAGE - 1), Ordering::Relaxed);
    match scenario() {
        Ok(()) => kprintln!("microkernel: linux-link: done"),
        Err(why) => kprintln!("microkernel: linux-link: FAILED: {}", why),
    }
}

fn find_device(root: &PciRoot<PortConfiguration>) -> Option<DeviceFunction> {
    root.enumerate_bus(0)
        .find(|(_, info)| info.vendor_id == 0x1AF4 && info.device_id == 0x1043)
        .map(|(function, _)| function)
}

fn open_link() -> Result<(Console, u64), &'static str> {
    let mut root = PciRoot::new(PortConfiguration);
    let function = find_device(&root).ok_or("no virtio console on PCI bus 0")?;
    let bar = PortConfiguration.read_word(function, 0x10) as u64 & !0xF;
    map_device(bar);
    root.set_command(function, Command::MEMORY_SPACE | Command::BUS_MASTER);
    Ok((Console::open(&mut root, function)?, bar))
}

fn scenario() -> Result<(), &'static str> {
    let started = rdtsc();
    let (console, bar) = open_link()?;
    kprintln!(
        "microkernel: linux-link: virtio console ready at 00:01.0 (BAR {:#x}), driven by virtio-drivers",
        bar
    );
    let mut scenario = Scenario {
        console,
        decoder: Decoder::new(),
        phase: Phase::WaitAgent,
        round: 1,
        next_id: 1,
        awaited: 0,
        generation: 0,
        started,
        agent_wait_start: started,
        ping_sent: 0,
        pings: [0; PINGS],
        ping_count: 0,
        nonce: 0x4B41_5341_4E45_0000,
        boot_figure: None,
        restart_figure: None,
    };
    let mut next_tick = started + TICK_PERIOD;
    let mut ticks = 0u64;
    let mut input = [0u8; 512];
    while scenario.phase != Phase::Done {
        let now = rdtsc();
        if now - started > SCENARIO_LIMIT {
            return Err("the agent did not answer in time");
        }
        if now >= next_tick {
            ticks += 1;
            kprintln!("microkernel: tick {}", ticks);
            next_tick = now + TICK_PERIOD;
            // A heartbeat on every tick while an agent is there: its answer
            // is the Linux cell's sign of life for hvm's watchdog.
            if scenario.phase != Phase::WaitAgent {
                let id = scenario.fresh_id();
                scenario
                    .console
                    .send_frame(id, Message::Heartbeat { sequence: ticks })?;
            }
        }
        let (status, generation) = hypercall(Hypercall::LinkStatus, 0);
        if status == 0 && generation != scenario.generation {
            if scenario.generation != 0 {
                kprintln!(
                    "microkernel: linux-link: link reset by hvm (generation {}): the Linux cell was restarted",
                    generation
                );
                scenario.decoder = Decoder::new();
                scenario.agent_wait_start = now;
                scenario.phase = Phase::WaitAgent;
            }
            scenario.generation = generation;
        }
        let n = scenario.console.receive(&mut input)?;
        if n > 0 {
            scenario.input(&input[..n])?;
            continue;
        }
        hypercall(Hypercall::Yield, 0);
    }
    hostile_test(bar)?;
    Ok(())
}

impl Scenario {
    fn fresh_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn input(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        loop {
            let (taken, event) = self.decoder.feed(bytes);
            bytes = &bytes[taken..];
            let frame = match event {
                None => return Ok(()),
                Some(Err(error)) => {
                    kprintln!("microkernel: linux-link: bad input: {:?}", error);
                    continue;
                }
                Some(Ok(frame)) => frame,
            };
            let (id, message) = (frame.request_id, frame.message);
            // Copy what is needed out of the decoder's buffer first.
            let mut release = [0u8; 64];
            let mut release_len = 0;
            let mut machine = [0u8; 16];
            let mut machine_len = 0;
            let copy = |text: &str, out: &mut [u8], len: &mut usize| {
                *len = text.len().min(out.len());
                out[..*len].copy_from_slice(&text.as_bytes()[..*len]);
            };
            let kind = match message {
                Message::Hello {
                    kernel_release: r, ..
                } => {
                    copy(r, &mut release, &mut release_len);
                    1
                }
                Message::Pong { nonce } if nonce == self.nonce => 2,
                Message::UnameReply {
                    release: r,
                    machine: m,
                } => {
                    copy(r, &mut release, &mut release_len);
                    copy(m, &mut machine, &mut machine_len);
                    3
                }
                Message::CrashAccepted => 4,
                Message::HeartbeatAck { .. } => 0,
                Message::Error { code, detail } => {
                    kprintln!(
                        "microkernel: linux-link: agent error {:?}: {}",
                        code,
                        detail
                    );
                    0
                }
                _ => 0,
            };
            fn text(bytes: &[u8], len: usize) -> &str {
                core::str::from_utf8(&bytes[..len]).unwrap_or("?")
            }
            match (kind, self.phase) {
                (1, _) if id == 0 => {
                    // The agent's announcement: it (re)opened its port.
                    let now = rdtsc();
                    kprintln!(
                        "microkernel: linux-link: agent hello (announcement) release={}",
                        text(&release, release_len)
                    );
                    if self.phase == Phase::WaitAgent {
                        let figure = now - self.agent_wait_start;
                        if self.round == 1 {
                            self.boot_figure = Some(now - self.started);
                            kprintln!(
                                "bench linux_boot_to_agent_cycles {} cycles",
                                now - self.started
                            );
                        } else {
                            self.restart_figure = Some(figure);
                            kprintln!("bench linux_restart_to_agent_cycles {} cycles", figure);
                        }
                    }
                    // Every (re)connect starts with our own Hello request.
                    self.awaited = self.fresh_id();
                    self.console.send_frame(
                        self.awaited,
                        Message::Hello {
                            protocol_version: bridge_protocol::VERSION,
                            kernel_release: "kasane-cell0",
                        },
                    )?;
                    self.phase = Phase::WaitHello;
                }
                (1, Phase::WaitHello) if id == self.awaited => {
                    kprintln!(
                        "microkernel: linux-link: hello reply from the agent release={}",
                        text(&release, release_len)
                    );
                    self.ping_count = 0;
                    self.send_ping()?;
                    self.phase = Phase::Ping;
                }
                (2, Phase::Ping) if id == self.awaited => {
                    let rtt = rdtsc() - self.ping_sent;
                    if self.ping_count < PINGS {
                        self.pings[self.ping_count] = rtt;
                    }
                    self.ping_count += 1;
                    if self.ping_count == 1 {
                        kprintln!(
                            "microkernel: linux-link: pong nonce={:#x} after {} cycles",
                            self.nonce,
                            rtt
                        );
                    }
                    if self.ping_count < PINGS {
                        self.send_ping()?;
                    } else {
                        if self.round == 1 {
                            let mut sorted = self.pings;
                            sorted.sort_unstable();
                            kprintln!("bench link_roundtrip_cycles {} cycles", sorted[PINGS / 2]);
                        }
                        self.awaited = self.fresh_id();
                        self.console
                            .send_frame(self.awaited, Message::UnameRequest)?;
                        self.phase = Phase::WaitUname;
                    }
                }
                (3, Phase::WaitUname) if id == self.awaited => {
                    kprintln!(
                        "microkernel: linux-link: uname release={} machine={}",
                        text(&release, release_len),
                        text(&machine, machine_len)
                    );
                    if self.round == 1 {
                        self.awaited = self.fresh_id();
                        kprintln!("microkernel: linux-link: asking the agent to crash the kernel");
                        self.console
                            .send_frame(self.awaited, Message::CrashRequest)?;
                        self.phase = Phase::WaitCrash;
                    } else {
                        self.phase = Phase::Done;
                    }
                }
                (4, Phase::WaitCrash) if id == self.awaited => {
                    kprintln!("microkernel: linux-link: crash accepted; waiting for hvm to restart the Linux cell");
                    self.round = 2;
                    self.phase = Phase::WaitAgent;
                }
                _ => {}
            }
        }
    }

    fn send_ping(&mut self) -> Result<(), &'static str> {
        self.nonce = self.nonce.wrapping_add(1);
        self.awaited = self.fresh_id();
        self.ping_sent = rdtsc();
        self.console
            .send_frame(self.awaited, Message::Ping { nonce: self.nonce })
    }
}

/// Cell 0 plays a hostile guest: a descriptor outside its memory and
/// register writes that make no sense. hvm must refuse them and keep both
/// cells running; a fresh driver then talks to the agent again.
fn hostile_test(bar: u64) -> Result<(), &'static str> {
    let registers = Registers { base: bar };
    // Find the transmit queue's rings through the common configuration
    // (virtio 1.2 4.1.4.3).
    registers.write16(0x16, TRANSMIT_QUEUE);
    let size = registers.read16(0x18);
    let descriptors = registers.read64(0x20);
    let available = registers.read64(0x28);
    let used = registers.read64(0x30);
    let direct = |p: u64| DIRECT_MAP_BASE + p;
    let outside = 0x10_0000_0000u64;
    let slot = size - 1;
    // SAFETY: the rings are this cell's memory (allocated by the HAL); the
    // driver that owned them is abandoned after this test.
    let used_before = unsafe {
        let descriptor = direct(descriptors + 16 * u64::from(slot)) as *mut u8;
        (descriptor as *mut u64).write_volatile(outside);
        (descriptor.add(8) as *mut u32).write_volatile(64);
        (descriptor.add(12) as *mut u16).write_volatile(0);
        let index = direct(available + 2) as *mut u16;
        let i = index.read_volatile();
        (direct(available + 4 + 2 * u64::from(i % size)) as *mut u16).write_volatile(slot);
        index.write_volatile(i.wrapping_add(1));
        (direct(used + 2) as *const u16).read_volatile()
    };
    registers.write16(0x3000 + 4 * TRANSMIT_QUEUE as u64, TRANSMIT_QUEUE);
    // SAFETY: as above; hvm wrote the used ring during the notify exit.
    let (used_after, element) = unsafe {
        let after = (direct(used + 2) as *const u16).read_volatile();
        let at = direct(used + 4 + 8 * u64::from(used_before % size));
        (
            (after),
            (
                (at as *const u32).read_volatile(),
                ((at + 4) as *const u32).read_volatile(),
            ),
        )
    };
    if used_after != used_before.wrapping_add(1) || element != (u32::from(slot), 0) {
        return Err("hvm did not return the hostile descriptor unused");
    }
    kprintln!(
        "microkernel: linux-link: hostile descriptor ({:#x}+64) refused: returned with 0 bytes",
        outside
    );
    // Nonsense register writes: a queue that does not exist, a size that
    // is not a power of two, the read-only ISR and device configuration,
    // a notification for a queue that does not exist.
    registers.write16(0x16, 99);
    registers.write16(0x18, 3);
    let bogus_size = registers.read16(0x18);
    registers.write8(0x1000, 0xFF);
    registers.write32(0x2004, 0xFFFF_FFFF);
    registers.write16(0x3000 + 4 * 9, 9);
    registers.write32(0x0C, 0xFFFF_FFFF);
    let ports = registers.read32(0x2004);
    if bogus_size != 0 || ports != 1 {
        return Err("nonsense register writes changed the device");
    }
    kprintln!("microkernel: linux-link: nonsense register writes ignored");
    // A fresh driver: the link still works.
    let (mut console, _) = open_link()?;
    let mut decoder = Decoder::new();
    console.send_frame(
        0x7000,
        Message::Hello {
            protocol_version: bridge_protocol::VERSION,
            kernel_release: "kasane-cell0",
        },
    )?;
    console.send_frame(0x7001, Message::Ping { nonce: 0x600D })?;
    let deadline = rdtsc() + 40_000_000_000;
    let mut input = [0u8; 512];
    while rdtsc() < deadline {
        let n = console.receive(&mut input)?;
        let mut rest = &input[..n];
        while !rest.is_empty() {
            let (taken, event) = decoder.feed(rest);
            rest = &rest[taken..];
            match event {
                Some(Ok(frame)) if frame.request_id == 0x7001 => {
                    if let Message::Pong { nonce: 0x600D } = frame.message {
                        kprintln!(
                            "microkernel: linux-link: the link works after the hostile test (pong)"
                        );
                        return Ok(());
                    }
                }
                None => break,
                _ => {}
            }
        }
        if n == 0 {
            hypercall(Hypercall::Yield, 0);
        }
    }
    Err("no pong after the hostile test")
}
