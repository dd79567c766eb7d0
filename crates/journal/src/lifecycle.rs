//! The op lifecycle as a pure function: which state may follow which. The journal refuses any
//! other step. Must never grow a transition out of a terminal state.
//!
//! ```text
//! planned ─┬─► intent ─┬─► dispatched ─┬─► succeeded
//!          │           ├─► succeeded    ├─► failed
//!          │           ├─► failed       ├─► moved
//!          │           ├─► moved        └─► abandoned
//!          │           └─► abandoned
//!          ├─► pending_signature ─┬─► intent
//!          │                      ├─► refused
//!          │                      └─► abandoned
//!          ├─► refused
//!          └─► abandoned
//! ```

use crate::record::OpState;

/// Whether `to` may follow `from`.
pub fn allowed(from: &OpState, to: &OpState) -> bool {
    use OpState::*;
    matches!(
        (from, to),
        (
            Planned,
            Intent | PendingSignature { .. } | Refused { .. } | Abandoned { .. }
        ) | (
            PendingSignature { .. },
            Intent | Refused { .. } | Abandoned { .. }
        ) | (
            Intent,
            Dispatched { .. } | Succeeded | Failed { .. } | Moved { .. } | Abandoned { .. }
        ) | (
            Dispatched { .. },
            Succeeded | Failed { .. } | Moved { .. } | Abandoned { .. }
        )
    )
}

/// Whether an op may be created directly in `state` (the gate may decide at once).
pub fn initial(state: &OpState) -> bool {
    matches!(
        state,
        OpState::Planned | OpState::PendingSignature { .. } | OpState::Refused { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<OpState> {
        vec![
            OpState::Planned,
            OpState::PendingSignature {
                template: serde_json::json!({}),
            },
            OpState::Refused {
                code: crate::GateReason::Journal,
                detail: "r".into(),
            },
            OpState::Intent,
            OpState::Dispatched { upid: "u".into() },
            OpState::Succeeded,
            OpState::Failed {
                failure: steward_model::Failure::new(steward_model::FailureKind::Other, "e"),
            },
            OpState::Moved {
                node: Some("pve-b".into()),
                failure: steward_model::Failure::new(steward_model::FailureKind::NotFound, "e"),
            },
            OpState::Abandoned { reason: "a".into() },
        ]
    }

    #[test]
    fn terminal_states_have_no_successor_and_nothing_returns_to_planned() {
        for from in all() {
            for to in all() {
                if from.is_terminal() || to == OpState::Planned {
                    assert!(!allowed(&from, &to), "{} -> {}", from.name(), to.name());
                }
            }
        }
    }

    #[test]
    fn dispatch_needs_intent_first() {
        for from in all() {
            let ok = allowed(&from, &OpState::Dispatched { upid: "u".into() });
            assert_eq!(ok, from == OpState::Intent, "{}", from.name());
        }
    }

    #[test]
    fn exactly_the_documented_edges() {
        let count = all()
            .iter()
            .flat_map(|a| all().into_iter().map(move |b| allowed(a, &b)))
            .filter(|x| *x)
            .count();
        assert_eq!(count, 16);
    }
}
