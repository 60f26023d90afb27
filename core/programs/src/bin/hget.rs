//! hget url: fetch a page over HTTP and copy its body to standard output
//! (Plan 9's hget, HTTP/1.0 only, the host an address: there is no name
//! service yet).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{fail, http, net, sys, usage};

const USAGE: &str = "hget http://host[:port][/path]";

fn main(argv: Vec<String>) -> Result<(), String> {
    let [_, url] = &argv[..] else {
        return Err(usage(USAGE));
    };
    let target = http::target(url).map_err(|e| fail(format!("hget: {e}")))?;
    let conn = net::dial(&target.dial).map_err(|e| fail(format!("hget: {url}: {e}")))?;
    let result = fetch(&conn, &target);
    conn.close();
    result.map_err(|e| fail(format!("hget: {url}: {e}")))
}

/// Sends the request, then copies the body once the head is in and
/// checked; the server ends it by closing (HTTP/1.0).
fn fetch(conn: &net::Conn, target: &http::Target) -> Result<(), String> {
    let data = conn.data.ok_or("no data file")?;
    sys::write(data, http::request(target).as_bytes())?;
    let mut head = Vec::new();
    let mut buffer = vec![0u8; 4096];
    loop {
        let n = sys::read(data, &mut buffer)?;
        if n == 0 {
            return Err(String::from(
                "the connection ended before the answer's head",
            ));
        }
        head.extend_from_slice(&buffer[..n]);
        if let Some(start) = http::body_start(&head)? {
            sys::write(1, &head[start..])?;
            break;
        }
        if head.len() > 64 * 1024 {
            return Err(String::from("an answer head over 64 KiB"));
        }
    }
    sys::copy(data, 1)
}
