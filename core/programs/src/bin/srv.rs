//! srv [-abc] tcp!host!port name [mountpoint]: dial a 9P file server and
//! post the connection as /srv/name (Plan 9's srv(4)), so that
//! `mount /srv/name dir` reaches it; with a mount point, mount it there
//! too (flags as mount's).
//!
//! Core mounts a process's pipe as a user-level link (docs/core.md): srv
//! posts one end of a pipe and leaves a relay behind (itself, run with
//! `-R`), which copies 9P between the other end and the connection's data
//! file with two `cat`s, one per direction. When either direction ends
//! (the connection was reset, say) the relay stops the other, so the
//! pipe's end closes and core hangs the link up; the relay says why on
//! fd 2 and removes /srv/name, so that srv can post the name again.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{args, eprintln, fail, net, sys, usage, SpawnRequest};

const USAGE: &str = "srv [-abc] tcp!host!port name [mountpoint]";

fn main(argv: Vec<String>) -> Result<(), String> {
    if argv.get(1).map(String::as_str) == Some("-R") {
        return relay(&argv[2..]);
    }
    let Ok((flags, rest)) = args::parse(&argv[1..], "abc") else {
        return Err(usage(USAGE));
    };
    let (address, name, mountpoint) = match rest {
        [address, name] => (address, name, None),
        [address, name, mountpoint] => (address, name, Some(mountpoint)),
        _ => return Err(usage(USAGE)),
    };
    if name.is_empty() || name.contains('/') {
        return Err(fail(format!("srv: bad name '{name}'")));
    }
    post(address, name).map_err(|e| fail(format!("srv: {e}")))?;
    if let Some(mountpoint) = mountpoint {
        // mount(2)'s flags (bind(2)): MBEFORE 1, MAFTER 2, MCREATE 4.
        let mut mount_flags = 0;
        if flags.has('b') {
            mount_flags |= 1;
        } else if flags.has('a') {
            mount_flags |= 2;
        }
        if flags.has('c') {
            mount_flags |= 4;
        }
        let path = format!("/srv/{name}");
        sys::open(&path, core_abi::ORDWR)
            .and_then(|fd| {
                let mounted = sys::mount(fd, mountpoint, "", mount_flags);
                let _ = sys::close(fd);
                mounted
            })
            .map_err(|e| fail(format!("srv: mount {path} {mountpoint}: {e}")))?;
    }
    Ok(())
}

/// Dials `address`, posts a pipe's end as /srv/`name` and starts the
/// relay on the other end and the connection; the relay's pid.
fn post(address: &str, name: &str) -> Result<u64, String> {
    let conn = net::dial(address).map_err(|e| format!("dial {address}: {e}"))?;
    let data = conn.data.ok_or("dial: no data file")?;
    let result = (|| {
        let (posted, served) = sys::pipe()?;
        let path = format!("/srv/{name}");
        let srv =
            sys::create(&path, core_abi::OWRITE, 0o600).map_err(|e| format!("{path}: {e}"))?;
        let written = sys::write(srv, format!("{posted}").as_bytes());
        let _ = sys::close(srv);
        let _ = sys::close(posted);
        if let Err(e) = written {
            let _ = sys::remove(&path);
            let _ = sys::close(served);
            return Err(format!("{path}: {e}"));
        }
        let relay = SpawnRequest {
            path: String::from("/bin/srv"),
            argv: vec![
                String::from("srv"),
                String::from("-R"),
                String::from(address),
                String::from(name),
            ],
            fds: vec![(0, served), (1, data), (2, 2)],
            flags: 0,
        };
        let spawned = sys::spawn(&relay);
        let _ = sys::close(served);
        spawned
    })();
    // The relay holds its own copy of the connection.
    conn.close();
    result
}

/// `srv -R address name`: fd 0 is the pipe's served end, fd 1 the
/// connection; copies each way with a `cat` until one ends.
fn relay(argv: &[String]) -> Result<(), String> {
    let [address, name] = argv else {
        return Err(usage(USAGE));
    };
    let cat = |from: u32, to: u32| {
        sys::spawn(&SpawnRequest {
            path: String::from("/bin/cat"),
            argv: vec![String::from("cat")],
            fds: vec![(0, from), (1, to), (2, 2)],
            flags: 0,
        })
    };
    let requests = cat(0, 1);
    let answers = cat(1, 0);
    let _ = sys::close(0);
    let _ = sys::close(1);
    let (requests, answers) = match (requests, answers) {
        (Ok(r), Ok(a)) => (r, a),
        (Ok(pid), Err(e)) | (Err(e), Ok(pid)) => {
            stop(pid);
            return Err(fail(format!("srv: {name}: /bin/cat: {e}")));
        }
        (Err(e), Err(_)) => return Err(fail(format!("srv: {name}: /bin/cat: {e}"))),
    };
    let (ended, status) = sys::wait(0)?;
    let other = if ended == requests { answers } else { requests };
    stop(other);
    let _ = sys::wait(other);
    let _ = sys::remove(&format!("/srv/{name}"));
    let why = if status.is_empty() {
        String::from("the connection ended")
    } else {
        status
    };
    eprintln!("srv: {name}: {address}: {why}; /srv/{name} hung up");
    Ok(())
}

/// Ends process `pid` (proc(3)'s `kill`).
fn stop(pid: u64) {
    if let Ok(ctl) = sys::open(&format!("/proc/{pid}/ctl"), core_abi::OWRITE) {
        let _ = sys::write(ctl, b"kill");
        let _ = sys::close(ctl);
    }
}
