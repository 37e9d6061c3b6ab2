//! Subcommand implementations (argument structs + `run`), one module each.

pub mod batch;
pub mod bench;
pub mod common;
pub mod diff;
pub mod dip;
pub mod eval;
pub mod info;
pub mod prepare;
pub mod sheet;
pub mod summary;
pub mod usrnet;
