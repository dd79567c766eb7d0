//! `steward-gate`: the reversibility gate. Every mutation passes here; the engine has no other
//! path to the executor.
//!
//! - Benign (per the classifier) → journaled and executed, unsigned.
//! - Destructive without a signed op → `pending_signature`: journaled with a ready-to-sign
//!   payload template; never executed.
//! - Destructive with a signed op → authz's locked pipeline (namespace → allow-list → crypto →
//!   payload → target → time → nonce lookup), then role scoping, then op-to-action binding, then
//!   the nonce is consumed durably in the same journal step that moves the op to `intent`; only
//!   then does the executor run.
//!
//! - Under an m-of-n policy ([`ApprovalPolicy`]) the op runs only once enough distinct keys
//!   approved the same bytes; until then a held op keeps its approvals in the journal.
//!
//! Every decision is audited twice: a `tracing` event (target `audit`) and a journal audit
//! entry. Audit is a signal, never the guard: a failing sink changes no decision. The journal
//! writes that must precede execution (intent, nonce) are the guard: if they fail, the op is
//! refused. It must never execute a destructive action whose nonce is not durably consumed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod approval;
mod audit;
mod decision;
mod executor;
mod gate;
mod lookup;
pub mod rotation;
pub(crate) mod signed;
mod template;

pub use approval::{ApprovalPolicy, PolicyError, SigVerdict};
pub use decision::{Decision, GateReason, Outcome, Presented};
pub use executor::{Authority, Executor, Guard, Whereabouts};
pub use gate::{Gate, GateConfig, Submission};
/// The op-to-action binding (in the classifier's crate, so the offline verifier applies it too).
pub use steward_classifier::binding::{self, ObservedConfig};
// What the gate would make of an action, for a dry run that must not submit it.
pub use steward_classifier::{classify, is_data_bearing_key, is_new_volume, Context, Verdict};
pub use steward_model::{Failure, FailureKind};
pub use template::pending_template;
