//! Why an action that reached the node did not succeed, in the few shapes a retry policy must
//! tell apart. The executor produces it, the gate carries it, the journal stores it in the op's
//! terminal record (so `status` and crash recovery can tell a lock from a refusal), and the
//! engine's policy matches on it. It is part of the journal's on-disk schema: never rename a
//! variant or a field; add, and teach the golden tests.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of failure, with the one fact each kind's handling needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest is locked (`VM is locked (backup)`): wait and look again; never force.
    Locked {
        /// The lock's name (`backup`, `create`, `migrate`, `destroyed`, …).
        lock: String,
    },
    /// The config changed since it was read (stale `digest`): re-read and re-plan.
    DigestMoved,
    /// Worth retrying with backoff: 5xx, connection reset, node unreachable, timeout.
    Transient {
        /// A short name of the cause (`status 503`, `transport`, `timeout`, `node unreachable`).
        cause: String,
    },
    /// The token lacks a privilege (403) or was refused (401): an administrator must act.
    Denied,
    /// The guest is not there (gone, or moved to another node).
    NotFound,
    /// The Proxmox task ran and ended with an exit status other than success.
    TaskFailed {
        /// The task's exit status as Proxmox reports it.
        exitstatus: String,
    },
    /// Anything else (a 400, an answer of an unexpected shape, …).
    Other,
}

/// A failure: its kind and the full text for a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind.
    #[serde(flatten)]
    pub kind: FailureKind,
    /// What Proxmox (or the transport) said.
    pub detail: String,
}

impl Failure {
    /// A failure of `kind` with `detail`.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    /// The stable snake_case name of the kind (`locked`, `digest_moved`, …), for metrics.
    pub fn code(&self) -> &'static str {
        match self.kind {
            FailureKind::Locked { .. } => "locked",
            FailureKind::DigestMoved => "digest_moved",
            FailureKind::Transient { .. } => "transient",
            FailureKind::Denied => "denied",
            FailureKind::NotFound => "not_found",
            FailureKind::TaskFailed { .. } => "task_failed",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_serializes_flat_with_its_kind_and_round_trips() {
        let f = Failure::new(
            FailureKind::Locked {
                lock: "backup".into(),
            },
            "VM is locked (backup)",
        );
        let j = serde_json::to_string(&f).unwrap();
        assert_eq!(
            j,
            r#"{"kind":"locked","lock":"backup","detail":"VM is locked (backup)"}"#
        );
        assert_eq!(serde_json::from_str::<Failure>(&j).unwrap(), f);
        assert_eq!(f.to_string(), "locked: VM is locked (backup)");
    }
}
