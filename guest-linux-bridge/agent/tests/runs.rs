//! Linux programs run through `Exec`, with real programs on the host.
//!
//! Each test sends the frames cell 0 would send to `dispatch::Services`
//! and reads back what the agent writes: `ExecStarted`, the output as it
//! comes, and `Exited` after the last of it.

mod common;

use std::path::PathBuf;

use bridge_agent::dispatch::Services;
use bridge_protocol::{Frame, Message};
use common::{outbox, Got, Inbox};

fn services() -> (Services, Inbox) {
    let (outbox, inbox) = outbox();
    let program = PathBuf::from(env!("CARGO_BIN_EXE_kasane-agent"));
    (Services::new(&std::env::temp_dir(), program, outbox), inbox)
}

fn send(services: &mut Services, run: u32, message: Message<'_>) {
    services
        .handle(&Frame {
            request_id: run,
            message,
        })
        .unwrap();
}

fn exec(services: &mut Services, run: u32, path: &str, arguments: &[u8]) {
    send(
        services,
        run,
        Message::Exec {
            path,
            arguments,
            environment: b"PATH=/usr/bin:/bin\0GREETING=hi there\0",
            directory: "/",
        },
    );
}

/// Everything run `run` sent until `Exited`: stdout, stderr, the status.
fn collect(inbox: &mut Inbox, run: u32) -> (Vec<u8>, Vec<u8>, (i32, u8)) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (mut stdout_ended, mut stderr_ended) = (false, false);
    loop {
        let (id, got) = inbox.next();
        assert_eq!(id, run, "{got:?}");
        match got {
            Got::Started(pid) => assert!(pid > 0),
            Got::Stdout(data) if data.is_empty() => stdout_ended = true,
            Got::Stderr(data) if data.is_empty() => stderr_ended = true,
            Got::Stdout(data) => stdout.extend(data),
            Got::Stderr(data) => stderr.extend(data),
            Got::Exited(code, signal) => {
                assert!(stdout_ended && stderr_ended, "Exited after the output");
                return (stdout, stderr, (code, signal));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_shell_computes_42() {
    let (mut services, mut inbox) = services();
    exec(
        &mut services,
        1,
        "/bin/sh",
        b"sh\0-c\0echo $((6*7)) $GREETING\0",
    );
    let (stdout, stderr, status) = collect(&mut inbox, 1);
    assert_eq!(stdout, b"42 hi there\n");
    assert!(stderr.is_empty());
    assert_eq!(status, (0, 0));
    assert!(services.runs().is_empty());
}

#[test]
fn cat_is_fed_from_stdin() {
    let (mut services, mut inbox) = services();
    exec(&mut services, 2, "/bin/cat", b"cat\0");
    let (_, got) = inbox.next();
    assert!(matches!(got, Got::Started(_)), "{got:?}");
    send(&mut services, 2, Message::Stdin { data: b"from " });
    send(&mut services, 2, Message::Stdin { data: b"kasane\n" });
    // Output streams before input ends.
    let (_, got) = inbox.next();
    let Got::Stdout(mut all) = got else {
        panic!("{got:?}")
    };
    assert!(all.starts_with(b"from"), "{all:?}");
    send(&mut services, 2, Message::Stdin { data: b"" });
    let (stdout, _, status) = collect(&mut inbox, 2);
    all.extend(stdout);
    assert_eq!(all, b"from kasane\n");
    assert_eq!(status, (0, 0));
}

#[test]
fn a_failing_command_reports_its_status_and_stderr() {
    let (mut services, mut inbox) = services();
    exec(
        &mut services,
        3,
        "/bin/sh",
        b"sh\0-c\0echo oops >&2; exit 3\0",
    );
    let (stdout, stderr, status) = collect(&mut inbox, 3);
    assert!(stdout.is_empty());
    assert_eq!(stderr, b"oops\n");
    assert_eq!(status, (3, 0));
}

#[test]
fn kill_ends_a_run_with_its_signal() {
    let (mut services, mut inbox) = services();
    exec(&mut services, 4, "/bin/sleep", b"sleep\x00100\x00");
    let (_, got) = inbox.next();
    assert!(matches!(got, Got::Started(_)), "{got:?}");
    send(&mut services, 4, Message::Kill { signal: 15 });
    let mut saw_done = false;
    let status = loop {
        match inbox.next() {
            (4, Got::Done) => saw_done = true,
            (4, Got::Exited(code, signal)) => break (code, signal),
            (4, _) => {}
            other => panic!("{other:?}"),
        }
    };
    assert!(saw_done);
    assert_eq!(status, (-1, 15));
}

#[test]
fn bad_requests_get_clear_errors() {
    let (mut services, mut inbox) = services();
    exec(&mut services, 5, "/no/such/program", b"x\0");
    let (id, got) = inbox.next();
    assert_eq!(id, 5);
    assert!(
        matches!(got, Got::Error(5, ref text) if text.contains("/no/such/program")),
        "{got:?}"
    );
    send(&mut services, 6, Message::Stdin { data: b"x" });
    assert!(matches!(inbox.next(), (6, Got::Error(3, ref text)) if text.contains("no run 6")));
    send(&mut services, 7, Message::Kill { signal: 9 });
    assert!(matches!(inbox.next(), (7, Got::Error(3, _))));
    exec(&mut services, 0, "/bin/true", b"true\0");
    assert!(matches!(inbox.next(), (0, Got::Error(3, _))));
    // A reply type sent to the agent is refused, not served.
    send(&mut services, 8, Message::Done);
    assert!(matches!(inbox.next(), (8, Got::Error(4, _))));
    // The agent carries on.
    exec(&mut services, 9, "/bin/sh", b"sh\0-c\0echo ok\0");
    let (stdout, _, status) = collect(&mut inbox, 9);
    assert_eq!((stdout.as_slice(), status), (&b"ok\n"[..], (0, 0)));
}

#[test]
fn ninep_frames_reach_the_file_server() {
    let (mut services, mut inbox) = services();
    let version = ninep::Frame::new(
        0xFFFF,
        ninep::Message::Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    )
    .to_bytes()
    .unwrap();
    send(
        &mut services,
        11,
        Message::Ninep {
            data: &version[..3],
        },
    );
    send(
        &mut services,
        11,
        Message::Ninep {
            data: &version[3..],
        },
    );
    let (id, got) = inbox.next();
    assert_eq!(id, 11);
    let Got::Ninep(bytes) = got else {
        panic!("{got:?}")
    };
    let reply = ninep::Frame::decode(&bytes, 8192).unwrap();
    assert!(matches!(reply.message, ninep::Message::Rversion { .. }));
    send(&mut services, 11, Message::NinepHangup);
    assert_eq!(inbox.next(), (11, Got::Done));
    send(
        &mut services,
        12,
        Message::Ninep {
            data: &[1, 0, 0, 0, 100, 0, 0],
        },
    );
    assert!(matches!(inbox.next(), (12, Got::Error(3, _))));
}
