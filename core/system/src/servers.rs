//! The 9P servers core starts from the manifest's `[[server]]` table.
//!
//! Each server has a [`ServerConfig`]: its /srv name, the boot module it
//! runs, where core mounts it in the boot namespace, and what core does
//! when its link hangs up (restart it up to its limit, or leave it
//! stopped). [`task_servers`] reads the table from the compiled manifest
//! (cell 0's `manifest` module) and decides which servers run as tasks;
//! the shell starts them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kasane_manifest::{task_module, vm_module, BootManifest, OnFailure, Placement};

use kasane_namespace::MountFlags;
use kasane_servant::Error;

/// How many restarts a server added without a table entry gets
/// ([`crate::System::add_server`]).
pub const DEFAULT_RESTART_LIMIT: u32 = 5;

/// One server of the table, as core runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Posted as `/srv/NAME`.
    pub name: String,
    /// The boot module it runs (`PROGRAM-task`).
    pub module: String,
    /// Mount point in the boot namespace; empty: not mounted.
    pub mount: String,
    /// mount(1)'s flags for that mount: `a` or `b`, and `c`.
    pub mount_flags: String,
    /// Restart it when its link hangs up (else leave it stopped).
    pub restart: bool,
    /// Most restarts.
    pub restart_limit: u32,
    /// I/O ports `(first, count)` of its devices (the manifest's
    /// `devices`), granted to its task alone; empty for a server VM,
    /// whose cell hvm gives them.
    pub ports: Vec<(u16, u16)>,
    /// Its PCI devices (rows of `kasane_manifest::DEVICES` with a `pci`
    /// ID), whose ports the firmware chose: core finds each on the bus
    /// before it starts the task, grants its ports from there, and tells
    /// the task where they are (`runtime_task::device`). Empty for a
    /// server VM, whose cell hvm gives them.
    pub pci: Vec<&'static kasane_manifest::Device>,
}

/// A server core starts as a task: its entry, and the name of its image
/// module (empty: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStart {
    pub config: ServerConfig,
    pub image: String,
}

/// The servers of the compiled manifest `bytes` (cell 0's `manifest`
/// module) that core runs as tasks, in table order, and the lines core
/// says about them. A `vm` server is its cell's while core drives server
/// VM links (`drives_server_vms`), and runs as a task otherwise: in bare
/// mode (no VT-x), and until core has the VM link driver. A module that
/// does not decode gives no servers and says why.
pub fn task_servers(bytes: &[u8], drives_server_vms: bool) -> (Vec<TaskStart>, Vec<String>) {
    let mut said = Vec::new();
    let manifest = match BootManifest::decode(bytes) {
        Ok(manifest) => manifest,
        Err(e) => {
            said.push(format!("core: the manifest module: {e}; no servers"));
            return (Vec::new(), said);
        }
    };
    let mut starts = Vec::new();
    for server in manifest.servers {
        if server.placement == Placement::Vm {
            if drives_server_vms {
                continue;
            }
            said.push(format!(
                "core: server {}: placed in a vm, runs as a task (bare mode: no server VM link)",
                server.name
            ));
        }
        let devices = server
            .devices
            .iter()
            .filter_map(|name| kasane_manifest::device(name));
        let (pci, fixed): (Vec<&kasane_manifest::Device>, Vec<_>) =
            devices.partition(|device| device.pci.is_some());
        let ports = fixed
            .iter()
            .flat_map(|device| device.ports.iter().copied())
            .collect();
        let config = ServerConfig {
            module: task_module(&server.program),
            ports,
            pci,
            mount: server.mount,
            mount_flags: server.mount_flags,
            restart: server.on_failure == OnFailure::Restart,
            restart_limit: server.restart_limit,
            name: server.name,
        };
        starts.push(TaskStart {
            config,
            image: server.image,
        });
    }
    (starts, said)
}

/// The `vm` servers of the compiled manifest `bytes`, for core to post
/// and mount once it drives their links (their cells run `PROGRAM-vm`;
/// `module` names that). Empty if the module does not decode.
pub fn vm_servers(bytes: &[u8]) -> Vec<ServerConfig> {
    let Ok(manifest) = BootManifest::decode(bytes) else {
        return Vec::new();
    };
    manifest
        .servers
        .into_iter()
        .filter(|server| server.placement == Placement::Vm)
        .map(|server| ServerConfig {
            module: vm_module(&server.program),
            ports: Vec::new(),
            pci: Vec::new(),
            mount: server.mount,
            mount_flags: server.mount_flags,
            restart: server.on_failure == OnFailure::Restart,
            restart_limit: server.restart_limit,
            name: server.name,
        })
        .collect()
}

impl ServerConfig {
    /// A server restarted up to [`DEFAULT_RESTART_LIMIT`] times, not
    /// mounted.
    pub fn new(name: &str, module: &str) -> Self {
        ServerConfig {
            name: String::from(name),
            module: String::from(module),
            mount: String::new(),
            mount_flags: String::new(),
            restart: true,
            restart_limit: DEFAULT_RESTART_LIMIT,
            ports: Vec::new(),
            pci: Vec::new(),
        }
    }

    /// The namespace's flags for `mount_flags` (the manifest checker has
    /// allowed only `a`, `b` and `c`).
    pub fn flags(&self) -> Result<MountFlags, Error> {
        let mut flags = MountFlags::MREPL;
        for flag in self.mount_flags.chars() {
            flags |= match flag {
                'a' => MountFlags::MAFTER,
                'b' => MountFlags::MBEFORE,
                'c' => MountFlags::MCREATE,
                _ => return Err(Error::BAD_ARG),
            };
        }
        MountFlags::new(flags)
    }
}
