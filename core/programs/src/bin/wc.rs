//! wc [file ...]: count lines, words and bytes (wc(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{println, sys};

fn count(fd: u32) -> Result<(u64, u64, u64), String> {
    let mut buffer = vec![0u8; 4096];
    let (mut lines, mut words, mut bytes) = (0, 0, 0);
    let mut in_word = false;
    loop {
        let n = sys::read(fd, &mut buffer)?;
        if n == 0 {
            return Ok((lines, words, bytes));
        }
        for &b in &buffer[..n] {
            bytes += 1;
            if b == b'\n' {
                lines += 1;
            }
            let blank = b.is_ascii_whitespace();
            if !blank && !in_word {
                words += 1;
            }
            in_word = !blank;
        }
    }
}

fn main(argv: Vec<String>) -> Result<(), String> {
    if argv.len() < 2 {
        let (l, w, b) = count(0).map_err(|e| format!("wc: {e}"))?;
        println!("{l:7} {w:7} {b:7}");
        return Ok(());
    }
    for name in &argv[1..] {
        let fd = sys::open(name, core_abi::OREAD).map_err(|e| format!("wc: {name}: {e}"))?;
        let (l, w, b) = count(fd)?;
        let _ = sys::close(fd);
        println!("{l:7} {w:7} {b:7} {name}");
    }
    Ok(())
}
