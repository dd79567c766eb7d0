//! The gate's flows: submit (desired-state deltas and jobs alike), sign a held op, run a signed
//! job, rotate keys. The order of checks is fixed: classify → (benign: journal intent, execute)
//! | (destructive: authz pipeline → role scope → binding → durable nonce + intent → execute).
//!
//! The blocking boundary is decided here, once: every journal step (sled reads and writes, the
//! fdatasync barrier, trust-store swaps) runs in [`Core`] on tokio's blocking pool, never on an
//! async worker; only the executor's calls run on the caller's task. Callers need not remember
//! anything: a slow disk delays the op it belongs to, not the runtime.

use crate::audit;
use crate::binding::{action_from_op, binding_of, binds_identity};
use crate::decision::{Decision, GateReason, Outcome};
use crate::executor::{Executor, Guard};
use crate::rotation::{self, RotationError};
use crate::template::pending_template;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
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
#[derive(Clone, Debug, Default)]
pub struct Submission {
    /// The journaled transaction the action runs in.
    pub txn: Option<TxnId>,
    /// The agent creates this guest as its own scratch space.
    pub scratch: bool,
    /// The identity of the guest that holds the VMID now, as the engine just read it from the
    /// node (`steward_model::guest_identity`); None when it has none or was not seen. A
    /// provenance fact counts only for the guest it names.
    pub identity: Option<String>,
}

/// The reversibility gate. It owns its executor: nothing else can reach it.
pub struct Gate {
    core: Arc<Core>,
    executor: Box<dyn Executor>,
}

/// Everything the gate decides synchronously, run on the blocking pool.
struct Core {
    verifier: RwLock<Verifier>,
    /// Serializes rotations from check to swap, so two cannot undo each other.
    rotating: Mutex<()>,
    journal: Arc<Journal>,
    config: GateConfig,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("config", &self.core.config)
            .finish_non_exhaustive()
    }
}

/// What the synchronous half of a flow decided: run an op that is durably in `intent`, or
/// answer now.
enum Step {
    Run {
        op: OpId,
        action: Action,
        signed: bool,
        guard: Guard,
    },
    Answer(Decision),
}

/// What a signed job's synchronous half decided.
enum JobStep {
    /// Already answered and audited (a rejection, a rotation, an op that names no action).
    Answered(Decision),
    /// The verified job names this action on the guest with this identity: submit it with
    /// its signed op.
    Submit(Action, Option<String>),
}

fn refused(op: Option<OpId>, reason: GateReason, detail: impl Into<String>) -> Decision {
    Decision::Refused {
        op,
        reason,
        detail: detail.into(),
    }
}

impl Gate {
    /// A gate over `verifier` (trust store + host), `journal` and `executor`. The executor is
    /// taken by value and never handed out again.
    pub fn new(
        verifier: Verifier,
        journal: Arc<Journal>,
        executor: Box<dyn Executor>,
        config: GateConfig,
    ) -> Gate {
        Gate {
            core: Arc::new(Core {
                verifier: RwLock::new(verifier),
                rotating: Mutex::new(()),
                journal,
                config,
            }),
            executor,
        }
    }

    /// Runs `f` on the blocking pool. A panic there resumes here; a step the runtime cancelled
    /// (it is shutting down) is an error, and the caller treats it as a journal failure.
    async fn off_worker<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Core) -> T + Send + 'static,
    ) -> Result<T, String> {
        let core = Arc::clone(&self.core);
        match tokio::task::spawn_blocking(move || f(&core)).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(format!("journal step did not finish: {e}")),
        }
    }

    /// Opens a journaled transaction (a create and its compensation run in one): the only way
    /// to get a `TxnId` to put in a `Submission`.
    pub async fn begin_txn(&self) -> Result<TxnId, String> {
        self.off_worker(|c| c.journal.new_txn().map_err(|e| e.to_string()))
            .await?
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
        let signed = signed.map(|(p, s)| (p.to_vec(), s.to_vec()));
        let a = action.clone();
        let step = self
            .off_worker(move |c| {
                let signed = signed.as_ref().map(|(p, s)| (p.as_slice(), s.as_slice()));
                c.begin_submit(&a, &sub, signed, now)
            })
            .await
            .unwrap_or_else(|e| Step::Answer(refused(None, GateReason::Journal, e)));
        let d = self.finish(step).await;
        self.audit(action.op_kind(), Some(action.vmid().get()), d)
            .await
    }

    /// Releases a held (`pending_signature`) op with the signed op for it.
    pub async fn sign_pending(
        &self,
        op: OpId,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> Decision {
        let (payload, sig) = (payload.to_vec(), sig.to_vec());
        let (step, what) = self
            .off_worker(move |c| c.begin_sign_pending(op, &payload, &sig, now))
            .await
            .unwrap_or_else(|e| {
                (
                    Step::Answer(refused(Some(op), GateReason::Journal, e)),
                    None,
                )
            });
        let d = self.finish(step).await;
        match what {
            Some((kind, guest)) => self.audit(kind, Some(guest), d).await,
            None => d,
        }
    }

    /// A destructive op that arrives as a job: the same checks as a held delta.
    pub async fn run_signed_job(
        &self,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> Decision {
        let (p, s) = (payload.to_vec(), sig.to_vec());
        let step = self
            .off_worker(move |c| c.begin_job(&p, &s, now))
            .await
            .unwrap_or_else(|e| JobStep::Answered(refused(None, GateReason::Journal, e)));
        match step {
            JobStep::Answered(d) => d,
            JobStep::Submit(action, identity) => {
                let sub = Submission {
                    identity,
                    ..Submission::default()
                };
                self.submit(action, sub, Some((payload, sig)), now).await
            }
        }
    }

    /// Audits `d` off the async workers and returns it.
    async fn audit(&self, what: &'static str, guest: Option<u32>, d: Decision) -> Decision {
        let copy = d.clone();
        // Audit is a signal: if the step cannot run, the decision stands.
        let _ = self
            .off_worker(move |c| audit::decision(&c.journal, what, guest, &copy))
            .await;
        d
    }

    async fn finish(&self, step: Step) -> Decision {
        match step {
            Step::Answer(d) => d,
            Step::Run {
                op,
                action,
                signed,
                guard,
            } => self.execute(op, &action, signed, &guard).await,
        }
    }

    /// Runs an op that is durably in `intent`: the executor on this task, each journal step off
    /// it.
    async fn execute(&self, op: OpId, action: &Action, signed: bool, guard: &Guard) -> Decision {
        let outcome = match self.executor.dispatch(action, guard).await {
            Err(e) => Outcome::Failed(e),
            Ok(None) => Outcome::Succeeded,
            Ok(Some(upid)) => {
                let dispatched = OpState::Dispatched { upid: upid.clone() };
                if let Err(e) = self.transition(op, dispatched).await {
                    tracing::error!(target: "audit", %op, error = %e, "task dispatched but not journaled");
                }
                match self.executor.wait(&upid).await {
                    Ok(()) => Outcome::Succeeded,
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        let terminal = match &outcome {
            Outcome::Succeeded => OpState::Succeeded,
            Outcome::Failed(failure) => OpState::Failed {
                failure: failure.clone(),
            },
        };
        if let Err(e) = self.transition(op, terminal).await {
            tracing::error!(target: "audit", %op, error = %e, "outcome not journaled");
        }
        Decision::Executed {
            op,
            outcome,
            signed,
        }
    }

    /// One journal transition, off the async workers.
    async fn transition(&self, op: OpId, to: OpState) -> Result<(), String> {
        self.off_worker(move |c| {
            c.journal
                .transition(op, to)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await?
    }
}

impl Core {
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
        // Nonces were pruned by a clock later than ours: the store may have forgotten nonces
        // this clock would still admit. Fail closed until the clock catches up.
        match self.journal.last_prune() {
            Ok(Some(last)) if now.unix_timestamp() < last => {
                return Err(Rejection::new(
                    Reason::NonceStore,
                    format!("the clock is behind the last nonce prune ({last}): refusing until it catches up"),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(Rejection::new(Reason::NonceStore, e.to_string())),
        }
        let v = self
            .verifier
            .read()
            .map_err(|_| Rejection::new(Reason::NonceStore, "verifier lock poisoned"))?;
        v.verify(payload, sig, now, &*self.journal as &dyn NonceStore)
    }

    /// Classifies with the journal's provenance; a provenance read failure means no exception.
    /// A fact counts only if it names the guest that holds the VMID now: the same kind and the
    /// same identity (a guest without one matches nothing).
    fn classify(&self, action: &Action, sub: &Submission) -> Verdict {
        let facts: Vec<Provenance> = self
            .journal
            .provenance(action.vmid())
            .unwrap_or_default()
            .iter()
            .filter(|f| {
                f.kind == action.kind() && f.identity.is_some() && f.identity == sub.identity
            })
            .map(|f| Provenance {
                created_in_txn: f.txn.map(TxnId::get),
                scratch: f.scratch,
            })
            .collect();
        classify(
            action,
            &facts,
            Context {
                txn: sub.txn.map(TxnId::get),
            },
        )
    }

    fn new_op(action: &Action, class: Class, sub: &Submission) -> NewOp {
        NewOp {
            action: action.clone(),
            class,
            txn: sub.txn,
            scratch: sub.scratch,
            identity: sub.identity.clone(),
        }
    }

    /// The synchronous half of `submit`: classify, then journal (and, if signed, authorize).
    fn begin_submit(
        &self,
        action: &Action,
        sub: &Submission,
        signed: Option<(&[u8], &[u8])>,
        now: OffsetDateTime,
    ) -> Step {
        let verdict = self.classify(action, sub);
        // A presented signature is always settled on the signed path, even for an action that
        // would be benign without it: verified, bound, and its nonce spent, or refused. Otherwise
        // the same bytes could run again.
        if let Some((payload, sig)) = signed {
            let class = if verdict.is_destructive() {
                Class::Destructive
            } else {
                Class::Benign
            };
            return self.authorize(None, action, class, sub, payload, sig, now);
        }
        match verdict {
            Verdict::Benign(_) => {
                let rec = match self
                    .journal
                    .record(Self::new_op(action, Class::Benign, sub), OpState::Planned)
                {
                    Ok(r) => r,
                    Err(e) => {
                        return Step::Answer(refused(None, GateReason::Journal, e.to_string()))
                    }
                };
                if let Err(e) = self.journal.transition(rec.id, OpState::Intent) {
                    return Step::Answer(refused(Some(rec.id), GateReason::Journal, e.to_string()));
                }
                // A destroy that is benign by provenance names the guest the fact names: the
                // executor checks it is still that guest before it calls Proxmox.
                let guard = match action {
                    Action::Destroy { .. } => Guard::Identity(sub.identity.clone()),
                    Action::Create { .. } => Guard::Absent,
                    _ => Guard::Nothing,
                };
                Step::Run {
                    op: rec.id,
                    action: action.clone(),
                    signed: false,
                    guard,
                }
            }
            Verdict::Destructive(why) => match signed {
                None => {
                    let template = match pending_template(
                        action,
                        sub.identity.as_deref(),
                        &self.host(),
                        now,
                    ) {
                        Ok(t) => t,
                        Err(e) => return Step::Answer(refused(None, GateReason::Journal, e)),
                    };
                    let state = OpState::PendingSignature {
                        template: template.clone(),
                    };
                    Step::Answer(
                        match self
                            .journal
                            .record(Self::new_op(action, Class::Destructive, sub), state)
                        {
                            Ok(rec) => Decision::PendingSignature {
                                op: rec.id,
                                template,
                            },
                            Err(e) => refused(None, GateReason::Journal, format!("{why}; {e}")),
                        },
                    )
                }
                Some(_) => unreachable_signed(),
            },
        }
    }

    /// The synchronous half of `sign_pending`; also returns what to audit the decision under,
    /// when the held op was found.
    fn begin_sign_pending(
        &self,
        op: OpId,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> (Step, Option<(&'static str, u32)>) {
        let rec = match self.journal.get(op) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return (
                    Step::Answer(refused(None, GateReason::Journal, format!("no op {op}"))),
                    None,
                )
            }
            Err(e) => {
                return (
                    Step::Answer(refused(None, GateReason::Journal, e.to_string())),
                    None,
                )
            }
        };
        if rec.class != Class::Destructive
            || !matches!(rec.state(), OpState::PendingSignature { .. })
        {
            // Presented again after it ran: if the signature holds up to the nonce step, a
            // replay, answered with the first outcome; nothing is told to an unverified caller.
            // A valid signature for an op that is no longer held (superseded, refused) is
            // spent here: it must not run later as a job on whatever holds the VMID then.
            match self.verify(payload, sig, now) {
                Err(r) if r.reason == Reason::Replay => {
                    return (Step::Answer(self.rejection(Some(op), payload, r)), None);
                }
                Ok(v) => {
                    // Only a signature for this very op is spent: one for another op (still
                    // held, or a key rotation) presented here must not be burnt.
                    let b = binding_of(&rec.action, rec.identity.as_deref());
                    let this_op = v.payload.op == b.op
                        && v.payload.guest == Some(b.guest.get())
                        && v.payload.params == b.params;
                    if this_op {
                        if let Err(e) = self.journal.consume(&v.payload.nonce, v.nonce_keep_until) {
                            return (
                                Step::Answer(refused(Some(op), GateReason::Journal, e.to_string())),
                                None,
                            );
                        }
                        audit::decision(
                            &self.journal,
                            rec.action.op_kind(),
                            Some(rec.guest.get()),
                            &refused(
                                Some(op),
                                GateReason::BindingMismatch,
                                format!(
                                    "signature for op {op}, no longer held: its nonce is spent"
                                ),
                            ),
                        );
                    }
                }
                Err(_) => {}
            }
            return (
                Step::Answer(refused(
                    Some(op),
                    GateReason::BindingMismatch,
                    format!(
                        "op {op} is not a held destructive op (it is {})",
                        rec.state().name()
                    ),
                )),
                None,
            );
        }
        let sub = Submission {
            txn: rec.txn,
            scratch: rec.scratch,
            identity: rec.identity.clone(),
        };
        let step = self.authorize(Some(op), &rec.action, rec.class, &sub, payload, sig, now);
        (step, Some((rec.action.op_kind(), rec.guest.get())))
    }

    /// The synchronous half of `run_signed_job`: verify, then rotate keys or name the action.
    fn begin_job(&self, payload: &[u8], sig: &[u8], now: OffsetDateTime) -> JobStep {
        let verified = match self.verify(payload, sig, now) {
            Ok(v) => v,
            Err(r) => {
                let d = self.rejection(None, payload, r);
                audit::decision(&self.journal, "job", None, &d);
                return JobStep::Answered(d);
            }
        };
        if verified.payload.op == "keys.rotate" {
            let d = self.rotate(&verified, now);
            audit::decision(&self.journal, "keys.rotate", None, &d);
            return JobStep::Answered(d);
        }
        match action_from_op(
            &verified.payload.op,
            verified.payload.guest,
            &verified.payload.params,
        ) {
            Ok((a, identity)) => JobStep::Submit(a, identity),
            Err(e) => {
                let d = refused(None, GateReason::BindingMismatch, e);
                audit::decision(
                    &self.journal,
                    &verified.payload.op,
                    verified.payload.guest,
                    &d,
                );
                JobStep::Answered(d)
            }
        }
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

    /// The signed path: verify → role → binding → nonce consumed with the intent, durably.
    #[allow(clippy::too_many_arguments)]
    fn authorize(
        &self,
        existing: Option<OpId>,
        action: &Action,
        class: Class,
        sub: &Submission,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> Step {
        Step::Answer(
            match self.authorize_inner(existing, action, class, sub, payload, sig, now) {
                Ok(op) => {
                    // The signature named the guest: the executor checks it still is that one.
                    let guard = if binds_identity(action) {
                        Guard::Identity(sub.identity.clone())
                    } else if matches!(action, Action::Create { .. }) {
                        Guard::Absent
                    } else {
                        Guard::Nothing
                    };
                    return Step::Run {
                        op,
                        action: action.clone(),
                        signed: true,
                        guard,
                    };
                }
                Err(d) => d,
            },
        )
    }

    /// `Ok(op)`: the op is durably in `intent` with its nonce consumed; `Err`: the answer.
    #[allow(clippy::too_many_arguments)]
    fn authorize_inner(
        &self,
        existing: Option<OpId>,
        action: &Action,
        class: Class,
        sub: &Submission,
        payload: &[u8],
        sig: &[u8],
        now: OffsetDateTime,
    ) -> Result<OpId, Decision> {
        // The held op stays held on a refusal (a wrong signature must not cancel it); a new
        // submission's refusal is recorded as a refused op.
        let record_refusal = |reason: GateReason, detail: String| -> Decision {
            if existing.is_some() {
                return refused(existing, reason, detail);
            }
            let state = OpState::Refused {
                code: reason.code().into(),
                detail: detail.clone(),
            };
            let op = self
                .journal
                .record(Self::new_op(action, class, sub), state)
                .ok()
                .map(|r| r.id);
            refused(op, reason, detail)
        };
        // 1. authz's locked pipeline (with the journal as nonce store).
        let verified = match self.verify(payload, sig, now) {
            Ok(v) => v,
            Err(r) if r.reason == Reason::Replay => {
                return Err(self.rejection(existing, payload, r))
            }
            Err(r) => return Err(record_refusal(GateReason::Authz(r.reason), r.detail)),
        };
        // 2. role scoping: recovery keys rotate keys and nothing else.
        if verified.role != Role::Operational {
            return Err(record_refusal(
                GateReason::RoleDenied,
                format!(
                    "a {} key may only rotate keys, not {}",
                    verified.role,
                    action.op_kind()
                ),
            ));
        }
        // 3. binding: op kind, guest and params exactly those of the held action.
        let b = binding_of(action, sub.identity.as_deref());
        if verified.payload.op != b.op
            || verified.payload.guest != Some(b.guest.get())
            || verified.payload.params != b.params
        {
            return Err(record_refusal(
                GateReason::BindingMismatch,
                format!(
                    "signed {} on guest {:?} with {}; held {} on guest {} with {}",
                    verified.payload.op,
                    verified.payload.guest,
                    serde_json::Value::Object(verified.payload.params.clone()),
                    b.op,
                    b.guest,
                    serde_json::Value::Object(b.params.clone())
                ),
            ));
        }
        // 4. the nonce, consumed durably in the same step that moves the op to intent.
        let op = match existing {
            Some(op) => op,
            None => match self
                .journal
                .record(Self::new_op(action, class, sub), OpState::Planned)
            {
                Ok(r) => r.id,
                Err(e) => return Err(refused(None, GateReason::Journal, e.to_string())),
            },
        };
        let signer = Signer {
            principal: verified.principal.clone(),
            key_fingerprint: verified.key_fingerprint.clone(),
            role: verified.role,
        };
        match self.journal.consume_nonce_into_intent(
            op,
            &verified.payload.nonce,
            verified.nonce_keep_until,
            signer,
        ) {
            Ok(Consumed::Fresh) => Ok(op),
            Ok(Consumed::AlreadyConsumed) => {
                if existing.is_none() {
                    let _ = self.journal.transition(
                        op,
                        OpState::Refused {
                            code: Reason::Replay.code().into(),
                            detail: "another presentation consumed the nonce first".into(),
                        },
                    );
                }
                Err(Decision::Replay {
                    first: self
                        .journal
                        .by_nonce(&verified.payload.nonce)
                        .ok()
                        .flatten()
                        .map(Box::new),
                })
            }
            Err(e) => Err(refused(Some(op), GateReason::Journal, e.to_string())),
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
        // The line that admitted the signer (its key, or for a certificate its CA's key) must
        // still be in the current store, with the same role, and valid now.
        if let Ok(g) = self.verifier.read() {
            let at = now.unix_timestamp();
            let still_admitted = g.trust_store().entries().iter().any(|e| {
                e.fingerprint() == v.admitted_by && e.role == v.role && rotation::valid_at(e, at)
            });
            if !still_admitted {
                return refused(
                    None,
                    GateReason::Authz(Reason::UnknownSigner),
                    "the line that admitted the signer left the trust store or is no longer valid",
                );
            }
        }
        let text = match (
            v.payload.params.len(),
            v.payload
                .params
                .get("allowed_signers")
                .and_then(|t| t.as_str()),
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
        if v.payload.guest.is_some() {
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
        match self.journal.consume(&v.payload.nonce, v.nonce_keep_until) {
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

/// The signed case returns before the verdict is matched.
fn unreachable_signed() -> Step {
    Step::Answer(refused(
        None,
        GateReason::Journal,
        "internal: a signed submission reached the unsigned path",
    ))
}
