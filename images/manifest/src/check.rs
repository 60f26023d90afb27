//! Semantic checks of a manifest, shared by the build host and hvm.
//!
//! Every rule names the field it is about, so a bad manifest is a build error
//! a person can act on (`cell[1].memory_mib: ...`).

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

use crate::limits::*;
use crate::{task_module, vm_module, BootManifest, BootServer, CellKind, OnFailure, Placement};

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
    check_servers(manifest)?;
    for (index, cell) in manifest.cells.iter().enumerate() {
        let at = |field: &str| format!("cell[{index}].{field}");
        check_name(&at("name"), &cell.name)?;
        // Cell 0 holds exactly its task servers' devices (core grants each
        // task its own ports); a server VM's cell exactly its server's.
        if index == 0 && cell.devices != task_devices(&manifest.servers) {
            return Err(ManifestError::new(
                at("devices"),
                "cell 0 must hold exactly its task servers' devices",
            ));
        }
        let owner = manifest
            .servers
            .iter()
            .any(|s| s.name == cell.name && s.devices == cell.devices);
        if index > 0 && !cell.devices.is_empty() && !owner {
            return Err(ManifestError::new(
                at("devices"),
                "only the cell of a vm server with these devices may have them",
            ));
        }
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

/// The `[[server]]` table: names, placement and its cell, modules, mount
/// point and flags, failure policy. Checked before the cells, so a bad
/// server is reported by its own fields rather than by the cell or the
/// modules it compiled into.
fn check_servers(manifest: &BootManifest) -> Result<(), ManifestError> {
    if manifest.servers.len() > MAX_SERVERS {
        return Err(ManifestError::new(
            "server",
            format!(
                "{} servers given; at most {MAX_SERVERS} are supported",
                manifest.servers.len()
            ),
        ));
    }
    for (index, server) in manifest.servers.iter().enumerate() {
        let at = |field: &str| format!("server[{index}].{field}");
        check_name(&at("name"), &server.name)?;
        if let Some(first) = manifest.servers[..index]
            .iter()
            .position(|s| s.name == server.name)
        {
            return Err(ManifestError::new(
                at("name"),
                format!("`{}` is already the name of server[{first}]", server.name),
            ));
        }
        check_name(&at("program"), &server.program)?;
        if server.program.len() > MAX_PROGRAM_LEN {
            return Err(ManifestError::new(
                at("program"),
                format!(
                    "`{}` is longer than {MAX_PROGRAM_LEN} bytes (its modules add `-task` or `-vm`)",
                    server.program
                ),
            ));
        }
        check_placement(index, server, manifest)?;
        check_devices(index, server, manifest)?;
        check_mount(index, server)?;
        if server.on_failure == OnFailure::Poweroff {
            return Err(ManifestError::new(
                at("on_failure"),
                "a server is stopped or restarted (`stop` or `restart`); only cell 0 may power the machine off",
            ));
        }
        if server.restart_limit > MAX_RESTART_LIMIT {
            return Err(ManifestError::new(
                at("restart_limit"),
                format!(
                    "{} is above the maximum of {MAX_RESTART_LIMIT}",
                    server.restart_limit
                ),
            ));
        }
        let mut needed = alloc::vec![(at("program"), task_module(&server.program))];
        if !server.image.is_empty() {
            check_name(&at("image"), &server.image)?;
            needed.push((at("image"), server.image.clone()));
        }
        let cell0 = manifest.cells.first().map_or(&[][..], |c| &c.modules[..]);
        for (field, module) in needed {
            if !cell0.contains(&module) {
                return Err(ManifestError::new(
                    field,
                    format!("cell 0 does not load the module `{module}`"),
                ));
            }
        }
        if !cell0.iter().any(|m| m == crate::MANIFEST_MODULE) {
            return Err(ManifestError::new(
                "cell[0].modules",
                format!(
                    "a manifest with servers loads the module `{}` into cell 0",
                    crate::MANIFEST_MODULE
                ),
            ));
        }
    }
    Ok(())
}

/// A task server has no cell of its name and no memory of its own; a `vm`
/// server has memory within a server VM's bounds and is the one
/// `server-vm` cell of its name, running its program's VM build.
fn check_placement(
    index: usize,
    server: &BootServer,
    manifest: &BootManifest,
) -> Result<(), ManifestError> {
    let at = |field: &str| format!("server[{index}].{field}");
    let mut cells = manifest
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name == server.name);
    match server.placement {
        Placement::Task => {
            if server.memory_mib != 0 {
                return Err(ManifestError::new(
                    at("memory_mib"),
                    "only a vm server takes memory_mib (core pages a task server from its own pool)",
                ));
            }
            if let Some((first, _)) = cells.next() {
                return Err(ManifestError::new(
                    at("name"),
                    format!("`{}` is already the name of cell[{first}]", server.name),
                ));
            }
        }
        Placement::Vm => {
            if server.memory_mib == 0 {
                return Err(ManifestError::new(
                    at("memory_mib"),
                    "a vm server needs memory_mib (the memory of its cell)",
                ));
            }
            if server.memory_mib < MIN_SERVER_VM_MIB || server.memory_mib > MAX_CELL_MIB {
                return Err(ManifestError::new(
                    at("memory_mib"),
                    format!(
                        "{} MiB is outside {MIN_SERVER_VM_MIB}..={MAX_CELL_MIB} MiB for a vm server",
                        server.memory_mib
                    ),
                ));
            }
            let own = cells.next();
            if let Some((second, _)) = cells.next() {
                return Err(ManifestError::new(
                    format!("cell[{second}].name"),
                    format!("`{}` is already the name of a vm server", server.name),
                ));
            }
            let fits = own.is_some_and(|(_, cell)| {
                cell.kind == CellKind::ServerVm
                    && cell.devices == server.devices
                    && cell.image == vm_module(&server.program)
                    && cell.memory_mib == server.memory_mib
                    && cell.on_failure == server.on_failure
                    && cell.restart_limit == server.restart_limit
            });
            if !fits {
                return Err(ManifestError::new(
                    at("placement"),
                    format!(
                        "a vm server needs the server-vm cell `{}` running `{}`",
                        server.name,
                        vm_module(&server.program)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The devices of cell 0's task servers, in server order: hvm opens
/// their ports to cell 0, and core grants each server's to its task alone.
pub fn task_devices(servers: &[BootServer]) -> alloc::vec::Vec<alloc::string::String> {
    servers
        .iter()
        .filter(|s| s.placement == Placement::Task)
        .flat_map(|s| s.devices.iter().cloned())
        .collect()
}

/// Devices must be rows of [`crate::DEVICES`], and each is given to one
/// server at most: a device shared by two servers would let one read or
/// disturb the other's I/O. A vm server's reach its cell; a task server's
/// reach cell 0, and core grants their ports to that task alone.
fn check_devices(
    index: usize,
    server: &BootServer,
    manifest: &BootManifest,
) -> Result<(), ManifestError> {
    let at = format!("server[{index}].devices");
    if server.devices.is_empty() {
        return Ok(());
    }
    if server.devices.len() > MAX_DEVICES {
        return Err(ManifestError::new(
            at,
            format!(
                "{} devices given; at most {MAX_DEVICES}",
                server.devices.len()
            ),
        ));
    }
    for (position, name) in server.devices.iter().enumerate() {
        let Some(device) = crate::device(name) else {
            let known: alloc::vec::Vec<&str> = crate::DEVICES.iter().map(|d| d.name).collect();
            return Err(ManifestError::new(
                at,
                format!("unknown device `{name}` (known: {})", known.join(", ")),
            ));
        };
        if device.pci.is_some() && server.placement != Placement::Vm {
            return Err(ManifestError::new(
                at,
                format!("`{name}` is a PCI device whose ports hvm finds at boot: only a vm server can be given it"),
            ));
        }
        if server.devices[..position].contains(name) {
            return Err(ManifestError::new(at, format!("`{name}` is listed twice")));
        }
        if let Some(other) = manifest.servers[..index]
            .iter()
            .position(|s| s.devices.contains(name))
        {
            return Err(ManifestError::new(
                at,
                format!("`{name}` is already given to server[{other}]; a device has one owner"),
            ));
        }
    }
    Ok(())
}

/// A mount point is an absolute, clean path of printable characters;
/// flags are mount(1)'s `a` or `b`, and `c`, each at most once, and only
/// with a mount point.
fn check_mount(index: usize, server: &BootServer) -> Result<(), ManifestError> {
    let at = |field: &str| format!("server[{index}].{field}");
    let mount = &server.mount;
    if mount.is_empty() {
        if !server.mount_flags.is_empty() {
            return Err(ManifestError::new(
                at("mount_flags"),
                "given without a mount point (`mount`)",
            ));
        }
        return Ok(());
    }
    if mount.len() > MAX_MOUNT_LEN {
        return Err(ManifestError::new(
            at("mount"),
            format!("longer than {MAX_MOUNT_LEN} bytes"),
        ));
    }
    let printable = mount.bytes().all(|b| (0x21..0x7F).contains(&b));
    let clean = mount == "/"
        || (mount.starts_with('/')
            && mount[1..]
                .split('/')
                .all(|element| !element.is_empty() && element != "." && element != ".."));
    if !printable || !clean {
        return Err(ManifestError::new(
            at("mount"),
            format!(
                "`{mount}` is not a clean absolute path (a leading `/`, no empty, `.` or `..` elements, no blanks)"
            ),
        ));
    }
    let flags = &server.mount_flags;
    for (n, flag) in flags.char_indices() {
        if !matches!(flag, 'a' | 'b' | 'c') {
            return Err(ManifestError::new(
                at("mount_flags"),
                format!("`{flag}` is not a mount flag (a: after, b: before, c: create)"),
            ));
        }
        if flags[..n].contains(flag) {
            return Err(ManifestError::new(
                at("mount_flags"),
                format!("`{flag}` is given twice"),
            ));
        }
    }
    if flags.contains('a') && flags.contains('b') {
        return Err(ManifestError::new(
            at("mount_flags"),
            "`a` and `b` exclude each other (a union goes after or before)",
        ));
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
