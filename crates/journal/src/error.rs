//! Journal errors: each names what failed and, for opening, the path. Must never carry a secret
//! (the journal holds none) and never be swallowed into a reset.

use crate::record::{OpId, OpState};
use std::fmt;
use std::path::PathBuf;

/// What went wrong.
#[derive(Debug)]
pub enum JournalError {
    /// The journal at `path` could not be opened or created.
    Open {
        /// Where.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The journal was written by a newer schema.
    SchemaTooNew {
        /// Where.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// The store failed (I/O, sled).
    Storage(String),
    /// A stored record does not decode: corruption, never silently skipped.
    Corrupt(String),
    /// No op with this id.
    UnknownOp(OpId),
    /// The lifecycle does not allow this step.
    IllegalTransition {
        /// The op.
        op: OpId,
        /// Its current state.
        from: String,
        /// The refused target.
        to: String,
    },
    /// A destructive op may reach `intent` only by consuming its signed op's nonce.
    NeedsNonce(OpId),
    /// Approvals are collected only for a held (`pending_signature`) op; this one is in the
    /// named state.
    NotHeld(OpId, &'static str),
    /// Nonces are never pruned with a clock earlier than the last prune's: the clock went back
    /// (or the last prune ran ahead), and pruning now could forget nonces still in force.
    ClockBehind {
        /// The last prune's time (Unix seconds).
        last: i64,
        /// The time this prune was asked to use.
        now: i64,
    },
}

impl JournalError {
    pub(crate) fn illegal(op: OpId, from: &OpState, to: &OpState) -> JournalError {
        JournalError::IllegalTransition {
            op,
            from: from.name().to_string(),
            to: to.name().to_string(),
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Open { path, reason } => {
                write!(f, "journal {}: cannot open: {reason}", path.display())
            }
            JournalError::SchemaTooNew {
                path,
                found,
                supported,
            } => write!(
                f,
                "journal {}: schema version {found} is newer than this build reads ({supported}); refusing to touch it",
                path.display()
            ),
            JournalError::Storage(e) => write!(f, "journal storage: {e}"),
            JournalError::Corrupt(e) => write!(f, "journal corrupt: {e}"),
            JournalError::UnknownOp(id) => write!(f, "no op {id} in the journal"),
            JournalError::IllegalTransition { op, from, to } => {
                write!(f, "op {op}: illegal transition {from} -> {to}")
            }
            JournalError::NeedsNonce(id) => write!(
                f,
                "op {id} is destructive: it reaches intent only by consuming its signed op's nonce"
            ),
            JournalError::NotHeld(id, state) => write!(
                f,
                "op {id} is {state}, not held: no approval can be added to it"
            ),
            JournalError::ClockBehind { last, now } => write!(
                f,
                "refusing to prune nonces at {now}: the last prune ran at {last}, later than now"
            ),
        }
    }
}

impl std::error::Error for JournalError {}

impl From<sled::Error> for JournalError {
    fn from(e: sled::Error) -> Self {
        JournalError::Storage(e.to_string())
    }
}

impl From<std::io::Error> for JournalError {
    fn from(e: std::io::Error) -> Self {
        JournalError::Storage(e.to_string())
    }
}
