//! rm [-r] file ...: remove files, and with -r whole trees (rm(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{eprintln, sys};

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
    let recursive = argv.get(1).is_some_and(|a| a == "-r");
    let names = &argv[if recursive { 2 } else { 1 }..];
    if names.is_empty() {
        return Err("usage: rm [-r] file ...".into());
    }
    let mut status = Ok(());
    for name in names {
        if let Err(e) = remove(name, recursive) {
            eprintln!("rm: {name}: {e}");
            status = Err(format!("rm: {name}: {e}"));
        }
    }
    status
}
