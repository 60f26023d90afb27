//! exportfs over TCP, with Linux's v9fs as the client, and hostile callers.
//!
//! One Bochs session (`images/manifests/core-net-export.toml`): the
//! network VM drives the NE2000 on Bochs's slirp, which forwards three
//! ports of the host's loopback inward (564, 7001, 7999). At rc's prompt
//! Kasane writes `/tmp/from-kasane` and runs `listen1 'tcp!*!564'
//! exportfs -r /tmp` in the background: every TCP caller gets an exportfs
//! of its own serving Kasane's /tmp (a ramfs). Then rc waits in
//! `listen1 -1 'tcp!*!7001' cat` for the host to say it is done.
//!
//! Meanwhile a thread of this test, on the host:
//! - calls exportfs with its own 9P client (Tversion, Tattach) until it
//!   answers, reads Kasane's file, sends a truncated Twalk (answered with
//!   an error), and keeps that session open;
//! - sends two callers whose 9P framing is broken (a size below 7, a size
//!   of 2 GiB); exportfs hangs up on each;
//! - boots a stock Debian kernel in QEMU (TCG), whose v9fs client mounts
//!   the host's forwarded port (`tests/netexport/run-linux`: the guest
//!   reaches the host as 10.0.2.2) with `trans=tcp,version=9p2000` and
//!   reads Kasane's file, creates, writes, appends, renames, removes and
//!   copies 48 KiB, while the host's session is still open (two callers
//!   at once), and mounts a second time with the attach name `/d` (a
//!   third caller, served that directory) but not with `/..`;
//! - reads back through its own session what Linux wrote;
//! - floods a closed port (7999) with 100 calls, which slirp turns into
//!   SYNs the stack refuses;
//! - says "linux done" on 7001.
//!
//! rc then lists /tmp and prints Linux's files, writes nonsense to /net's
//! cs and ctl files (each refused with its reason), and `dial -b` sends 1
//! MiB to a sink this test runs on the host, which checks every byte: a
//! call after all the hostile input works, and its cycles are the figure
//! `bench tcp_send_1m_cycles`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kasane_run::{root, Emulator};
use kasane_tests::host9p::HostClient;
use kasane_tests::Line::{Is, Pattern, StartsWith};
use kasane_tests::{assert_clean, assert_no_line_contains, assert_output_in_order};
use ninep::Message;

/// What the Linux client leaves in Kasane's /tmp, and Kasane's own file.
const FROM_KASANE: &str = "written by kasane";
const FROM_LINUX: &str = "written by linux\nsecond line\n";

/// The bytes `dial -b` sends, and the pattern's period (core/programs
/// dial.rs): byte `i` is `i mod 251`.
const SENT: usize = 1 << 20;
const PERIOD: usize = 251;

/// A TCP port of the host's loopback free right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A 9P2000 client on one TCP connection, one request at a time.
/// Calls exportfs until it answers (the guest is still booting, or its
/// listener not yet up), then attaches: the host's own session.
fn first_session(port: u16, deadline: Instant) -> Result<HostClient, String> {
    loop {
        // A guest that is not listening yet may leave the call hanging
        // (slirp accepts on the host's side and closes when the guest
        // refuses): 20 s for the version, then 120 s an answer.
        if let Ok(mut client) = HostClient::connect(port, 8192, Duration::from_secs(20)) {
            client.set_patience(Duration::from_secs(120))?;
            client.attach(1, "eve", "")?;
            return Ok(client);
        }
        if Instant::now() > deadline {
            return Err("exportfs never answered on the forwarded port".into());
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Sends `client` a Twalk whose frame is whole but whose body stops after
/// the fid: a malformed message, not a broken stream.
fn truncated_walk(client: &mut HostClient) -> Result<Message, String> {
    let tag = client.next_tag();
    let mut frame = 11u32.to_le_bytes().to_vec();
    frame.push(ninep::MessageType::Twalk as u8);
    frame.extend_from_slice(&tag.to_le_bytes());
    frame.extend_from_slice(&1u32.to_le_bytes());
    client.exchange(&frame)
}

/// The text of file `name` in the attached root (fid 1).
fn read_text(client: &mut HostClient, name: &str) -> Result<String, String> {
    let bytes = client.read_file(1, name)?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// A caller whose first 7 bytes are a 9P header with an impossible size:
/// exportfs must hang up (end of stream) without answering.
fn broken_framing(port: u16, size: u32) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut frame = size.to_le_bytes().to_vec();
    frame.extend_from_slice(&[100, 0xFF, 0xFF]);
    stream.write_all(&frame).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) if answer.is_empty() => Ok(()),
        Ok(_) => Err(format!("size {size}: answered {answer:?}")),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(format!("size {size}: not hung up: {e}")),
    }
}

/// What the host's side did, for the test to check after the boot.
#[derive(Debug, Default)]
struct HostSide {
    /// Lines of the Linux client (`ok NAME`, `FAIL NAME: why`, the tally).
    linux: Vec<String>,
    /// Everything that went wrong on the host's side.
    failures: Vec<String>,
    /// Flood calls slirp accepted on the host's side.
    flood_calls: usize,
}

/// The host's side of the session (see the file's comment).
fn host_side(export: u16, done: u16, closed: u16) -> HostSide {
    let mut side = HostSide::default();
    let deadline = Instant::now() + Duration::from_secs(600);
    match first_session(export, deadline) {
        Ok(mut session) => {
            match read_text(&mut session, "from-kasane") {
                Ok(text) if text == format!("{FROM_KASANE}\n") => {}
                other => side
                    .failures
                    .push(format!("the host's session read from-kasane: {other:?}")),
            }
            // A malformed message in a good frame is answered with an
            // error, and the session goes on (it reads from-linux later).
            match truncated_walk(&mut session) {
                Ok(Message::Rerror { ename }) if ename.starts_with("bad 9P message") => {}
                other => side.failures.push(format!("a truncated Twalk: {other:?}")),
            }
            for size in [3, 0x8000_0000] {
                if let Err(e) = broken_framing(export, size) {
                    side.failures.push(e);
                }
            }
            let run = root().join("tests/netexport/run-linux");
            match std::process::Command::new(&run)
                .arg(export.to_string())
                .output()
            {
                Ok(out) => {
                    side.linux = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(String::from)
                        .collect();
                    if !out.status.success() {
                        side.failures.push(format!(
                            "run-linux: {}: {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
                Err(e) => side.failures.push(format!("{}: {e}", run.display())),
            }
            match read_text(&mut session, "from-linux") {
                Ok(text) if text == FROM_LINUX => {}
                other => side
                    .failures
                    .push(format!("the host's session read from-linux: {other:?}")),
            }
        }
        Err(e) => side.failures.push(e),
    }
    // slirp takes each call on the host's side, then hands it to the
    // guest as a SYN, which the stack refuses: no one listens on 7999.
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", closed)) {
            side.flood_calls += 1;
            drop(stream);
        }
    }
    // Release rc's `listen1 -1 'tcp!*!7001' cat`, whatever happened.
    let said = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", done))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.write_all(b"linux done\n")?;
        stream.shutdown(Shutdown::Write)?;
        let mut echo = String::new();
        stream.read_to_string(&mut echo)?;
        Ok(echo)
    })();
    match said {
        Ok(echo) if echo == "linux done\n" => {}
        other => side.failures.push(format!("the done call: {other:?}")),
    }
    side
}

/// A sink for `dial -b`: takes one call, reads to its end and checks each
/// byte against the pattern. Sends (bytes, first wrong offset).
fn sink() -> (u16, mpsc::Receiver<(usize, Option<usize>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    let (tell, heard) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(300)));
        let (mut total, mut wrong) = (0usize, None);
        let mut buffer = vec![0u8; 65536];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            for (i, byte) in buffer[..n].iter().enumerate() {
                if wrong.is_none() && usize::from(*byte) != (total + i) % PERIOD {
                    wrong = Some(total + i);
                }
            }
            total += n;
        }
        let _ = tell.send((total, wrong));
    });
    (port, heard)
}

#[test]
#[ignore = "boots Bochs and QEMU; run/test runs it"]
fn bochs_exportfs_over_tcp_serves_linux_v9fs_and_survives_hostile_input() {
    let (export, done, closed) = (free_port(), free_port(), free_port());
    let (sink_port, sunk) = sink();
    let host = std::thread::spawn(move || host_side(export, done, closed));
    let bench = format!("dial -b {SENT} 'tcp!10.0.2.2!{sink_port}'");
    let write = format!("echo {FROM_KASANE} > /tmp/from-kasane");
    let lines = [
        // slirp answers DHCP within a second or two of the card starting.
        "sleep 4",
        "cat /net/ipifc/0/status",
        &write,
        "listen1 'tcp!*!564' exportfs -r /tmp &",
        "listen1 -1 'tcp!*!7001' cat",
        "echo '-- kasane sees'",
        "ls /tmp",
        "cat /tmp/from-linux",
        "cat /tmp/d/after",
        "wc -c /tmp/big",
        "echo '-- nonsense'",
        "echo frobnicate > /net/tcp/clone",
        "echo connect 10.0.2.2 > /net/tcp/clone",
        "echo 'tcp!10.0.2.2!80!1!2' > /net/cs",
        "cat /tmp/big > /net/cs",
        "cat /tmp/big > /net/ipifc/0/ctl",
        "echo add 10.0.2.300 255.255.255.0 > /net/ipifc/0/ctl",
        "echo '-- bench'",
        &bench,
        "ls /net/tcp",
        "echo '-- done'",
    ];
    let forwards = [(export, 564), (done, 7001), (closed, 7999)];
    let boot = kasane_tests::boot_typing_forwarded(
        "core-net-export",
        &lines,
        &forwards,
        Emulator::Bochs,
        1200,
    );
    let side = host.join().expect("the host's side ran");
    eprintln!("host side: {side:#?}");
    assert!(side.failures.is_empty(), "{side:#?}\n{}", boot.transcript);
    for step in [
        "mount",
        "read_kasanes_file",
        "create",
        "append",
        "mkdir",
        "rename",
        "aname",
        "aname_above",
        "remove",
        "missing",
        "big_copy",
        "list",
        "umount",
    ] {
        let ok = format!("ok {step}");
        assert!(side.linux.contains(&ok), "{step}: {side:#?}");
    }
    // slirp took (nearly) every flood call on the host's side.
    assert!(side.flood_calls >= 50, "{side:#?}");
    // cat writes in pieces of 4 KB.
    let limit = "*control request too long (4096 bytes; at most 256)*";
    assert_output_in_order(
        &boot,
        &[
            StartsWith("net| net: /net on the NE2000 at port 0x"),
            StartsWith("device ne2k mtu 1514 addr 10.0.2.15 "),
            // The two callers whose framing broke were hung up on.
            Pattern("exportfs: broken 9P framing: *; hanging up"),
            Pattern("exportfs: broken 9P framing: *; hanging up"),
            Is("-- kasane sees"),
        ],
    );
    // exportfs said nothing else: every other caller ended cleanly.
    let exportfs: Vec<&str> = boot
        .transcript
        .lines()
        .filter(|l| l.starts_with("exportfs"))
        .collect();
    assert_eq!(exportfs.len(), 2, "{exportfs:#?}");
    let seen = kasane_tests::output_between(&boot, "-- kasane sees", "-- nonsense");
    for want in [
        "from-kasane",
        "from-linux",
        "d",
        "big",
        "written by linux",
        "second line",
        "renamed by linux",
    ] {
        assert!(seen.contains(&want), "{want}: {seen:#?}");
    }
    assert!(!seen.contains(&"gone"), "{seen:#?}");
    assert!(
        seen.iter().any(|l| Pattern("*49152 /tmp/big").matches(l)),
        "{seen:#?}"
    );
    assert_output_in_order(
        &boot,
        &[
            Is("-- nonsense"),
            Is("echo: write error: unknown control request 'frobnicate'"),
            StartsWith("echo: write error: bad address '10.0.2.2"),
            StartsWith("echo: write error: cs: bad dial string 'tcp!10.0.2.2!80!1!2"),
            Pattern(limit),
            Pattern(limit),
            Is("echo: write error: bad address '10.0.2.300'"),
            Is("-- bench"),
            StartsWith("dial: sent 1048576 bytes in "),
            Is("-- done"),
        ],
    );
    let (got, wrong) = sunk
        .recv_timeout(Duration::from_secs(60))
        .expect("the sink took a call");
    assert_eq!(
        (got, wrong),
        (SENT, None),
        "bytes the sink got, first wrong"
    );
    let cycles: u64 = boot
        .transcript
        .lines()
        .find_map(|l| l.strip_prefix("dial: sent 1048576 bytes in "))
        .and_then(|l| l.trim_end().strip_suffix(" cycles"))
        .and_then(|n| n.parse().ok())
        .expect("dial's figure");
    println!("bench tcp_send_1m_cycles {cycles} cycles");
    assert_no_line_contains(&boot, "PANIC");
    assert_no_line_contains(&boot, "restarted");
    assert_clean(&boot);
}
