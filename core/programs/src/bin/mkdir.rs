//! mkdir dir ...: make directories (mkdir(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{eprintln, sys};

fn main(argv: Vec<String>) -> Result<(), String> {
    if argv.len() < 2 {
        return Err("usage: mkdir dir ...".into());
    }
    let mut status = Ok(());
    for name in &argv[1..] {
        // mkdir(1) refuses a name that exists; create would truncate.
        let result = match sys::stat(name) {
            Ok(_) => Err(format!("'{name}' file already exists")),
            Err(_) => {
                sys::create(name, core_abi::OREAD, core_abi::DMDIR | 0o775).and_then(sys::close)
            }
        };
        if let Err(e) = result {
            eprintln!("mkdir: {name}: {e}");
            status = Err(format!("mkdir: {name}: {e}"));
        }
    }
    status
}
