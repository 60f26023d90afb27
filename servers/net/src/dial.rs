//! Dial strings (dial(2)) and the address forms `/net` ctl files take.
//!
//! A dial string is `[net!]host[!service]`: `tcp!10.0.2.2!564`,
//! `net!gateway!9fs`, `tcp!*!564`. `/net/cs` turns one into the clone file
//! to open and the address to write after `connect` or `announce`
//! (ndb(8)'s cs, without a network database: numeric addresses, a few
//! names this server knows and the services of [`SERVICES`]).

use alloc::format;
use alloc::string::String;
use core::net::Ipv4Addr;

/// A transport `/net` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub const ALL: [Proto; 2] = [Proto::Tcp, Proto::Udp];

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Port names cs knows (Plan 9's /lib/ndb/common, the few that matter).
pub const SERVICES: &[(&str, u16)] = &[
    ("echo", 7),
    ("discard", 9),
    ("daytime", 13),
    ("ssh", 22),
    ("telnet", 23),
    ("http", 80),
    ("9fs", 564),
    ("exportfs", 17007),
];

/// The host part of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// `*`: any local address (announce only).
    Any,
    Addr(Ipv4Addr),
}

/// `host!port` after cs: what `connect` and `announce` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub host: Host,
    pub port: u16,
}

impl core::fmt::Display for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.host {
            Host::Any => write!(f, "*!{}", self.port),
            Host::Addr(a) => write!(f, "{a}!{}", self.port),
        }
    }
}

/// Names cs resolves without a database: the loopback and the router the
/// interface was configured with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Names {
    pub gateway: Option<Ipv4Addr>,
}

impl Names {
    fn host(&self, name: &str) -> Result<Host, String> {
        match name {
            "*" => Ok(Host::Any),
            "localhost" | "loopback" => Ok(Host::Addr(Ipv4Addr::LOCALHOST)),
            "gateway" => self
                .gateway
                .map(Host::Addr)
                .ok_or_else(|| String::from("cs: no gateway configured")),
            _ => name.parse::<Ipv4Addr>().map(Host::Addr).map_err(|_| {
                format!("cs: unknown host '{name}' (no name service; use an address)")
            }),
        }
    }
}

/// A port number or a service name of [`SERVICES`].
pub fn port(service: &str) -> Result<u16, String> {
    if let Ok(n) = service.parse::<u16>() {
        return Ok(n);
    }
    SERVICES
        .iter()
        .find(|(name, _)| *name == service)
        .map(|(_, n)| *n)
        .ok_or_else(|| format!("cs: unknown service '{service}'"))
}

/// A dial string, resolved: which transport and which address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial {
    pub proto: Proto,
    pub address: Address,
}

/// Resolves `[net!]host!service` as cs does. `net` (or no network) means
/// tcp; a missing service is an error, as there is no default.
pub fn resolve(dial: &str, names: &Names) -> Result<Dial, String> {
    let dial = dial.trim();
    let parts: alloc::vec::Vec<&str> = dial.split('!').collect();
    let (net, host, service) = match parts.as_slice() {
        [host, service] => ("net", *host, *service),
        [net, host, service] => (*net, *host, *service),
        _ => {
            return Err(format!(
                "cs: bad dial string '{dial}' (want [net!]host!service)"
            ))
        }
    };
    let proto = match net {
        "net" | "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => return Err(format!("cs: unknown network '{other}'")),
    };
    let host = names.host(host)?;
    let port = port(service)?;
    Ok(Dial {
        proto,
        address: Address { host, port },
    })
}

/// What `connect` takes: `host!port[!lport]` with a numeric host (or a
/// name cs knows). Returns the remote address and the local port, if one
/// was named.
pub fn connect_args(arg: &str, names: &Names) -> Result<(Address, Option<u16>), String> {
    let parts: alloc::vec::Vec<&str> = arg.trim().split('!').collect();
    let (host, service, local) = match parts.as_slice() {
        [host, service] => (*host, *service, None),
        [host, service, local] => (*host, *service, Some(*local)),
        _ => return Err(format!("bad address '{arg}' (want host!port[!localport])")),
    };
    let host = names.host(host)?;
    if host == Host::Any {
        return Err(String::from("cannot connect to '*'"));
    }
    let local = local.map(port).transpose()?;
    Ok((
        Address {
            host,
            port: port(service)?,
        },
        local,
    ))
}

/// What `announce` takes: `port`, `*!port` or `addr!port`.
pub fn announce_args(arg: &str, names: &Names) -> Result<Address, String> {
    let arg = arg.trim();
    match arg.split_once('!') {
        None => Ok(Address {
            host: Host::Any,
            port: port(arg)?,
        }),
        Some((host, service)) => Ok(Address {
            host: names.host(host)?,
            port: port(service)?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_plan9_forms() {
        let names = Names {
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
        };
        let d = resolve("tcp!10.0.2.2!5640", &names).unwrap();
        assert_eq!(d.proto, Proto::Tcp);
        assert_eq!(d.address.to_string(), "10.0.2.2!5640");
        assert_eq!(
            resolve("net!gateway!9fs", &names).unwrap().address.port,
            564
        );
        assert_eq!(
            resolve("tcp!*!564", &names).unwrap().address.host,
            Host::Any
        );
        assert_eq!(
            resolve("udp!localhost!echo", &names).unwrap().proto,
            Proto::Udp
        );
    }

    #[test]
    fn refuses_nonsense_with_a_reason() {
        let names = Names::default();
        for (bad, why) in [
            ("tcp", "bad dial string"),
            ("a!b!c!d", "bad dial string"),
            ("ipx!1.2.3.4!5", "unknown network"),
            ("tcp!example.org!80", "unknown host"),
            ("tcp!1.2.3.4!nosuch", "unknown service"),
            ("tcp!1.2.3.4!70000", "unknown service"),
            ("tcp!gateway!80", "no gateway"),
        ] {
            let e = resolve(bad, &names).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(connect_args("*!80", &names).is_err());
        assert!(connect_args("1.2.3.4", &names).is_err());
    }

    #[test]
    fn announce_and_connect_arguments() {
        let names = Names::default();
        assert_eq!(announce_args("564", &names).unwrap().to_string(), "*!564");
        assert_eq!(announce_args("*!9fs", &names).unwrap().port, 564);
        let (a, local) = connect_args("10.0.2.2!80!4000", &names).unwrap();
        assert_eq!((a.to_string().as_str(), local), ("10.0.2.2!80", Some(4000)));
    }
}
