//! The signed-op desk: an operator's signatures (local API or provider) reach the gate here,
//! each under its guest's scheduler slot, so a signed op and the loop's action never act on
//! one guest at once, and a desk never waits behind an observation pass. Whether the payload
//! releases a held op (it carries that op's template nonce) or runs as a signed job is the
//! gate's to find (`Gate::present`); the gate judges each signature once either way.
//! It must never decide anything the gate decides, nor keep a slot for a VMID an unverified
//! payload made up.

use crate::engine::Engine;
use crate::schedule::Busy;
use steward_gate::{Decision, Presented};
use steward_model::Vmid;
use time::OffsetDateTime;

impl Engine {
    /// Runs `f` (a gate call about `guest`) holding the guest's slot; tells the loop to
    /// re-read the guest when something ran.
    async fn under_slot<F>(&self, guest: Option<Vmid>, f: F) -> Presented
    where
        F: std::future::Future<Output = Presented>,
    {
        let p = match guest {
            Some(g) => {
                let mut slot = self.take(g, Busy::Signed).await;
                // Dropped mid-call (the caller went away), it may have run: re-read the guest.
                slot.ran = true;
                let p = f.await;
                slot.ran = matches!(p.decision, Decision::Executed { .. });
                p
            }
            None => f.await,
        };
        self.record(None, &p.decision);
        p
    }

    /// The one way in for an operator's signatures (local API or provider), one or several
    /// over the same payload, counted together against the op's m-of-n policy (a held op also
    /// counts what it collected). The gate finds a held op by its template's nonce, judges
    /// every signature once, and runs, holds or refuses; this only takes the guest's slot
    /// around it and says each signature that counted for nothing.
    pub async fn present(&self, payload: &[u8], sigs: &[Vec<u8>]) -> Presented {
        // Without quorum every write fails: a signature spent now would be spent on a call
        // bound to fail. Nothing is judged, run or spent; the op stays as it was.
        if self.snapshot().no_quorum {
            let p = Presented::unsigned(Decision::Refused {
                op: None,
                reason: steward_gate::GateReason::NoQuorum,
                detail: "this node has no quorum: nothing ran and nothing was spent; present it again when quorum is back (a hub's job is presented again on its next poll)".into(),
            });
            self.record(None, &p.decision);
            return p;
        }
        // The guest is read from the unverified payload only to pick the slot to hold, and
        // only from a payload of a size the verifier would read at all. A slot for a guest
        // nobody manages goes when released, so made-up VMIDs leave nothing behind.
        let guest = (payload.len() <= steward_authz::MAX_PAYLOAD_BYTES)
            .then(|| serde_json::from_slice::<serde_json::Value>(payload).ok())
            .flatten()
            .and_then(|v| v.get("guest").and_then(|g| g.as_u64()))
            .and_then(|g| Vmid::new(g).ok());
        let gate = self.gate.clone();
        let p = self
            .under_slot(
                guest,
                gate.present(payload, sigs, OffsetDateTime::now_utc()),
            )
            .await;
        // A signature that counted for nothing is said, each with its reason: the decision
        // alone would hide a stranger's signature beside an operator's.
        for (i, v) in p.signatures.iter().enumerate() {
            if let steward_gate::SigVerdict::Refused { reason, detail } = v {
                let detail = steward_authz::escape_controls(detail);
                tracing::warn!(target: "audit", signature = i + 1, verdict = %v.label(), %reason, %detail, "signature not counted");
            }
        }
        p
    }
}
