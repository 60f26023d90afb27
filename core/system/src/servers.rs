//! The 9P servers core starts from the manifest's `[[server]]` table.
//!
//! Each server has a [`ServerConfig`]: its /srv name, the boot module it
//! runs, where core mounts it in the boot namespace, and what core does
//! when its link hangs up (restart it up to its limit, or leave it
//! stopped). The shell reads the table from the compiled manifest (cell 0's
//! `manifest` module) and starts the tasks; this file keeps the policy.

use alloc::string::String;

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
