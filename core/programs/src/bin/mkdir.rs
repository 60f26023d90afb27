//! mkdir dir ...: make directories (mkdir(1)).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("mkdir is a Kasane program: build it with --target x86_64-unknown-none");
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

    fn main(argv: Vec<String>) -> Result<(), String> {
        if argv.len() < 2 {
            return Err("usage: mkdir dir ...".into());
        }
        let mut status = Ok(());
        for name in &argv[1..] {
            // mkdir(1) refuses a name that exists; create would truncate.
            let result = match sys::stat(name) {
                Ok(_) => Err(format!("'{name}' file already exists")),
                Err(_) => {
                    sys::create(name, core_abi::OREAD, core_abi::DMDIR | 0o775).and_then(sys::close)
                }
            };
            if let Err(e) = result {
                core_user::eprintln!("mkdir: {name}: {e}");
                status = Err(format!("mkdir: {name}: {e}"));
            }
        }
        status
    }

    core_user::entry!(main);
}
