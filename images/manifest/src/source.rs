//! The TOML form of a manifest, as people write it (host only).
//!
//! Unknown keys are errors (a typo must not silently become a default), and
//! every error names the field and, from the TOML parser, the line.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Deserialize;

use crate::{
    check, task_module, vm_module, BootCell, BootManifest, BootServer, CellKind, ManifestError,
    OnFailure, Placement, MANIFEST_MODULE,
};

/// `[system]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// System name, shown at boot.
    pub name: String,
    /// A raw disk image the launcher attaches as `ata1` (the secondary
    /// ATA channel's master) when run/up is given no `--disk`; a relative
    /// path is taken from the manifest's directory. A server must hold
    /// `ata1`.
    pub disk: Option<String>,
    /// With `disk`: when the file is missing, the launcher creates it
    /// blank (zeros), this many MiB rounded up to whole cylinders.
    pub disk_blank_mib: Option<u32>,
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

/// One `[[server]]`: a 9P server and where it runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Unique name, posted as `/srv/NAME`.
    pub name: String,
    /// The server program: module `PROGRAM-task` or `PROGRAM-vm`.
    pub program: String,
    /// `task` (default) or `vm`.
    pub placement: Option<Placement>,
    /// A `vm` server's memory in MiB (required for `vm`, refused for
    /// `task`).
    pub memory_mib: Option<u32>,
    /// Mount point in the boot namespace.
    pub mount: Option<String>,
    /// mount(1)'s flags: `a` or `b`, and `c` (e.g. `"c"`, `"bc"`).
    pub mount_flags: Option<String>,
    /// `stop` or `restart` (default).
    pub on_failure: Option<OnFailure>,
    /// Most restarts (default 3).
    pub restart_limit: Option<u32>,
    /// Boot module (a tar archive) the server starts from.
    pub image: Option<String>,
    /// A `vm` server's watchdog period in ms (its cell's `heartbeat_ms`).
    pub heartbeat_ms: Option<u32>,
    /// Devices given to a `vm` server whole, by name (`ata1`).
    #[serde(default)]
    pub devices: Vec<String>,
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
    /// `[[server]]` entries: the 9P servers, in start order.
    #[serde(default)]
    pub server: Vec<Server>,
}

impl Manifest {
    /// Parses TOML and checks the result, returning the boot form.
    pub fn compile(text: &str) -> Result<BootManifest, ManifestError> {
        let manifest = Self::parse(text)?;
        let boot = manifest.to_boot();
        check(&boot)?;
        Ok(boot)
    }

    /// Parses TOML and checks the rules about fields the boot form does
    /// not keep (the launcher reads `[system]`'s disk from it); the boot
    /// form's own rules are [`Manifest::compile`]'s.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
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
        manifest.check_source()?;
        Ok(manifest)
    }

    /// The rules about fields the boot form does not keep.
    fn check_source(&self) -> Result<(), ManifestError> {
        if let Some(disk) = &self.system.disk {
            if disk.is_empty() {
                return Err(ManifestError::new("system.disk", "an empty path"));
            }
            if !self
                .server
                .iter()
                .any(|s| s.devices.iter().any(|d| d == "ata1"))
            {
                return Err(ManifestError::new(
                    "system.disk",
                    "the disk goes on `ata1`, and no server has `devices = [\"ata1\"]`",
                ));
            }
        }
        match self.system.disk_blank_mib {
            Some(_) if self.system.disk.is_none() => {
                return Err(ManifestError::new(
                    "system.disk_blank_mib",
                    "says how big a missing `disk` is made, and there is no `disk`",
                ))
            }
            Some(mib) if !(1..=131_072).contains(&mib) => {
                return Err(ManifestError::new(
                    "system.disk_blank_mib",
                    alloc::format!(
                        "{mib} MiB: a blank disk is 1 to 131072 MiB (128 GiB, LBA28's reach)"
                    ),
                ))
            }
            _ => {}
        }
        for (index, server) in self.server.iter().enumerate() {
            let placement = server.placement.unwrap_or(Placement::Task);
            if placement == Placement::Task && server.heartbeat_ms.is_some() {
                return Err(ManifestError::new(
                    alloc::format!("server[{index}].heartbeat_ms"),
                    "only a vm server has a heartbeat (core's answer limit watches a task server)",
                ));
            }
            if let Some(at) = self.cell.iter().position(|c| c.name == server.name) {
                return Err(ManifestError::new(
                    alloc::format!("server[{index}].name"),
                    alloc::format!("`{}` is already the name of cell[{at}]", server.name),
                ));
            }
        }
        Ok(())
    }

    /// The boot form with defaults filled in (unchecked). Each server adds
    /// its task module (a `vm` server's too, for bare mode) and its image
    /// to cell 0's modules, and the `manifest` module after them, so core
    /// can read the table; a `vm` server becomes a `server-vm` cell of its
    /// name after the manifest's own cells.
    pub fn to_boot(&self) -> BootManifest {
        let servers: Vec<BootServer> = self
            .server
            .iter()
            .map(|server| BootServer {
                name: server.name.clone(),
                program: server.program.clone(),
                placement: server.placement.unwrap_or(Placement::Task),
                memory_mib: server.memory_mib.unwrap_or(0),
                mount: server.mount.clone().unwrap_or_default(),
                mount_flags: server.mount_flags.clone().unwrap_or_default(),
                on_failure: server.on_failure.unwrap_or(OnFailure::Restart),
                restart_limit: server.restart_limit.unwrap_or(3),
                image: server.image.clone().unwrap_or_default(),
                devices: server.devices.clone(),
            })
            .collect();
        let mut cells: Vec<BootCell> = self
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
                devices: Vec::new(),
            })
            .collect();
        if let Some(cell0) = cells.first_mut().filter(|_| !servers.is_empty()) {
            let mut add = |module: String| {
                if !module.is_empty() && !cell0.modules.contains(&module) {
                    cell0.modules.push(module);
                }
            };
            for server in &servers {
                add(task_module(&server.program));
                add(server.image.clone());
            }
            add(MANIFEST_MODULE.to_string());
            cell0.devices = crate::check::task_devices(&servers);
        }
        for (server, source) in servers.iter().zip(&self.server) {
            if server.placement != Placement::Vm {
                continue;
            }
            cells.push(BootCell {
                name: server.name.clone(),
                kind: CellKind::ServerVm,
                memory_mib: server.memory_mib,
                image: vm_module(&server.program),
                args: String::new(),
                modules: if server.image.is_empty() {
                    Vec::new()
                } else {
                    alloc::vec![server.image.clone()]
                },
                on_failure: server.on_failure,
                restart_limit: server.restart_limit,
                heartbeat_ms: source.heartbeat_ms.unwrap_or(0),
                initrd: String::new(),
                cmdline: String::new(),
                devices: server.devices.clone(),
            });
        }
        BootManifest {
            name: self.system.name.clone(),
            cells,
            servers,
        }
    }
}
