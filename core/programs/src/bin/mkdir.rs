//! mkdir [-p] [-m mode] dir ...: make directories (mkdir(1)).
//!
//! As mkdir(1): a name that exists is an error (create would truncate
//! it); `-p` makes any missing parent directories too and says nothing
//! about a directory that exists; `-m` gives the new directories the
//! octal permissions `mode` instead of 775.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_programs::parents;
use core_user::prelude::*;
use core_user::{args, eprintln, sys, usage};

const USAGE: &str = "mkdir [-p] [-m mode] dir ...";

fn make(name: &str, perm: u64) -> Result<(), String> {
    sys::create(name, core_abi::OREAD, core_abi::DMDIR | perm).and_then(sys::close)
}

/// Makes `name` and the directories above it that are missing.
fn make_all(name: &str, perm: u64) -> Result<(), String> {
    for directory in parents(name) {
        match sys::stat(directory) {
            Ok(info) if info.is_dir() => {}
            Ok(_) => return Err(format!("'{directory}' is not a directory")),
            Err(_) => make(directory, perm)?,
        }
    }
    Ok(())
}

fn main(argv: Vec<String>) -> Result<(), String> {
    let Ok((flags, names)) = args::parse(&argv[1..], "pm:") else {
        return Err(usage(USAGE));
    };
    let perm = match flags.value('m') {
        None => 0o775,
        Some(mode) => match u64::from_str_radix(mode, 8) {
            Ok(mode) if mode <= 0o777 => mode,
            _ => return Err(usage(USAGE)),
        },
    };
    if names.is_empty() {
        return Err(usage(USAGE));
    }
    let mut status = Ok(());
    for name in names {
        let result = if flags.has('p') {
            make_all(name, perm)
        } else {
            match sys::stat(name) {
                Ok(_) => Err(format!("'{name}' file already exists")),
                Err(_) => make(name, perm),
            }
        };
        if let Err(e) = result {
            eprintln!("mkdir: {name}: {e}");
            status = Err(format!("mkdir: {name}: {e}"));
        }
    }
    status
}
