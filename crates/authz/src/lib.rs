//! `steward-authz`: verify-only checking of Steward signed ops.
//!
//! An operator signs an op payload with stock OpenSSH (`ssh-keygen -Y sign -n op@steward`); this
//! crate decides whether that signature, over those exact bytes, authorizes the op on this host
//! now. It runs the locked pipeline (namespace → allow-list → crypto → payload → target → time →
//! nonce) and returns a [`VerifiedOp`] or a [`Rejection`] with a stable [`Reason`] code.
//!
//! What it must never do: sign anything, open files or sockets, spawn tasks, or consume a
//! nonce on its own. Callers hand it bytes and the current time; the durable nonce store and
//! the gate live elsewhere. All cryptography is the `ssh-key` crate's (pinned `=0.7.0-rc.11`,
//! `sha1` feature off); this crate adds the policy checks that crate leaves to its caller.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod approver;
mod nonce;
mod op;
mod pipeline;
mod reason;
mod role;
pub mod sig;
mod signers;

pub use approver::same_approver;
pub use nonce::{Consumed, MemoryNonceStore, NonceStore, NonceStoreError};
pub use op::{Nonce, OpPayload, MAX_PAYLOAD_BYTES};
pub use pipeline::{
    fmt_time, ConfigError, VerifiedOp, Verifier, VerifyConfig, DEFAULT_MAX_TTL_SECS,
    DEFAULT_SKEW_SECS, MAX_SKEW_SECS, MAX_TTL_LIMIT_SECS,
};
pub use reason::{escape_controls, Reason, Rejection};
pub use role::{Role, OP_NAMESPACE, RECOVERY_NAMESPACE};
pub use signers::{Admission, LineOptions, LoadError, TrustEntry, TrustStore};

/// The crate README's code, compiled as a doctest so that the embedding story stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
