//! `steward-audit`: the agent's audit chain as anyone outside the node sees it. The entry format
//! (`entry.rs`: sequence, time, link to the previous entry, event, SHA-256), the proof kept for
//! every op that ran on the signed path and every key rotation (`proof.rs`: the exact signed
//! bytes, every signature that counted, the trust store in force), and the offline check of an
//! export (`check.rs`): the chain links from its anchor, every kept signature passes authz's
//! pipeline again against the trust store in force at the time (rebuilt from the allowed_signers
//! file the auditor trusts and the rotations in the chain), and every destructive execution is
//! bound to what was signed.
//!
//! It must never trust anything the export says about itself without checking it, never need a
//! network, a database or an async runtime (the export is the interface), and never count an
//! execution as proven on the agent's word alone.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod check;
mod entry;
mod proof;

pub use check::{check, Head, Report, Row};
pub use entry::{AuditEntry, GENESIS};
pub use proof::{Proof, LOADED_EVENT, ROTATION_EVENT};
