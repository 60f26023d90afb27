//! srv [-abc] tcp!host!port name [mountpoint]: dial a 9P file server and
//! post the connection as /srv/name (Plan 9's srv(4)), so that
//! `mount /srv/name dir` reaches it; with a mount point, mount it there
//! too (flags as mount's).
//!
//! Core mounts a process's pipe as a user-level link (docs/core.md): srv
//! posts one end of a pipe and leaves a relay behind (itself, run with
//! `-R`), which carries 9P between the other end and the connection's
//! data file, one request at a time. When the connection fails (the
//! network VM restarted) the relay dials again and rebuilds the session
//! (`core_programs::relay`), so mounts of /srv/name carry on; its
//! connection asks for keep-alive probes, so a peer that vanished is
//! given up (docs/net.md). When the pipe's other end goes, or the host
//! cannot be reached again, the relay ends, says why on fd 2 and removes
//! /srv/name.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_programs::relay::{Retry, Tracker};
use core_programs::{mount_flags, relay_spawn};
use core_user::prelude::*;
use core_user::sys::Fd;
use core_user::{args, eprintln, fail, net, sys, usage};

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
    // `-` is import's relay's: no /srv name.
    if name.is_empty() || name.contains('/') || name == "-" {
        return Err(fail(format!("srv: bad name '{name}'")));
    }
    post(address, name).map_err(|e| fail(format!("srv: {e}")))?;
    if let Some(mountpoint) = mountpoint {
        let mount_flags = mount_flags(flags.has('b'), flags.has('a'), flags.has('c'));
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
    let conn = dial(address).map_err(|e| format!("dial {address}: {e}"))?;
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
        let spawned = sys::spawn(&relay_spawn(address, name, served, data));
        let _ = sys::close(served);
        spawned
    })();
    // The relay holds its own copy of the connection.
    conn.close();
    result
}

/// `srv -R address name`: fd 0 is the pipe's served end, fd 1 the
/// connection. Carries one request at a time from the pipe to the
/// connection and its answer back (a file server answers each request
/// soon); when the connection fails, dials again and rebuilds the session
/// (`core_programs::relay`). `import` runs it too, with the name `-`.
fn relay(argv: &[String]) -> Result<(), String> {
    let [address, name] = argv else {
        return Err(usage(USAGE));
    };
    let who = if name == "-" {
        format!("import: {address}")
    } else {
        format!("srv: {name}: {address}")
    };
    let mut data: Fd = 1;
    let mut tracker = Tracker::new();
    let mut frame = vec![0u8; FRAME_MAX];
    let why = loop {
        // One T-message a read: core writes each frame whole, and pipe(3)
        // keeps write boundaries.
        let n = match sys::read(0, &mut frame) {
            Ok(0) => break String::from("the mount is gone"),
            Ok(n) => n,
            Err(e) => break e,
        };
        let request = &frame[..n];
        if let Err(e) = tracker.request(request) {
            break format!("core sent {e}");
        }
        let answer = loop {
            match exchange(data, request) {
                Ok(answer) => break Some(answer),
                Err(e) => {
                    eprintln!("{who}: {e}; dialling again");
                    let _ = sys::close(data);
                    data = match redial(address, &mut tracker) {
                        Ok(fd) => fd,
                        Err(e) => {
                            eprintln!("{who}: {e}; giving up");
                            return Err(fail(e));
                        }
                    };
                    eprintln!("{who}: dialled again; session rebuilt");
                    match tracker.retry() {
                        Retry::Send => continue,
                        Retry::Answer(bytes) => break Some(bytes),
                        Retry::Nothing => break None,
                    }
                }
            }
        };
        let Some(answer) = answer else { continue };
        // What the server says is core's to check; the tracker only
        // follows it.
        let _ = tracker.answer(&answer);
        if let Err(e) = sys::write(0, &answer) {
            break e;
        }
    };
    if name != "-" {
        let _ = sys::remove(&format!("/srv/{name}"));
    }
    eprintln!("{who}: relay ends: {why}");
    Ok(())
}

/// Largest frame the relay carries: core's link msize (one `MAX_IO`
/// read and 9P's header).
const FRAME_MAX: usize = core_abi::MAX_IO + ninep::IOHDRSZ as usize;

/// Sends `request` on the connection `data` and reads its answer, one
/// whole frame (size[4] first, intro(5)).
fn exchange(data: Fd, request: &[u8]) -> Result<Vec<u8>, String> {
    sys::write(data, request)?;
    let mut answer = vec![0u8; 4];
    read_exactly(data, &mut answer)?;
    let size = u32::from_le_bytes([answer[0], answer[1], answer[2], answer[3]]) as usize;
    if !(ninep::HEADER_SIZE..=FRAME_MAX).contains(&size) {
        return Err(format!("the server sent a frame of {size} bytes"));
    }
    answer.resize(size, 0);
    read_exactly(data, &mut answer[4..])?;
    Ok(answer)
}

fn read_exactly(fd: Fd, buffer: &mut [u8]) -> Result<(), String> {
    let mut done = 0;
    while done < buffer.len() {
        match sys::read(fd, &mut buffer[done..])? {
            0 => return Err(String::from("the connection ended")),
            n => done += n,
        }
    }
    Ok(())
}

/// How often, in ms, a relay's connection makes sure an idle peer is
/// still there (tcp(3)'s `keepalive`): the network server gives up a
/// peer that leaves a probe unanswered for 100 s, and the relay's next
/// request then finds the connection gone at once and dials again.
const KEEPALIVE_MS: u32 = 10_000;

/// dial(2), with keep-alive probes on the connection.
fn dial(address: &str) -> Result<net::Conn, String> {
    let conn = net::dial(address)?;
    // Without probes an idle connection to a vanished peer only fails
    // when the next request is not acknowledged; the relay works either
    // way, so a refusal changes nothing.
    let _ = sys::write(conn.ctl, format!("keepalive {KEEPALIVE_MS}").as_bytes());
    Ok(conn)
}

/// Dials `address` again (the network may be restarting: a try a second,
/// a minute at most) and replays the session on the new connection. A
/// host that lets [`GONE_AFTER`] calls in a row time out is gone: the
/// relay gives up on it then.
fn redial(address: &str, tracker: &mut Tracker) -> Result<Fd, String> {
    let mut last = String::new();
    let mut timed_out = 0;
    for _ in 0..REDIAL_TRIES {
        match dial(address) {
            Ok(conn) => {
                let Some(data) = conn.data else {
                    conn.close();
                    return Err(String::from("dial: no data file"));
                };
                // The data file keeps the conversation.
                let _ = sys::close(conn.ctl);
                match replay(data, tracker) {
                    Ok(()) => return Ok(data),
                    Err(e) => {
                        let _ = sys::close(data);
                        last = e;
                    }
                }
            }
            Err(e) => {
                // The network server's connect limit (20 s) passed with
                // no answer from the host at all.
                timed_out = if e.contains("timed out") {
                    timed_out + 1
                } else {
                    0
                };
                last = e;
                if timed_out >= GONE_AFTER {
                    break;
                }
            }
        }
        let _ = sys::sleep(1000);
    }
    Err(format!("dial {address}: {last}"))
}

const REDIAL_TRIES: u32 = 60;

/// Calls in a row that time out before the relay gives the host up.
const GONE_AFTER: u32 = 3;

/// Rebuilds the session on `data` (`Tracker::replay`); an error only if
/// the connection fails again.
fn replay(data: Fd, tracker: &mut Tracker) -> Result<(), String> {
    for (fid, request) in tracker.replay() {
        let answer = exchange(data, &request)?;
        if tracker.replayed(fid, &answer) && fid.is_none() {
            return Err(String::from("the server refused Tversion"));
        }
    }
    Ok(())
}
