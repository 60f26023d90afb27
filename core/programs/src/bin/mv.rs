//! mv from to, mv from ... dir: move files, as a copy and a remove.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;

fn main(argv: Vec<String>) -> Result<(), String> {
    core_user::copy::each("mv", &argv[1..], true)
}
