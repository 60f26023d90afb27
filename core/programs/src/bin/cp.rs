//! cp from to, cp from ... dir: copy files (cp(1)).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;

fn main(argv: Vec<String>) -> Result<(), String> {
    core_user::copy::each("cp", &argv[1..], false)
}
