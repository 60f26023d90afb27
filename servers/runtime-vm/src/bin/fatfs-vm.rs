//! The FAT server as a storage driver VM: ATA PIO driver and FAT in one VM.
//!
//! The manifest gives this VM the secondary ATA channel (`devices =
//! ["ata1"]`), whose ports hvm forwards to it and to no other cell. The
//! driver (`kasane-ata`) identifies the disk, `fatfs-server` serves its FAT
//! volumes over the link, and every change is acknowledged only after the
//! disk flushed its cache (docs/storage.md). A crash costs this VM only:
//! hvm restarts it, and it finds on the disk everything it acknowledged.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("fatfs-vm is a Kasane server VM: build it with `cargo build -p runtime-vm --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod vm {
    use fatfs_server::{Clock, DateTime, FatServer};
    use kasane_ata::{Ata, Channel};
    use runtime_vm::ports::Ports;

    /// A cell has no clock of the day yet: file times count from
    /// 2026-01-01T00:00:00Z plus the VM's uptime (FAT cannot store times
    /// before 1980, so uptime alone would not do).
    const EPOCH: i64 = 1_767_225_600;

    struct VmClock;

    impl Clock for VmClock {
        fn now(&self) -> DateTime {
            let seconds = EPOCH + i64::from(runtime_vm::clock_seconds());
            DateTime::from_unix_seconds(seconds).unwrap_or(DateTime::MIN)
        }
    }

    static CLOCK: VmClock = VmClock;

    fn main(_boot: &runtime_vm::Boot) -> ! {
        let mut ata = Ata::new(Ports, Channel::SECONDARY, false);
        let mut server = match ata.identify() {
            Ok(identity) => {
                runtime_vm::print_line(format_args!(
                    "fatfs: ata1: {} sectors{}, model \"{}\"",
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
                    runtime_vm::print_line(format_args!(
                        "fatfs: volume {} at sector {}, {} sectors",
                        volume.number, volume.first_sector, volume.sectors
                    ));
                }
            }
            Err(why) => runtime_vm::print_line(format_args!("{why}")),
        }
        runtime_vm::serve(&mut server)
    }

    runtime_vm::entry!(main);
}
