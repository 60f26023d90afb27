//! wc [file ...]: count lines, words and bytes (wc(1)).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("wc is a Kasane program: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod program {
    use alloc::string::String;
    use alloc::vec::Vec;

    use core_user::{println, sys};

    fn count(fd: u32) -> Result<(u64, u64, u64), String> {
        let mut buffer = alloc::vec![0u8; 4096];
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
            let (l, w, b) = count(0).map_err(|e| alloc::format!("wc: {e}"))?;
            println!("{l:7} {w:7} {b:7}");
            return Ok(());
        }
        for name in &argv[1..] {
            let fd =
                sys::open(name, core_abi::OREAD).map_err(|e| alloc::format!("wc: {name}: {e}"))?;
            let (l, w, b) = count(fd)?;
            let _ = sys::close(fd);
            println!("{l:7} {w:7} {b:7} {name}");
        }
        Ok(())
    }

    core_user::entry!(main);
}
