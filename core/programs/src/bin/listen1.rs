//! listen1 [-1] addr cmd [args ...]: announce a network address and run
//! `cmd` for each call with the connection as its standard input and
//! output (Plan 9's aux/listen1). With `-1` it takes one call, waits for
//! the command and exits with its status.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{args, eprintln, fail, net, sys, usage, SpawnRequest};

const USAGE: &str = "listen1 [-1] tcp!*!port cmd [args ...]";

fn main(argv: Vec<String>) -> Result<(), String> {
    let Ok((flags, rest)) = args::parse(&argv[1..], "1") else {
        return Err(usage(USAGE));
    };
    let [address, command @ ..] = rest else {
        return Err(usage(USAGE));
    };
    if command.is_empty() {
        return Err(usage(USAGE));
    }
    let path = if command[0].contains('/') {
        command[0].clone()
    } else {
        format!("/bin/{}", command[0])
    };
    let announced = net::announce(address).map_err(|e| fail(format!("listen1: {address}: {e}")))?;
    loop {
        let mut call =
            net::listen(&announced).map_err(|e| fail(format!("listen1: listen: {e}")))?;
        let data = match net::accept(&mut call) {
            Ok(data) => data,
            Err(e) => {
                eprintln!("listen1: accept: {e}");
                call.close();
                continue;
            }
        };
        let request = SpawnRequest {
            path: path.clone(),
            argv: command.to_vec(),
            fds: vec![(0, data), (1, data), (2, 2)],
            // Served callers are not waited for (Plan 9's listen1 forks
            // with RFNOWAIT too), so they leave no records behind; with
            // -1 the one caller's status is listen1's.
            flags: if flags.has('1') {
                0
            } else {
                core_abi::RFNOWAIT
            },
        };
        let spawned = sys::spawn(&request);
        // The command holds its own copies of the connection.
        call.close();
        let pid = match spawned {
            Ok(pid) => pid,
            Err(e) => {
                eprintln!("listen1: {path}: {e}");
                continue;
            }
        };
        if flags.has('1') {
            let (_, status) = sys::wait(pid)?;
            announced.close();
            return if status.is_empty() {
                Ok(())
            } else {
                Err(status)
            };
        }
    }
}
