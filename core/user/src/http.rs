//! HTTP/1.0 for `hget`: a URL into a dial string and a request, and the
//! answer's head checked and cut off.
//!
//! Only `http://HOST[:PORT][/PATH]` with HOST an address `/net/cs` knows
//! (there is no name service yet). The request is HTTP/1.0 (RFC 1945
//! §5), so the server ends the body by closing the connection and no
//! chunked coding can come back.

use alloc::format;
use alloc::string::String;

/// What a URL asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// The dial string of the server, `tcp!HOST!PORT`.
    pub dial: String,
    /// The `Host` header's value (RFC 7230 §5.4: host, and port if not 80).
    pub host: String,
    /// The path, `/` at least.
    pub path: String,
}

/// Parses `http://HOST[:PORT][/PATH]` (RFC 3986 §3, the parts hget uses).
pub fn target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("'{url}': only http:// URLs are fetched"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("'{url}': bad port '{port}'"))?;
            (host, port)
        }
        None => (authority, 80),
    };
    let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if host.is_empty() || !printable(host) || host.contains('!') {
        return Err(format!("'{url}': bad host '{host}'"));
    }
    if !printable(path) {
        return Err(format!("'{url}': the path must be printable ASCII"));
    }
    Ok(Target {
        dial: format!("tcp!{host}!{port}"),
        host: if port == 80 {
            String::from(host)
        } else {
            format!("{host}:{port}")
        },
        path: String::from(path),
    })
}

/// The request for `target` (RFC 1945 §5: request line, headers, a blank
/// line).
pub fn request(target: &Target) -> String {
    format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: kasane-hget\r\n\r\n",
        target.path, target.host
    )
}

/// Where the body starts in `answer`, once its head is whole: `Ok(None)`
/// while the head is still coming; an error for a status other than 2xx
/// (RFC 1945 §6.1: `HTTP/1.x CODE REASON`) or a head that is not HTTP.
pub fn body_start(answer: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = core::str::from_utf8(&answer[..end]).map_err(|_| "an answer that is not HTTP")?;
    let status = head.lines().next().unwrap_or("");
    let mut words = status.split(' ');
    let (version, code) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("an answer that is not HTTP: '{status}'"));
    }
    if !code.starts_with('2') {
        return Err(format!("the server says '{status}'"));
    }
    Ok(Some(end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_a_dial_string_a_host_and_a_path() {
        let t = target("http://10.0.2.2:8000/dir/page.txt").unwrap();
        assert_eq!(t.dial, "tcp!10.0.2.2!8000");
        assert_eq!(t.host, "10.0.2.2:8000");
        assert_eq!(t.path, "/dir/page.txt");
        let t = target("http://10.0.2.2").unwrap();
        assert_eq!(
            (t.dial.as_str(), t.host.as_str(), t.path.as_str()),
            ("tcp!10.0.2.2!80", "10.0.2.2", "/")
        );
        assert_eq!(
            request(&t),
            "GET / HTTP/1.0\r\nHost: 10.0.2.2\r\nUser-Agent: kasane-hget\r\n\r\n"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        assert!(target("https://a/").unwrap_err().contains("only http://"));
        assert!(target("http://a:99999/").unwrap_err().contains("bad port"));
        assert!(target("http://:80/").unwrap_err().contains("bad host"));
        assert!(target("http://a!b/").unwrap_err().contains("bad host"));
        assert!(target("http://a/b c").unwrap_err().contains("printable"));
    }

    #[test]
    fn the_head_is_checked_and_cut_off() {
        assert_eq!(body_start(b"HTTP/1.0 200 OK\r\nServer: x"), Ok(None));
        let answer = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody";
        assert_eq!(body_start(answer), Ok(Some(answer.len() - 4)));
        let missing = body_start(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap_err();
        assert!(missing.contains("404 Not Found"), "{missing}");
        assert!(body_start(b"SSH-2.0\r\n\r\n").is_err());
    }
}
