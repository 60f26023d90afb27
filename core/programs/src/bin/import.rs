//! import [-abc] host path [mountpoint]: mount the tree `path` of another
//! machine's exportfs (Plan 9's import(4)): dial `tcp!host!17007` (or
//! `host` itself when it is a dial string), attach with `path` as the
//! attach name, and mount the result on `mountpoint` (default `path`),
//! with mount's flags.
//!
//! The connection is mounted as a user-level link (docs/core.md): a pipe
//! whose far end `srv`'s relay (`/bin/srv -R`) carries to and from the
//! TCP data file, so /bin/srv must be there too; the relay dials again
//! when the connection fails, as srv's does.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_programs::{mount_flags, relay_spawn};
use core_user::prelude::*;
use core_user::{args, fail, net, sys, usage};

const USAGE: &str = "import [-abc] host path [mountpoint]";

/// The port exportfs listens on (Plan 9's `exportfs` service, 17007).
const EXPORTFS_PORT: u16 = 17007;

fn main(argv: Vec<String>) -> Result<(), String> {
    let Ok((flags, rest)) = args::parse(&argv[1..], "abc") else {
        return Err(usage(USAGE));
    };
    let (host, path, mountpoint) = match rest {
        [host, path] => (host, path, path),
        [host, path, mountpoint] => (host, path, mountpoint),
        _ => return Err(usage(USAGE)),
    };
    let address = if host.contains('!') {
        host.clone()
    } else {
        format!("tcp!{host}!{EXPORTFS_PORT}")
    };
    let mount_flags = mount_flags(flags.has('b'), flags.has('a'), flags.has('c'));
    let conn = net::dial(&address).map_err(|e| fail(format!("import: dial {address}: {e}")))?;
    let data = conn.data.ok_or("import: dial: no data file")?;
    let relayed = (|| {
        let (posted, served) = sys::pipe()?;
        let spawned = sys::spawn(&relay_spawn(&address, "-", served, data));
        let _ = sys::close(served);
        match spawned {
            Ok(pid) => Ok((posted, pid)),
            Err(e) => {
                let _ = sys::close(posted);
                Err(format!("/bin/srv: {e}"))
            }
        }
    })();
    // The relay holds its own copy of the connection.
    conn.close();
    let (posted, relay) = relayed.map_err(|e| fail(format!("import: {e}")))?;
    let mounted = sys::mount(posted, mountpoint, path, mount_flags);
    let _ = sys::close(posted);
    if let Err(e) = mounted {
        // Nobody will use the connection: end the relay with it.
        if let Ok(ctl) = sys::open(&format!("/proc/{relay}/ctl"), core_abi::OWRITE) {
            let _ = sys::write(ctl, b"kill");
            let _ = sys::close(ctl);
        }
        return Err(fail(format!(
            "import: mount {address} {path} on {mountpoint}: {e}"
        )));
    }
    Ok(())
}
