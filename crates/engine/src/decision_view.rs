//! A gate decision turned into its view (`steward_view::DecisionView`), as the local API and
//! the hub report show it. It must never carry
//! more than the decision says: no payload, no signature.

use steward_gate::{Decision, Outcome, Presented, SigVerdict};
use steward_view::{DecisionView, SignatureView};

/// A gate answer as the local API and the hub report show it (`steward_view`).
pub trait ToView {
    /// The view of this answer.
    fn view(&self) -> DecisionView;
}

fn signature_view(v: &SigVerdict) -> SignatureView {
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

impl ToView for Presented {
    fn view(&self) -> DecisionView {
        let mut v = self.decision.view();
        v.signatures = self.signatures.iter().map(signature_view).collect();
        v
    }
}

impl ToView for Decision {
    fn view(&self) -> DecisionView {
        let d = self;
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
                    Outcome::Moved {
                        node: Some(node),
                        failure,
                    } => format!("moved to {node} ({failure})"),
                    Outcome::Moved {
                        node: None,
                        failure,
                    } => format!("moved: a migration was under way ({failure})"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use steward_gate::{Failure, FailureKind};
    use steward_journal::OpId;

    #[test]
    fn a_moved_op_says_where_the_guest_went_and_why() {
        let moved = |node: Option<&str>| Decision::Executed {
            op: OpId(3),
            outcome: Outcome::Moved {
                node: node.map(str::to_string),
                failure: Failure::new(FailureKind::NotFound, "no such VM"),
            },
            signed: false,
        };
        let v = moved(Some("pve-b")).view();
        assert_eq!(v.op, Some(3));
        let text = v.outcome.unwrap_or_default();
        assert!(text.starts_with("moved to pve-b ("), "{text}");
        assert!(text.contains("no such VM"), "{text}");
        let v = moved(None).view();
        let text = v.outcome.unwrap_or_default();
        assert!(
            text.starts_with("moved: a migration was under way ("),
            "{text}"
        );
    }
}
