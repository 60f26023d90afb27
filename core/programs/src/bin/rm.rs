//! rm [-r] file ...: remove files, and with -r whole trees (rm(1)).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("rm is a Kasane program: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod program {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use core_user::sys;

    /// Removes `name`, first emptying it when it is a directory and
    /// `recursive` is set.
    fn remove(name: &str, recursive: bool) -> Result<(), String> {
        if recursive {
            let info = sys::stat(name)?;
            if info.is_dir() {
                for entry in sys::read_dir(name)? {
                    remove(&format!("{name}/{}", entry.name), true)?;
                }
            }
        }
        sys::remove(name)
    }

    fn main(argv: Vec<String>) -> Result<(), String> {
        let recursive = argv.get(1).is_some_and(|a| a == "-r");
        let names = &argv[if recursive { 2 } else { 1 }..];
        if names.is_empty() {
            return Err("usage: rm [-r] file ...".into());
        }
        let mut status = Ok(());
        for name in names {
            if let Err(e) = remove(name, recursive) {
                core_user::eprintln!("rm: {name}: {e}");
                status = Err(format!("rm: {name}: {e}"));
            }
        }
        status
    }

    core_user::entry!(main);
}
