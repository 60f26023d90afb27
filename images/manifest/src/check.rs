//! Semantic checks of a manifest, shared by the build host and hvm.
//!
//! Every rule names the field it is about, so a bad manifest is a build error
//! a person can act on (`cell[1].memory_mib: ...`).

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

use crate::limits::*;
use crate::{BootManifest, CellKind};

/// A rule a manifest breaks: the field (a path such as `cell[0].name`) and
/// what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// Path of the offending field; empty when the error is about the file.
    pub field: String,
    /// What is wrong and, where useful, what is allowed.
    pub message: String,
}

impl ManifestError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

fn check_name(field: &str, name: &str) -> Result<(), ManifestError> {
    if name.is_empty() {
        return Err(ManifestError::new(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ManifestError::new(
            field,
            format!("`{name}` is longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !valid {
        return Err(ManifestError::new(
            field,
            format!(
                "`{name}` must start with a lowercase letter and hold only a-z, 0-9, `-` and `_`"
            ),
        ));
    }
    Ok(())
}

/// Checks every rule; the first broken one is returned.
pub fn check(manifest: &BootManifest) -> Result<(), ManifestError> {
    check_name("system.name", &manifest.name)?;
    if manifest.cells.is_empty() {
        return Err(ManifestError::new(
            "cell",
            "at least one cell is required (cell 0, the microkernel)",
        ));
    }
    if manifest.cells.len() > MAX_CELLS {
        return Err(ManifestError::new(
            "cell",
            format!(
                "{} cells given; at most {MAX_CELLS} are supported",
                manifest.cells.len()
            ),
        ));
    }
    for (index, cell) in manifest.cells.iter().enumerate() {
        let at = |field: &str| format!("cell[{index}].{field}");
        check_name(&at("name"), &cell.name)?;
        if let Some(first) = manifest.cells[..index]
            .iter()
            .position(|c| c.name == cell.name)
        {
            return Err(ManifestError::new(
                at("name"),
                format!("`{}` is already the name of cell[{first}]", cell.name),
            ));
        }
        match (index, cell.kind) {
            (0, CellKind::Microkernel) => {}
            (0, _) => {
                return Err(ManifestError::new(
                    at("kind"),
                    "cell 0 must be the microkernel",
                ))
            }
            (_, CellKind::Microkernel) => {
                return Err(ManifestError::new(
                    at("kind"),
                    "only cell 0 may be the microkernel",
                ))
            }
            _ => {}
        }
        let minimum = match cell.kind {
            CellKind::Microkernel => MIN_MICROKERNEL_MIB,
            CellKind::Linux => MIN_LINUX_MIB,
            CellKind::ServerVm => MIN_SERVER_VM_MIB,
        };
        if cell.memory_mib < minimum || cell.memory_mib > MAX_CELL_MIB {
            return Err(ManifestError::new(
                at("memory_mib"),
                format!(
                    "{} MiB is outside {minimum}..={MAX_CELL_MIB} MiB for this kind of cell",
                    cell.memory_mib
                ),
            ));
        }
        if cell.memory_mib % 2 != 0 {
            return Err(ManifestError::new(
                at("memory_mib"),
                format!(
                    "{} MiB is not a multiple of 2 MiB (cells are mapped with 2 MiB pages)",
                    cell.memory_mib
                ),
            ));
        }
        check_name(&at("image"), &cell.image)?;
        if cell.args.len() > MAX_ARGS_LEN {
            return Err(ManifestError::new(
                at("args"),
                format!("longer than {MAX_ARGS_LEN} bytes"),
            ));
        }
        if cell.modules.len() > MAX_MODULES {
            return Err(ManifestError::new(
                at("modules"),
                format!("more than {MAX_MODULES} modules"),
            ));
        }
        for (m, module) in cell.modules.iter().enumerate() {
            check_name(&format!("cell[{index}].modules[{m}]"), module)?;
        }
        check_linux_fields(index, cell)?;
        if cell.heartbeat_ms != 0
            && !(MIN_HEARTBEAT_MS..=MAX_HEARTBEAT_MS).contains(&cell.heartbeat_ms)
        {
            return Err(ManifestError::new(
                at("heartbeat_ms"),
                format!(
                    "{} ms is outside {MIN_HEARTBEAT_MS}..={MAX_HEARTBEAT_MS} ms (0 turns the watchdog off)",
                    cell.heartbeat_ms
                ),
            ));
        }
        if cell.kind == CellKind::Linux
            && manifest.cells[..index]
                .iter()
                .filter(|c| c.kind == CellKind::Linux)
                .count()
                >= MAX_LINUX_CELLS
        {
            return Err(ManifestError::new(
                at("kind"),
                format!(
                    "at most {MAX_LINUX_CELLS} linux cell is supported (each is linked to cell 0)"
                ),
            ));
        }
        if cell.restart_limit > MAX_RESTART_LIMIT {
            return Err(ManifestError::new(
                at("restart_limit"),
                format!(
                    "{} is above the maximum of {MAX_RESTART_LIMIT}",
                    cell.restart_limit
                ),
            ));
        }
    }
    Ok(())
}

/// `initrd` and `cmdline` belong to Linux cells, `args` and `modules` to
/// the others: a field the cell's kind ignores is a mistake to report.
fn check_linux_fields(index: usize, cell: &crate::BootCell) -> Result<(), ManifestError> {
    let at = |field: &str| format!("cell[{index}].{field}");
    if cell.kind != CellKind::Linux {
        if !cell.initrd.is_empty() {
            return Err(ManifestError::new(
                at("initrd"),
                "only a linux cell takes an initrd",
            ));
        }
        if !cell.cmdline.is_empty() {
            return Err(ManifestError::new(
                at("cmdline"),
                "only a linux cell takes a command line (use `args`)",
            ));
        }
        return Ok(());
    }
    if !cell.args.is_empty() {
        return Err(ManifestError::new(
            at("args"),
            "a linux cell takes `cmdline`, not `args`",
        ));
    }
    if !cell.modules.is_empty() {
        return Err(ManifestError::new(
            at("modules"),
            "a linux cell loads only its `image` and `initrd`",
        ));
    }
    if !cell.initrd.is_empty() {
        check_name(&at("initrd"), &cell.initrd)?;
    }
    if cell.cmdline.len() > MAX_CMDLINE_LEN {
        return Err(ManifestError::new(
            at("cmdline"),
            format!("longer than {MAX_CMDLINE_LEN} bytes"),
        ));
    }
    if let Some(byte) = cell.cmdline.bytes().find(|b| !(0x20..0x7F).contains(b)) {
        return Err(ManifestError::new(
            at("cmdline"),
            format!("holds the byte {byte:#04x}; only printable ASCII is allowed"),
        ));
    }
    Ok(())
}

impl From<postcard::Error> for ManifestError {
    fn from(error: postcard::Error) -> Self {
        ManifestError::new("", error.to_string())
    }
}
