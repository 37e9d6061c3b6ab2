//! Subcommand implementations (argument structs + `run`), one module each.

pub mod info;
