//! What the gate decided, with stable reason codes (`GateReason`, a closed set the journal keeps
//! as such): authz's, plus `role_denied`,
//! `binding_mismatch`, `rotation_refused`, `threshold_not_met`, `superseded` and `journal` (a
//! write that must precede execution failed, so nothing ran).
//! A code must never change meaning once shipped: reports and logs are read by machines.

use steward_journal::{OpId, OpRecord, Signer};
use steward_model::Failure;

/// Why the gate refused: a closed set, kept as such in the journal (`steward_journal`).
pub use steward_journal::GateReason;

/// A gate decision and what became of each signature presented with it (in the order
/// presented; empty when none was).
#[derive(Clone, Debug, PartialEq)]
pub struct Presented {
    /// The decision.
    pub decision: Decision,
    /// Each signature's verdict.
    pub signatures: Vec<crate::approval::SigVerdict>,
}

impl Presented {
    /// A decision about no signature.
    pub fn unsigned(decision: Decision) -> Presented {
        Presented {
            decision,
            signatures: Vec::new(),
        }
    }
}

/// How an executed op ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Succeeded,
    /// Proxmox refused or the task failed, and how.
    Failed(Failure),
    /// Cut off by a migration: the call or its task failed because the guest left this node
    /// (a migration, an HA move) or was leaving it (`Whereabouts::moved`). Not a failure to
    /// count: the guest's new node manages it, and if the migration fails the next pass here
    /// plans the action again.
    Moved {
        /// The node that holds the guest now; `None` while the migration still runs.
        node: Option<String>,
        /// The failure the move caused.
        failure: Failure,
    },
}

/// The gate's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Ran (benign, or destructive with a verified, bound, fresh signed op).
    Executed {
        /// The journal op.
        op: OpId,
        /// Whether it worked.
        outcome: Outcome,
        /// Whether a signature authorized it.
        signed: bool,
    },
    /// Held: destructive and unsigned. Sign `template` to release it.
    PendingSignature {
        /// The journal op.
        op: OpId,
        /// The ready-to-sign op payload.
        template: serde_json::Value,
    },
    /// Held still: the signatures passed and their keys are recorded as approvals (durably,
    /// with the held op), but fewer distinct keys approved than the policy asks.
    PartlyApproved {
        /// The held op.
        op: OpId,
        /// Distinct keys its policy asks for.
        needs: u8,
        /// The keys counted so far, first seen first.
        approvals: Vec<Signer>,
    },
    /// Refused; nothing ran.
    Refused {
        /// The journal op recording the refusal, if one could be written.
        op: Option<OpId>,
        /// Why.
        reason: GateReason,
        /// Detail for a human.
        detail: String,
    },
    /// The nonce was consumed already; here is what the first presentation did.
    Replay {
        /// The first op, if the journal still has it.
        first: Option<Box<OpRecord>>,
    },
    /// A key rotation was applied.
    Rotated {
        /// Entries in the new trust store.
        entries: usize,
    },
}

impl Decision {
    /// A short stable name: `executed`, `pending_signature`, `partly_approved`,
    /// `refused:<code>`, `replay`, `rotated`.
    pub fn label(&self) -> String {
        match self {
            Decision::Executed { .. } => "executed".into(),
            Decision::PendingSignature { .. } => "pending_signature".into(),
            Decision::PartlyApproved { .. } => "partly_approved".into(),
            Decision::Refused { reason, .. } => format!("refused:{reason}"),
            Decision::Replay { .. } => "replay".into(),
            Decision::Rotated { .. } => "rotated".into(),
        }
    }
}
