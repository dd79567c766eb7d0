//! Which journal op a submission or a presentation belongs to: the held op already waiting for
//! the same request (one held op per guest and request until it ends), and the op whose
//! template the agent minted with a nonce (a signature over a minted template always goes to
//! its op, never runs as a fresh job). Both read the journal only, on the blocking pool like
//! every `Core` step; they must never decide anything themselves.

use crate::gate::{Core, Submission};
use steward_journal::{OpRecord, OpState};
use steward_model::Action;

/// Whether two actions ask for the same thing: equal, or two creates that differ only in the
/// identity the agent picks afresh for each submission.
fn same_request(a: &Action, b: &Action) -> bool {
    match (a, b) {
        (
            Action::Create {
                vmid: va,
                kind: ka,
                config: ca,
            },
            Action::Create {
                vmid: vb,
                kind: kb,
                config: cb,
            },
        ) => {
            va == vb
                && ka == kb
                && steward_model::without_chosen_identity(*ka, ca)
                    == steward_model::without_chosen_identity(*kb, cb)
        }
        _ => a == b,
    }
}

impl Core {
    /// The held op for exactly `action` on the guest `sub` names, if one is waiting.
    pub(crate) fn held_for(
        &self,
        action: &Action,
        sub: &Submission,
    ) -> Result<Option<OpRecord>, String> {
        let ops = self.journal.all_ops().map_err(|e| e.to_string())?;
        Ok(ops.into_iter().find(|rec| {
            matches!(rec.state(), OpState::PendingSignature { .. })
                && rec.guest == action.vmid()
                && same_request(&rec.action, action)
                && rec.identity == sub.identity
        }))
    }

    /// The op whose template the agent minted with `nonce`, whatever became of it since (its
    /// history keeps the template). Only a payload that passed the pipeline is looked up.
    pub(crate) fn minted_for(&self, nonce: &str) -> Result<Option<OpRecord>, String> {
        let ops = self.journal.all_ops().map_err(|e| e.to_string())?;
        Ok(ops.into_iter().find(|rec| {
            rec.history.iter().any(|t| match &t.state {
                OpState::PendingSignature { template } => {
                    template.get("nonce").and_then(|n| n.as_str()) == Some(nonce)
                }
                _ => false,
            })
        }))
    }
}
