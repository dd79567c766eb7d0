//! `steward-providers`: where the desired state comes from, behind one seam, [`Provider`]. The
//! file provider (here) reads a document on the node, JSON or TOML (by extension), re-read when
//! its modification time or size changes; the hub provider (`steward-hub`) polls a hub over
//! HTTPS and also brings signed jobs. A document with any error is refused whole, reported
//! with where (file or URL, line, guest, field), and the last good document stays in force:
//! bad input never replaces good state.
//!
//! It must never hand the engine a document it did not fully validate. A provider is untrusted
//! by design: nothing it delivers can cause destruction without an operator's signature, which
//! the gate checks, not the provider.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod file;
mod provider;

pub use file::{read_regular_file, FileProvider, MAX_DOCUMENT_BYTES};
pub use provider::{Job, JobResult, Provider, Report, Update};
