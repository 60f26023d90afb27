//! Runs the `tar` fuzz target's body on stable: random bytes, and
//! mutations of a good archive (resealed, so they reach past the
//! checksum).

#[path = "../../fuzz/src/tar.rs"]
mod target;

use proptest::prelude::*;

fn archive() -> Vec<u8> {
    let mut bytes = Vec::new();
    for (name, typeflag, data) in [
        ("d/", b'5', &b""[..]),
        ("d/f", b'0', &b"some bytes"[..]),
        ("g", b'0', &[9u8; 700][..]),
    ] {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        reseal(&mut h);
        bytes.extend(h);
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    }
    bytes.extend([0; 1024]);
    bytes
}

fn reseal(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

#[test]
fn the_seed_unpacks_and_every_cut_is_safe() {
    let seed = archive();
    target::tar(&seed);
    for cut in 0..seed.len() {
        target::tar(&seed[..cut]);
    }
}

proptest! {
    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        target::tar(&data);
    }

    #[test]
    fn mutated_headers(at in 0usize..512, value: u8, block in 0usize..3) {
        let mut bytes = archive();
        let start = [0, 1024, 1536][block];
        bytes[start + at] = value;
        reseal(&mut bytes[start..start + 512]);
        target::tar(&bytes);
    }
}
