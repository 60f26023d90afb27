//! ns [pid]: print a namespace as the commands that rebuild it (ns(1)).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ns is a Kasane program: build it with --target x86_64-unknown-none");
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
        let pid = match argv.get(1) {
            Some(pid) => pid.clone(),
            None => alloc::format!("{}", sys::getpid()?),
        };
        let path = alloc::format!("/proc/{pid}/ns");
        let text = sys::read_file(&path).map_err(|e| alloc::format!("ns: {path}: {e}"))?;
        sys::write(1, &text)?;
        Ok(())
    }

    core_user::entry!(main);
}
