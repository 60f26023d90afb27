//! Interop with dosfstools and mtools: images they make, read and changed here.
//!
//! Each test makes an image with `mkfs.fat` (FAT16, FAT32, and one inside
//! an MBR partition), fills it with `mtools` (long names, nested
//! directories, a 1 MiB file, an empty file), serves it with `FatServer`
//! over an in-memory disk, and checks listings and bytes. The changes made
//! here (create, append, rename, remove) are then checked by the same
//! tools: `fsck.fat -n` must find nothing, and `mtype`/`mdir` must see
//! every change. A counting disk checks the durability rule: after every
//! acknowledged change no written sector waits for a flush.
//!
//! The tools are required (run/deps installs dosfstools and mtools); a
//! missing tool fails the test rather than skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;

use fatfs_server::{
    BlockDevice, BlockIndex, BlockSize, Clock, DateTime, DeviceError, ErrorType, FatServer,
};
use ninep::{FileMode, OpenMode, Stat};
use ninep_server::{Caller, FileServer, Reply, RequestId, StatChanges};

/// An image in memory that counts writes not yet followed by a flush.
struct CountingDisk {
    bytes: Vec<u8>,
    unflushed: usize,
    flushes: usize,
}

impl ErrorType for CountingDisk {
    type Error = core::convert::Infallible;
}

impl BlockDevice for CountingDisk {
    fn block_size(&self) -> BlockSize {
        BlockSize::new(512).unwrap()
    }
    fn block_count(&self) -> u64 {
        self.bytes.len() as u64 / 512
    }
    fn writable(&self) -> bool {
        true
    }
    fn read_blocks(
        &mut self,
        first: BlockIndex,
        buf: &mut [u8],
    ) -> Result<(), DeviceError<Self::Error>> {
        let start = first.get() as usize * 512;
        let slice = self
            .bytes
            .get(start..start + buf.len())
            .ok_or(DeviceError::new(
                fatfs_server::DeviceErrorKind::InvalidInput,
                "past the end",
            ))?;
        buf.copy_from_slice(slice);
        Ok(())
    }
    fn write_blocks(
        &mut self,
        first: BlockIndex,
        buf: &[u8],
    ) -> Result<(), DeviceError<Self::Error>> {
        let start = first.get() as usize * 512;
        let slice = self
            .bytes
            .get_mut(start..start + buf.len())
            .ok_or(DeviceError::new(
                fatfs_server::DeviceErrorKind::InvalidInput,
                "past the end",
            ))?;
        slice.copy_from_slice(buf);
        self.unflushed += 1;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DeviceError<Self::Error>> {
        self.unflushed = 0;
        self.flushes += 1;
        Ok(())
    }
}

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> DateTime {
        DateTime::from_unix_seconds(1_700_000_000).unwrap()
    }
}
static CLOCK: FixedClock = FixedClock;

fn caller() -> Caller<'static> {
    Caller {
        uname: "glenda",
        request: RequestId(1),
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|error| {
            panic!("{program} (dosfstools/mtools; run/deps installs them): {error}")
        });
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{text}"
    );
    text
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kasane-fat-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The 1 MiB file's bytes: not a repeating pattern a wrong cluster could fake.
fn big_bytes() -> Vec<u8> {
    let mut state = 0x1234_5678u32;
    (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// Makes and fills an image; `image_arg` is how mtools names the volume
/// (`FILE` or `FILE@@OFFSET`).
fn fill(dir: &Path, image_arg: &str) {
    let big = dir.join("big.bin");
    std::fs::write(&big, big_bytes()).unwrap();
    let hello = dir.join("hello.txt");
    std::fs::write(&hello, b"hello from the host\n").unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    run("mmd", &["-i", image_arg, "::/A Long Directory Name"]);
    run("mmd", &["-i", image_arg, "::/A Long Directory Name/nested"]);
    run(
        "mcopy",
        &["-i", image_arg, big.to_str().unwrap(), "::/big.bin"],
    );
    run(
        "mcopy",
        &[
            "-i",
            image_arg,
            hello.to_str().unwrap(),
            "::/A Long Directory Name/nested/Hello World.txt",
        ],
    );
    run(
        "mcopy",
        &["-i", image_arg, empty.to_str().unwrap(), "::/empty file"],
    );
}

fn walk_path(server: &mut FatServer<CountingDisk>, root: u64, path: &str) -> u64 {
    let mut node = root;
    for part in path.split('/').filter(|part| !part.is_empty()) {
        node = server
            .walk(&caller(), &node, part)
            .unwrap_or_else(|error| panic!("walk {part} of {path}: {error:?}"))
            .0;
    }
    node
}

fn read_all(server: &mut FatServer<CountingDisk>, node: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Reply::Now(chunk) = server
            .read(&caller(), &node, out.len() as u64, 8192)
            .unwrap()
        else {
            panic!("a FAT read never waits");
        };
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

fn names(stats: &[Stat]) -> Vec<String> {
    let mut names: Vec<_> = stats.iter().map(|stat| stat.name.clone()).collect();
    names.sort();
    names
}

fn write(server: &mut FatServer<CountingDisk>, node: u64, offset: u64, data: &[u8]) {
    let Reply::Now(count) = server.write(&caller(), &node, offset, data).unwrap() else {
        panic!("a FAT write never waits");
    };
    assert_eq!(count as usize, data.len());
    assert_durable(server);
}

fn assert_durable(server: &FatServer<CountingDisk>) {
    let pending = server.with_disk(|disk| disk.unflushed);
    assert_eq!(
        pending, 0,
        "a change was acknowledged with {pending} sector writes not flushed"
    );
}

/// The whole round: read what the host made, change it, hand it back.
fn exercise(bytes: Vec<u8>, aname: &str) -> Vec<u8> {
    let disk = CountingDisk {
        bytes,
        unflushed: 0,
        flushes: 0,
    };
    let mut server = FatServer::new(disk, &CLOCK);
    let (root, qid) = server.attach("glenda", aname).unwrap();
    assert!(qid.kind.contains(ninep::QidType::DIR));

    // Listing and reading, byte for byte.
    let listed = server.read_dir(&caller(), &root).unwrap();
    assert_eq!(
        names(&listed),
        ["A Long Directory Name", "big.bin", "empty file"]
    );
    let big = listed.iter().find(|stat| stat.name == "big.bin").unwrap();
    assert_eq!(big.length, 1 << 20);
    let empty = walk_path(&mut server, root, "empty file");
    assert_eq!(server.stat(&empty).unwrap().length, 0);
    assert!(read_all(&mut server, empty).is_empty());
    let big = walk_path(&mut server, root, "big.bin");
    assert!(
        read_all(&mut server, big) == big_bytes(),
        "1 MiB file differs"
    );
    let hello = walk_path(
        &mut server,
        root,
        "A Long Directory Name/nested/Hello World.txt",
    );
    assert_eq!(read_all(&mut server, hello), b"hello from the host\n");
    let stat = server.stat(&hello).unwrap();
    assert_eq!(stat.name, "Hello World.txt");
    assert!(stat.mtime > 0, "mtools wrote a time");
    let nested = walk_path(&mut server, root, "A Long Directory Name/nested");
    assert!(server.stat(&nested).unwrap().mode.is_dir());

    // Create a file with a long name and write it.
    let (created, _) = server
        .create(
            &caller(),
            &root,
            "Written by Kasane.txt",
            FileMode::from_bits_retain(0o666),
            OpenMode::OWRITE,
        )
        .unwrap();
    assert_durable(&server);
    write(&mut server, created, 0, b"first line\n");
    // Append: a write at the current length.
    let length = server.stat(&created).unwrap().length;
    assert_eq!(length, 11);
    write(&mut server, created, length, b"appended line\n");
    assert_eq!(
        read_all(&mut server, created),
        b"first line\nappended line\n"
    );

    // A directory with a file in it, one to rename and one to remove.
    let (made_dir, _) = server
        .create(
            &caller(),
            &nested,
            "Made Here",
            FileMode::DMDIR | FileMode::from_bits_retain(0o777),
            OpenMode::OREAD,
        )
        .unwrap();
    assert_durable(&server);
    let (inner, _) = server
        .create(
            &caller(),
            &made_dir,
            "inner.dat",
            FileMode::from_bits_retain(0o666),
            OpenMode::OWRITE,
        )
        .unwrap();
    write(&mut server, inner, 0, &[0xA5; 5000]);
    let changes = StatChanges {
        name: Some("Renamed Empty File".into()),
        ..StatChanges::default()
    };
    server.wstat(&caller(), &empty, &changes).unwrap();
    assert_durable(&server);
    assert_eq!(server.stat(&empty).unwrap().name, "Renamed Empty File");
    let (doomed, _) = server
        .create(
            &caller(),
            &root,
            "doomed",
            FileMode::from_bits_retain(0o666),
            OpenMode::OWRITE,
        )
        .unwrap();
    write(&mut server, doomed, 0, b"gone soon");
    server.remove(&caller(), &doomed).unwrap();
    assert_durable(&server);
    // Removing a non-empty directory is refused with Plan 9's words.
    let error = server.remove(&caller(), &nested).unwrap_err();
    assert_eq!(error, ninep::Error::NOT_EMPTY);
    assert_eq!(
        server.walk(&caller(), &root, "doomed").unwrap_err(),
        ninep::Error::NOT_FOUND
    );
    // Truncate through wstat.
    let changes = StatChanges {
        length: Some(1000),
        ..StatChanges::default()
    };
    server.wstat(&caller(), &inner, &changes).unwrap();
    assert_durable(&server);
    // Open with OTRUNC, as rc's `>` on an existing file, then rewrite.
    server
        .open(&caller(), &hello, OpenMode::OWRITE | OpenMode::OTRUNC)
        .unwrap();
    assert_durable(&server);
    assert_eq!(server.stat(&hello).unwrap().length, 0);
    write(&mut server, hello, 0, b"rewritten\n");
    assert!(server.with_disk(|disk| disk.flushes) > 0);

    server.with_disk(|disk| std::mem::take(&mut disk.bytes))
}

/// What the host tools must find after `exercise`.
fn check_with_tools(image: &Path, image_arg: &str, dir: &Path) {
    let fsck = Command::new("fsck.fat")
        .arg("-n")
        .arg(image)
        .output()
        .expect("fsck.fat");
    let text =
        String::from_utf8_lossy(&fsck.stdout).into_owned() + &String::from_utf8_lossy(&fsck.stderr);
    assert!(fsck.status.success(), "fsck.fat -n found problems:\n{text}");
    let listing = run("mdir", &["-i", image_arg, "-b", "::/"]);
    for expected in ["Written by Kasane.txt", "Renamed Empty File", "big.bin"] {
        assert!(
            listing.contains(expected),
            "mdir lacks {expected}:\n{listing}"
        );
    }
    assert!(
        !listing.contains("doomed"),
        "removed file still listed:\n{listing}"
    );
    assert!(
        !listing.contains("empty file"),
        "old name still listed:\n{listing}"
    );
    let out = dir.join("written.out");
    run(
        "mcopy",
        &[
            "-n",
            "-i",
            image_arg,
            "::/Written by Kasane.txt",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"first line\nappended line\n");
    run(
        "mcopy",
        &[
            "-n",
            "-i",
            image_arg,
            "::/A Long Directory Name/nested/Made Here/inner.dat",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), vec![0xA5; 1000]);
    run(
        "mcopy",
        &[
            "-n",
            "-i",
            image_arg,
            "::/A Long Directory Name/nested/Hello World.txt",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"rewritten\n");
}

fn superfloppy(bits: &str, sectors: &str) {
    let dir = scratch(&format!("fat{bits}"));
    let image = dir.join("disk.img");
    let _ = std::fs::remove_file(&image);
    run(
        "mkfs.fat",
        &["-F", bits, "-C", image.to_str().unwrap(), sectors],
    );
    let image_arg = image.to_str().unwrap().to_string();
    fill(&dir, &image_arg);
    let changed = exercise(std::fs::read(&image).unwrap(), "");
    std::fs::write(&image, changed).unwrap();
    check_with_tools(&image, &image_arg, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fat16_image_from_mkfs_round_trips() {
    superfloppy("16", "32768");
}

#[test]
fn fat32_image_from_mkfs_round_trips() {
    superfloppy("32", "80000");
}

#[test]
fn fat32_in_an_mbr_partition_is_attached_by_number() {
    let dir = scratch("mbr");
    let image = dir.join("disk.img");
    let _ = std::fs::remove_file(&image);
    // 1 MiB before the partition, as partitioning tools align it.
    let first: u32 = 2048;
    let sectors: u32 = 80_000;
    let part = dir.join("part.img");
    let _ = std::fs::remove_file(&part);
    run(
        "mkfs.fat",
        &[
            "-F",
            "32",
            "-C",
            part.to_str().unwrap(),
            &(sectors / 2).to_string(),
        ],
    );
    let mut bytes = vec![0u8; first as usize * 512];
    bytes[446 + 16 + 4] = 0x0C; // entry 2: FAT32 LBA
    bytes[446 + 16 + 8..446 + 16 + 12].copy_from_slice(&first.to_le_bytes());
    bytes[446 + 16 + 12..446 + 16 + 16].copy_from_slice(&sectors.to_le_bytes());
    bytes[510] = 0x55;
    bytes[511] = 0xAA;
    bytes.extend(std::fs::read(&part).unwrap());
    std::fs::write(&image, &bytes).unwrap();
    let offset = u64::from(first) * 512;
    let image_arg = format!("{}@@{offset}", image.display());
    fill(&dir, &image_arg);

    let bytes = std::fs::read(&image).unwrap();
    let mut server = FatServer::new(
        CountingDisk {
            bytes: bytes.clone(),
            unflushed: 0,
            flushes: 0,
        },
        &CLOCK,
    );
    assert_eq!(server.extents().unwrap().len(), 1);
    let error = server.attach("glenda", "1").unwrap_err();
    assert!(error.as_str().contains("no FAT volume \"1\""), "{error:?}");
    let error = server.attach("glenda", "x").unwrap_err();
    assert_eq!(error, ninep::Error::BAD_SPEC);
    let changed = exercise(bytes, "2");
    // fsck.fat checks the partition alone.
    std::fs::write(&part, &changed[offset as usize..]).unwrap();
    let fsck = Command::new("fsck.fat")
        .arg("-n")
        .arg(&part)
        .output()
        .expect("fsck.fat");
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    std::fs::write(&image, changed).unwrap();
    let listing = run("mdir", &["-i", &image_arg, "-b", "::/"]);
    assert!(listing.contains("Written by Kasane.txt"), "{listing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
