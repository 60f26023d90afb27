//! Building hvm and the bare-metal components the image is made of.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::progress;

/// The bare-metal packages besides hvm and the boot modules they yield:
/// each listed binary is the component (boot module) of the same name.
pub const BARE_METAL_PACKAGES: &[(&str, &[&str])] = &[
    ("microkernel", &["microkernel"]),
    ("hello", &["hello"]),
    ("ktest", &["ktest"]),
    ("core-server", &["core"]),
    (
        "runtime-task",
        &["ramfs-task", "faulty-task", "net-task", "fatfs-task"],
    ),
    (
        "runtime-vm",
        &["ramfs-vm", "hostile-vm", "net-vm", "vm-probe", "fatfs-vm"],
    ),
    (
        "core-programs",
        &[
            "rc",
            "ls",
            "cat",
            "wc",
            "ns",
            "mkdir",
            "rm",
            "mv",
            "cp",
            "date",
            "ps",
            "kill",
            "sleep",
            "bench",
            "garbage",
            "with",
            "lx",
            "linuxcalls",
            "exportfs",
            "dial",
            "listen1",
            "hget",
            "srv",
            "import",
        ],
    ),
];

/// Builds hvm and every bare-metal package; returns hvm's path and the
/// components by name. Plain files in `images/scripts/` are components too,
/// under their file names.
pub fn build_components(root: &Path) -> Result<(PathBuf, BTreeMap<String, PathBuf>), String> {
    let packages: Vec<&str> = BARE_METAL_PACKAGES
        .iter()
        .map(|(package, _)| *package)
        .collect();
    progress(&format!(
        "building hvm, {} (x86_64-unknown-none, profile image: optimised as a whole, a few minutes the first time)",
        packages.join(", ")
    ));
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root).args([
        "build",
        "--profile",
        "image",
        "--target",
        "x86_64-unknown-none",
        "-p",
        "hvm",
    ]);
    for package in &packages {
        command.args(["-p", package]);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(
            "building the bare-metal components failed (see cargo's messages above)".into(),
        );
    }
    let out = target_dir(root).join("x86_64-unknown-none/image");
    let mut components: BTreeMap<String, PathBuf> = BARE_METAL_PACKAGES
        .iter()
        .flat_map(|(_, binaries)| binaries.iter())
        .map(|binary| (binary.to_string(), out.join(binary)))
        .collect();
    if let Ok(entries) = fs::read_dir(root.join("images/scripts")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            components.insert(name, entry.path());
        }
    }
    Ok((out.join("hvm"), components))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
}
