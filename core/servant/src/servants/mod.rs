//! The servants that need no hardware: #R #c #e #| #s #p, and the
//! console's line discipline, which `/dev/cons` in core is built on.

pub mod cons;
pub mod env;
pub mod line;
pub mod pipe;
pub mod proc;
pub mod root;
pub mod srv;
