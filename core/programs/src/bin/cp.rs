//! cp from to, cp from ... dir: copy files (cp(1)).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("cp is a Kasane program: build it with --target x86_64-unknown-none");
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
        crate::copy::each("cp", &argv[1..], false)
    }

    core_user::entry!(main);
}
