//! Core drives hvm's virtio links itself: the hardware end of `virtio-link`.
//!
//! The microkernel lends the root task what a user-level driver needs
//! (docs/microkernel-abi.md §9.11, §9.12): the PCI configuration ports,
//! link BARs mapped uncached with `device_map`, link interrupts as IPC
//! from interrupt 0x50 + i, and `hvm_call` for the links' generations.
//! DMA memory is core's own heap, whose physical base the boot page gives
//! (`RootBootInfo.memory_physical_base`): the window is physically
//! contiguous, so a heap address translates by one subtraction.
//!
//! Here: the `Hal` for `virtio-drivers` ([`CoreHal`]), the configuration
//! access ([`Ports`]), opening every link ([`open_links`]), and the Linux
//! link test (`linktest=bridge` in core's arguments): the bridge session
//! of `virtio_link::bridge`, then a hostile-guest check that hvm refuses a
//! descriptor outside cell 0 and ignores nonsense register writes.

use alloc::vec::Vec;
use core::alloc::Layout;
use core::arch::asm;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use hvm_abi::Hypercall;
use microkernel_abi::boot::{RootBootInfo, LINK_INTERRUPTS, LINK_INTERRUPT_BASE};
use microkernel_abi::{FromSpecifier, ThreadId, Timeout};
use microkernel_rt::console::print;
use microkernel_rt::pci;
use microkernel_rt::user::{
    current_utcb, device_map, hvm_call, interrupt_acknowledge, interrupt_associate,
    interrupt_dissociate, receive, HvmCallError,
};
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};
use virtio_link::console::{LinkConsole, TRANSMIT_QUEUE};
use virtio_link::pci::{find_links, LINK_BAR_BASE, LINK_BAR_SIZE, LINK_BAR_STRIDE};

/// Where core maps link i's BAR: `DEVICE_WINDOWS + i * LINK_BAR_STRIDE`
/// (a region of core's space nothing else uses).
const DEVICE_WINDOWS: u64 = 0x4800_0000_0000;

/// Core's memory window: user address, physical address, size.
static WINDOW_VIRTUAL: AtomicU64 = AtomicU64::new(0);
static WINDOW_PHYSICAL: AtomicU64 = AtomicU64::new(0);
static WINDOW_SIZE: AtomicU64 = AtomicU64::new(0);

/// Remembers where core's memory window is, for DMA addresses.
pub fn init(info: &RootBootInfo) {
    WINDOW_VIRTUAL.store(info.memory_base, Ordering::Relaxed);
    WINDOW_PHYSICAL.store(info.memory_physical_base, Ordering::Relaxed);
    WINDOW_SIZE.store(info.memory_size, Ordering::Relaxed);
}

/// The physical address of core memory at `address`; `None` outside the
/// window (a stack address, say: never handed to a device).
fn physical(address: u64) -> Option<u64> {
    let base = WINDOW_VIRTUAL.load(Ordering::Relaxed);
    let offset = address.checked_sub(base)?;
    (offset < WINDOW_SIZE.load(Ordering::Relaxed))
        .then(|| WINDOW_PHYSICAL.load(Ordering::Relaxed) + offset)
}

/// The user address of physical `address` in core's window.
fn virtual_address(address: u64) -> Option<u64> {
    let offset = address.checked_sub(WINDOW_PHYSICAL.load(Ordering::Relaxed))?;
    (offset < WINDOW_SIZE.load(Ordering::Relaxed))
        .then(|| WINDOW_VIRTUAL.load(Ordering::Relaxed) + offset)
}

/// `virtio-drivers`' view of core's memory and the link BARs.
pub struct CoreHal;

// SAFETY: dma_alloc returns zeroed, page-aligned heap memory owned by the
// caller until dma_dealloc, with its true physical address (the window is
// physically contiguous); share() returns the physical address of a
// buffer in the window and refuses any other; mmio_phys_to_virt maps only
// link BARs, which open_links mapped at DEVICE_WINDOWS.
unsafe impl Hal for CoreHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout");
        // SAFETY: a non-zero size.
        let pointer = unsafe { alloc::alloc::alloc_zeroed(layout) };
        let pointer = NonNull::new(pointer).expect("core is out of memory for DMA");
        let address = physical(pointer.as_ptr() as u64).expect("core's heap is in its window");
        (address, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout");
        // SAFETY: allocated by dma_alloc with this layout (the caller's
        // contract).
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        let offset = paddr
            .checked_sub(LINK_BAR_BASE)
            .filter(|&o| o < u64::from(LINK_INTERRUPTS) * LINK_BAR_STRIDE)
            .expect("MMIO outside the link BARs");
        NonNull::new((DEVICE_WINDOWS + offset) as *mut u8).expect("not null")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let address = buffer.as_ptr() as *mut u8 as u64;
        physical(address).expect("a buffer shared with a device lies outside core's window")
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// PCI configuration mechanism #1 through the ports the kernel opens to
/// core.
#[derive(Clone, Copy)]
pub struct Ports;

impl ConfigurationAccess for Ports {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        pci::read(pci::address(
            function.bus,
            function.device,
            function.function,
            offset,
        ))
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, data: u32) {
        let address = pci::address(function.bus, function.device, function.function, offset);
        // SAFETY: virtio-drivers writes only the command register and the
        // BAR sizing it undoes; hvm's devices decode their BARs only inside
        // its fixed link windows.
        unsafe { pci::write(address, data) }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Ports
    }
}

/// One open link.
pub struct Link {
    /// Its index (hvm's numbering, docs/hypercalls.md).
    pub index: u32,
    /// Its BAR's physical address.
    pub bar: u64,
    /// The console; `None` only while it is set up again (dropping a
    /// console resets the device, so the old one goes before the new one
    /// comes).
    console: Option<LinkConsole<CoreHal>>,
    /// The generation hvm last said, until the link's interrupt comes:
    /// hvm raises it whenever the peer restarts (docs/hypercalls.md,
    /// `LinkStatus`), so core asks again only then, not on every poll
    /// (each ask is a VM exit). `None` until asked.
    known_generation: Option<u64>,
}

impl Link {
    /// The link's interrupt number.
    pub fn interrupt(&self) -> u8 {
        LINK_INTERRUPT_BASE + self.index as u8
    }

    /// Where its BAR is mapped in core.
    pub fn registers(&self) -> u64 {
        DEVICE_WINDOWS + u64::from(self.index) * LINK_BAR_STRIDE
    }

    /// The link's console.
    pub fn console(&mut self) -> Result<&mut LinkConsole<CoreHal>, &'static str> {
        self.console
            .as_mut()
            .ok_or("the link's device is not set up")
    }

    /// The link's generation: hvm's, asked once per interrupt of the
    /// link (see `known_generation`). A peer not yet started (generation
    /// 0: its first start raises no interrupt) is asked every time.
    pub fn generation(&mut self) -> Option<u64> {
        if let Some(known) = self.known_generation {
            return Some(known);
        }
        let asked = hvm_call(Hypercall::LinkStatus as u64, u64::from(self.index), 0).ok();
        self.known_generation = asked.filter(|&generation| generation != 0);
        asked
    }

    /// The link's interrupt came (or a wait for it ended): the peer may
    /// have restarted, so the next [`generation`](Self::generation) asks
    /// hvm.
    pub fn interrupted(&mut self) {
        self.known_generation = None;
    }
}

impl Drop for Link {
    /// A link core lets go of (a Linux cell's, outside the link test)
    /// stops interrupting it; its console, dropped with it, resets the
    /// device.
    fn drop(&mut self) {
        let _ = interrupt_dissociate(self.interrupt());
    }
}

/// Whether hvm runs cell 0 (else there are no links).
pub fn under_hvm() -> bool {
    !matches!(
        hvm_call(Hypercall::CellStatus as u64, 0, 0),
        Err(HvmCallError::Kernel(microkernel_abi::Error::NotSupported))
    )
}

/// Finds every link, maps its BAR, resets and sets it up, and routes its
/// interrupt to `me`. A link that fails is reported and left out.
pub fn open_links(me: ThreadId) -> Vec<Link> {
    let mut links = Vec::new();
    if !under_hvm() {
        return links;
    }
    let found: Vec<_> = find_links(&Ports).collect();
    for function in found {
        let index = function.index;
        if index >= u32::from(LINK_INTERRUPTS) {
            continue;
        }
        let opened = (|| -> Result<Link, &'static str> {
            let at = DEVICE_WINDOWS + u64::from(index) * LINK_BAR_STRIDE;
            device_map(function.bar, LINK_BAR_SIZE, at)
                .map_err(|_| "device_map of the link's BAR failed")?;
            let mut root = PciRoot::new(Ports);
            root.set_command(
                function.function,
                Command::MEMORY_SPACE | Command::BUS_MASTER,
            );
            let console = LinkConsole::<CoreHal>::open(&mut root, &Ports, function.function)?;
            interrupt_associate(LINK_INTERRUPT_BASE + index as u8, me)
                .map_err(|_| "the link's interrupt cannot be associated")?;
            Ok(Link {
                index,
                bar: function.bar,
                console: Some(console),
                known_generation: None,
            })
        })();
        match opened {
            Ok(link) => links.push(link),
            Err(why) => print(format_args!("core: link {index}: {why}\n")),
        }
    }
    links
}

/// Sleeps until `link`'s interrupt or `microseconds`, whichever comes
/// first, and acknowledges the interrupt if it came. Either way the next
/// `generation` asks hvm (this is the slow path).
pub fn wait(link: &mut Link, microseconds: u32) {
    link.interrupted();
    // SAFETY: core's thread; the caller holds no other reference to the
    // UTCB across this call (boot, or a servant call: see
    // task_server::utcb).
    let utcb = unsafe { &mut *current_utcb() };
    let irq = link.interrupt();
    let wait = Timeout::Relative { microseconds };
    if receive(utcb, FromSpecifier::Thread(ThreadId::interrupt(irq)), wait).is_ok() {
        let _ = interrupt_acknowledge(irq);
    }
}

/// Resets the link's device and sets it up again (after the hostile test
/// broke its queues).
fn reopen(link: &mut Link) -> Result<(), &'static str> {
    let mut root = PciRoot::new(Ports);
    let function = DeviceFunction {
        bus: 0,
        device: (link.index + 1) as u8,
        function: 0,
    };
    // virtio-drivers resets the device when a transport is dropped: the
    // old console must go first.
    link.console = None;
    link.interrupted();
    link.console = Some(LinkConsole::<CoreHal>::open(&mut root, &Ports, function)?);
    Ok(())
}

/// The time-stamp counter.
fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; the kernel leaves CR4.TSD
    // clear, so it works at CPL 3.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The bridge session's port: the link's console, its generation, its
/// interrupt.
struct BridgePort<'a> {
    link: &'a mut Link,
}

impl virtio_link::bridge::Port for BridgePort<'_> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        self.link.console()?.send(bytes)
    }

    fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str> {
        self.link.console()?.receive(out)
    }

    fn generation(&mut self) -> Option<u64> {
        self.link.generation()
    }

    fn now(&mut self) -> u64 {
        rdtsc()
    }

    /// Sleeps until the link's interrupt, or 20 ms: core's thread blocks
    /// in the kernel, so the kernel idles and hvm runs the other cells.
    fn wait(&mut self) {
        wait(self.link, 20_000);
    }

    fn log(&mut self, line: core::fmt::Arguments<'_>) {
        print(format_args!("{line}\n"));
    }
}

/// `linktest=bridge`: the Linux link scenario, then the hostile test.
pub fn bridge_test(me: ThreadId) {
    let mut links = open_links(me);
    let Some(link) = links.first_mut() else {
        print(format_args!(
            "core: linux-link: FAILED: no link (is hvm running a Linux cell?)\n"
        ));
        return;
    };
    print(format_args!(
        "core: linux-link: virtio console ready at 00:{:02x}.0 (BAR {:#x}), driven by virtio-drivers from user space\n",
        link.index + 1,
        link.bar
    ));
    let outcome = virtio_link::bridge::run(&mut BridgePort { link: &mut *link })
        .and_then(|()| hostile(link))
        .and_then(|()| reopen(link))
        .and_then(|()| virtio_link::bridge::ping_again(&mut BridgePort { link: &mut *link }));
    match outcome {
        Ok(()) => {
            print(format_args!(
                "core: linux-link: the link works after the hostile test (pong)\n"
            ));
            print(format_args!("core: linux-link: done\n"));
        }
        Err(why) => print(format_args!("core: linux-link: FAILED: {why}\n")),
    }
}

/// The link's registers, read and written with plain `mov`s: hvm decodes
/// the instruction of every MMIO access and refuses anything else, so the
/// compiler must not fold an access into another instruction.
struct Registers {
    base: u64,
}

impl Registers {
    fn read16(&self, offset: u64) -> u16 {
        let value: u16;
        // SAFETY: inside the link's BAR, mapped by open_links; hvm
        // emulates the access.
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
        };
    }
    fn write16(&self, offset: u64, value: u16) {
        // SAFETY: as read16.
        unsafe {
            asm!("mov word ptr [{1}], {0:x}", in(reg) value, in(reg) self.base + offset, options(nostack))
        };
    }
    fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as read16.
        unsafe {
            asm!("mov dword ptr [{1}], {0:e}", in(reg) value, in(reg) self.base + offset, options(nostack))
        };
    }
}

/// A word of core's memory at physical `address` (a ring of the link).
fn ring(address: u64) -> Result<*mut u8, &'static str> {
    virtual_address(address)
        .map(|a| a as *mut u8)
        .ok_or("a ring of the link is outside core's memory")
}

/// Core plays a hostile guest: a descriptor outside cell 0's memory and
/// register writes that make no sense. hvm must refuse them and keep both
/// cells running; the caller then resets the device and talks again.
fn hostile(link: &mut Link) -> Result<(), &'static str> {
    let registers = Registers {
        base: link.registers(),
    };
    // The transmit queue's rings through the common configuration
    // (virtio 1.2 4.1.4.3).
    registers.write16(0x16, TRANSMIT_QUEUE);
    let size = registers.read16(0x18);
    let descriptors = registers.read64(0x20);
    let available = registers.read64(0x28);
    let used = registers.read64(0x30);
    let outside = 0x10_0000_0000u64;
    let slot = size.wrapping_sub(1);
    let descriptor = ring(descriptors + 16 * u64::from(slot))?;
    let index = ring(available + 2)? as *mut u16;
    let used_index = ring(used + 2)? as *const u16;
    // SAFETY: the rings are core's memory (allocated by CoreHal, checked to
    // lie in the window above); the driver that owned them is abandoned
    // after this test (the link is reset and set up again).
    let used_before = unsafe {
        (descriptor as *mut u64).write_volatile(outside);
        (descriptor.add(8) as *mut u32).write_volatile(64);
        (descriptor.add(12) as *mut u16).write_volatile(0);
        let i = index.read_volatile();
        let entry = ring(available + 4 + 2 * u64::from(i % size))? as *mut u16;
        entry.write_volatile(slot);
        index.write_volatile(i.wrapping_add(1));
        used_index.read_volatile()
    };
    registers.write16(0x3000 + 4 * u64::from(TRANSMIT_QUEUE), TRANSMIT_QUEUE);
    let element = ring(used + 4 + 8 * u64::from(used_before % size))?;
    // SAFETY: as above; hvm wrote the used ring during the notify exit.
    let (used_after, element) = unsafe {
        (
            used_index.read_volatile(),
            (
                (element as *const u32).read_volatile(),
                (element.add(4) as *const u32).read_volatile(),
            ),
        )
    };
    if used_after != used_before.wrapping_add(1) || element != (u32::from(slot), 0) {
        return Err("hvm did not return the hostile descriptor unused");
    }
    print(format_args!(
        "core: linux-link: hostile descriptor ({outside:#x}+64) refused: returned with 0 bytes\n"
    ));
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
    print(format_args!(
        "core: linux-link: nonsense register writes ignored\n"
    ));
    Ok(())
}
