//! sleep seconds: wait (sleep(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::sys;

fn main(argv: Vec<String>) -> Result<(), String> {
    let seconds: u64 = argv
        .get(1)
        .and_then(|s| s.parse().ok())
        .ok_or("usage: sleep seconds")?;
    sys::sleep(seconds.saturating_mul(1000))
}
