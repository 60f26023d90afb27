//! ns [pid]: print a namespace as the commands that rebuild it (ns(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::sys;

fn main(argv: Vec<String>) -> Result<(), String> {
    let pid = match argv.get(1) {
        Some(pid) => pid.clone(),
        None => format!("{}", sys::getpid()?),
    };
    let path = format!("/proc/{pid}/ns");
    let text = sys::read_file(&path).map_err(|e| format!("ns: {path}: {e}"))?;
    sys::write(1, &text)?;
    Ok(())
}
