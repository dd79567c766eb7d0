//! The gate's flows: submit (desired-state deltas and jobs alike), sign a held op, run a signed
//! job, rotate keys. The order of checks is fixed: classify → (benign: journal intent, execute)
//! | (destructive: authz pipeline → role scope → binding → durable nonce + intent → execute).

use crate::audit;
use crate::binding::{action_from_op, binding_of};
use crate::decision::{Decision, GateReason, Outcome};
use crate::executor::Executor;
use crate::rotation::{self, RotationError};
use crate::template::pending_template;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use steward_authz::{
    Consumed, NonceStore, OpPayload, Reason, Rejection, Role, VerifiedOp, Verifier,
};
use steward_classifier::{classify, Context, Provenance, Verdict};
use steward_journal::{Class, Journal, NewOp, OpId, OpState, Signer, TxnId};
use steward_model::Action;
use time::OffsetDateTime;

/// Where the gate's trust store lives (for `keys.rotate`).
#[derive(Clone, Debug, Default)]
pub struct GateConfig {
    /// The allowed_signers file a rotation replaces; None: rotations are refused.
    pub trust_store_path: Option<PathBuf>,
}

/// The engine-side facts about a submission (agent-internal; never from a hub).
#[derive(Clone, Copy, Debug, Default)]
pub struct Submission {
    /// The journaled transaction the action runs in.
    pub txn: Option<TxnId>,
    /// The agent creates this guest as its own scratch space.
    pub scratch: bool,
}

/// The reversibility gate.
pub struct Gate {
    verifier: RwLock<Verifier>,
    /// Serializes rotations from check to swap, so two cannot undo each other.
    rotating: std::sync::Mutex<()>,
    journal: Arc<Journal>,
    executor: Arc<dyn Executor>,
    config: GateConfig,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn refused(op: Option<OpId>, reason: GateReason, detail: impl Into<String>) -> Decision {
    Decision::Refused {
        op,
        reason,
        detail: detail.into(),
    }
}

impl Gate {
    /// A gate over `verifier` (trust store + host), `journal` and `executor`.
    pub fn new(
        verifier: Verifier,
        journal: Arc<Journal>,
        executor: Arc<dyn Executor>,
        config: GateConfig,
    ) -> Gate {
        Gate {
            verifier: RwLock::new(verifier),
            rotating: std::sync::Mutex::new(()),
            journal,
            executor,
            config,
        }
    }

    fn host(&self) -> String {
        self.verifier
            .read()
            .map(|v| v.config().host.clone())
            .unwrap_or_default()
    }

    fn verify(
        &self,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> Result<VerifiedOp, Rejection> {
        let v = self
            .verifier
            .read()
            .map_err(|_| Rejection::new(Reason::NonceStore, "verifier lock poisoned"))?;
        v.verify(payload, sig, now, &*self.journal as &dyn NonceStore)
    }

    /// Classifies with the journal's provenance; a provenance read failure means no exception.
    fn classify(&self, action: &Action, sub: Submission) -> Verdict {
        let facts: Vec<Provenance> = self
            .journal
            .provenance(action.vmid())
            .unwrap_or_default()
            .iter()
            .map(|f| Provenance {
                created_in_txn: f.txn.map(|t| t.0),
                scratch: f.scratch,
            })
            .collect();
        classify(
            action,
            &facts,
            Context {
                txn: sub.txn.map(|t| t.0),
            },
        )
    }

    fn new_op(action: &Action, class: Class, sub: Submission) -> NewOp {
        NewOp {
            action: action.clone(),
            class,
            txn: sub.txn,
            scratch: sub.scratch,
        }
    }

    /// Submits an action (a desired-state delta, or an engine step), with the signed op that
    /// authorizes it if the caller has one.
    pub async fn submit(
        &self,
        action: Action,
        sub: Submission,
        signed: Option<(&[u8], &[u8])>,
        now: OffsetDateTime,
    ) -> Decision {
        let d = self.submit_inner(&action, sub, signed, now).await;
        audit::decision(
            &self.journal,
            action.op_kind(),
            Some(action.vmid().get()),
            &d,
        );
        d
    }

    async fn submit_inner(
        &self,
        action: &Action,
        sub: Submission,
        signed: Option<(&[u8], &[u8])>,
        now: OffsetDateTime,
    ) -> Decision {
        match self.classify(action, sub) {
            Verdict::Benign(_) => {
                let rec = match self
                    .journal
                    .record(Self::new_op(action, Class::Benign, sub), OpState::Planned)
                {
                    Ok(r) => r,
                    Err(e) => return refused(None, GateReason::Journal, e.to_string()),
                };
                if let Err(e) = self.journal.transition(rec.id, OpState::Intent) {
                    return refused(Some(rec.id), GateReason::Journal, e.to_string());
                }
                self.execute(rec.id, action, false).await
            }
            Verdict::Destructive(why) => match signed {
                None => {
                    let template = match pending_template(action, &self.host(), now) {
                        Ok(t) => t,
                        Err(e) => return refused(None, GateReason::Journal, e),
                    };
                    let state = OpState::PendingSignature {
                        template: template.clone(),
                    };
                    match self
                        .journal
                        .record(Self::new_op(action, Class::Destructive, sub), state)
                    {
                        Ok(rec) => Decision::PendingSignature {
                            op: rec.id,
                            template,
                        },
                        Err(e) => refused(None, GateReason::Journal, format!("{why}; {e}")),
                    }
                }
                Some((payload, sig)) => {
                    self.authorize_and_run(None, action, sub, payload, sig, now)
                        .await
                }
            },
        }
    }

    /// Releases a held (`pending_signature`) op with the signed op for it.
    pub async fn sign_pending(
        &self,
        op: OpId,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> Decision {
        let rec = match self.journal.get(op) {
            Ok(Some(r)) => r,
            Ok(None) => return refused(None, GateReason::Journal, format!("no op {op}")),
            Err(e) => return refused(None, GateReason::Journal, e.to_string()),
        };
        if rec.class != Class::Destructive
            || !matches!(rec.state(), OpState::PendingSignature { .. })
        {
            // Presented again after it ran: if the signature holds up to the nonce step, a
            // replay, answered with the first outcome; nothing is told to an unverified caller.
            if let Err(r) = self.verify(payload, sig, now) {
                if r.reason == Reason::Replay {
                    return self.rejection(Some(op), payload, r);
                }
            }
            return refused(
                Some(op),
                GateReason::BindingMismatch,
                format!(
                    "op {op} is not a held destructive op (it is {})",
                    rec.state().name()
                ),
            );
        }
        let sub = Submission {
            txn: rec.txn,
            scratch: rec.scratch,
        };
        let d = self
            .authorize_and_run(Some(op), &rec.action, sub, payload, sig, now)
            .await;
        audit::decision(
            &self.journal,
            rec.action.op_kind(),
            Some(rec.guest.get()),
            &d,
        );
        d
    }

    /// A destructive op that arrives as a job: the same checks as a held delta.
    pub async fn run_signed_job(
        &self,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> Decision {
        let verified = match self.verify(payload, sig, now) {
            Ok(v) => v,
            Err(r) => {
                let d = self.rejection(None, payload, r);
                audit::decision(&self.journal, "job", None, &d);
                return d;
            }
        };
        if verified.op == "keys.rotate" {
            let d = self.rotate(&verified, now);
            audit::decision(&self.journal, "keys.rotate", None, &d);
            return d;
        }
        let action = match action_from_op(&verified.op, verified.guest, &verified.params) {
            Ok(a) => a,
            Err(e) => {
                let d = refused(None, GateReason::BindingMismatch, e);
                audit::decision(&self.journal, &verified.op, verified.guest, &d);
                return d;
            }
        };
        self.submit(action, Submission::default(), Some((payload, sig)), now)
            .await
    }

    /// Authz rejection → decision; a replay answers with the first outcome.
    fn rejection(&self, op: Option<OpId>, payload: &[u8], r: Rejection) -> Decision {
        if r.reason == Reason::Replay {
            let first = OpPayload::parse(payload, i64::MAX)
                .ok()
                .and_then(|p| self.journal.by_nonce(&p.nonce).ok().flatten())
                .map(Box::new);
            return Decision::Replay { first };
        }
        refused(op, GateReason::Authz(r.reason), r.detail)
    }

    async fn authorize_and_run(
        &self,
        existing: Option<OpId>,
        action: &Action,
        sub: Submission,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> Decision {
        // The held op stays held on a refusal (a wrong signature must not cancel it); a new
        // submission's refusal is recorded as a refused op.
        let record_refusal = |reason: GateReason, detail: String| -> Decision {
            if existing.is_some() {
                return refused(existing, reason, detail);
            }
            let state = OpState::Refused {
                reason: format!("{}: {detail}", reason.code()),
            };
            let op = self
                .journal
                .record(Self::new_op(action, Class::Destructive, sub), state)
                .ok()
                .map(|r| r.id);
            refused(op, reason, detail)
        };
        // 1. authz's locked pipeline (with the journal as nonce store).
        let verified = match self.verify(payload, sig, now) {
            Ok(v) => v,
            Err(r) if r.reason == Reason::Replay => return self.rejection(existing, payload, r),
            Err(r) => return record_refusal(GateReason::Authz(r.reason), r.detail),
        };
        // 2. role scoping: recovery keys rotate keys and nothing else.
        if verified.role != Role::Operational {
            return record_refusal(
                GateReason::RoleDenied,
                format!(
                    "a {} key may only rotate keys, not {}",
                    verified.role,
                    action.op_kind()
                ),
            );
        }
        // 3. binding: op kind, guest and params exactly those of the held action.
        let b = binding_of(action);
        if verified.op != b.op
            || verified.guest != Some(b.guest.get())
            || verified.params != b.params
        {
            return record_refusal(
                GateReason::BindingMismatch,
                format!(
                    "signed {} on guest {:?} with {}; held {} on guest {} with {}",
                    verified.op,
                    verified.guest,
                    serde_json::Value::Object(verified.params.clone()),
                    b.op,
                    b.guest,
                    serde_json::Value::Object(b.params.clone())
                ),
            );
        }
        // 4. the nonce, consumed durably in the same step that moves the op to intent.
        let op = match existing {
            Some(op) => op,
            None => match self.journal.record(
                Self::new_op(action, Class::Destructive, sub),
                OpState::Planned,
            ) {
                Ok(r) => r.id,
                Err(e) => return refused(None, GateReason::Journal, e.to_string()),
            },
        };
        let signer = Signer {
            principal: verified.principal.clone(),
            key_fingerprint: verified.key_fingerprint.clone(),
            role: verified.role.as_str().into(),
        };
        match self.journal.consume_nonce_into_intent(
            op,
            &verified.nonce,
            verified.nonce_keep_until,
            signer,
        ) {
            Ok(Consumed::Fresh) => self.execute(op, action, true).await,
            Ok(Consumed::AlreadyConsumed) => {
                if existing.is_none() {
                    let _ = self.journal.transition(
                        op,
                        OpState::Refused {
                            reason: "replay".into(),
                        },
                    );
                }
                Decision::Replay {
                    first: self
                        .journal
                        .by_nonce(&verified.nonce)
                        .ok()
                        .flatten()
                        .map(Box::new),
                }
            }
            Err(e) => refused(Some(op), GateReason::Journal, e.to_string()),
        }
    }

    /// Runs an op that is durably in `intent`.
    async fn execute(&self, op: OpId, action: &Action, signed: bool) -> Decision {
        let outcome = match self.executor.dispatch(action).await {
            Err(e) => Outcome::Failed(e.0),
            Ok(None) => Outcome::Succeeded,
            Ok(Some(upid)) => {
                if let Err(e) = self
                    .journal
                    .transition(op, OpState::Dispatched { upid: upid.clone() })
                {
                    tracing::error!(target: "audit", %op, error = %e, "task dispatched but not journaled");
                }
                match self.executor.wait(&upid).await {
                    Ok(()) => Outcome::Succeeded,
                    Err(e) => Outcome::Failed(e.0),
                }
            }
        };
        let terminal = match &outcome {
            Outcome::Succeeded => OpState::Succeeded,
            Outcome::Failed(e) => OpState::Failed { error: e.clone() },
        };
        if let Err(e) = self.journal.transition(op, terminal) {
            tracing::error!(target: "audit", %op, error = %e, "outcome not journaled");
        }
        Decision::Executed {
            op,
            outcome,
            signed,
        }
    }

    /// `keys.rotate`: role rules, at least one recovery key, durable nonce, atomic write, swap.
    fn rotate(&self, v: &VerifiedOp, now: OffsetDateTime) -> Decision {
        // Held from the check to the swap: the check sees the store the rotation replaces, and
        // a rotation verified against an older store (say, by a key another rotation just
        // retired) is re-checked against the current one below.
        let Ok(_rotating) = self.rotating.lock() else {
            return refused(None, GateReason::Journal, "rotation lock poisoned");
        };
        if let Ok(g) = self.verifier.read() {
            let still_admitted = g
                .trust_store()
                .entries()
                .iter()
                .any(|e| e.fingerprint() == v.key_fingerprint && e.role == v.role);
            if !still_admitted {
                return refused(
                    None,
                    GateReason::Authz(Reason::UnknownSigner),
                    "the signing key left the trust store",
                );
            }
        }
        let text = match (
            v.params.len(),
            v.params.get("allowed_signers").and_then(|t| t.as_str()),
        ) {
            (1, Some(t)) => t.to_string(),
            _ => {
                return refused(
                    None,
                    GateReason::BindingMismatch,
                    "keys.rotate takes exactly params.allowed_signers",
                )
            }
        };
        if v.guest.is_some() {
            return refused(
                None,
                GateReason::BindingMismatch,
                "keys.rotate names no guest",
            );
        }
        let Some(path) = self.config.trust_store_path.clone() else {
            return refused(
                None,
                GateReason::RotationRefused,
                "no trust store path configured",
            );
        };
        let old = match self.verifier.read() {
            Ok(g) => g.trust_store().clone(),
            Err(_) => return refused(None, GateReason::Journal, "verifier lock poisoned"),
        };
        let new = match rotation::check(&old, &text, v.role, now.unix_timestamp()) {
            Ok(s) => s,
            Err(RotationError::RoleDenied(e)) => return refused(None, GateReason::RoleDenied, e),
            Err(e) => return refused(None, GateReason::RotationRefused, e.to_string()),
        };
        match self.journal.consume(&v.nonce, v.nonce_keep_until) {
            Ok(Consumed::Fresh) => {}
            Ok(Consumed::AlreadyConsumed) => return Decision::Replay { first: None },
            Err(e) => return refused(None, GateReason::Journal, e.to_string()),
        }
        if let Err(e) = rotation::write_atomically(&path, &text) {
            return refused(
                None,
                GateReason::Journal,
                format!("{}: {e}", path.display()),
            );
        }
        let entries = new.entries().len();
        match self.verifier.write() {
            Ok(mut g) => {
                let config = g.config().clone();
                match Verifier::new(new, config) {
                    Ok(nv) => *g = nv,
                    Err(e) => return refused(None, GateReason::RotationRefused, e.to_string()),
                }
            }
            Err(_) => return refused(None, GateReason::Journal, "verifier lock poisoned"),
        }
        Decision::Rotated { entries }
    }
}
