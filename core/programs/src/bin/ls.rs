//! ls [-dlpF] [file ...]: list files and directories (ls(1)).
//!
//! As ls(1): `-l` the long form (mode, device, owner, length, name); `-d`
//! a directory itself rather than its contents; `-p` only the final
//! element of each name, which is what Kasane's ls always prints, so it
//! is accepted and changes nothing; `-F` a `/` after a directory and a
//! `*` after an executable file. Entries come in the server's order.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_programs::ls_suffix;
use core_user::prelude::*;
use core_user::{args, eprintln, println, sys, usage, FileInfo};

const USAGE: &str = "ls [-dlpF] [file ...]";

fn show(entry: &FileInfo, long: bool, marked: bool) {
    let mark = if marked {
        ls_suffix(entry.is_dir(), entry.mode)
    } else {
        ""
    };
    if long {
        let kind = if entry.is_dir() { "d" } else { "-" };
        println!(
            "{kind}{:o} {} {} {:>8} {}{mark}",
            entry.mode & 0o777,
            entry.kind,
            entry.uid,
            entry.length,
            entry.name
        );
    } else {
        println!("{}{mark}", entry.name);
    }
}

fn main(argv: Vec<String>) -> Result<(), String> {
    let Ok((flags, names)) = args::parse(&argv[1..], "dlpF") else {
        return Err(usage(USAGE));
    };
    let (long, itself, marked) = (flags.has('l'), flags.has('d'), flags.has('F'));
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
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
        let entries = if info.is_dir() && !itself {
            sys::read_dir(name)?
        } else {
            vec![info]
        };
        for entry in &entries {
            show(entry, long, marked);
        }
    }
    status
}
