//! The audit chain: every gate decision and every transition, appended in sequence, each entry
//! carrying the SHA-256 of the previous one, so that a removed or altered entry is detected.
//! Appends happen inside the same sled transaction as the change they describe. Must never be
//! the guard of a decision (it is a signal), and never hold secrets.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One audit entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev: String,
    /// What happened.
    pub event: serde_json::Value,
    /// Hex SHA-256 of this entry's other fields.
    pub hash: String,
}

/// The genesis `prev`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at_ms: i64,
    prev: &'a str,
    event: &'a serde_json::Value,
}

impl AuditEntry {
    /// Builds entry `seq` after `prev`, computing its hash.
    pub fn new(seq: u64, at_ms: i64, prev: &str, event: serde_json::Value) -> AuditEntry {
        let hash = hash_of(seq, at_ms, prev, &event);
        AuditEntry {
            seq,
            at_ms,
            prev: prev.to_string(),
            event,
            hash,
        }
    }

    /// Whether the stored hash matches the content.
    pub fn hash_ok(&self) -> bool {
        hash_of(self.seq, self.at_ms, &self.prev, &self.event) == self.hash
    }
}

fn hash_of(seq: u64, at_ms: i64, prev: &str, event: &serde_json::Value) -> String {
    // serde_json without `preserve_order` writes object keys sorted: a canonical form.
    let bytes = serde_json::to_vec(&Hashed {
        seq,
        at_ms,
        prev,
        event,
    })
    .unwrap_or_default();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(&bytes) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

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
