//! Links ktest with its own script when building for bare metal.
//!
//! The kernel loads the root task as a static, non-PIE ELF at its link
//! addresses (`microkernel_abi::boot`), so the script fixes the image at
//! 0x40_0000 and page-aligns every section: each page then has exactly the
//! rights of one ELF segment. On the host nothing is linked specially.
fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=-znoexecstack");
        println!("cargo:rustc-link-arg-bins=-znorelro");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
    println!("cargo:rerun-if-changed=linker.ld");
}
