//! `steward-journal`: the agent's memory, on sled. Everything the gate and the engine must still
//! know after a crash lives here: op records with their whole lifecycle, the in-flight index,
//! ops by nonce (idempotency), consumed nonces (the durable `NonceStore`), provenance facts the
//! agent established itself, and a hash-chained audit log.
//!
//! Every transition is written as one atomic sled batch together with its audit record and its
//! index entries, then made durable by [`barrier`] (sled's `flush` alone is not an fsync) before
//! the call returns. It must never reset, truncate or recreate a journal it cannot read, never
//! apply an illegal transition, and never store a secret: records hold actions, nonces,
//! fingerprints and Proxmox task ids, nothing that authenticates.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
pub mod barrier;
mod error;
mod export;
#[cfg(test)]
mod golden;
mod handle;
#[cfg(feature = "test-hooks")]
pub mod hooks;
mod journal;
pub mod lifecycle;
mod nonces;
mod record;
mod refusal;
mod retention;

pub use audit::{AuditEntry, AuditReport};
pub use barrier::BarrierHook;
pub use error::JournalError;
pub use handle::Journal;
pub use journal::{audit_key, SCHEMA_VERSION};
pub use record::{
    Approval, Class, NewOp, OpId, OpRecord, OpState, ProvenanceFact, Signer, Transition, TxnId,
};
pub use refusal::GateReason;
