//! The driver against a simulated ATA disk on the secondary channel.
//!
//! The simulation keeps the task file and a sector store, runs the few
//! commands the driver issues, and records each command, so the tests can
//! check both the bytes and the protocol (a write is followed by FLUSH
//! CACHE only when asked; LBA48 is used only past 2^28).

use super::*;

const BASE: u16 = 0x170;
const CONTROL: u16 = 0x376;

#[derive(Default)]
struct SimDisk {
    sectors: Vec<[u8; SECTOR]>,
    lba48: bool,
    registers: [u8; 8],
    /// Values written before the last write of each LBA register (the
    /// "previous" byte of the 48-bit FIFO).
    previous: [u8; 8],
    status: u8,
    error: u8,
    buffer: Vec<u8>,
    position: usize,
    /// What the current data transfer is: a read, or a write to this LBA.
    writing: Option<u64>,
    pending_sectors: usize,
    commands: Vec<u8>,
    control: u8,
    /// Make every command fail with ABRT, or keep BSY forever.
    fail: bool,
    stuck_busy: bool,
    absent: bool,
}

impl SimDisk {
    fn new(count: usize) -> Self {
        Self {
            sectors: vec![[0; SECTOR]; count],
            status: 0x50, // DRDY | DSC
            ..Self::default()
        }
    }

    fn lba(&self, ext: bool) -> u64 {
        let low = u64::from(self.registers[3])
            | u64::from(self.registers[4]) << 8
            | u64::from(self.registers[5]) << 16;
        if ext {
            low | u64::from(self.previous[3]) << 24
                | u64::from(self.previous[4]) << 32
                | u64::from(self.previous[5]) << 40
        } else {
            low | u64::from(self.registers[6] & 0x0F) << 24
        }
    }

    fn count(&self, ext: bool) -> usize {
        let count = if ext {
            usize::from(self.previous[2]) << 8 | usize::from(self.registers[2])
        } else {
            usize::from(self.registers[2])
        };
        if count == 0 {
            if ext {
                65536
            } else {
                256
            }
        } else {
            count
        }
    }

    fn abort(&mut self) {
        self.status = 0x51;
        self.error = 0x04; // ABRT
    }

    fn command(&mut self, command: u8) {
        self.commands.push(command);
        if self.fail {
            return self.abort();
        }
        let ext = matches!(command, READ_SECTORS_EXT | WRITE_SECTORS_EXT);
        match command {
            IDENTIFY => {
                let mut words = [0u16; 256];
                let count = self.sectors.len() as u64;
                words[60] = count as u16;
                words[61] = (count >> 16) as u16;
                if self.lba48 {
                    words[83] = 1 << 10;
                    words[100] = count as u16;
                    words[101] = (count >> 16) as u16;
                }
                for (index, pair) in b"KASANE SIMULATED DISK                   "
                    .chunks(2)
                    .enumerate()
                {
                    words[27 + index] = u16::from_be_bytes([pair[0], pair[1]]);
                }
                self.buffer = words.iter().flat_map(|word| word.to_le_bytes()).collect();
                self.position = 0;
                self.writing = None;
                self.status = 0x58; // DRDY | DSC | DRQ
            }
            READ_SECTORS | READ_SECTORS_EXT => {
                let lba = self.lba(ext) as usize;
                let count = self.count(ext);
                if lba + count > self.sectors.len() {
                    return self.abort();
                }
                self.buffer = self.sectors[lba..lba + count].concat();
                self.position = 0;
                self.writing = None;
                self.status = 0x58;
            }
            WRITE_SECTORS | WRITE_SECTORS_EXT => {
                let lba = self.lba(ext);
                let count = self.count(ext);
                if lba as usize + count > self.sectors.len() {
                    return self.abort();
                }
                self.buffer.clear();
                self.writing = Some(lba);
                self.pending_sectors = count;
                self.status = 0x58;
            }
            FLUSH_CACHE | FLUSH_CACHE_EXT => self.status = 0x50,
            _ => self.abort(),
        }
    }
}

impl PortIo for SimDisk {
    fn read_u8(&mut self, port: u16) -> u8 {
        if self.absent {
            return 0xFF;
        }
        if self.stuck_busy && (port == BASE + 7 || port == CONTROL) {
            return 0xD0;
        }
        match port {
            p if p == BASE + 1 => self.error,
            p if p == BASE + 7 || p == CONTROL => self.status,
            p if (BASE + 2..BASE + 7).contains(&p) => self.registers[usize::from(p - BASE)],
            _ => 0xFF,
        }
    }

    fn write_u8(&mut self, port: u16, value: u8) {
        match port {
            CONTROL => self.control = value,
            p if p == BASE + 7 => {
                self.error = 0;
                self.command(value);
            }
            p if (BASE + 1..BASE + 7).contains(&p) => {
                let index = usize::from(p - BASE);
                self.previous[index] = self.registers[index];
                self.registers[index] = value;
            }
            _ => {}
        }
    }

    fn read_u16(&mut self, port: u16) -> u16 {
        assert_eq!(port, BASE, "data is read from the data port");
        assert!(self.status & DRQ != 0, "data read without DRQ");
        let word = u16::from_le_bytes([self.buffer[self.position], self.buffer[self.position + 1]]);
        self.position += 2;
        if self.position == self.buffer.len() {
            self.status = 0x50;
        }
        word
    }

    fn write_u16(&mut self, port: u16, value: u16) {
        assert_eq!(port, BASE, "data is written to the data port");
        assert!(self.status & DRQ != 0, "data written without DRQ");
        self.buffer.extend_from_slice(&value.to_le_bytes());
        if self.buffer.len() == self.pending_sectors * SECTOR {
            let lba = self.writing.take().unwrap() as usize;
            for (index, sector) in self.buffer.chunks_exact(SECTOR).enumerate() {
                self.sectors[lba + index].copy_from_slice(sector);
            }
            self.status = 0x50;
        }
    }
}

fn identified(count: usize) -> Ata<SimDisk> {
    let mut ata = Ata::new(SimDisk::new(count), Channel::SECONDARY, false);
    ata.identify().unwrap();
    ata
}

#[test]
fn identify_reads_size_and_model_with_interrupts_off() {
    let mut ata = Ata::new(SimDisk::new(5000), Channel::SECONDARY, false);
    let identity = ata.identify().unwrap();
    assert_eq!(identity.sectors, 5000);
    assert!(!identity.lba48);
    assert_eq!(identity.model(), "KASANE SIMULATED DISK");
    assert_eq!(ata.io().control & NIEN, NIEN);
}

#[test]
fn write_then_read_round_trips_many_sectors() {
    let mut ata = identified(2000);
    let data: Vec<u8> = (0..300 * SECTOR).map(|i| (i * 7 + i / 512) as u8).collect();
    // 300 sectors: more than one command through the block-device face.
    BlockDevice::write_blocks(&mut ata, BlockIndex::new(10), &data).unwrap();
    let mut back = vec![0u8; data.len()];
    BlockDevice::read_blocks(&mut ata, BlockIndex::new(10), &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(ata.counters.writes, 2);
    assert_eq!(ata.counters.reads, 2);
    assert_eq!(ata.io().sectors[10][..4], data[..4]);
}

#[test]
fn flush_issues_flush_cache() {
    let mut ata = identified(100);
    ata.write(0, &[1u8; SECTOR]).unwrap();
    assert!(!ata.io().commands.contains(&FLUSH_CACHE));
    ata.flush().unwrap();
    assert_eq!(ata.io().commands.last(), Some(&FLUSH_CACHE));
    assert_eq!(ata.counters.flushes, 1);
}

#[test]
fn lba48_only_past_28_bits() {
    let mut disk = SimDisk::new(16);
    disk.lba48 = true;
    let mut ata = Ata::new(disk, Channel::SECONDARY, false);
    ata.identify().unwrap();
    ata.write(3, &[9u8; SECTOR]).unwrap();
    assert_eq!(ata.io().commands.last(), Some(&WRITE_SECTORS));
    // Beyond the (small) disk: refused before any command.
    let before = ata.io().commands.len();
    let error = ata.read(LBA28_LIMIT, &mut [0u8; SECTOR]).unwrap_err();
    assert!(matches!(error, AtaError::OutOfRange { .. }));
    assert_eq!(ata.io().commands.len(), before);
    ata.flush().unwrap();
    assert_eq!(ata.io().commands.last(), Some(&FLUSH_CACHE_EXT));
}

#[test]
fn lba48_addresses_reach_the_disk() {
    // The EXT task file carries all 48 bits: checked on the register
    // level without a 128 GiB store.
    let mut ata = identified(1);
    ata.identity = Some(Identity {
        sectors: 1 << 30,
        lba48: true,
        model: [b' '; 40],
    });
    let lba = (1u64 << 28) + 0x12_3456;
    let _ = ata
        .address(lba, 2 * SECTOR, READ_SECTORS, READ_SECTORS_EXT)
        .unwrap();
    let disk = ata.io();
    assert_eq!(disk.commands.last(), Some(&READ_SECTORS_EXT));
    assert_eq!(disk.lba(true), lba);
    assert_eq!(disk.count(true), 2);
}

#[test]
fn device_errors_name_the_command() {
    let mut ata = identified(100);
    ata.io().fail = true;
    let error = ata.read(0, &mut [0u8; SECTOR]).unwrap_err();
    assert_eq!(
        error,
        AtaError::Device {
            command: READ_SECTORS,
            status: 0x51,
            error: 0x04
        }
    );
    assert!(error.to_string().contains("command 0x20 failed"));
}

#[test]
fn out_of_range_and_ragged_buffers_are_refused() {
    let mut ata = identified(100);
    assert!(matches!(
        ata.read(99, &mut [0u8; 2 * SECTOR]),
        Err(AtaError::OutOfRange { .. })
    ));
    assert!(matches!(
        ata.write(0, &[0u8; 100]),
        Err(AtaError::OutOfRange { .. })
    ));
    assert!(matches!(
        ata.read(u64::MAX, &mut [0u8; SECTOR]),
        Err(AtaError::OutOfRange { .. })
    ));
}

#[test]
fn a_busy_device_times_out() {
    let mut ata = identified(100);
    ata.io().stuck_busy = true;
    let error = ata.flush().unwrap_err();
    assert!(matches!(error, AtaError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("timed out"));
}

#[test]
fn an_empty_channel_is_no_device() {
    let mut disk = SimDisk::new(1);
    disk.absent = true;
    let mut ata = Ata::new(disk, Channel::SECONDARY, false);
    assert_eq!(ata.identify(), Err(AtaError::NoDevice));
    assert_eq!(ata.read(0, &mut [0u8; SECTOR]), Err(AtaError::NotReady));
}
