//! Golden tests: each bad manifest and the exact error it must produce.
//!
//! `tests/bad/NAME.toml` is paired with `tests/bad/NAME.err`, which holds the
//! one-line error text. Good manifests in `images/manifests/` must compile.

use std::fs;
use std::path::Path;

use kasane_manifest::{BootManifest, Manifest};

#[test]
fn bad_manifests_give_their_exact_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("tests/bad exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("readable manifest");
        let expected = fs::read_to_string(path.with_extension("err"))
            .unwrap_or_else(|_| panic!("{} has no .err file", path.display()));
        let error =
            Manifest::compile(&text).expect_err(&format!("{} must be rejected", path.display()));
        assert_eq!(error.to_string(), expected.trim_end(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} golden cases found");
}

#[test]
fn shipped_manifests_compile_and_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("images/manifests exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("readable manifest");
        let boot = Manifest::compile(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(BootManifest::decode(&boot.encode()), Ok(boot));
        seen += 1;
    }
    assert!(seen >= 1);
}

/// A `vm` server becomes the server-vm cell of its name running
/// `PROGRAM-vm`; its task build, its image and the manifest module go to
/// cell 0 (bare mode runs it as a task); a boot form whose cell does not
/// match its server is refused at decode.
#[test]
fn a_vm_server_compiles_into_its_cell() {
    let text = "[system]\nname = \"t\"\n[[cell]]\nname = \"cell0\"\nkind = \"microkernel\"\nmemory_mib = 64\nmodules = [\"core\"]\n[[server]]\nname = \"ramfs\"\nprogram = \"ramfs\"\nplacement = \"vm\"\nmemory_mib = 8\nheartbeat_ms = 500\nimage = \"files\"\nmount = \"/n\"\nmount_flags = \"bc\"\n[[server]]\nname = \"scratch\"\nprogram = \"ramfs\"\n";
    let boot = Manifest::compile(text).unwrap();
    assert_eq!(
        boot.cells[0].modules,
        ["core", "ramfs-task", "files", "manifest"]
    );
    let cell = &boot.cells[1];
    assert_eq!(
        (
            cell.name.as_str(),
            cell.kind,
            cell.memory_mib,
            cell.image.as_str()
        ),
        ("ramfs", kasane_manifest::CellKind::ServerVm, 8, "ramfs-vm")
    );
    assert_eq!(
        (cell.modules.clone(), cell.heartbeat_ms),
        (vec!["files".to_string()], 500)
    );
    assert_eq!(boot.cells.len(), 2, "a task server has no cell");
    assert_eq!(boot.servers[1].placement, kasane_manifest::Placement::Task);
    assert_eq!(BootManifest::decode(&boot.encode()), Ok(boot.clone()));
    let mut tampered = boot.clone();
    tampered.cells[1].image = "other-vm".into();
    assert_eq!(
        BootManifest::decode(&tampered.encode()).unwrap_err().to_string(),
        "compiled manifest is invalid: server[0].placement: a vm server needs the server-vm cell `ramfs` running `ramfs-vm`"
    );
    let mut tampered = boot;
    tampered.cells[0].modules.retain(|m| m != "manifest");
    assert_eq!(
        BootManifest::decode(&tampered.encode()).unwrap_err().to_string(),
        "compiled manifest is invalid: cell[0].modules: a manifest with servers loads the module `manifest` into cell 0"
    );
}

/// `devices` go to the vm server's own cell (hvm reads them there), and
/// the device table says which ports each one covers.
#[test]
fn devices_reach_the_server_cell() {
    let text = "[system]\nname = \"t\"\n[[cell]]\nname = \"cell0\"\nkind = \"microkernel\"\nmemory_mib = 64\nmodules = [\"core\"]\n[[server]]\nname = \"fat\"\nprogram = \"fatfs\"\nplacement = \"vm\"\nmemory_mib = 16\ndevices = [\"ata1\"]\n";
    let boot = Manifest::compile(text).unwrap();
    assert_eq!(boot.cells[1].devices, ["ata1"]);
    assert!(boot.cells[0].devices.is_empty());
    assert_eq!(BootManifest::decode(&boot.encode()), Ok(boot.clone()));
    // A boot form that gives cell 0 the device is refused at decode.
    let mut tampered = boot;
    tampered.cells[0].devices = vec!["ata1".into()];
    let error = BootManifest::decode(&tampered.encode()).unwrap_err();
    assert!(error.to_string().contains("cell[0].devices"), "{error}");
    let ata1 = kasane_manifest::device("ata1").unwrap();
    assert!(ata1.covers(0x170, 1) && ata1.covers(0x170, 2) && ata1.covers(0x376, 1));
    assert!(!ata1.covers(0x177, 2) && !ata1.covers(0x1F0, 1) && !ata1.covers(0x377, 1));
    assert!(!ata1.covers(0x375, 2));
}

/// A task server's `devices` reach cell 0 (hvm opens their ports to it;
/// core grants them to the server's task alone), and a boot form whose
/// cell 0 lacks them, or holds others, is refused at decode.
#[test]
fn task_server_devices_reach_cell_0() {
    let text = "[system]\nname = \"t\"\n[[cell]]\nname = \"cell0\"\nkind = \"microkernel\"\nmemory_mib = 64\nmodules = [\"core\"]\n[[server]]\nname = \"fat\"\nprogram = \"fatfs\"\ndevices = [\"ata1\"]\n";
    let boot = Manifest::compile(text).unwrap();
    assert_eq!(boot.cells.len(), 1);
    assert_eq!(boot.cells[0].devices, ["ata1"]);
    assert_eq!(BootManifest::decode(&boot.encode()), Ok(boot.clone()));
    for devices in [vec![], vec!["ata1".to_string(), "ata1".to_string()]] {
        let mut tampered = boot.clone();
        tampered.cells[0].devices = devices;
        let error = BootManifest::decode(&tampered.encode()).unwrap_err();
        assert!(error.to_string().contains("cell[0].devices"), "{error}");
    }
}
