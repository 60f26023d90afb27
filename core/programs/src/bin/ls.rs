//! ls [-l] [name ...]: list files and directories (ls(1)).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ls is a Kasane program: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod program {
    use alloc::string::String;
    use alloc::vec::Vec;

    use core_user::{println, sys};

    fn main(argv: Vec<String>) -> Result<(), String> {
        let long = argv.get(1).is_some_and(|a| a == "-l");
        let mut names: Vec<&str> = argv
            .iter()
            .skip(if long { 2 } else { 1 })
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            names.push(".");
        }
        let mut status = Ok(());
        for name in names {
            let info = match sys::stat(name) {
                Ok(info) => info,
                Err(e) => {
                    core_user::eprintln!("ls: {name}: {e}");
                    status = Err(alloc::format!("ls: {name}: {e}"));
                    continue;
                }
            };
            let entries = if info.is_dir() {
                sys::read_dir(name)?
            } else {
                alloc::vec![info]
            };
            for entry in entries {
                if long {
                    let kind = if entry.is_dir() { "d" } else { "-" };
                    println!(
                        "{kind}{:o} {} {} {:>8} {}",
                        entry.mode & 0o777,
                        entry.kind,
                        entry.uid,
                        entry.length,
                        entry.name
                    );
                } else {
                    println!("{}", entry.name);
                }
            }
        }
        status
    }

    core_user::entry!(main);
}
