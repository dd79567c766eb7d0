//! The records the journal keeps. Serialized as JSON inside sled: readable in an emergency, and
//! strict on the way back in (a record that does not decode is corruption, not a skip).
//! A record's serialized form must never change without a schema version (golden files pin it).

use serde::{Deserialize, Serialize};
use std::fmt;
use steward_authz::Role;
use steward_model::{Action, Failure, GuestKind, Vmid};

/// A stable op id (sled's monotonic id generator; never reused, across restarts too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op-{}", self.0)
    }
}

/// A journaled transaction: ops the agent runs as one unit (a create and its compensation).
/// Only the journal mints one (`Journal::new_txn`, through `Gate::begin_txn`): a caller cannot
/// name a transaction it did not open, so it cannot borrow another's compensation exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TxnId(pub(crate) u64);

impl TxnId {
    /// The number, for logs and the classifier's context.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The classifier's verdict, as recorded when the op was planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Runs unsigned.
    Benign,
    /// Needs a verified signed op.
    Destructive,
}

/// Who signed, for a signed op (fingerprints and names only; no key material).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// Principal from the trust store or certificate.
    pub principal: String,
    /// `SHA256:…` of the signing key.
    pub key_fingerprint: String,
    /// The role the admitting trust-store line conferred.
    pub role: Role,
}

/// One operator's approval of a held destructive op (m-of-n): a signature that passed the whole
/// pipeline, its role and the binding, over the payload bytes whose SHA-256 is `payload`, while
/// the threshold was not yet met. It names the key, not the signature: the signature itself is
/// not needed again and nothing that authenticates is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who signed (the key counts once, whatever certificate carried it).
    #[serde(flatten)]
    pub signer: Signer,
    /// `SHA256:…` of the trust-store line's key that admitted the signer (its own key, or its
    /// certificate authority's): an approval counts later only while that line still admits it.
    pub admitted_by: String,
    /// For an approval made through a certificate: the certificate's `valid_before` (Unix
    /// seconds), past which the approval no longer counts; absent for a plain key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_valid_before: Option<i64>,
    /// Lower-case hex SHA-256 of the exact payload bytes signed: approvals count together only
    /// over the same bytes.
    pub payload: String,
    /// The signed payload's `not_after` (Unix seconds): past it (and the skew), the approval is
    /// stale with the op's window.
    pub not_after: i64,
    /// When it was recorded (Unix ms).
    pub at_ms: i64,
    /// The armored signature itself, kept so that the audit entry of the step that runs the op
    /// proves this approval offline (a spent signature authorizes nothing new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Where an op is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OpState {
    /// Recorded, not yet decided.
    Planned,
    /// Held by the gate until an operator signs; never executed in this state.
    PendingSignature {
        /// The ready-to-sign payload template.
        template: serde_json::Value,
    },
    /// Refused by the gate.
    Refused {
        /// The gate's stable reason (stored as its code: `binding_mismatch`, `expired`, …).
        code: crate::GateReason,
        /// Detail for a human.
        detail: String,
    },
    /// About to call Proxmox: durable before the call.
    Intent,
    /// Proxmox accepted it and returned a task.
    Dispatched {
        /// The task's UPID.
        upid: String,
    },
    /// Done.
    Succeeded,
    /// Proxmox said no, or the task failed.
    Failed {
        /// Why, typed, so that status and recovery can tell a lock from a refusal.
        failure: Failure,
    },
    /// Cut off by a migration: the call or its task failed because the guest left this node
    /// (or was leaving it). The guest's new node manages it from there.
    Moved {
        /// The node that held the guest when the failure was looked at; absent while the
        /// migration still ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// The failure the move caused.
        failure: Failure,
    },
    /// Given up without knowing it ran (crash recovery, fail-safe).
    Abandoned {
        /// Why.
        reason: String,
    },
}

impl OpState {
    /// The state's name (`planned`, `intent`, …).
    pub fn name(&self) -> &'static str {
        match self {
            OpState::Planned => "planned",
            OpState::PendingSignature { .. } => "pending_signature",
            OpState::Refused { .. } => "refused",
            OpState::Intent => "intent",
            OpState::Dispatched { .. } => "dispatched",
            OpState::Succeeded => "succeeded",
            OpState::Failed { .. } => "failed",
            OpState::Moved { .. } => "moved",
            OpState::Abandoned { .. } => "abandoned",
        }
    }

    /// Intent or dispatched: a side effect may be under way.
    pub fn is_in_flight(&self) -> bool {
        matches!(self, OpState::Intent | OpState::Dispatched { .. })
    }

    /// Nothing follows.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            OpState::Succeeded
                | OpState::Failed { .. }
                | OpState::Moved { .. }
                | OpState::Abandoned { .. }
                | OpState::Refused { .. }
        )
    }
}

/// One step of an op's history, with its time (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When.
    pub at_ms: i64,
    /// Into which state.
    #[serde(flatten)]
    pub state: OpState,
}

/// What the engine records when it plans an op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOp {
    /// The action.
    pub action: Action,
    /// Benign or destructive, per the classifier.
    pub class: Class,
    /// The journaled transaction this op belongs to, if any.
    pub txn: Option<TxnId>,
    /// The agent creates this guest as its own scratch space (agent-internal provenance).
    pub scratch: bool,
    /// The identity of the guest the op was made for (`steward_model::guest_identity`), as the
    /// engine observed it; a signature for a destructive op binds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// An op and everything that happened to it. History is append-only: no earlier state or its
/// time is ever lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Id.
    pub id: OpId,
    /// The guest.
    pub guest: Vmid,
    /// What it does.
    pub action: Action,
    /// Benign or destructive.
    pub class: Class,
    /// Its transaction.
    pub txn: Option<TxnId>,
    /// Agent scratch creation.
    pub scratch: bool,
    /// The identity of the guest the op was made for (see [`NewOp::identity`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The signed op's nonce, once consumed.
    pub nonce: Option<String>,
    /// Who signed (the signer whose presentation met the threshold).
    pub signer: Option<Signer>,
    /// For a destructive op under an m-of-n policy: the approvals collected while it was held,
    /// and, once it ran, every approval that counted. Empty for ops that never had one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// For an op whose task ended `WARNINGS: n` (Proxmox counts it a success): the warning
    /// lines of the task's log. Absent when there were none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Every state it has been in, oldest first; never empty.
    pub history: Vec<Transition>,
}

impl OpRecord {
    /// The current state.
    pub fn state(&self) -> &OpState {
        // `history` is never empty: records are created with their first transition.
        &self.history[self.history.len() - 1].state
    }
}

/// A fact the agent itself established about a guest (never taken from a hub). It names the
/// guest, not the number: its kind and identity (`steward_model::guest_identity`) as created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceFact {
    /// The op that created the guest.
    pub created_by: OpId,
    /// The kind created.
    pub kind: GuestKind,
    /// The identity it was created with; None: it has none, and the fact proves nothing.
    pub identity: Option<String>,
    /// Its transaction, if it ran in one.
    pub txn: Option<TxnId>,
    /// Created as agent scratch.
    pub scratch: bool,
    /// When the creation succeeded (Unix ms).
    pub at_ms: i64,
}
