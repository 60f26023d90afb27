//! ls [-l] [name ...]: list files and directories (ls(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{eprintln, println, sys};

fn main(argv: Vec<String>) -> Result<(), String> {
    let long = argv.get(1).is_some_and(|a| a == "-l");
    let mut names: Vec<&str> = argv
        .iter()
        .skip(if long { 2 } else { 1 })
        .map(String::as_str)
        .collect();
    if names.is_empty() {
        names.push(".");
    }
    let mut status = Ok(());
    for name in names {
        let info = match sys::stat(name) {
            Ok(info) => info,
            Err(e) => {
                eprintln!("ls: {name}: {e}");
                status = Err(format!("ls: {name}: {e}"));
                continue;
            }
        };
        let entries = if info.is_dir() {
            sys::read_dir(name)?
        } else {
            vec![info]
        };
        for entry in entries {
            if long {
                let kind = if entry.is_dir() { "d" } else { "-" };
                println!(
                    "{kind}{:o} {} {} {:>8} {}",
                    entry.mode & 0o777,
                    entry.kind,
                    entry.uid,
                    entry.length,
                    entry.name
                );
            } else {
                println!("{}", entry.name);
            }
        }
    }
    status
}
