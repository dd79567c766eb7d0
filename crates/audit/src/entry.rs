//! One audit entry, as the journal stores it and `steward-agent audit export` writes it (one
//! JSON object per line): `seq` from 1, `at_ms`, `prev` (the previous entry's hash), `event`,
//! and `hash`, the SHA-256 of the other four in serde_json's canonical form (object keys
//! sorted). Must never change how a hash is computed: every exported chain and every witnessed
//! head depends on it (golden files pin it).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One audit entry as stored and exported.
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
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_changed_field_breaks_the_hash() {
        let e = AuditEntry::new(3, 1_764_000_000_000, GENESIS, serde_json::json!({"a": 1}));
        assert!(e.hash_ok());
        for bad in [
            AuditEntry {
                seq: 4,
                ..e.clone()
            },
            AuditEntry {
                at_ms: 1,
                ..e.clone()
            },
            AuditEntry {
                prev: e.hash.clone(),
                ..e.clone()
            },
            AuditEntry {
                event: serde_json::json!({"a": 2}),
                ..e.clone()
            },
        ] {
            assert!(!bad.hash_ok(), "{bad:?}");
        }
    }
}
