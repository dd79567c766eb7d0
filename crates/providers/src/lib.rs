//! `steward-providers`: where the desired state comes from. Today: a file on the node, JSON or
//! TOML (by extension), re-read when its modification time or size changes. A document with
//! any error is refused whole, reported with file and line (and guest and field), and the last
//! good document stays in force: bad input never replaces good state. The hub provider (HTTPS
//! polling with ETags, signed jobs) comes with its protocol.
//!
//! It must never hand the engine a document it did not fully validate, and never read anything
//! but the file it was given.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod file;

pub use file::{FileProvider, Update};
