//! Archives good and bad: made here header by header, and by the host's
//! `tar` when it has one.

use kasane_tar::{entries, Entry, Kind, TarError, BLOCK};

/// A ustar header for `name` with the given typeflag, size and mode, its
/// checksum right.
fn header(name: &str, typeflag: u8, size: usize, mode: u32) -> Vec<u8> {
    let mut h = vec![0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    seal(&mut h);
    h
}

fn seal(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = header(name, b'0', data.len(), 0o644);
    bytes.extend_from_slice(data);
    bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
    bytes
}

fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK]
}

fn all(bytes: &[u8]) -> Result<Vec<Entry<'_>>, TarError> {
    entries(bytes).collect()
}

#[test]
fn files_and_directories_in_order() {
    let mut archive = header("d/", b'5', 0, 0o755);
    archive.extend(file("d/hello", b"hello, world\n"));
    archive.extend(file("./top", b""));
    archive.extend(file("d/big", &[7u8; 1000]));
    archive.extend(end());
    let got = all(&archive).unwrap();
    let summary: Vec<(&str, Kind, u32, usize)> = got
        .iter()
        .map(|e| (e.path.as_str(), e.kind, e.perm, e.data.len()))
        .collect();
    assert_eq!(
        summary,
        [
            ("d", Kind::Directory, 0o755, 0),
            ("d/hello", Kind::File, 0o644, 13),
            ("top", Kind::File, 0o644, 0),
            ("d/big", Kind::File, 0o644, 1000)
        ]
    );
    assert_eq!(got[1].data, b"hello, world\n");
    // No end blocks: the end of the bytes ends it too.
    let short = &archive[..archive.len() - 2 * BLOCK];
    assert_eq!(all(short).unwrap().len(), 4);
    assert_eq!(all(&[]).unwrap().len(), 0);
}

#[test]
fn the_ustar_prefix_is_joined() {
    let mut h = header("name", b'0', 0, 0o600);
    h[345..351].copy_from_slice(b"a/long");
    seal(&mut h);
    assert_eq!(all(&h).unwrap()[0].path, "a/long/name");
}

#[test]
fn bad_archives_are_errors_naming_the_header() {
    let good = file("a", b"x");
    // Cut inside the header, inside the data.
    assert_eq!(all(&good[..100]), Err(TarError::Truncated { offset: 0 }));
    let mut cut = header("a", b'0', 600, 0o644);
    cut.extend_from_slice(&[1; 100]);
    assert_eq!(all(&cut), Err(TarError::Truncated { offset: 0 }));
    // A byte changed: the checksum says so.
    let mut flipped = good.clone();
    flipped[3] ^= 1;
    assert_eq!(all(&flipped), Err(TarError::BadChecksum { offset: 0 }));
    // Not octal.
    let mut h = header("a", b'0', 0, 0o644);
    h[124..135].copy_from_slice(b"0000000009x");
    seal(&mut h);
    assert_eq!(
        all(&h),
        Err(TarError::BadNumber {
            field: "size",
            offset: 0
        })
    );
    // A huge size does not overflow anything.
    let mut h = header("a", b'0', 0, 0o644);
    h[124..136].copy_from_slice(b"77777777777\0");
    seal(&mut h);
    assert_eq!(all(&h), Err(TarError::Truncated { offset: 0 }));
    // Names that climb out, or are not names.
    for name in ["../etc/passwd", "a/../../b", "a/./b", "", "x\u{7}y"] {
        let mut archive = file("ok", b"1");
        archive.extend(file(name, b"2"));
        let got: Vec<_> = entries(&archive).collect();
        assert_eq!(
            got.last(),
            Some(&Err(TarError::BadName { offset: BLOCK * 2 })),
            "{name:?}"
        );
    }
    // Links, devices and pax headers are refused, not skipped.
    for typeflag in [b'1', b'2', b'3', b'4', b'6', b'x', b'g', b'L'] {
        let h = header("l", typeflag, 0, 0o644);
        assert_eq!(
            all(&h),
            Err(TarError::Unsupported {
                typeflag,
                offset: 0
            })
        );
    }
    // The first error ends the entries.
    let mut archive = flipped;
    archive.extend(file("b", b"y"));
    assert_eq!(entries(&archive).count(), 1);
}

#[test]
fn too_many_entries_are_refused() {
    let one = file("f", b"");
    let mut archive = Vec::new();
    for _ in 0..=kasane_tar::MAX_ENTRIES {
        archive.extend_from_slice(&one);
    }
    assert_eq!(all(&archive).err(), Some(TarError::TooManyEntries));
}

/// The host's GNU tar, in its ustar format, reads back the same.
#[test]
fn what_the_host_tar_writes_reads_back() {
    let dir = std::env::temp_dir().join(format!("kasane-tar-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    std::fs::write(dir.join("tree/a"), b"alpha\n").unwrap();
    std::fs::write(dir.join("tree/sub/b"), vec![b'b'; 5000]).unwrap();
    let out = std::process::Command::new("tar")
        .args([
            "--format=ustar",
            "--owner=0",
            "--group=0",
            "-cf",
            "t.tar",
            "-C",
            "tree",
            ".",
        ])
        .current_dir(&dir)
        .status();
    let Ok(status) = out else {
        eprintln!("no tar on this host: skipped");
        return;
    };
    assert!(status.success());
    let bytes = std::fs::read(dir.join("t.tar")).unwrap();
    let mut got: Vec<(String, Kind, usize)> = all(&bytes)
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.kind, e.data.len()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("a".to_string(), Kind::File, 6),
            ("sub".to_string(), Kind::Directory, 0),
            ("sub/b".to_string(), Kind::File, 5000)
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
