//! The TOML form of a manifest, as people write it (host only).
//!
//! Unknown keys are errors (a typo must not silently become a default), and
//! every error names the field and, from the TOML parser, the line.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Deserialize;

use crate::{check, BootCell, BootManifest, CellKind, ManifestError, OnFailure};

/// `[system]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// System name, shown at boot.
    pub name: String,
}

/// One `[[cell]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// Unique name.
    pub name: String,
    /// `microkernel`, `linux` or `server-vm`.
    pub kind: CellKind,
    /// Memory in MiB (a multiple of 2).
    pub memory_mib: u32,
    /// Boot module with the kernel image (defaults to the kind's name).
    pub image: Option<String>,
    /// Kernel arguments.
    #[serde(default)]
    pub args: String,
    /// More boot modules for this cell.
    #[serde(default)]
    pub modules: Vec<String>,
    /// `stop`, `restart` or `poweroff`; defaults to `poweroff` for the
    /// microkernel (nothing runs without it) and `restart` for other cells.
    pub on_failure: Option<OnFailure>,
    /// Most restarts (default 3).
    pub restart_limit: Option<u32>,
    /// Watchdog period in ms; 0 or absent turns it off.
    #[serde(default)]
    pub heartbeat_ms: u32,
    /// Linux cells: boot module with the initial RAM disk (default
    /// `linux-initrd`).
    pub initrd: Option<String>,
    /// Linux cells: the kernel command line (default
    /// [`crate::DEFAULT_LINUX_CMDLINE`]).
    pub cmdline: Option<String>,
}

/// A whole manifest file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[system]`.
    pub system: System,
    /// `[[cell]]` entries in order; the first is cell 0.
    #[serde(default)]
    pub cell: Vec<Cell>,
}

impl Manifest {
    /// Parses TOML and checks the result, returning the boot form.
    pub fn compile(text: &str) -> Result<BootManifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            // toml's message names the key and quotes the line; keep it whole
            // but on one line so build logs stay readable.
            let message = e.message().trim_end().replace('\n', "; ");
            let line = e
                .span()
                .map(|span| text[..span.start].matches('\n').count() + 1);
            match line {
                Some(line) => ManifestError::new(alloc::format!("line {line}"), message),
                None => ManifestError::new("", message),
            }
        })?;
        let boot = manifest.to_boot();
        check(&boot)?;
        Ok(boot)
    }

    /// The boot form with defaults filled in (unchecked).
    pub fn to_boot(&self) -> BootManifest {
        BootManifest {
            name: self.system.name.clone(),
            cells: self
                .cell
                .iter()
                .map(|cell| BootCell {
                    name: cell.name.clone(),
                    kind: cell.kind,
                    memory_mib: cell.memory_mib,
                    image: cell.image.clone().unwrap_or_else(|| {
                        match cell.kind {
                            CellKind::Microkernel => "microkernel",
                            CellKind::Linux => "linux",
                            CellKind::ServerVm => "server-vm",
                        }
                        .to_string()
                    }),
                    args: cell.args.clone(),
                    modules: cell.modules.clone(),
                    on_failure: cell.on_failure.unwrap_or(match cell.kind {
                        CellKind::Microkernel => OnFailure::Poweroff,
                        _ => OnFailure::Restart,
                    }),
                    restart_limit: cell.restart_limit.unwrap_or(3),
                    heartbeat_ms: cell.heartbeat_ms,
                    initrd: match (cell.kind, &cell.initrd) {
                        (_, Some(name)) => name.clone(),
                        (CellKind::Linux, None) => "linux-initrd".to_string(),
                        _ => String::new(),
                    },
                    cmdline: match (cell.kind, &cell.cmdline) {
                        (_, Some(line)) => line.clone(),
                        (CellKind::Linux, None) => crate::DEFAULT_LINUX_CMDLINE.to_string(),
                        _ => String::new(),
                    },
                })
                .collect(),
        }
    }
}
