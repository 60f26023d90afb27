//! Host-testable logic of the Kasane microkernel.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
