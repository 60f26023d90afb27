//! mv from to, mv from ... dir: move files, as a copy and a remove.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("mv is a Kasane program: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[path = "../copy.rs"]
mod copy;

#[cfg(target_os = "none")]
mod program {
    use alloc::string::String;
    use alloc::vec::Vec;

    fn main(argv: Vec<String>) -> Result<(), String> {
        crate::copy::each("mv", &argv[1..], true)
    }

    core_user::entry!(main);
}
