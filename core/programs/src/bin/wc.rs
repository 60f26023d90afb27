//! wc [-lwrbc] [file ...]: count lines, words, runes, broken codes, bytes.
//!
//! As wc(1): the flags pick the counts (lines, words, runes, broken UTF
//! codes, bytes), printed in that order whatever the order of the flags;
//! without flags, `-lwc`. With no file it counts fd 0; with more than one
//! it adds a `total` line.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_programs::{Counter, Counts, Shown};
use core_user::prelude::*;
use core_user::{args, eprintln, println, sys, usage};

const USAGE: &str = "wc [-lwrbc] [file ...]";

fn count(fd: u32) -> Result<Counts, String> {
    let mut buffer = vec![0u8; 4096];
    let mut counter = Counter::new();
    loop {
        let n = sys::read(fd, &mut buffer)?;
        if n == 0 {
            return Ok(counter.finish());
        }
        counter.feed(&buffer[..n]);
    }
}

fn main(argv: Vec<String>) -> Result<(), String> {
    let Ok((flags, names)) = args::parse(&argv[1..], "lwrbc") else {
        return Err(usage(USAGE));
    };
    let shown = if flags.is_empty() {
        Shown::DEFAULT
    } else {
        Shown {
            lines: flags.has('l'),
            words: flags.has('w'),
            runes: flags.has('r'),
            broken: flags.has('b'),
            bytes: flags.has('c'),
        }
    };
    if names.is_empty() {
        let counts = count(0).map_err(|e| format!("wc: {e}"))?;
        println!("{}", counts.line(&shown, None));
        return Ok(());
    }
    let mut total = Counts::default();
    let mut status = Ok(());
    for name in names {
        let counted = sys::open(name, core_abi::OREAD).and_then(|fd| {
            let counted = count(fd);
            let _ = sys::close(fd);
            counted
        });
        match counted {
            Ok(counts) => {
                println!("{}", counts.line(&shown, Some(name)));
                total.add(&counts);
            }
            Err(e) => {
                eprintln!("wc: {name}: {e}");
                status = Err(format!("wc: {name}: {e}"));
            }
        }
    }
    if names.len() > 1 {
        println!("{}", total.line(&shown, Some("total")));
    }
    status
}
