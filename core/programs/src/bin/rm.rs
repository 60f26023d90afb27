//! rm [-fr] file ...: remove files, and with -r whole trees (rm(1)).
//!
//! As rm(1): `-r` removes a directory's contents and then the directory;
//! `-f` reports nothing about a file that cannot be removed, and such a
//! file does not make rm fail.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{args, eprintln, sys, usage};

const USAGE: &str = "rm [-fr] file ...";

/// Removes `name`, first emptying it when it is a directory and
/// `recursive` is set.
fn remove(name: &str, recursive: bool) -> Result<(), String> {
    if recursive {
        let info = sys::stat(name)?;
        if info.is_dir() {
            for entry in sys::read_dir(name)? {
                remove(&format!("{name}/{}", entry.name), true)?;
            }
        }
    }
    sys::remove(name)
}

fn main(argv: Vec<String>) -> Result<(), String> {
    let Ok((flags, names)) = args::parse(&argv[1..], "fr") else {
        return Err(usage(USAGE));
    };
    if names.is_empty() {
        return Err(usage(USAGE));
    }
    let (quiet, recursive) = (flags.has('f'), flags.has('r'));
    let mut status = Ok(());
    for name in names {
        if let Err(e) = remove(name, recursive) {
            if !quiet {
                eprintln!("rm: {name}: {e}");
                status = Err(format!("rm: {name}: {e}"));
            }
        }
    }
    status
}
