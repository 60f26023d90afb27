//! Listen addresses: Plan 9 dial strings, host:port, and Unix socket paths.

use std::fmt;
use std::path::PathBuf;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } => write!(f, "tcp!{host}!{port}"),
            Self::Unix(path) => write!(f, "unix!{}", path.display()),
        }
    }
}

const FORMS: &str = "expected tcp!HOST!PORT, HOST:PORT, unix!PATH or a socket path";

fn port(text: &str, whole: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("bad port '{text}' in listen address '{whole}': need 0-65535"))
}

/// Parses `tcp!host!port`, `host:port` (`[v6]:port` too), `unix!/path`, or
/// a path (anything holding a '/').
pub fn parse(text: &str) -> Result<ListenAddress, String> {
    if let Some(rest) = text.strip_prefix("tcp!") {
        let Some((host, p)) = rest.split_once('!') else {
            return Err(format!("listen address '{text}': {FORMS}"));
        };
        if host.is_empty() {
            return Err(format!("listen address '{text}' has no host"));
        }
        let host = if host == "*" { "0.0.0.0" } else { host };
        return Ok(ListenAddress::Tcp {
            host: host.to_string(),
            port: port(p, text)?,
        });
    }
    if let Some(path) = text.strip_prefix("unix!") {
        if path.is_empty() {
            return Err(format!("listen address '{text}' has no socket path"));
        }
        return Ok(ListenAddress::Unix(PathBuf::from(path)));
    }
    if text.contains('/') {
        return Ok(ListenAddress::Unix(PathBuf::from(text)));
    }
    if let Some((host, p)) = text.rsplit_once(':') {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("listen address '{text}' has no host"));
        }
        return Ok(ListenAddress::Tcp {
            host: host.to_string(),
            port: port(p, text)?,
        });
    }
    Err(format!("cannot parse listen address '{text}': {FORMS}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> ListenAddress {
        ListenAddress::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(parse("tcp!127.0.0.1!564"), Ok(tcp("127.0.0.1", 564)));
        assert_eq!(parse("tcp!*!564"), Ok(tcp("0.0.0.0", 564)));
        assert_eq!(parse("localhost:5640"), Ok(tcp("localhost", 5640)));
        assert_eq!(parse("[::1]:0"), Ok(tcp("::1", 0)));
        assert_eq!(
            parse("unix!/tmp/ramfs.sock"),
            Ok(ListenAddress::Unix("/tmp/ramfs.sock".into()))
        );
        assert_eq!(
            parse("./ramfs.sock"),
            Ok(ListenAddress::Unix("./ramfs.sock".into()))
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("tcp!host").unwrap_err().contains("expected"));
        assert!(parse("host:99999").unwrap_err().contains("bad port"));
        assert!(parse("nonsense").unwrap_err().contains("cannot parse"));
        assert!(parse("unix!").unwrap_err().contains("no socket path"));
        assert!(parse(":80").unwrap_err().contains("no host"));
    }
}
