//! The FAT server as a task: the ATA PIO driver and FAT in one task.
//!
//! A `vm` server's task build is what core runs in bare mode (no VT-x),
//! and a `task` server's build everywhere. Core asks the microkernel to
//! open the ports of the server's devices (the manifest's `devices`, here
//! `ata1`) to this task alone (`space_control(GrantPorts)`), so the driver
//! (`kasane-ata`) uses `in`/`out` directly; any other port faults. The
//! server code is the storage VM's (`fatfs-vm`), with the same durability
//! rule (docs/storage.md).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("fatfs-task is a Kasane task: build it with `cargo build -p runtime-task --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod task {
    use fatfs_server::{Clock, DateTime, FatServer};
    use kasane_ata::{Ata, Channel, PortIo};
    use microkernel_abi::ThreadId;
    use microkernel_rt::console::print;
    use runtime_task::ports;

    /// The task's granted ports (`runtime_task::ports`): any other port
    /// faults, which core sees as the end of the link.
    struct Ports;

    impl PortIo for Ports {
        fn read_u8(&mut self, port: u16) -> u8 {
            ports::inb(port)
        }
        fn write_u8(&mut self, port: u16, value: u8) {
            ports::outb(port, value)
        }
        fn read_u16(&mut self, port: u16) -> u16 {
            ports::inw(port)
        }
        fn write_u16(&mut self, port: u16, value: u16) {
            ports::outw(port, value)
        }
    }

    /// No clock of the day yet: file times count from
    /// 2026-01-01T00:00:00Z plus the uptime, as in the storage VM.
    const EPOCH: i64 = 1_767_225_600;

    struct TaskClock;

    impl Clock for TaskClock {
        fn now(&self) -> DateTime {
            let seconds = EPOCH + i64::from(runtime_task::clock_seconds());
            DateTime::from_unix_seconds(seconds).unwrap_or(DateTime::MIN)
        }
    }

    static CLOCK: TaskClock = TaskClock;

    fn main(core: ThreadId) -> ! {
        let mut ata = Ata::new(Ports, Channel::SECONDARY, false);
        let mut server = match ata.identify() {
            Ok(identity) => {
                print(format_args!(
                    "fatfs: ata1: {} sectors{}, model \"{}\"\n",
                    identity.sectors,
                    if identity.lba48 { " (LBA48)" } else { "" },
                    identity.model()
                ));
                FatServer::new(ata, &CLOCK)
            }
            // No disk on the channel (none attached, or the CD-ROM QEMU
            // puts there when no disk is): the server answers why.
            Err(error) => FatServer::without_disk(ata, &CLOCK, format_args!("ata1: {error}")),
        };
        match server.extents() {
            Ok(volumes) => {
                for volume in volumes {
                    print(format_args!(
                        "fatfs: volume {} at sector {}, {} sectors\n",
                        volume.number, volume.first_sector, volume.sectors
                    ));
                }
            }
            Err(why) => print(format_args!("{why}\n")),
        }
        runtime_task::serve(core, &mut server)
    }

    runtime_task::entry!(main);
}
