//! Turning a manifest and the built components into a bootable ISO.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::progress;

/// Runs one of the Linux bridge's scripts and returns the path it prints
/// on its last line of standard output.
fn bridge_script(root: &Path, script: &str, flavour: &str) -> Result<PathBuf, String> {
    progress(&format!("guest-linux-bridge/{script} {flavour}"));
    let output = Command::new(root.join("guest-linux-bridge").join(script))
        .arg(flavour)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run guest-linux-bridge/{script}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or("").trim();
    if !output.status.success() || last.is_empty() {
        return Err(format!(
            "guest-linux-bridge/{script} {flavour} failed ({})",
            output.status
        ));
    }
    Ok(PathBuf::from(last))
}

/// Adds the Linux guest's components when the manifest needs them and the
/// build has not provided them: `linux` is the Debian cloud kernel's
/// bzImage (`fetch-kernel cloud`, cached under build/linux) and
/// `linux-initrd` the agent's initramfs (`build-initramfs cloud`).
pub fn add_linux_components(
    root: &Path,
    manifest: &kasane_mkimage::BootManifestRef<'_>,
    components: &mut BTreeMap<String, PathBuf>,
) -> Result<(), String> {
    let needed = kasane_mkimage::required_components(manifest.0);
    if needed.iter().any(|(name, _)| name == "linux") && !components.contains_key("linux") {
        let kernel = bridge_script(root, "fetch-kernel", "cloud")?;
        components.insert("linux".to_owned(), kernel.join("vmlinuz"));
    }
    if needed.iter().any(|(name, _)| name == "linux-initrd")
        && !components.contains_key("linux-initrd")
    {
        let initrd = bridge_script(root, "build-initramfs", "cloud")?;
        components.insert("linux-initrd".to_owned(), initrd);
    }
    Ok(())
}

/// Memory (MiB) the emulator needs for a manifest: every cell, plus room for
/// hvm, GRUB's copies of the boot modules and 2 MiB alignment.
pub fn memory_needed(manifest: &Path) -> Result<u32, String> {
    let compiled = kasane_mkimage::compile_manifest(manifest).map_err(|e| e.to_string())?;
    let cells: u32 = compiled.cells.iter().map(|c| c.memory_mib).sum();
    let linux = compiled
        .cells
        .iter()
        .any(|c| c.kind == kasane_mkimage::CellKind::Linux);
    // The cloud kernel and its initramfs are ~15 MiB as GRUB modules.
    Ok(cells + if linux { 128 } else { 64 })
}

/// Whether `manifest` gives a server the NE2000 (`devices = ["ne2k"]`):
/// the machine then gets the card, on Bochs's slirp network.
pub fn nic_needed(manifest: &Path) -> Result<bool, String> {
    let compiled = kasane_mkimage::compile_manifest(manifest).map_err(|e| e.to_string())?;
    Ok(compiled
        .cells
        .iter()
        .any(|c| c.devices.iter().any(|d| d == "ne2k")))
}

/// Builds the ISO for `manifest` under `build/images/` and returns its path.
pub fn make_image(
    root: &Path,
    manifest: &Path,
    hvm: &Path,
    mut components: BTreeMap<String, PathBuf>,
) -> Result<PathBuf, String> {
    let compiled = kasane_mkimage::compile_manifest(manifest).map_err(|e| e.to_string())?;
    add_linux_components(
        root,
        &kasane_mkimage::BootManifestRef(&compiled),
        &mut components,
    )?;
    let stem = manifest
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image");
    let work = root.join("build/images").join(stem);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let output = root.join("build/images").join(format!("{stem}.iso"));
    progress(&format!(
        "making {} from {}",
        output.display(),
        manifest.display()
    ));
    let spec = kasane_mkimage::ImageSpec {
        hvm,
        components,
        manifest: &compiled,
        work: &work,
        output: &output,
    };
    kasane_mkimage::build_image(&spec).map_err(|e| e.to_string())?;
    Ok(output)
}
