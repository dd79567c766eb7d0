//! A gate decision as the local API and the hub report show it (JSON). It must never carry
//! more than the decision says: no payload, no signature.

use serde::{Deserialize, Serialize};
use steward_gate::{Decision, Outcome};

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
    /// For refusals: why.
    pub detail: Option<String>,
}

impl From<&Decision> for DecisionView {
    fn from(d: &Decision) -> Self {
        let mut v = DecisionView {
            decision: d.label(),
            op: None,
            signed: None,
            outcome: None,
            detail: None,
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
