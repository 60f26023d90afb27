//! cat [file ...]: copy files (or fd 0) to fd 1 (cat(1)).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("cat is a Kasane program: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod program {
    use alloc::string::String;
    use alloc::vec::Vec;

    use core_user::sys;

    fn copy(fd: u32) -> Result<(), String> {
        let mut buffer = alloc::vec![0u8; 4096];
        loop {
            let n = sys::read(fd, &mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            sys::write(1, &buffer[..n])?;
        }
    }

    fn main(argv: Vec<String>) -> Result<(), String> {
        if argv.len() < 2 {
            return copy(0).map_err(|e| alloc::format!("cat: {e}"));
        }
        let mut status = Ok(());
        for name in &argv[1..] {
            let result = sys::open(name, core_abi::OREAD).and_then(|fd| {
                let result = copy(fd);
                let _ = sys::close(fd);
                result
            });
            if let Err(e) = result {
                core_user::eprintln!("cat: {name}: {e}");
                status = Err(alloc::format!("cat: {name}: {e}"));
            }
        }
        status
    }

    core_user::entry!(main);
}
