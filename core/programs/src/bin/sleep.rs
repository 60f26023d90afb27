//! sleep seconds: wait (sleep(1)).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("sleep is a Kasane program: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod program {
    use alloc::string::String;
    use alloc::vec::Vec;

    use core_user::sys;

    fn main(argv: Vec<String>) -> Result<(), String> {
        let seconds: u64 = argv
            .get(1)
            .and_then(|s| s.parse().ok())
            .ok_or("usage: sleep seconds")?;
        sys::sleep(seconds.saturating_mul(1000))
    }

    core_user::entry!(main);
}
