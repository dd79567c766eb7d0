//! The gate's flows: submit (desired-state deltas and jobs alike), sign a held op, run a signed
//! job (a key rotation's own step is in `rotation.rs`). The order of checks is fixed: classify → (benign: journal intent, execute)
//! | (destructive: authz pipeline → role scope → binding → durable nonce + intent → execute).
//!
//! The blocking boundary is decided here, once: every journal step (sled reads and writes, the
//! fdatasync barrier, trust-store swaps) runs in [`Core`] on tokio's blocking pool, never on an
//! async worker; only the executor's calls run on the caller's task. Callers need not remember
//! anything: a slow disk delays the op it belongs to, not the runtime.

use crate::approval::{ApprovalPolicy, SigVerdict};
use crate::audit;
use crate::binding::ObservedConfig;
use crate::binding::{action_from_op, binding_of, claims_slots, touches_volumes};
use crate::decision::{Decision, GateReason, Outcome, Presented};
use crate::executor::{Authority, Executor, Guard};
use crate::rotation;
use crate::signed::{Signed, Verified};
use crate::template::pending_template;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use steward_authz::{NonceStore, OpPayload, Reason, Rejection, Role, VerifiedOp, Verifier};
use steward_classifier::{classify, Context, Provenance, Verdict};
use steward_journal::{Class, Journal, NewOp, OpId, OpState, TxnId};
use steward_model::{Action, Failure};
use time::OffsetDateTime;

/// Where the gate's trust store lives (for `keys.rotate`), and how many keys each signed op
/// needs.
#[derive(Clone, Debug, Default)]
pub struct GateConfig {
    /// The allowed_signers file a rotation replaces; None: rotations are refused.
    pub trust_store_path: Option<PathBuf>,
    /// Distinct keys per signed op kind (m-of-n); the default asks one for everything.
    pub approval: ApprovalPolicy,
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
    /// The guest's config as the gate's executor read it just before a signature over a
    /// change that removes volumes is spent (`binding::check_slots`); the gate fills it in
    /// itself, and None there refuses such a change.
    pub observed: Option<ObservedConfig>,
}

/// The reversibility gate. It owns its executor: nothing else can reach it.
pub struct Gate {
    core: Arc<Core>,
    executor: Box<dyn Executor>,
}

/// Everything the gate decides synchronously, run on the blocking pool.
pub(crate) struct Core {
    pub(crate) verifier: RwLock<Verifier>,
    /// Moves each time a rotation replaces the trust store: a judgement made under an older one
    /// is made again.
    pub(crate) generation: std::sync::atomic::AtomicU64,
    /// Serializes rotations from check to swap, so two cannot undo each other.
    pub(crate) rotating: Mutex<()>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) config: GateConfig,
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
pub(crate) enum Step {
    Run {
        op: OpId,
        action: Action,
        signed: bool,
        guard: Guard,
        authority: Authority,
    },
    Answer(Decision),
}

/// What a signed job's synchronous half decided.
pub(crate) enum JobStep {
    /// Already answered and audited (a rejection, a rotation, an op that names no action).
    Answered(Decision),
    /// The verified job names this action on the guest with this identity: submit it with
    /// its signed op (and the judgement already made of it).
    Submit(Action, Option<String>, Verified),
    /// The payload carries the nonce of a template the agent minted for this held op: it is
    /// presented for that op, never run as a fresh job.
    Held(OpId, Verified),
}

/// A presentation owned for a trip to the blocking pool: the signed bytes, the signatures, and
/// the judgement already made of them, if one was.
type Owned = (Vec<u8>, Vec<Vec<u8>>, Option<Verified>);

pub(crate) fn refused(op: Option<OpId>, reason: GateReason, detail: impl Into<String>) -> Decision {
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
        // The trust store this gate starts with goes on the audit chain, once: an auditor
        // replays rotations from it, and a file edited by hand between two starts shows as a
        // store no rotation produced. A signal: a failing journal is met by the first write.
        let store = verifier.trust_store();
        let loaded = serde_json::json!({
            "type": steward_audit::LOADED_EVENT,
            "trust_store": store.digest(),
            "source": store.source(),
            "entries": store.entries().len(),
        });
        if let Err(e) = journal.audit(loaded) {
            tracing::warn!(target: "audit", error = %e, "trust store load not audited");
        }
        Gate {
            core: Arc::new(Core {
                verifier: RwLock::new(verifier),
                generation: std::sync::atomic::AtomicU64::new(0),
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

    /// The m-of-n policy in force.
    pub fn approval_policy(&self) -> &ApprovalPolicy {
        &self.core.config.approval
    }

    /// Who approved held op `rec` so far, as the gate would count them now: approvals over the
    /// bytes of its template (compact JSON, as `pending show --template` prints them), each
    /// still in force, one per approver. What `pending` shows; never used to decide.
    pub fn approvals_in_force(
        &self,
        rec: &steward_journal::OpRecord,
        now: OffsetDateTime,
    ) -> Vec<steward_journal::Signer> {
        let OpState::PendingSignature { template } = rec.state() else {
            return Vec::new();
        };
        let Ok(bytes) = serde_json::to_vec(template) else {
            return Vec::new();
        };
        let digest = crate::approval::payload_digest(&bytes);
        let Ok(store) = self.core.verifier.read() else {
            return Vec::new();
        };
        let mut tally = crate::approval::Tally::default();
        for a in &rec.approvals {
            if a.payload == digest
                && a.not_after >= now.unix_timestamp()
                && crate::signed::in_force(&store, a, now)
            {
                tally.add(&a.signer);
            }
        }
        tally.signers().to_vec()
    }

    /// Opens a journaled transaction (a create and its compensation run in one): the only way
    /// to get a `TxnId` to put in a `Submission`.
    pub async fn begin_txn(&self) -> Result<TxnId, String> {
        self.off_worker(|c| c.journal.new_txn().map_err(|e| e.to_string()))
            .await?
    }

    /// Submits an unsigned action (a desired-state delta, or an engine step): benign ones run,
    /// anything else is held for a signature. Signatures come in only through
    /// [`Gate::present`].
    pub async fn submit(&self, action: Action, sub: Submission, now: OffsetDateTime) -> Decision {
        self.submit_with(action, sub, None, now).await.decision
    }

    async fn submit_with(
        &self,
        action: Action,
        mut sub: Submission,
        signed: Option<Owned>,
        now: OffsetDateTime,
    ) -> Presented {
        sub.observed = if signed.is_some() {
            self.observe_for(&action).await
        } else {
            None
        };
        let a = action.clone();
        let (step, signatures) = self
            .off_worker(move |c| {
                let (payload, sigs);
                let signed = match signed {
                    Some((p, s, pre)) => {
                        payload = p;
                        sigs = s;
                        Some(Signed {
                            payload: &payload,
                            sigs: &sigs,
                            pre,
                        })
                    }
                    None => None,
                };
                c.begin_submit(&a, &sub, signed, now)
            })
            .await
            .unwrap_or_else(|e| {
                (
                    Step::Answer(refused(None, GateReason::Journal, e)),
                    Vec::new(),
                )
            });
        let d = self.finish(step).await;
        let decision = self
            .audit(action.op_kind(), Some(action.vmid().get()), d)
            .await;
        Presented {
            decision,
            signatures,
        }
    }

    /// Signatures over one payload for a held op (found by its template's nonce): it runs
    /// once the distinct keys that approved it (now and before) meet its threshold; until then
    /// the approvals are kept with it (`partly_approved`). `pre` is the presentation already
    /// judged by [`Gate::present`].
    async fn approve_with(
        &self,
        op: OpId,
        payload: &[u8],
        sigs: &[Vec<u8>],
        pre: Verified,
        now: OffsetDateTime,
    ) -> Presented {
        let (payload, sigs) = (payload.to_vec(), sigs.to_vec());
        let held = self
            .off_worker(move |c| c.journal.get(op).ok().flatten())
            .await
            .ok()
            .flatten();
        let observed = match held {
            Some(rec) => self.observe_for(&rec.action).await,
            None => None,
        };
        let (step, what, signatures) = self
            .off_worker(move |c| {
                let signed = Signed {
                    payload: &payload,
                    sigs: &sigs,
                    pre: Some(pre),
                };
                c.begin_release(op, signed, now, observed)
            })
            .await
            .unwrap_or_else(|e| {
                (
                    Step::Answer(refused(Some(op), GateReason::Journal, e)),
                    None,
                    Vec::new(),
                )
            });
        let d = self.finish(step).await;
        let decision = match what {
            Some((kind, guest)) => self.audit(kind, Some(guest), d).await,
            None => d,
        };
        Presented {
            decision,
            signatures,
        }
    }

    /// The one way in for an operator's signatures over one payload. When the payload carries
    /// a held op's template nonce it is that op's release (its binding checked against the
    /// held op, its approvals kept toward the threshold); otherwise it is a signed job, whose
    /// signatures count only in this one presentation (a job keeps nothing when it falls
    /// short). Each signature is judged once either way.
    pub async fn present(
        &self,
        payload: &[u8],
        sigs: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Presented {
        let (p, s) = (payload.to_vec(), sigs.to_vec());
        let (step, signatures) = self
            .off_worker(move |c| c.begin_job(&p, &s, now))
            .await
            .unwrap_or_else(|e| {
                (
                    JobStep::Answered(refused(None, GateReason::Journal, e)),
                    Vec::new(),
                )
            });
        match step {
            JobStep::Answered(decision) => Presented {
                decision,
                signatures,
            },
            JobStep::Submit(action, identity, verified) => {
                let sub = Submission {
                    identity,
                    ..Submission::default()
                };
                let signed = (payload.to_vec(), sigs.to_vec(), Some(verified));
                self.submit_with(action, sub, Some(signed), now).await
            }
            JobStep::Held(op, verified) => {
                self.approve_with(op, payload, sigs, verified, now).await
            }
        }
    }

    /// The guest's config, read now, when `action` claims what its slots hold (the volumes it
    /// removes or keeps, a move's source, a container NIC's value and MAC), so the claim is
    /// checked before a signature over it is spent; None otherwise or when it cannot be read
    /// (which refuses the change).
    async fn observe_for(&self, action: &Action) -> Option<ObservedConfig> {
        if !claims_slots(action) {
            return None;
        }
        match self
            .executor
            .read_config(action.kind(), action.vmid())
            .await
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(guest = %action.vmid(), error = %e, "config not read: a change that removes volumes is refused");
                None
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
                authority,
            } => self.execute(op, &action, signed, &guard, authority).await,
        }
    }

    /// Runs an op that is durably in `intent`: the executor on this task, each journal step off
    /// it.
    async fn execute(
        &self,
        op: OpId,
        action: &Action,
        signed: bool,
        guard: &Guard,
        authority: Authority,
    ) -> Decision {
        let mut warnings = Vec::new();
        let outcome = match self.executor.dispatch(action, guard, authority).await {
            Err(e) => Outcome::Failed(e),
            Ok(None) => Outcome::Succeeded,
            Ok(Some(upid)) => {
                let dispatched = OpState::Dispatched { upid: upid.clone() };
                if let Err(e) = self.transition(op, dispatched).await {
                    tracing::error!(target: "audit", %op, error = %e, "task dispatched but not journaled");
                }
                match self.executor.wait(&upid, authority).await {
                    Ok(w) => {
                        warnings = w;
                        Outcome::Succeeded
                    }
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        let outcome = match outcome {
            Outcome::Failed(failure) => self.moved_or(action, failure).await,
            o => o,
        };
        if !warnings.is_empty() {
            // The node's text: escaped for the log; kept as it was in the journal.
            let text = steward_authz::escape_controls(&warnings.join(" | "));
            tracing::warn!(target: "audit", %op, warnings = %text, "task succeeded with warnings");
        }
        let terminal = match &outcome {
            Outcome::Succeeded => OpState::Succeeded,
            Outcome::Failed(failure) => OpState::Failed {
                failure: failure.clone(),
            },
            Outcome::Moved { node, failure } => OpState::Moved {
                node: node.clone(),
                failure: failure.clone(),
            },
        };
        let noted = self
            .off_worker(move |c| {
                c.journal
                    .transition_noting(op, terminal, warnings)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .and_then(|r| r);
        if let Err(e) = noted {
            tracing::error!(target: "audit", %op, error = %e, "outcome not journaled");
        }
        Decision::Executed {
            op,
            outcome,
            signed,
        }
    }

    /// `failure`, or, when the guest has left this node or is leaving it (asked once, now) and
    /// the failure is one that move can cause (`Whereabouts::moved`), the op cut off by it.
    async fn moved_or(&self, action: &Action, failure: Failure) -> Outcome {
        let here = self
            .executor
            .whereabouts(action.kind(), action.vmid())
            .await;
        let Some(node) = here.moved(action, &failure) else {
            return Outcome::Failed(failure);
        };
        let text = steward_authz::escape_controls(&failure.to_string());
        tracing::info!(target: "audit", guest = %action.vmid(), node = node.as_deref().unwrap_or("(migrating)"), failure = %text, "the op was cut off by a migration: ended as moved");
        Outcome::Moved { node, failure }
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

    pub(crate) fn verify(
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

    pub(crate) fn new_op(action: &Action, class: Class, sub: &Submission) -> NewOp {
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
        signed: Option<Signed<'_>>,
        now: OffsetDateTime,
    ) -> (Step, Vec<SigVerdict>) {
        let verdict = self.classify(action, sub);
        // A presented signature is always settled on the signed path, even for an action that
        // would be benign without it: verified, bound, and its nonce spent, or refused. Otherwise
        // the same bytes could run again.
        if let Some(signed) = signed {
            let class = if verdict.is_destructive() {
                Class::Destructive
            } else {
                Class::Benign
            };
            return self.authorize(None, action, class, sub, signed, now);
        }
        (self.begin_unsigned(action, sub, verdict, now), Vec::new())
    }

    /// The unsigned half of `submit`: benign runs, destructive is held with its template.
    fn begin_unsigned(
        &self,
        action: &Action,
        sub: &Submission,
        verdict: Verdict,
        now: OffsetDateTime,
    ) -> Step {
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
                // Benign actions run with the everyday token, but for those that need
                // `VM.Allocate` or `VM.Config.Disk` (which the everyday token never holds, as
                // it would let it remove `unusedN` volumes): a create, a destroy the agent's
                // own provenance allows, a new disk or a disk's options, a grow.
                let authority = match action {
                    Action::Create { .. }
                    | Action::Destroy { .. }
                    | Action::ResizeDisk { .. }
                    | Action::MoveDisk { .. } => Authority::Admin,
                    a if touches_volumes(a) => Authority::Admin,
                    _ => Authority::Everyday,
                };
                Step::Run {
                    op: rec.id,
                    action: action.clone(),
                    signed: false,
                    guard,
                    authority,
                }
            }
            Verdict::Destructive(why) => {
                // One held op per guest and action until it ends: a restart or a new desired
                // generation asks again, and gets the op (and template) already waiting.
                match self.held_for(action, sub) {
                    Ok(Some(rec)) => {
                        if let OpState::PendingSignature { template } = rec.state() {
                            return Step::Answer(Decision::PendingSignature {
                                op: rec.id,
                                template: template.clone(),
                            });
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return Step::Answer(refused(None, GateReason::Journal, e)),
                }
                let template =
                    match pending_template(action, sub.identity.as_deref(), &self.host(), now) {
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
        }
    }

    /// The synchronous half of a held op's release (`approve_with`); also returns what to audit the decision
    /// under, when the held op was found, and each signature's verdict.
    fn begin_release(
        &self,
        op: OpId,
        signed: Signed<'_>,
        now: OffsetDateTime,
        observed: Option<ObservedConfig>,
    ) -> (Step, Option<(&'static str, u32)>, Vec<SigVerdict>) {
        let rec = match self.journal.get(op) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return (
                    Step::Answer(refused(None, GateReason::Journal, format!("no op {op}"))),
                    None,
                    Vec::new(),
                )
            }
            Err(e) => {
                return (
                    Step::Answer(refused(None, GateReason::Journal, e.to_string())),
                    None,
                    Vec::new(),
                )
            }
        };
        if rec.class != Class::Destructive
            || !matches!(rec.state(), OpState::PendingSignature { .. })
        {
            return (
                self.not_held(&rec, signed.payload, signed.sigs, now),
                None,
                Vec::new(),
            );
        }
        let sub = Submission {
            txn: rec.txn,
            scratch: rec.scratch,
            identity: rec.identity.clone(),
            observed,
        };
        let (step, verdicts) = self.authorize(Some(op), &rec.action, rec.class, &sub, signed, now);
        (
            step,
            Some((rec.action.op_kind(), rec.guest.get())),
            verdicts,
        )
    }

    /// Signatures presented for an op that is no longer held (it ran, was superseded or
    /// refused). If one holds up to the nonce step, the answer is a replay with the first
    /// outcome; nothing is told to an unverified caller. A valid signature for this very op is
    /// spent here: it must not run later as a job on whatever holds the VMID then.
    fn not_held(
        &self,
        rec: &steward_journal::OpRecord,
        payload: &[u8],
        sigs: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Step {
        let op = rec.id;
        for sig in sigs {
            match self.verify(payload, sig, now) {
                Err(r) if r.reason == Reason::Replay => {
                    return Step::Answer(self.rejection(Some(op), payload, r));
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
                            return Step::Answer(refused(
                                Some(op),
                                GateReason::Journal,
                                e.to_string(),
                            ));
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
                    // All signatures are over the same bytes: one nonce, spent once.
                    break;
                }
                Err(_) => {}
            }
        }
        Step::Answer(refused(
            Some(op),
            GateReason::BindingMismatch,
            format!(
                "op {op} is not a held destructive op (it is {})",
                rec.state().name()
            ),
        ))
    }

    /// The synchronous half of `present`: verify, then rotate keys or name the action.
    fn begin_job(
        &self,
        payload: &[u8],
        sigs: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> (JobStep, Vec<SigVerdict>) {
        let verified = self.judge(payload, sigs, now);
        let (passed, verdicts) = match &verified.judged {
            Ok((passed, verdicts)) => (passed.clone(), verdicts.clone()),
            Err((r, verdicts)) => {
                let d = self.rejection(None, payload, r.clone());
                audit::decision(&self.journal, "job", None, &d);
                return (JobStep::Answered(d), verdicts.clone());
            }
        };
        let Some((_, first)) = passed.first() else {
            // verify_each answers Err when nothing passed.
            let d = refused(
                None,
                GateReason::Authz(Reason::MalformedSignature),
                "no signature",
            );
            return (JobStep::Answered(d), verdicts);
        };
        if first.payload.op == "keys.rotate" {
            let (d, verdicts) = self.rotate(payload, sigs, &passed, verdicts, now);
            audit::decision(&self.journal, "keys.rotate", None, &d);
            return (JobStep::Answered(d), verdicts);
        }
        // A template the agent minted belongs to its op for good: while the op is held the
        // signatures go to it; once it ended (ran, superseded, refused) they are spent as
        // `not_held`. Run as a fresh job, a withheld signature would reach whatever guest holds
        // the VMID later.
        match self.minted_for(first.payload.nonce.as_str()) {
            Ok(Some(rec)) if matches!(rec.state(), OpState::PendingSignature { .. }) => {
                return (JobStep::Held(rec.id, verified), Vec::new());
            }
            Ok(Some(rec)) => {
                let d = match self.not_held(&rec, payload, sigs, now) {
                    Step::Answer(d) => d,
                    Step::Run { op, .. } => refused(
                        Some(op),
                        GateReason::BindingMismatch,
                        format!("op {op} is not held"),
                    ),
                };
                audit::decision(
                    &self.journal,
                    rec.action.op_kind(),
                    Some(rec.guest.get()),
                    &d,
                );
                return (JobStep::Answered(d), verdicts);
            }
            Ok(None) => {}
            Err(e) => {
                let d = refused(None, GateReason::Journal, e);
                return (JobStep::Answered(d), verdicts);
            }
        }
        match action_from_op(
            &first.payload.op,
            first.payload.guest,
            &first.payload.params,
        ) {
            // The signatures are judged again, with role, binding and count, on the signed path.
            Ok((a, identity)) => (JobStep::Submit(a, identity, verified), Vec::new()),
            Err(e) => {
                let d = refused(None, GateReason::BindingMismatch, e);
                audit::decision(&self.journal, &first.payload.op, first.payload.guest, &d);
                (JobStep::Answered(d), verdicts)
            }
        }
    }

    /// The trust store's generation (see `Core::generation`).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Authz rejection → decision; a replay answers with the first outcome.
    pub(crate) fn rejection(&self, op: Option<OpId>, payload: &[u8], r: Rejection) -> Decision {
        if r.reason == Reason::Replay {
            let first = OpPayload::parse(payload, i64::MAX)
                .ok()
                .and_then(|p| self.journal.by_nonce(&p.nonce).ok().flatten())
                .map(Box::new);
            return Decision::Replay { first };
        }
        refused(op, GateReason::Authz(r.reason), r.detail)
    }

    /// Whether the trust-store line `admitted_by` (a line's key fingerprint) still admits
    /// `role` at `now`: an approval, or a rotation's signer, counts only while it does.
    pub(crate) fn still_admits(&self, admitted_by: &str, role: Role, now: OffsetDateTime) -> bool {
        let at = now.unix_timestamp();
        self.verifier.read().is_ok_and(|g| {
            g.trust_store().entries().iter().any(|e| {
                e.fingerprint() == admitted_by && e.role == role && rotation::valid_at(e, at)
            })
        })
    }
}
