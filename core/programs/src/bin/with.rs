//! with [-nNeE] command [arg ...]: runs a command spawned with rfork flags.
//!
//! `-n` gives the command a copy of this namespace (RFNAMEG), `-N` a clean
//! one (RFCNAMEG: `#R` at `/` and nothing bound), `-e` a copy of the
//! environment (RFENVG), `-E` an empty one (RFCENVG); without flags it
//! shares both, as rc's own children do. The command is found by its path
//! in this namespace (a clean child could not find it itself) and gets
//! descriptors 0, 1 and 2. `with` waits for it and exits with its status.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_abi::{RFCENVG, RFCNAMEG, RFENVG, RFNAMEG};
use core_user::prelude::*;
use core_user::{eprintln, sys, SpawnRequest};

const USAGE: &str = "usage: with [-nNeE] command [arg ...]";

fn main(argv: Vec<String>) -> Result<(), String> {
    let mut flags = 0;
    let mut rest = &argv[1..];
    while let Some(word) = rest.first().filter(|w| w.starts_with('-') && w.len() > 1) {
        for letter in word.chars().skip(1) {
            flags |= match letter {
                'n' => RFNAMEG,
                'N' => RFCNAMEG,
                'e' => RFENVG,
                'E' => RFCENVG,
                _ => {
                    eprintln!("with: bad flag -{letter}\n{USAGE}");
                    return Err("with: usage".to_string());
                }
            };
        }
        rest = &rest[1..];
    }
    let Some(command) = rest.first() else {
        eprintln!("{USAGE}");
        return Err("with: usage".to_string());
    };
    let path = if command.starts_with('/') || command.starts_with('#') {
        command.clone()
    } else {
        format!("/bin/{command}")
    };
    let request = SpawnRequest {
        path,
        argv: rest.to_vec(),
        fds: vec![(0, 0), (1, 1), (2, 2)],
        flags,
    };
    let child = sys::spawn(&request).map_err(|e| {
        let text = format!("with: {command}: {e}");
        eprintln!("{text}");
        text
    })?;
    let (_, status) = sys::wait(child)?;
    if status.is_empty() {
        Ok(())
    } else {
        Err(status)
    }
}
