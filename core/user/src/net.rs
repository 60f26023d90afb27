//! dial(2) for Kasane programs: `dial`, `announce`, `listen`, `accept`
//! and `hangup` over the `/net` tree (docs/net.md), as Plan 9's libc has
//! them.
//!
//! A connection is a conversation directory `/net/PROTO/N`, its `ctl` file
//! (held open: the conversation lives while a file of it is open) and, once
//! connected, its `data` file.

use alloc::format;
use alloc::string::String;
use alloc::vec;

use crate::sys::{self, Fd, Result};

/// An open conversation.
#[derive(Debug)]
pub struct Conn {
    /// `/net/tcp/N`.
    pub dir: String,
    /// Its `ctl`, open read-write.
    pub ctl: Fd,
    /// Its `data`, once there is one (after `dial` or `accept`).
    pub data: Option<Fd>,
}

impl Conn {
    /// Closes every descriptor of the conversation, which hangs it up
    /// once no other process holds one.
    pub fn close(self) {
        if let Some(data) = self.data {
            let _ = sys::close(data);
        }
        let _ = sys::close(self.ctl);
    }
}

fn read_text(fd: Fd) -> Result<String> {
    let mut buffer = vec![0u8; 256];
    let n = sys::read(fd, &mut buffer)?;
    buffer.truncate(n);
    String::from_utf8(buffer).map_err(|_| String::from("not text"))
}

/// Asks `/net/cs` for the clone file and address of a dial string
/// (`tcp!127.0.0.1!564`, `tcp!*!564`).
pub fn translate(dial: &str) -> Result<(String, String)> {
    let cs = sys::open("/net/cs", core_abi::ORDWR)
        .map_err(|e| format!("/net/cs: {e} (is /net mounted?)"))?;
    // As Plan 9's dial: write the string, go back to the start, read.
    let answer = sys::write(cs, dial.as_bytes())
        .and_then(|_| sys::seek(cs, 0, 0))
        .and_then(|_| read_text(cs));
    let _ = sys::close(cs);
    let answer = answer?;
    let (clone, address) = answer
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("cs: unexpected answer '{answer}'"))?;
    Ok((String::from(clone), String::from(address)))
}

/// Opens a new conversation on `clone` and names its directory.
fn clone(clone: &str) -> Result<(Fd, String)> {
    let ctl = sys::open(clone, core_abi::ORDWR)?;
    let number = read_text(ctl).map(|t| String::from(t.trim()));
    let number = match number {
        Ok(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n,
        Ok(n) => {
            let _ = sys::close(ctl);
            return Err(format!("{clone}: bad conversation number '{n}'"));
        }
        Err(e) => {
            let _ = sys::close(ctl);
            return Err(e);
        }
    };
    let base = clone.strip_suffix("/clone").unwrap_or(clone);
    Ok((ctl, format!("{base}/{number}")))
}

/// Writes a ctl request, closing `ctl` if it fails.
fn request(ctl: Fd, text: &str) -> Result<()> {
    sys::write(ctl, text.as_bytes())
        .map(|_| ())
        .inspect_err(|_| {
            let _ = sys::close(ctl);
        })
}

/// dial(2): connects to `dial` and returns the connection with its data
/// file open.
pub fn dial(dial: &str) -> Result<Conn> {
    let (clone_file, address) = translate(dial)?;
    let (ctl, dir) = clone(&clone_file)?;
    request(ctl, &format!("connect {address}"))?;
    let data = sys::open(&format!("{dir}/data"), core_abi::ORDWR).inspect_err(|_| {
        let _ = sys::close(ctl);
    })?;
    Ok(Conn {
        dir,
        ctl,
        data: Some(data),
    })
}

/// announce(2): announces `dial` (`tcp!*!PORT`); calls come through
/// [`listen`].
pub fn announce(dial: &str) -> Result<Conn> {
    let (clone_file, address) = translate(dial)?;
    let (ctl, dir) = clone(&clone_file)?;
    request(ctl, &format!("announce {address}"))?;
    Ok(Conn {
        dir,
        ctl,
        data: None,
    })
}

/// listen(2): waits for a call on an announced conversation and returns
/// the call's conversation, not yet accepted.
pub fn listen(announced: &Conn) -> Result<Conn> {
    let listen = sys::open(&format!("{}/listen", announced.dir), core_abi::ORDWR)?;
    let number = read_text(listen);
    let _ = sys::close(listen);
    let number = String::from(number?.trim());
    let base = announced
        .dir
        .rsplit_once('/')
        .map_or(announced.dir.as_str(), |(base, _)| base);
    let dir = format!("{base}/{number}");
    let ctl = sys::open(&format!("{dir}/ctl"), core_abi::ORDWR)?;
    Ok(Conn {
        dir,
        ctl,
        data: None,
    })
}

/// accept(2): opens the call's data file.
pub fn accept(call: &mut Conn) -> Result<Fd> {
    let data = sys::open(&format!("{}/data", call.dir), core_abi::ORDWR)?;
    call.data = Some(data);
    Ok(data)
}

/// hangup(2): ends the connection now.
pub fn hangup(conn: &Conn) -> Result<()> {
    sys::write(conn.ctl, b"hangup").map(|_| ())
}
