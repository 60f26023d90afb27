//! Finding the virtio console port that leads to the peer.
//!
//! A virtio-serial port with a name shows up as
//! `/sys/class/virtio-ports/vportNpM/name`, and devtmpfs makes the device
//! `/dev/vportNpM`. The kernel command line may choose another name with
//! `kasane.link=NAME`. If no named port exists, `/dev/hvc0` (a virtio
//! console configured as a console device) is the fallback.

use std::fs;
use std::path::{Path, PathBuf};

/// The port name the agent looks for unless the command line says otherwise.
pub const DEFAULT_PORT_NAME: &str = "kasane.link";

/// The console device used when no named port appears.
pub const FALLBACK_DEVICE: &str = "/dev/hvc0";

/// The port name chosen by `kasane.link=NAME` in `command_line`, if any.
pub fn port_name_from_command_line(command_line: &str) -> Option<&str> {
    command_line
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("kasane.link="))
        .rfind(|name| !name.is_empty())
}

/// The device of the port named `name`, looked up under `sys_class`
/// (normally `/sys/class/virtio-ports`), placed under `dev`.
///
/// The name comes from the device's VIRTIO_CONSOLE_PORT_NAME control
/// message (virtio 1.2, 5.3.6.2 "Multiport Device Operation").
pub fn find_named_port(sys_class: &Path, dev: &Path, name: &str) -> Option<PathBuf> {
    let mut ports: Vec<_> = fs::read_dir(sys_class)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .collect();
    ports.sort();
    ports.into_iter().find_map(|port| {
        let found = fs::read_to_string(sys_class.join(&port).join("name")).ok()?;
        (found.trim_end_matches('\n') == name).then(|| dev.join(&port))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_may_rename_the_port() {
        assert_eq!(port_name_from_command_line("console=ttyS0 quiet"), None);
        assert_eq!(
            port_name_from_command_line("quiet kasane.link=other.port panic=-1"),
            Some("other.port")
        );
        assert_eq!(
            port_name_from_command_line("kasane.link= kasane.link=b"),
            Some("b")
        );
    }

    #[test]
    fn the_named_port_is_found_among_others() {
        let root = std::env::temp_dir().join(format!("kasane-link-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (port, name) in [
            ("vport0p0", None),
            ("vport0p1", Some("org.other\n")),
            ("vport0p2", Some("kasane.link\n")),
        ] {
            let directory = root.join(port);
            fs::create_dir_all(&directory).unwrap();
            if let Some(name) = name {
                fs::write(directory.join("name"), name).unwrap();
            }
        }
        let dev = Path::new("/dev");
        assert_eq!(
            find_named_port(&root, dev, DEFAULT_PORT_NAME),
            Some(PathBuf::from("/dev/vport0p2"))
        );
        assert_eq!(find_named_port(&root, dev, "missing"), None);
        assert_eq!(find_named_port(&root.join("absent"), dev, "x"), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
