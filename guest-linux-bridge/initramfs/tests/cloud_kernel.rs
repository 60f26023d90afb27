//! Resolving the virtio modules of the real cloud kernel, when it is cached.
//!
//! `guest-linux-bridge/fetch-kernel cloud` caches the kernel under
//! `build/linux/cloud`; without it these tests say so and pass, since
//! fetching needs the package mirror.

use std::path::PathBuf;

use bridge_initramfs::modules::{modules_dep, ModuleTree};

fn cloud_modules() -> Option<PathBuf> {
    let kernel = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build/linux/cloud");
    let release = std::fs::read_to_string(kernel.join("release")).ok()?;
    let tree = kernel.join("lib/modules").join(release.trim());
    if tree.is_dir() {
        Some(tree)
    } else {
        eprintln!("skipped: no cached cloud kernel at {}", kernel.display());
        None
    }
}

#[test]
fn virtio_console_needs_the_platform_chain_in_order() {
    let Some(root) = cloud_modules() else { return };
    let tree = ModuleTree::scan(&root).expect("scan");
    let modules = tree
        .resolve(&["virtio_pci", "virtio_console"])
        .expect("resolve");
    let names: Vec<&str> = modules.iter().map(|module| module.name.as_str()).collect();
    let position = |name: &str| {
        names
            .iter()
            .position(|&each| each == name)
            .unwrap_or_else(|| panic!("{name} missing from {names:?}"))
    };
    // PLATFORM.md, "Module load order".
    assert!(position("virtio_ring") < position("virtio"));
    assert!(position("virtio") < position("virtio_pci"));
    assert!(position("virtio_pci_modern_dev") < position("virtio_pci"));
    assert!(position("virtio_pci_legacy_dev") < position("virtio_pci"));
    assert!(position("virtio_pci") < position("virtio_console"));
    assert_eq!(names.len(), 6);
    for module in &modules {
        assert_eq!(&module.object[..4], b"\x7fELF", "{}", module.name);
        assert!(module.relative_path.ends_with(".ko"));
    }
    let dependencies = modules_dep(&modules);
    assert!(dependencies.contains(
        "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko \
         kernel/drivers/virtio/virtio_ring.ko\n"
    ));
}

#[test]
fn a_missing_module_is_a_clear_error() {
    let Some(root) = cloud_modules() else { return };
    let tree = ModuleTree::scan(&root).expect("scan");
    let error = tree.resolve(&["no_such_module"]).unwrap_err().to_string();
    assert!(error.contains("no_such_module"), "{error}");
    assert!(error.contains("neither under"), "{error}");
}
