//! Building the Linux guest's initramfs: a cpio writer and a module picker.
//!
//! `cpio` writes the "newc" archive format the kernel unpacks at boot;
//! `modules` finds kernel modules and their dependencies in an unpacked
//! Debian kernel package and writes the matching `modules.dep` subset.
#![forbid(unsafe_code)]

pub mod cpio;
pub mod modules;
