//! The network server (`netfs`, Plan 9's /net over smoltcp) in its own
//! VM, mounted on /net by core (`images/manifests/core-net.toml`, session
//! `images/scripts/net`).
//!
//! The VM runs the stack on the loopback device (no NIC is assigned yet;
//! docs/net.md). The session lists the tree, reads the interface's status,
//! dials a closed port (refused by the stack, as a TCP RST), asks cs for
//! an unknown service and an unknown host, writes nonsense to the
//! interface's ctl. Then two processes talk TCP through /net: `listen1`
//! runs `cat` as an echo server and `dial` sends a line, which comes back;
//! while the server's and the dialler's reads wait in the VM (several
//! requests on the one link), other commands on /net answer; killing the
//! dialler flushes its read and ends the call, and every conversation is
//! freed. Last it crashes the VM through its /proc ctl while a `listen`
//! waits in it: hvm restarts that VM alone, core recovers the mount, the
//! listen fails once with "connection reset: network restarted", /net
//! answers again, a new call through it works, and the ramfs task kept
//! its file. In bare mode (QEMU) the same session passes against the
//! server placed as a task, whose link multiplexes too.

use kasane_run::{Boot, Emulator};
use kasane_tests::Line::{self, Is, StartsWith};
use kasane_tests::{assert_clean, assert_lines_in_order, assert_no_line_contains};

const STATUS: &str =
    "device loopback mtu 65535 addr 127.0.0.1 255.0.0.0 gateway none mac none config static";

/// The session's lines up to the crash injection, the same in both
/// placements.
fn session() -> Vec<Line<'static>> {
    vec![
        Is("-- net"),
        Is("cs"),
        Is("tcp"),
        Is("udp"),
        Is("ipifc"),
        Is(STATUS),
        Is("-- dial"),
        Is("dial: tcp!127.0.0.1!7777: connection refused"),
        Is("refused as it should"),
        Is("dial: tcp!127.0.0.1!nosuch: cs: unknown service 'nosuch'"),
        Is("unknown service as it should"),
        Is("dial: tcp!example.org!80: cs: unknown host 'example.org' (no name service; use an address)"),
        Is("unknown host as it should"),
        Is("-- ctl"),
        Is("echo: write error: unknown ipifc request 'reboot' (add ADDR MASK [GATEWAY], remove, gateway ADDR, dhcp)"),
        Is("refused ctl as it should"),
        Is("-- talk"),
    ]
}

/// The talk, the same in a VM and in a task (both links multiplex): the
/// line comes back, /net answers while two reads wait (conversations 100
/// announced, 101 dialled, 102 accepted: the server's first start numbers
/// from 100), and once the dialler is killed and the echo server ends,
/// all three are free.
fn talk() -> Vec<Line<'static>> {
    vec![
        Is("ping"),
        Is("-- meanwhile"),
        Is(STATUS),
        Is("clone"),
        Is("100"),
        Is("101"),
        Is("102"),
        Is("-- talked"),
        Is("clone"),
        Is("-- crash"),
        Is("core: server net: injecting crash"),
    ]
}

/// After the crash: the server restarted, /net answering again.
fn after_crash() -> [Line<'static>; 6] {
    [
        Is("core: server net restarted (restart 1 of 3)"),
        Is(STATUS),
        Is("clone"),
        Is("-- after"),
        Is("-- done"),
        Is("core: init exited: ''"),
    ]
}

/// The listen that waited when the server crashed ended with the reset,
/// and a call after the restart went through: its line came back.
fn reset_then_talk_again(boot: &Boot) {
    assert_lines_in_order(
        boot,
        &[
            Is("-- crash"),
            Is("listen1: listen: connection reset: network restarted"),
            Is("-- after"),
            Is("ping"),
            Is("-- done"),
        ],
    );
}

/// Both sides of the failure: the ramfs task answered while the server
/// crashed (its line may come before or after the server's, which runs
/// apart), a listen that waited in the server failed once, and the server
/// alone was restarted, not the task, not cell 0.
fn check_rest(boot: &Boot) {
    let crash: Vec<&str> = boot
        .transcript
        .lines()
        .map(str::trim_end)
        .skip_while(|l| *l != "-- crash")
        .take_while(|l| *l != "-- done")
        .collect();
    assert!(crash.contains(&"kept"), "{crash:#?}");
    // The listen that waited in the server when it crashed failed once,
    // and did not hold up the session (its `wait` ended).
    assert!(
        crash.iter().any(|l| l.starts_with("listen1: listen: ")),
        "{crash:#?}"
    );
    assert_no_line_contains(boot, "server ramfs restarted");
    assert_no_line_contains(boot, "cell 0 (cell0) failed");
    assert_no_line_contains(boot, "PANIC");
    assert_clean(boot);
}

#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_net_vm_serves_net_and_recovers_from_a_crash() {
    let boot = kasane_tests::boot_manifest("core-net", Emulator::Bochs, 600);
    let mut lines = vec![
        Is("net| net: /net on the loopback device, 127.0.0.1/8"),
        Is("core: server net: vm, /srv/net, /proc/9002"),
    ];
    lines.extend(session());
    lines.extend(talk());
    lines.extend([
        Is("net| runtime-vm: performing `crash`"),
        StartsWith("hvm: cell 1 (net) failed: fault reported by the cell itself"),
    ]);
    lines.extend(after_crash());
    assert_lines_in_order(&boot, &lines);
    reset_then_talk_again(&boot);
    // The reads that waited held up nobody, and cut no link.
    let talk: Vec<&str> = boot
        .transcript
        .lines()
        .skip_while(|l| l.trim_end() != "-- talk")
        .take_while(|l| l.trim_end() != "-- crash")
        .collect();
    assert!(
        !talk
            .iter()
            .any(|l| l.contains("hung up") || l.contains("dial:")),
        "{talk:#?}"
    );
    check_rest(&boot);
}

/// Bare mode (QEMU's TCG, no VT-x): the server runs as a task, and the
/// same session passes: its link multiplexes as the VM's does, so the
/// reads and the listen wait in the task while /net answers, and the
/// task's runtime performs the crash.
#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_bare_mode_serves_net_from_a_task() {
    let boot = kasane_tests::boot_manifest("core-net", Emulator::Qemu, 300);
    let mut lines = vec![
        Is("core: server net: placed in a vm, runs as a task (bare mode: no server VM link)"),
        Is("net: /net on the loopback device, 127.0.0.1/8"),
        Is("core: server net: task, /srv/net, /proc/9002"),
    ];
    lines.extend(session());
    lines.extend(talk());
    lines.push(Is("runtime-task: performing crash"));
    lines.extend(after_crash());
    assert_lines_in_order(&boot, &lines);
    reset_then_talk_again(&boot);
    check_rest(&boot);
}

/// Bare mode (QEMU's TCG): the network server is a task, on the PCI
/// NE2000 core finds on the bus and grants it (QEMU's `ne2k_pci` on
/// slirp): it gets its address by DHCP and `hget` fetches a page from the
/// host. Then a failure on the task's multiplexing link: the task is made
/// to hang while a `listen` waits in it; core's probe finds it takes no
/// requests, the task alone is restarted, the listen fails once with the
/// reset, and rc, `/net` and `hget` carry on.
#[test]
#[ignore = "boots QEMU; run/test runs it"]
fn qemu_bare_net_task_drives_the_ne2000_and_recovers_from_a_hang() {
    const PAGE: &str = "a page from the host, fetched through the network task";
    let (port, heard) = serve_pages(PAGE);
    let page = format!("hget http://10.0.2.2:{port}/page.txt");
    let missing = format!("hget http://10.0.2.2:{port}/missing");
    let lines = [
        "sleep 4",
        "cat /net/ipifc/0/status",
        &page,
        &missing,
        "listen1 'tcp!*!7000' cat &",
        "sleep 1",
        "echo hang > /proc/9001/ctl",
        // Core probes a waiting link once per answer limit (3 s); the
        // restarted task asks DHCP again.
        "sleep 10",
        "cat /net/ipifc/0/status",
        &page,
        "echo still here",
    ];
    let boot = kasane_tests::boot_typing("core-net-nic", &lines, Emulator::Qemu, 300);
    let refused =
        format!("hget: http://10.0.2.2:{port}/missing: the server says 'HTTP/1.0 404 Not Found'");
    let status = "device ne2k mtu 1514 addr 10.0.2.15 255.255.255.0 gateway 10.0.2.2 mac 52-54-00-12-34-56 config dhcp";
    assert_lines_in_order(
        &boot,
        &[
            Is("core: server net: placed in a vm, runs as a task (bare mode: no server VM link)"),
            StartsWith("core: server net: device ne2k at port 0x"),
            StartsWith("net: /net on the NE2000 at port 0x"),
            Is("core: server net: task, /srv/net, /proc/9001"),
            Is(status),
            Is(PAGE),
            Is(&refused),
            Is("core: server net: injecting hang"),
            Is("runtime-task: performing hang"),
            StartsWith("core: #M: link hung up: net: net: takes no probe (hung)"),
            StartsWith("net: /net on the NE2000 at port 0x"),
            Is("core: server net restarted (restart 1 of 3)"),
            Is("listen1: listen: connection reset: network restarted"),
            Is(status),
            Is(PAGE),
            Is("still here"),
        ],
    );
    assert_eq!(
        heard.try_iter().count(),
        3,
        "the host's server saw three calls"
    );
    assert_no_line_contains(&boot, "PANIC");
    assert_clean(&boot);
}

/// A web server on the host's loopback for one test: it answers
/// `GET /page.txt` with `page` and anything else with 404, and sends each
/// request line it got down the channel. Its port, for the guest.
fn serve_pages(page: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    let (tell, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 512];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            let line = text.lines().next().unwrap_or("").to_string();
            let answer = if line == "GET /page.txt HTTP/1.0" {
                format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{page}\n")
            } else {
                String::from("HTTP/1.0 404 Not Found\r\n\r\n")
            };
            let _ = stream.write_all(answer.as_bytes());
            if tell.send(text).is_err() {
                break;
            }
        }
    });
    (port, heard)
}

/// The NIC (`images/manifests/core-net-nic.toml`): hvm finds the PCI
/// NE2000's I/O BAR and opens it to the network VM alone, the VM drives
/// the card and gets its address from Bochs's slirp by DHCP, and `hget`
/// fetches a page from a web server on the host (slirp's 10.0.2.2 is the
/// host's loopback), and says why it gets none for a missing one.
#[test]
#[ignore = "boots Bochs; run/test runs it"]
fn bochs_net_vm_drives_the_ne2000_and_fetches_a_page_from_the_host() {
    const PAGE: &str = "a page from the host, fetched through the NE2000";
    let (port, heard) = serve_pages(PAGE);
    let page = format!("hget http://10.0.2.2:{port}/page.txt");
    let missing = format!("hget http://10.0.2.2:{port}/missing");
    // slirp answers DHCP within a second or two of the card starting.
    let lines = ["sleep 4", "cat /net/ipifc/0/status", &page, &missing];
    let boot = kasane_tests::boot_typing("core-net-nic", &lines, Emulator::Bochs, 600);
    let refused =
        format!("hget: http://10.0.2.2:{port}/missing: the server says 'HTTP/1.0 404 Not Found'");
    assert_lines_in_order(
        &boot,
        &[
            StartsWith("hvm: cell net: device ne2k at port 0x"),
            StartsWith("net| net: /net on the NE2000 at port 0x"),
            Is("core: server net: vm, /srv/net, /proc/9001"),
            Is("device ne2k mtu 1514 addr 10.0.2.15 255.255.255.0 gateway 10.0.2.2 mac 52-54-00-12-34-56 config dhcp"),
            Is(PAGE),
            Is(&refused),
        ],
    );
    let requests: Vec<String> = heard.try_iter().collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(
        requests[0].starts_with("GET /page.txt HTTP/1.0\r\nHost: 10.0.2.2:"),
        "{requests:#?}"
    );
    assert_no_line_contains(&boot, "PANIC");
    assert_clean(&boot);
}
