//! Unpacking a server image (tar) into ramfs: the tree it makes, and
//! images that do not fit.

use ramfs::{Clock, ImageError, Limits, RamFs};

struct Zero;

impl Clock for Zero {
    fn now(&self) -> u32 {
        0
    }
}

fn entry(name: &str, typeflag: u8, data: &[u8], mode: u32) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h.extend_from_slice(data);
    h.resize(h.len().div_ceil(512) * 512, 0);
    h
}

#[test]
fn an_image_becomes_the_tree() {
    let mut image = entry("etc/", b'5', b"", 0o755);
    image.extend(entry("etc/motd", b'0', b"welcome\n", 0o644));
    // A file whose directories the archive does not list.
    image.extend(entry("a/b/c", b'0', b"deep", 0o600));
    let mut fs = RamFs::new(Zero, "eve", "eve", 0o775);
    assert_eq!(fs.unpack_tar(&image), Ok(3));
    // root, etc, motd, a, a/b, c
    assert_eq!(fs.node_count(), 6);
    assert_eq!(fs.used_bytes(), 12);
    // The same image again: its files are there already.
    let again = fs.unpack_tar(&image).unwrap_err();
    assert_eq!(again.to_string(), "image: etc/motd: file already exists");
}

#[test]
fn images_that_do_not_fit_are_errors() {
    let mut fs = RamFs::new(Zero, "eve", "eve", 0o775).with_limits(Limits {
        max_file_size: 4,
        max_total_bytes: 6,
    });
    let big = entry("big", b'0', b"12345", 0o644);
    assert_eq!(
        fs.unpack_tar(&big).unwrap_err().to_string(),
        "image: big: file too big"
    );
    let mut two = entry("x", b'0', b"1234", 0o644);
    two.extend(entry("y", b'0', b"1234", 0o644));
    assert!(matches!(fs.unpack_tar(&two), Err(ImageError::Entry { .. })));
    assert!(fs.used_bytes() <= 6);
    // A file where a directory must go, and the other way round.
    let mut fs = RamFs::new(Zero, "eve", "eve", 0o775);
    let mut clash = entry("f", b'0', b"", 0o644);
    clash.extend(entry("f/g", b'0', b"", 0o644));
    assert_eq!(
        fs.unpack_tar(&clash).unwrap_err().to_string(),
        "image: f/g: not a directory"
    );
    // A bad archive says so.
    let mut fs = RamFs::new(Zero, "eve", "eve", 0o775);
    let mut bad = entry("f", b'0', b"", 0o644);
    bad[0] = b'g';
    assert_eq!(
        fs.unpack_tar(&bad).unwrap_err().to_string(),
        "tar: bad header checksum at 0"
    );
}
