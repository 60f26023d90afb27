//! An ATA (IDE) disk driver in PIO mode, behind a port-I/O trait.
//!
//! The driver speaks the task-file registers of one channel (the secondary
//! one, 0x170–0x177 with control at 0x376, is what Kasane gives its storage
//! server) through [`PortIo`], so the same code runs on `in`/`out`
//! instructions in a VM or task and on a simulated disk in host tests. It
//! uses no interrupts (nIEN is set) and no DMA: every sector moves through
//! the data port, which is why the channel can be handed to one VM without
//! an IOMMU (docs/threat-model.md).
//!
//! Commands (ATA/ATAPI-6, T13/1410D, clause 8 "Command descriptions"):
//! IDENTIFY DEVICE (ECh), READ SECTOR(S) (20h) and its EXT form (24h),
//! WRITE SECTOR(S) (30h) and EXT (34h), FLUSH CACHE (E7h) and EXT (EAh).
//! They follow the PIO data-in, PIO data-out and non-data protocols of
//! clause 9. Every wait is a bounded poll: a device that never answers is
//! a [`AtaError::Timeout`] naming what was awaited, never a hang.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod block;

pub use hadris_storage::sync::BlockDevice;
pub use hadris_storage::BlockIndex;

/// Byte and word access to I/O ports. Implemented with `in`/`out` by a
/// runtime and by a simulated disk in tests.
pub trait PortIo {
    fn read_u8(&mut self, port: u16) -> u8;
    fn write_u8(&mut self, port: u16, value: u8);
    fn read_u16(&mut self, port: u16) -> u16;
    fn write_u16(&mut self, port: u16, value: u16);
}

/// Bytes in a sector (the driver speaks 512-byte logical sectors only).
pub const SECTOR: usize = 512;

/// The ports of one ATA channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// The command block: data at +0 through status/command at +7.
    pub base: u16,
    /// The control block: alternate status (read) / device control (write).
    pub control: u16,
}

impl Channel {
    /// The primary channel of a PC (ISA compatibility ports).
    pub const PRIMARY: Self = Self {
        base: 0x1F0,
        control: 0x3F6,
    };
    /// The secondary channel, the one Kasane's manifest calls `ata1`.
    pub const SECONDARY: Self = Self {
        base: 0x170,
        control: 0x376,
    };
}

// Register offsets from `base` (ATA/ATAPI-6 clause 7, "Register
// descriptions").
const DATA: u16 = 0;
const ERROR: u16 = 1;
const SECTOR_COUNT: u16 = 2;
const LBA_LOW: u16 = 3;
const LBA_MID: u16 = 4;
const LBA_HIGH: u16 = 5;
const DEVICE: u16 = 6;
const STATUS_COMMAND: u16 = 7;

// Status bits (7.15 "Status register").
const BSY: u8 = 0x80;
const DF: u8 = 0x20;
const DRQ: u8 = 0x08;
const ERR: u8 = 0x01;

/// Device control: nIEN, interrupts off (7.9 "Device Control register").
const NIEN: u8 = 0x02;
/// Device register: LBA addressing, and the obsolete bits 7 and 5 set as
/// older devices expect.
const DEVICE_LBA: u8 = 0xE0;

const IDENTIFY: u8 = 0xEC;
const READ_SECTORS: u8 = 0x20;
const READ_SECTORS_EXT: u8 = 0x24;
const WRITE_SECTORS: u8 = 0x30;
const WRITE_SECTORS_EXT: u8 = 0x34;
const FLUSH_CACHE: u8 = 0xE7;
const FLUSH_CACHE_EXT: u8 = 0xEA;

/// Status polls before a wait is given up. Each poll is one port read
/// (about a microsecond on real hardware, an exit under a hypervisor), so
/// this is seconds on a PC, enough for a spin-up, and bounded everywhere.
pub const POLL_LIMIT: u32 = 4_000_000;

/// LBA28 addresses sectors below this.
const LBA28_LIMIT: u64 = 1 << 28;
/// LBA48 addresses sectors below this.
const LBA48_LIMIT: u64 = 1 << 48;

/// What went wrong, with what a person needs to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtaError {
    /// The status register floats (0xFF) or reads 0: nothing on the channel.
    NoDevice,
    /// The device answered IDENTIFY with an ATAPI or SATA signature.
    NotAta { signature: u16 },
    /// The device stayed busy, or never asked for data, within POLL_LIMIT.
    Timeout {
        waiting_for: &'static str,
        status: u8,
    },
    /// The device set ERR (with its error register) or DF after a command.
    Device { command: u8, status: u8, error: u8 },
    /// A request outside the disk, or one the buffer cannot hold.
    OutOfRange { lba: u64, count: u64, sectors: u64 },
    /// Not identified yet.
    NotReady,
}

impl core::fmt::Display for AtaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NoDevice => write!(f, "ata: no device on the channel"),
            Self::NotAta { signature } => write!(
                f,
                "ata: device signature {signature:#06x} is not an ATA disk"
            ),
            Self::Timeout {
                waiting_for,
                status,
            } => {
                write!(
                    f,
                    "ata: timed out waiting for {waiting_for} (status {status:#04x})"
                )
            }
            Self::Device {
                command,
                status,
                error,
            } => write!(
                f,
                "ata: command {command:#04x} failed: status {status:#04x}, error {error:#04x}"
            ),
            Self::OutOfRange {
                lba,
                count,
                sectors,
            } => {
                write!(
                    f,
                    "ata: sectors {lba}+{count} lie outside the disk's {sectors}"
                )
            }
            Self::NotReady => write!(f, "ata: the disk was not identified"),
        }
    }
}

impl core::error::Error for AtaError {}

/// What IDENTIFY DEVICE said (8.15, the words of table 25 used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Addressable sectors: words 100–103 with LBA48, else words 60–61.
    pub sectors: u64,
    pub lba48: bool,
    /// Words 27–46, byte-swapped per word into ASCII, trailing blanks kept.
    pub model: [u8; 40],
}

impl Identity {
    /// Decodes the 256 words of an IDENTIFY DEVICE answer.
    pub fn parse(words: &[u16; 256]) -> Self {
        let lba28 = u64::from(words[60]) | u64::from(words[61]) << 16;
        // Word 83 bit 10: the 48-bit Address feature set is supported.
        let lba48 = words[83] & (1 << 10) != 0;
        let sectors48 = (100..104)
            .rev()
            .fold(0u64, |acc, word| acc << 16 | u64::from(words[word]));
        let mut model = [0u8; 40];
        for (index, word) in words[27..47].iter().enumerate() {
            let [high, low] = word.to_be_bytes();
            model[2 * index] = high;
            model[2 * index + 1] = low;
        }
        Self {
            sectors: if lba48 && sectors48 != 0 {
                sectors48
            } else {
                lba28
            },
            lba48,
            model,
        }
    }

    /// The model string without its padding.
    pub fn model(&self) -> &str {
        core::str::from_utf8(&self.model).unwrap_or("?").trim_end()
    }
}

/// Commands issued, for the benchmarks and the durability test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
}

/// One disk (master or slave) on one channel.
#[derive(Debug)]
pub struct Ata<P: PortIo> {
    io: P,
    channel: Channel,
    slave: bool,
    identity: Option<Identity>,
    pub counters: Counters,
}

impl<P: PortIo> Ata<P> {
    pub fn new(io: P, channel: Channel, slave: bool) -> Self {
        Self {
            io,
            channel,
            slave,
            identity: None,
            counters: Counters::default(),
        }
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    pub fn io(&mut self) -> &mut P {
        &mut self.io
    }

    fn status(&mut self) -> u8 {
        self.io.read_u8(self.channel.base + STATUS_COMMAND)
    }

    /// About 400 ns: four reads of alternate status, which the device needs
    /// after a device select or a command before status is valid (9.2).
    fn settle(&mut self) {
        for _ in 0..4 {
            self.io.read_u8(self.channel.control);
        }
    }

    fn wait_not_busy(&mut self, waiting_for: &'static str) -> Result<u8, AtaError> {
        let mut status = 0;
        for _ in 0..POLL_LIMIT {
            status = self.status();
            if status & BSY == 0 {
                return Ok(status);
            }
        }
        Err(AtaError::Timeout {
            waiting_for,
            status,
        })
    }

    /// Waits for BSY clear and then DRQ (data ready), or an error.
    fn wait_data(&mut self, command: u8) -> Result<(), AtaError> {
        let mut status = 0;
        for _ in 0..POLL_LIMIT {
            status = self.status();
            if status & BSY != 0 {
                continue;
            }
            self.check(command, status)?;
            if status & DRQ != 0 {
                return Ok(());
            }
        }
        Err(AtaError::Timeout {
            waiting_for: "the data request (DRQ)",
            status,
        })
    }

    fn check(&mut self, command: u8, status: u8) -> Result<(), AtaError> {
        if status & (ERR | DF) != 0 {
            let error = self.io.read_u8(self.channel.base + ERROR);
            return Err(AtaError::Device {
                command,
                status,
                error,
            });
        }
        Ok(())
    }

    fn select(&mut self, lba_top: u8) {
        let device = DEVICE_LBA | if self.slave { 0x10 } else { 0 } | (lba_top & 0x0F);
        self.io.write_u8(self.channel.base + DEVICE, device);
        self.settle();
    }

    /// Resets nothing, turns interrupts off and runs IDENTIFY DEVICE.
    pub fn identify(&mut self) -> Result<Identity, AtaError> {
        self.io.write_u8(self.channel.control, NIEN);
        self.select(0);
        let status = self.status();
        if status == 0xFF || status == 0 {
            return Err(AtaError::NoDevice);
        }
        self.wait_not_busy("the device after select")?;
        for register in [SECTOR_COUNT, LBA_LOW, LBA_MID, LBA_HIGH] {
            self.io.write_u8(self.channel.base + register, 0);
        }
        self.io
            .write_u8(self.channel.base + STATUS_COMMAND, IDENTIFY);
        self.settle();
        if self.status() == 0 {
            return Err(AtaError::NoDevice);
        }
        self.wait_not_busy("IDENTIFY")?;
        // A packet (ATAPI) or SATA device leaves its signature in LBA mid
        // and high and aborts IDENTIFY DEVICE (9.12 "Signature").
        let mid = self.io.read_u8(self.channel.base + LBA_MID);
        let high = self.io.read_u8(self.channel.base + LBA_HIGH);
        if mid != 0 || high != 0 {
            return Err(AtaError::NotAta {
                signature: u16::from_le_bytes([mid, high]),
            });
        }
        self.wait_data(IDENTIFY)?;
        let mut words = [0u16; 256];
        for word in &mut words {
            *word = self.io.read_u16(self.channel.base + DATA);
        }
        let identity = Identity::parse(&words);
        self.identity = Some(identity);
        Ok(identity)
    }

    fn sectors(&self) -> Result<&Identity, AtaError> {
        self.identity.as_ref().ok_or(AtaError::NotReady)
    }

    /// Loads the task file for a transfer of `length` bytes (whole
    /// sectors, 1..=256 of them) from `lba`, with the EXT registers when
    /// the address needs 48 bits (7.x, "48-bit Address feature set": the
    /// high bytes are written first).
    fn address(
        &mut self,
        lba: u64,
        length: usize,
        command28: u8,
        command48: u8,
    ) -> Result<u8, AtaError> {
        let identity = *self.sectors()?;
        let count = length / SECTOR;
        let count64 = count as u64;
        let end = lba.checked_add(count64);
        if length % SECTOR != 0
            || count == 0
            || count > 256
            || end.is_none_or(|end| end > identity.sectors)
        {
            return Err(AtaError::OutOfRange {
                lba,
                count: count64,
                sectors: identity.sectors,
            });
        }
        let bytes = lba.to_le_bytes();
        let base = self.channel.base;
        // A count of 256 is written as 0 (both forms).
        let count_low = (count & 0xFF) as u8;
        if lba + count64 <= LBA28_LIMIT {
            self.select(bytes[3]);
            self.wait_not_busy("the device before a command")?;
            self.io.write_u8(base + SECTOR_COUNT, count_low);
            self.io.write_u8(base + LBA_LOW, bytes[0]);
            self.io.write_u8(base + LBA_MID, bytes[1]);
            self.io.write_u8(base + LBA_HIGH, bytes[2]);
            self.io.write_u8(base + STATUS_COMMAND, command28);
            Ok(command28)
        } else if identity.lba48 && lba + count64 <= LBA48_LIMIT {
            self.select(0);
            self.wait_not_busy("the device before a command")?;
            self.io.write_u8(base + SECTOR_COUNT, 0);
            self.io.write_u8(base + LBA_LOW, bytes[3]);
            self.io.write_u8(base + LBA_MID, bytes[4]);
            self.io.write_u8(base + LBA_HIGH, bytes[5]);
            self.io.write_u8(base + SECTOR_COUNT, count_low);
            self.io.write_u8(base + LBA_LOW, bytes[0]);
            self.io.write_u8(base + LBA_MID, bytes[1]);
            self.io.write_u8(base + LBA_HIGH, bytes[2]);
            self.io.write_u8(base + STATUS_COMMAND, command48);
            Ok(command48)
        } else {
            Err(AtaError::OutOfRange {
                lba,
                count: count64,
                sectors: identity.sectors,
            })
        }
    }

    /// READ SECTOR(S): fills `buf` (a whole number of sectors, at most
    /// 256) from `lba`, by the PIO data-in protocol.
    pub fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), AtaError> {
        let command = self.address(lba, buf.len(), READ_SECTORS, READ_SECTORS_EXT)?;
        self.settle();
        for sector in buf.chunks_exact_mut(SECTOR) {
            self.wait_data(command)?;
            for pair in sector.chunks_exact_mut(2) {
                let word = self.io.read_u16(self.channel.base + DATA);
                pair.copy_from_slice(&word.to_le_bytes());
            }
            self.settle();
        }
        let status = self.status();
        self.check(command, status)?;
        self.counters.reads += 1;
        Ok(())
    }

    /// WRITE SECTOR(S): writes `buf` (whole sectors, at most 256) at
    /// `lba`, by the PIO data-out protocol. The data may sit in the drive's
    /// write cache until [`flush`](Self::flush).
    pub fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), AtaError> {
        let command = self.address(lba, buf.len(), WRITE_SECTORS, WRITE_SECTORS_EXT)?;
        self.settle();
        for sector in buf.chunks_exact(SECTOR) {
            self.wait_data(command)?;
            for pair in sector.chunks_exact(2) {
                self.io.write_u16(
                    self.channel.base + DATA,
                    u16::from_le_bytes([pair[0], pair[1]]),
                );
            }
            self.settle();
        }
        let status = self.wait_not_busy("the end of a write")?;
        self.check(command, status)?;
        self.counters.writes += 1;
        Ok(())
    }

    /// FLUSH CACHE (EXT on an LBA48 disk): returns once the drive reports
    /// every cached write on the medium (non-data protocol).
    pub fn flush(&mut self) -> Result<(), AtaError> {
        let identity = *self.sectors()?;
        let command = if identity.lba48 {
            FLUSH_CACHE_EXT
        } else {
            FLUSH_CACHE
        };
        self.select(0);
        self.wait_not_busy("the device before FLUSH CACHE")?;
        self.io
            .write_u8(self.channel.base + STATUS_COMMAND, command);
        self.settle();
        let status = self.wait_not_busy("FLUSH CACHE")?;
        self.check(command, status)?;
        self.counters.flushes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
