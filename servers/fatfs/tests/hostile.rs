//! Hostile disks: a bad BPB, a FAT loop, an entry pointing past the volume.
//!
//! Each image starts as a good FAT16 image from `mkfs.fat` and has one
//! structure broken by hand. The server must answer a clear error for the
//! request that meets the damage and keep serving the rest; it must never
//! hang (each case runs under a deadline) or panic.

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use fatfs_server::{Clock, DateTime, FatServer, MemDevice};
use ninep_server::{Caller, FileServer, Reply, RequestId};

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> DateTime {
        DateTime::from_unix_seconds(1_700_000_000).unwrap()
    }
}
static CLOCK: FixedClock = FixedClock;

const CALLER: Caller<'static> = Caller {
    uname: "glenda",
    request: RequestId(1),
};

/// A FAT16 image holding `DATA.BIN` (3 clusters) and `OK.TXT`.
fn good_image() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!(
        "kasane-fat-hostile-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("disk.img");
    let _ = std::fs::remove_file(&image);
    let status = Command::new("mkfs.fat")
        .args([
            "-F",
            "16",
            "-s",
            "1",
            "-C",
            image.to_str().unwrap(),
            "16384",
        ])
        .output()
        .expect("mkfs.fat (dosfstools; run/deps installs it)");
    assert!(status.status.success());
    let data = dir.join("data.bin");
    std::fs::write(&data, vec![7u8; 1536]).unwrap();
    let ok = dir.join("ok.txt");
    std::fs::write(&ok, b"still fine\n").unwrap();
    for (from, to) in [(&data, "::/DATA.BIN"), (&ok, "::/OK.TXT")] {
        let out = Command::new("mcopy")
            .args(["-i", image.to_str().unwrap(), from.to_str().unwrap(), to])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .expect("mcopy (mtools)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bytes = std::fs::read(&image).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    bytes
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Byte offsets of FAT 1 and of the root directory (FAT specification,
/// "Boot Sector and BPB": BPB_RsvdSecCnt at 14, BPB_NumFATs at 16,
/// BPB_FATSz16 at 22).
fn layout(bytes: &[u8]) -> (usize, usize) {
    let reserved = u16_at(bytes, 14);
    let fats = usize::from(bytes[16]);
    let fat_sectors = u16_at(bytes, 22);
    (reserved * 512, (reserved + fats * fat_sectors) * 512)
}

/// The root directory entry with this 8.3 name.
fn entry_of(bytes: &[u8], short: &[u8; 11]) -> usize {
    let (_, root) = layout(bytes);
    (0..512)
        .map(|index| root + index * 32)
        .find(|&at| &bytes[at..at + 11] == short)
        .expect("entry made by mcopy")
}

/// Runs `f` on a thread and fails the test if it takes over 20 s.
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(f());
    });
    receive
        .recv_timeout(Duration::from_secs(20))
        .expect("the server hung (or panicked) on a hostile disk")
}

fn read_named(bytes: Vec<u8>, name: &'static str) -> Result<Vec<u8>, String> {
    let device = MemDevice::new(bytes, fatfs_server::BlockSize::new(512).unwrap());
    let mut server = FatServer::new(device, &CLOCK);
    let (root, _) = server
        .attach("glenda", "")
        .map_err(|e| e.as_str().to_string())?;
    let (node, _) = server
        .walk(&CALLER, &root, name)
        .map_err(|e| e.as_str().to_string())?;
    let mut out = Vec::new();
    loop {
        match server.read(&CALLER, &node, out.len() as u64, 4096) {
            Ok(Reply::Now(chunk)) if chunk.is_empty() => break,
            Ok(Reply::Now(chunk)) => out.extend(chunk),
            Ok(Reply::Later) => return Err("a FAT read waited".into()),
            Err(error) => {
                // The damage costs this request only: another file still reads.
                let (ok, _) = server
                    .walk(&CALLER, &root, "OK.TXT")
                    .expect("OK.TXT after an error");
                let Ok(Reply::Now(text)) = server.read(&CALLER, &ok, 0, 100) else {
                    panic!("OK.TXT unreadable after an error elsewhere");
                };
                assert_eq!(text, b"still fine\n");
                return Err(error.as_str().to_string());
            }
        }
        if out.len() > 1 << 20 {
            return Err("read ran past any size the file could have".into());
        }
    }
    Ok(out)
}

#[test]
fn good_image_reads() {
    let bytes = good_image();
    let data = within_deadline(move || read_named(bytes, "DATA.BIN")).unwrap();
    assert_eq!(data, vec![7u8; 1536]);
}

#[test]
fn bad_bpb_is_refused_at_attach() {
    let mut bytes = good_image();
    // BPB_BytsPerSec = 300: not a power of two.
    bytes[11..13].copy_from_slice(&300u16.to_le_bytes());
    let error = within_deadline(move || {
        let device = MemDevice::new(bytes, fatfs_server::BlockSize::new(512).unwrap());
        let mut server = FatServer::new(device, &CLOCK);
        server.attach("glenda", "").unwrap_err()
    });
    // Sector 0 no longer looks like a boot sector, nor a usable MBR.
    assert!(error.as_str().starts_with("fat: "), "{error:?}");

    let mut bytes = good_image();
    // BPB_SecPerClus = 0.
    bytes[13] = 0;
    let error = within_deadline(move || {
        let device = MemDevice::new(bytes, fatfs_server::BlockSize::new(512).unwrap());
        let mut server = FatServer::new(device, &CLOCK);
        server.attach("glenda", "").unwrap_err()
    });
    assert!(
        error.as_str().contains("not a usable FAT file system"),
        "{error:?}"
    );
}

#[test]
fn a_channel_without_a_disk_answers_every_attach_with_why() {
    // A good image behind the device, to show that nothing is read.
    let device = MemDevice::new(good_image(), fatfs_server::BlockSize::new(512).unwrap());
    let mut server = FatServer::without_disk(device, &CLOCK, format_args!("ata1: no device"));
    assert_eq!(server.extents(), Err("fat: no disk: ata1: no device"));
    for aname in ["", "0", "1"] {
        let error = server.attach("glenda", aname).unwrap_err();
        assert_eq!(error.as_str(), "fat: no disk: ata1: no device");
    }
}

#[test]
fn fat_loop_is_an_error_not_a_hang() {
    let mut bytes = good_image();
    let entry = entry_of(&bytes, b"DATA    BIN");
    let first = u16_at(&bytes, entry + 26);
    let (fat, _) = layout(&bytes);
    // The file's second cluster points back to its first.
    let second = u16_at(&bytes, fat + first * 2);
    bytes[fat + second * 2..fat + second * 2 + 2].copy_from_slice(&(first as u16).to_le_bytes());
    // And the size claims far more than the chain could hold, so only
    // following the chain would find the end.
    bytes[entry + 28..entry + 32].copy_from_slice(&(1u32 << 20).to_le_bytes());
    let result = within_deadline(move || read_named(bytes, "DATA.BIN"));
    let error = result.unwrap_err();
    assert!(error.starts_with("fat: "), "{error}");
}

#[test]
fn entry_past_the_volume_is_an_error() {
    let mut bytes = good_image();
    let entry = entry_of(&bytes, b"DATA    BIN");
    // A first cluster far beyond the volume's last (16384 sectors).
    bytes[entry + 26..entry + 28].copy_from_slice(&0xFFE0u16.to_le_bytes());
    let result = within_deadline(move || read_named(bytes, "DATA.BIN"));
    let error = result.unwrap_err();
    assert!(error.starts_with("fat: "), "{error}");
}

/// A disk whose every read fails, as an absent ATA drive does.
struct DeadDisk;

#[derive(Debug)]
struct Dead;

impl core::fmt::Display for Dead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ata: no device on the channel")
    }
}

impl std::error::Error for Dead {}

impl fatfs_server::ErrorType for DeadDisk {
    type Error = Dead;
}

impl fatfs_server::BlockDevice for DeadDisk {
    fn block_size(&self) -> fatfs_server::BlockSize {
        fatfs_server::BlockSize::new(512).unwrap()
    }
    fn block_count(&self) -> u64 {
        0
    }
    fn read_blocks(
        &mut self,
        _first: fatfs_server::BlockIndex,
        _buf: &mut [u8],
    ) -> Result<(), fatfs_server::DeviceError<Dead>> {
        Err(fatfs_server::DeviceError::device(Dead, "read failed"))
    }
}

#[test]
fn a_dead_disk_says_why_at_attach() {
    let mut server = FatServer::new(DeadDisk, &CLOCK);
    let error = server.attach("glenda", "").unwrap_err();
    assert_eq!(
        error.as_str(),
        "fat: cannot read sector 0: ata: no device on the channel"
    );
}
