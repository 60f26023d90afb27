//! Core's servants: the one file-server interface, the Chan table, devices.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
