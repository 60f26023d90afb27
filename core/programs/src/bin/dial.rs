//! dial [-n] addr: connect to a network address (dial(2)'s dial string,
//! e.g. `tcp!127.0.0.1!7777`), send standard input, then copy what comes
//! back to standard output until the connection ends. `-n` sends nothing.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{args, fail, net, sys, usage};

const USAGE: &str = "dial [-n] tcp!host!port";

fn main(argv: Vec<String>) -> Result<(), String> {
    let Ok((flags, rest)) = args::parse(&argv[1..], "n") else {
        return Err(usage(USAGE));
    };
    let [address] = rest else {
        return Err(usage(USAGE));
    };
    let conn = net::dial(address).map_err(|e| fail(format!("dial: {address}: {e}")))?;
    let data = conn.data.ok_or("dial: no data file")?;
    let result = (|| {
        if !flags.has('n') {
            sys::copy(0, data)?;
        }
        sys::copy(data, 1)
    })();
    conn.close();
    result.map_err(|e| fail(format!("dial: {address}: {e}")))
}
