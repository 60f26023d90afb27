//! What cp and mv share: copying files, one by one or into a directory.
//!
//! As Plan 9's mv(1), a move within one directory is a rename (wstat of
//! the name); any other move is a copy and a remove.

use alloc::format;
use alloc::string::String;

use crate::sys;

/// The last element of `path`.
fn base(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// The directory part of `path`, lexically (`.` for a bare name).
fn directory(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => ".",
    }
}

/// Renames `from` to `to` in their common directory, replacing a file
/// already called `to`, as mv(1) does.
fn rename(from: &str, to: &str) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    if sys::stat(to).is_ok() {
        sys::remove(to)?;
    }
    sys::rename(from, base(to))
}

/// Copies the file `from` to `to` (created or truncated).
fn copy(from: &str, to: &str) -> Result<(), String> {
    let info = sys::stat(from)?;
    if info.is_dir() {
        return Err("is a directory".into());
    }
    let input = sys::open(from, core_abi::OREAD)?;
    let output = match sys::create(to, core_abi::OWRITE, u64::from(info.mode) & 0o777) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = sys::close(input);
            return Err(e);
        }
    };
    let result = sys::copy(input, output);
    let _ = sys::close(input);
    let _ = sys::close(output);
    result
}

/// Copies (or, for mv, moves) each of `from` to `to`, or into `to`
/// when it is a directory.
pub fn each(name: &str, argv: &[String], moving: bool) -> Result<(), String> {
    let [from @ .., to] = argv else {
        return Err(format!("usage: {name} from ... to"));
    };
    if from.is_empty() {
        return Err(format!("usage: {name} from ... to"));
    }
    let into = sys::stat(to).is_ok_and(|info| info.is_dir());
    if from.len() > 1 && !into {
        return Err(format!("{name}: {to}: not a directory"));
    }
    let mut status = Ok(());
    for source in from {
        let target = if into {
            format!("{to}/{}", base(source))
        } else {
            to.clone()
        };
        let result = if moving && directory(source) == directory(&target) {
            rename(source, &target)
        } else {
            copy(source, &target).and_then(|()| if moving { sys::remove(source) } else { Ok(()) })
        };
        if let Err(e) = result {
            crate::eprintln!("{name}: {source}: {e}");
            status = Err(format!("{name}: {source}: {e}"));
        }
    }
    status
}
