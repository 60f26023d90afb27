//! The servants that need no hardware: #R #c #e #| #s #p.

pub mod cons;
pub mod env;
pub mod pipe;
pub mod proc;
pub mod root;
pub mod srv;
