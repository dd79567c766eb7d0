//! The audit chain: every gate decision and every transition, appended in sequence, each entry
//! carrying the SHA-256 of the previous one, so that a removed or altered entry is detected.
//! Appends happen inside the same sled transaction as the change they describe. Must never be
//! the guard of a decision (it is a signal), and never hold secrets.

pub use steward_audit::{AuditEntry, GENESIS};

/// What `verify_audit_chain` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// Problems (empty when the chain is intact).
    pub problems: Vec<String>,
}

impl AuditReport {
    /// No problems.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}
