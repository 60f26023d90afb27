//! kasane-agent: the Linux guest's /init, serving the bridge link.
//!
//! Startup: mount devtmpfs, proc and sysfs; load the modules listed in the
//! initramfs's `modules.dep`, dependencies first; find the link port; print
//! `kasane-agent: ready release=<release>` on the console; send `Hello`;
//! then answer requests until the end of time.
//!
//! As PID 1 this process must never exit (the kernel would panic), so every
//! failure is logged on the console and retried, and even a Rust panic in
//! the service loop is caught and the loop started again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use bridge_agent::dispatch::Services;
use bridge_agent::export::{ExportHub, ExportLink};
use bridge_agent::fuse::Translator;
use bridge_agent::link::{self, DEFAULT_PORT_NAME, FALLBACK_DEVICE};
use bridge_agent::modules;
use bridge_agent::outbox::Outbox;
use bridge_agent::proxy::{self, PROXY_FLAG};
use bridge_agent::service::{self, Identity, Response};
use bridge_protocol::{DecodeError, Decoder, Frame, MAX_FRAME_LEN};
use rustix::mount::{mount, MountFlags};

/// How long to wait for the named port before the fallback is acceptable.
const NAMED_PORT_GRACE: Duration = Duration::from_secs(5);

/// How often to look for the port, and to retry after a failure.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

macro_rules! log {
    ($($argument:tt)*) => {
        eprintln!("kasane-agent: {}", format_args!($($argument)*))
    };
}

/// See `bridge_agent::heap`: musl's allocator is slow for small vectors.
#[global_allocator]
static HEAP: bridge_agent::heap::Heap = bridge_agent::heap::heap();

fn main() {
    // A system-call proxy (bridge_agent::proxy) is this binary too.
    if std::env::args().nth(1).as_deref() == Some(PROXY_FLAG) {
        if let Err(error) = proxy::serve_standard() {
            // A proxy's standard error is its reports pipe to the agent.
            if let Ok(mut console) = OpenOptions::new().write(true).open("/dev/console") {
                let _ = writeln!(console, "kasane-agent: syscall proxy: {error}");
            }
        }
        return;
    }
    let is_init = rustix::process::getpid().is_init();
    if is_init {
        mount_file_systems();
    }
    let identity = identity();
    if is_init {
        load_modules(&identity.release);
    }
    let (hub, export) = ExportHub::new();
    if is_init {
        std::thread::spawn(move || mount_kasane(export));
    }
    loop {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| serve(&identity, &hub)));
        match outcome {
            Ok(error) => log!("link failed: {error}; starting again"),
            Err(_) => log!("the service loop panicked; starting again"),
        }
        sleep(Duration::from_secs(1));
    }
}

fn mount_file_systems() {
    let mounts = [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
    ];
    for (source, target, kind) in mounts {
        if let Err(error) = fs::create_dir_all(target) {
            log!("cannot create {target}: {error}");
        }
        let flags = MountFlags::NOSUID | MountFlags::NOEXEC;
        match mount(source, target, kind, flags, None) {
            Ok(()) => {}
            // devtmpfs may be mounted already (CONFIG_DEVTMPFS_MOUNT).
            Err(rustix::io::Errno::BUSY) => {}
            Err(error) => log!("cannot mount {kind} on {target}: {error}"),
        }
    }
}

fn identity() -> Identity {
    let names = rustix::system::uname();
    Identity {
        release: names.release().to_string_lossy().into_owned(),
        machine: names.machine().to_string_lossy().into_owned(),
    }
}

/// Loads every module in `/lib/modules/<release>/modules.dep`, each after
/// what it depends on. Failures are logged; the agent carries on.
fn load_modules(release: &str) {
    let root = Path::new("/lib/modules").join(release);
    let text = match fs::read_to_string(root.join("modules.dep")) {
        Ok(text) => text,
        Err(error) => {
            log!("no modules.dep under {}: {error}", root.display());
            return;
        }
    };
    let (entries, mut problems) = modules::parse(&text);
    let (order, order_problems) = modules::load_order(&entries);
    problems.extend(order_problems);
    for problem in problems {
        log!("{problem}");
    }
    let mut loaded = Vec::new();
    for path in &order {
        let name = modules::name_of(path);
        match load_module(&root.join(path)) {
            Ok(()) => loaded.push(name),
            Err(error) => log!("cannot load module {name}: {error}"),
        }
    }
    log!("loaded {} modules: {}", loaded.len(), loaded.join(" "));
}

fn load_module(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    match rustix::system::finit_module(&file, c"", 0) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Waits for the link port and returns its device path.
fn find_link() -> PathBuf {
    let command_line = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let name = link::port_name_from_command_line(&command_line).unwrap_or(DEFAULT_PORT_NAME);
    let sys_class = Path::new("/sys/class/virtio-ports");
    let started = Instant::now();
    let mut said_waiting = false;
    loop {
        if let Some(device) = link::find_named_port(sys_class, Path::new("/dev"), name) {
            if device.exists() {
                return device;
            }
        }
        let fallback = Path::new(FALLBACK_DEVICE);
        if started.elapsed() >= NAMED_PORT_GRACE && fallback.exists() {
            log!("no port named {name}; using {FALLBACK_DEVICE}");
            return fallback.to_path_buf();
        }
        if !said_waiting && started.elapsed() >= NAMED_PORT_GRACE {
            log!("waiting for a virtio port named {name} (or {FALLBACK_DEVICE})");
            said_waiting = true;
        }
        sleep(RETRY_INTERVAL);
    }
}

fn open_link(device: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).open(device)?;
    // A console port is a tty: make it pass bytes through untouched.
    if rustix::termios::isatty(&file) {
        let mut settings = rustix::termios::tcgetattr(&file)?;
        settings.make_raw();
        rustix::termios::tcsetattr(&file, rustix::termios::OptionalActions::Now, &settings)?;
    }
    Ok(file)
}

fn send(link: &Outbox, frame: &Frame<'_>) -> io::Result<()> {
    link.send(frame)
}

fn uptime_milliseconds() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let milliseconds = u64::try_from(now.tv_nsec / 1_000_000).unwrap_or(0);
    seconds.saturating_mul(1000).saturating_add(milliseconds)
}

/// Where Kasane's exported namespace is mounted.
const KASANE_MOUNT: &str = "/kasane";

/// Mounts Kasane's namespace (its exportfs on `/dev/linux/export`) on
/// [`KASANE_MOUNT`] with FUSE and serves the kernel's requests for good.
/// Without `fuse.ko` or `/dev/fuse` there is no mount; the rest of the
/// agent carries on.
fn mount_kasane(export: ExportLink) {
    let device = match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(device) => device,
        Err(error) => {
            log!("no /dev/fuse ({error}): Kasane is not mounted");
            return;
        }
    };
    if let Err(error) = fs::create_dir_all(KASANE_MOUNT) {
        log!("cannot create {KASANE_MOUNT}: {error}");
        return;
    }
    // fuse(4)'s mount options: the descriptor, the root's file type, the
    // owner, and access for every user (the programs lx runs are root).
    let options = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other",
        std::os::fd::AsRawFd::as_raw_fd(&device)
    );
    let Ok(options) = std::ffi::CString::new(options) else {
        return;
    };
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    if let Err(error) = mount(
        "kasane",
        KASANE_MOUNT,
        "fuse",
        flags,
        Some(options.as_c_str()),
    ) {
        log!("cannot mount fuse on {KASANE_MOUNT}: {error}");
        return;
    }
    log!("mounted Kasane on {KASANE_MOUNT} (fuse)");
    let mut translator = Translator::new(export, "eve", "");
    // A request is at most a WRITE of max_write bytes and its headers.
    let mut request = vec![0u8; 64 * 1024 + 4096];
    let mut device = device;
    loop {
        let count = match device.read(&mut request) {
            Ok(count) => count,
            // ENOENT: the request was interrupted; EINTR: a signal.
            Err(error)
                if error.raw_os_error() == Some(libc::ENOENT)
                    || error.kind() == io::ErrorKind::Interrupted =>
            {
                continue
            }
            Err(error) => {
                log!("{KASANE_MOUNT}: /dev/fuse: {error}; the mount is gone");
                return;
            }
        };
        if let Some(reply) = translator.handle(&request[..count]) {
            // ENOENT here: the request was interrupted meanwhile.
            let _ = device.write_all(&reply);
        }
    }
}

/// Runs the link until an error; returns it for the caller to log.
fn serve(identity: &Identity, hub: &std::sync::Arc<ExportHub>) -> io::Error {
    let device = find_link();
    let mut reader = match open_link(&device) {
        Ok(link) => link,
        Err(error) => {
            return io::Error::new(error.kind(), format!("{}: {error}", device.display()))
        }
    };
    let link = match reader.try_clone().and_then(Outbox::on_descriptor) {
        Ok(outbox) => outbox,
        Err(error) => return error,
    };
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/init"));
    let mut services = Services::new(Path::new("/"), program, link.clone());
    hub.set_outbox(link.clone());
    services.set_export(hub.clone());
    // The service loop must never touch the FUSE mount: its answers come
    // through this same loop.
    services.hide(Path::new(KASANE_MOUNT));
    log!("ready release={}", identity.release);
    let mut decoder = Decoder::new();
    let mut input = vec![0u8; MAX_FRAME_LEN];
    loop {
        // Each connection of the peer starts with a Hello. On a virtio port
        // the write waits until the host side is open.
        if let Err(error) = send(&link, &identity.hello()) {
            return error;
        }
        decoder.reset();
        loop {
            let count = match reader.read(&mut input) {
                // The host side closed: wait for the next peer.
                Ok(0) => {
                    services.reset();
                    break;
                }
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return error,
            };
            let input = &input[..count];
            if let Err(error) = handle_input(&link, &mut services, &mut decoder, input, identity) {
                return error;
            }
        }
        sleep(RETRY_INTERVAL);
    }
}

fn handle_input(
    link: &Outbox,
    services: &mut Services,
    decoder: &mut Decoder,
    mut input: &[u8],
    identity: &Identity,
) -> io::Result<()> {
    loop {
        let (taken, event) = decoder.feed(input);
        input = &input[taken..];
        match event {
            None => return Ok(()),
            Some(Ok(frame)) => match service::respond(identity, uptime_milliseconds(), &frame) {
                Response::Reply(reply) => send(link, &reply)?,
                Response::ReplyThenCrash(reply) => crash(link, &reply)?,
                Response::Ignore(why) => log!("ignored {why} (request {})", frame.request_id),
                Response::Serve => services.handle(&frame)?,
            },
            Some(Err(error)) => {
                log_decode_error(&error);
                send(link, &service::error_reply(&error))?;
            }
        }
    }
}

fn log_decode_error(error: &DecodeError) {
    log!("rejected input: {error:?}");
}

/// Acknowledges a crash request and panics the kernel through sysrq 'c'.
fn crash(link: &Outbox, accepted: &Frame<'_>) -> io::Result<()> {
    let mut trigger = match OpenOptions::new().write(true).open("/proc/sysrq-trigger") {
        Ok(trigger) => trigger,
        Err(error) => {
            log!("cannot open /proc/sysrq-trigger: {error}");
            let detail = "cannot open /proc/sysrq-trigger";
            return send(link, &service::crash_failed(accepted.request_id, detail));
        }
    };
    send(link, accepted)?;
    log!("crashing the kernel on request {}", accepted.request_id);
    // Give the acknowledgement a moment to leave the guest.
    sleep(RETRY_INTERVAL);
    if let Err(error) = trigger.write_all(b"c") {
        log!("sysrq crash failed: {error}");
        let detail = "writing 'c' to /proc/sysrq-trigger failed";
        return send(link, &service::crash_failed(accepted.request_id, detail));
    }
    Ok(())
}
