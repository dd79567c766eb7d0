//! A gate decision as the local API and the hub report show it (JSON). It must never carry
//! more than the decision says: no payload, no signature.

use serde::{Deserialize, Serialize};
use steward_gate::{Decision, Outcome, Presented, SigVerdict};

/// A gate decision as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionView {
    /// `executed`, `pending_signature`, `refused:<code>`, `replay`, `rotated`.
    pub decision: String,
    /// The journal op, when there is one.
    pub op: Option<u64>,
    /// For `executed`: whether a signature authorized it.
    pub signed: Option<bool>,
    /// For `executed`: `succeeded`, or the failure.
    pub outcome: Option<String>,
    /// For refusals: why. For `partly_approved`: how many of how many, and who.
    pub detail: Option<String>,
    /// What became of each signature presented, in order (none for an unsigned decision).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureView>,
}

/// One presented signature's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureView {
    /// `counted`, `already_counted` (its key was counted already), or `refused:<code>`.
    pub verdict: String,
    /// The signer's principal, for a signature that passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The signing key's `SHA256:…` fingerprint, for a signature that passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl From<&SigVerdict> for SignatureView {
    fn from(v: &SigVerdict) -> Self {
        let (principal, key, detail) = match v {
            SigVerdict::Counted(s) | SigVerdict::AlreadyCounted(s) => (
                Some(s.principal.clone()),
                Some(s.key_fingerprint.clone()),
                None,
            ),
            SigVerdict::Refused { detail, .. } => (None, None, Some(detail.clone())),
        };
        SignatureView {
            verdict: v.label(),
            principal,
            key,
            detail,
        }
    }
}

impl From<&Presented> for DecisionView {
    fn from(p: &Presented) -> Self {
        let mut v = DecisionView::from(&p.decision);
        v.signatures = p.signatures.iter().map(SignatureView::from).collect();
        v
    }
}

impl From<&Decision> for DecisionView {
    fn from(d: &Decision) -> Self {
        let mut v = DecisionView {
            decision: d.label(),
            op: None,
            signed: None,
            outcome: None,
            detail: None,
            signatures: Vec::new(),
        };
        match d {
            Decision::Executed {
                op,
                outcome,
                signed,
            } => {
                v.op = Some(op.0);
                v.signed = Some(*signed);
                v.outcome = Some(match outcome {
                    Outcome::Succeeded => "succeeded".into(),
                    Outcome::Failed(f) => f.to_string(),
                });
            }
            Decision::PendingSignature { op, .. } => v.op = Some(op.0),
            Decision::PartlyApproved {
                op,
                needs,
                approvals,
            } => {
                v.op = Some(op.0);
                v.detail = Some(format!(
                    "needs {needs} signatures, has {}: {}",
                    approvals.len(),
                    steward_gate::approval::names(approvals)
                ));
            }
            Decision::Refused { op, detail, .. } => {
                v.op = op.map(|o| o.0);
                v.detail = Some(detail.clone());
            }
            Decision::Replay { first } => {
                v.op = first.as_ref().map(|f| f.id.0);
                v.detail = first
                    .as_ref()
                    .map(|f| format!("first presentation: op {} is {}", f.id, f.state().name()));
            }
            Decision::Rotated { entries } => v.detail = Some(format!("{entries} entries")),
        }
        v
    }
}
