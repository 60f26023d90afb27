//! Disk images for `run/up --disk`: whole cylinders, or a clear refusal.

use kasane_run::{check_disk, create_blank_disk, DISK_CYLINDER_BYTES};

#[test]
fn blank_disks_are_whole_cylinders_and_ragged_ones_are_refused() {
    let dir = std::env::temp_dir().join(format!("kasane-disk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let blank = dir.join("blank.img");
    create_blank_disk(&blank, 3).unwrap();
    assert_eq!(check_disk(&blank), Ok(3 * DISK_CYLINDER_BYTES));
    let ragged = dir.join("ragged.img");
    std::fs::write(&ragged, vec![0u8; 1 << 20]).unwrap();
    let error = check_disk(&ragged).unwrap_err();
    assert!(
        error.contains("must be a non-zero multiple of 516096"),
        "{error}"
    );
    let missing = check_disk(&dir.join("missing.img")).unwrap_err();
    assert!(missing.contains("missing.img"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
