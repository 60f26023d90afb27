//! kasane-ramfs: the host build of Kasane's ramfs, serving 9P2000 over std.
//!
//! Listens on TCP or a Unix socket, one thread per connection, all sharing
//! one tree behind a lock. Logs one line per connection to stderr and exits
//! cleanly (status 0, socket file removed) on SIGINT or SIGTERM.

mod address;
mod connection;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use address::ListenAddress;
use connection::{serve, SharedTree, SystemClock};
use ramfs::{Limits, RamFs};

const USAGE: &str = "\
usage: kasane-ramfs --listen ADDR [options]

Serves an empty RAM file tree over 9P2000 (Plan 9's protocol; mount it from
Linux with `mount -t 9p -o trans=tcp,port=P,version=9p2000 HOST /mnt`).

ADDR is one of:
  tcp!HOST!PORT   e.g. tcp!127.0.0.1!5640 (port 0 picks a free port)
  HOST:PORT       e.g. 127.0.0.1:5640 or [::1]:5640
  unix!PATH       a Unix socket, e.g. unix!/tmp/ramfs.sock
  PATH            a Unix socket path (anything holding a '/')

options:
  --listen ADDR          where to listen (required)
  --msize BYTES          largest message to negotiate (default 262144)
  --owner NAME           owner of the root directory (default nobody, the
                         uname Linux attaches with)
  --group NAME           group of the root directory (default: the owner)
  --max-file-size BYTES  largest file (default 268435456)
  --max-total BYTES      most file data in the tree (default 1073741824)
  -h, --help             this text
  -V, --version          the version

Stops cleanly on SIGINT or SIGTERM.";

#[derive(Debug)]
struct Options {
    listen: ListenAddress,
    msize: u32,
    owner: String,
    group: Option<String>,
    limits: Limits,
}

enum Parsed {
    Run(Options),
    Help,
    Version,
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse::<T>()
        .map_err(|_| format!("{flag} needs a whole number of bytes, not '{value}'"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut listen = None;
    let mut msize = 262_144u32;
    let mut owner = String::from("nobody");
    let mut group = None;
    let mut limits = Limits::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--listen" => listen = Some(address::parse(&value("--listen")?)?),
            "--msize" => {
                msize = number("--msize", &value("--msize")?)?;
                if msize < ninep_server::MIN_MSIZE {
                    return Err(format!(
                        "--msize {msize} is below the minimum of {}",
                        ninep_server::MIN_MSIZE
                    ));
                }
            }
            "--owner" => owner = value("--owner")?,
            "--group" => group = Some(value("--group")?),
            "--max-file-size" => limits.max_file_size = number(&flag, &value(&flag)?)?,
            "--max-total" => limits.max_total_bytes = number(&flag, &value(&flag)?)?,
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    let listen = listen.ok_or("--listen ADDR is required (see --help)")?;
    Ok(Parsed::Run(Options {
        listen,
        msize,
        owner,
        group,
        limits,
    }))
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

fn bind(address: &ListenAddress) -> Result<(Listener, String), String> {
    match address {
        ListenAddress::Tcp { host, port } => {
            let listener = TcpListener::bind((host.as_str(), *port))
                .map_err(|e| format!("cannot listen on {address}: {e}"))?;
            let local = listener
                .local_addr()
                .map_err(|e| format!("cannot read the address of {address}: {e}"))?;
            let name = format!("tcp!{}!{}", local.ip(), local.port());
            Ok((Listener::Tcp(listener), name))
        }
        ListenAddress::Unix(path) => {
            let listener = UnixListener::bind(path).map_err(|e| {
                let hint = if e.kind() == ErrorKind::AddrInUse {
                    " (remove the stale socket file if no server uses it)"
                } else {
                    ""
                };
                format!("cannot listen on {address}: {e}{hint}")
            })?;
            Ok((Listener::Unix(listener, path.clone()), address.to_string()))
        }
    }
}

fn spawn_connection<S>(mut stream: S, peer: String, tree: Arc<SharedTree>, msize: u32)
where
    S: std::io::Read + std::io::Write + Send + 'static,
{
    let started = Instant::now();
    let name = format!("9p {peer}");
    let spawned = thread::Builder::new().name(name).spawn(move || {
        let outcome = serve(&mut stream, &tree, msize);
        let how = match outcome.error {
            None => String::from("closed by peer"),
            Some(e) => format!("dropped: {e}"),
        };
        eprintln!(
            "kasane-ramfs: connection {peer}: {} messages in {:.1} s, {how}",
            outcome.messages,
            started.elapsed().as_secs_f64()
        );
    });
    if let Err(e) = spawned {
        eprintln!("kasane-ramfs: cannot start a thread for a connection: {e}");
    }
}

fn run(options: Options) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install a handler for signal {signal}: {e}"))?;
    }
    let group = options.group.as_deref().unwrap_or(&options.owner);
    let tree = RamFs::new(SystemClock, &options.owner, group, 0o775).with_limits(options.limits);
    let tree: Arc<SharedTree> = Arc::new(Mutex::new(tree));
    let (listener, name) = bind(&options.listen)?;
    let nonblocking = match &listener {
        Listener::Tcp(l) => l.set_nonblocking(true),
        Listener::Unix(l, _) => l.set_nonblocking(true),
    };
    nonblocking.map_err(|e| format!("cannot poll the listener: {e}"))?;
    eprintln!(
        "kasane-ramfs: listening on {name} (msize {})",
        options.msize
    );

    // The listener polls so that a signal is noticed within a few ms.
    while !stop.load(Ordering::Relaxed) {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().map(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_nonblocking(false);
                spawn_connection(stream, format!("tcp!{peer}"), tree.clone(), options.msize);
            }),
            Listener::Unix(l, path) => l.accept().map(|(stream, _)| {
                let _ = stream.set_nonblocking(false);
                let peer = format!("unix!{}", path.display());
                spawn_connection(stream, peer, tree.clone(), options.msize);
            }),
        };
        match accepted {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => eprintln!("kasane-ramfs: accept failed: {e}"),
        }
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    eprintln!("kasane-ramfs: stopping on signal");
    Ok(())
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Version) => {
            println!("kasane-ramfs {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(options)) => match run(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kasane-ramfs: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("kasane-ramfs: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Parsed, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags() {
        let Ok(Parsed::Run(o)) = args(&["--listen", "tcp!127.0.0.1!0", "--msize=8192"]) else {
            panic!("should parse");
        };
        assert_eq!(o.msize, 8192);
        assert_eq!(o.owner, "nobody");
        assert!(matches!(args(&["--help"]), Ok(Parsed::Help)));
    }

    #[test]
    fn bad_arguments_are_explained() {
        assert!(args(&[])
            .err()
            .unwrap()
            .contains("--listen ADDR is required"));
        assert!(args(&["--bogus"])
            .err()
            .unwrap()
            .contains("unknown argument"));
        assert!(args(&["--listen"]).err().unwrap().contains("needs a value"));
        let msize = args(&["--listen", "a:1", "--msize", "12"]).err().unwrap();
        assert!(msize.contains("below the minimum"));
        let size = args(&["--listen", "a:1", "--max-total", "lots"])
            .err()
            .unwrap();
        assert!(size.contains("whole number"));
    }
}
