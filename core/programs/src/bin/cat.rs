//! cat [file ...]: copy files (or fd 0) to fd 1 (cat(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{eprintln, sys};

fn main(argv: Vec<String>) -> Result<(), String> {
    if argv.len() < 2 {
        return sys::copy(0, 1).map_err(|e| format!("cat: {e}"));
    }
    let mut status = Ok(());
    for name in &argv[1..] {
        let result = sys::open(name, core_abi::OREAD).and_then(|fd| {
            let result = sys::copy(fd, 1);
            let _ = sys::close(fd);
            result
        });
        if let Err(e) = result {
            eprintln!("cat: {name}: {e}");
            status = Err(format!("cat: {name}: {e}"));
        }
    }
    status
}
