//! The gate's signed path: every presented signature through authz's locked pipeline and role
//! scoping, the payload's binding to the action, the tally of distinct approving keys against
//! the op kind's threshold (with the approvals a held op collected before), and then either the
//! nonce consumed with the intent in one durable step, or the new approvals kept with the held
//! op. It must never run an op whose threshold is not met, never count one key twice, and never
//! let a refused signature change what the others decide.

use crate::approval::{payload_digest, SigVerdict, Tally};
use crate::binding::{binding_of, binds_identity, check_claims, claims_slots};
use crate::decision::{Decision, GateReason};
use crate::executor::{Authority, Guard};
use crate::gate::{refused, Core, Step, Submission};
use steward_authz::{Consumed, Reason, Rejection, Role, VerifiedOp, Verifier};
use steward_journal::{Approval, Class, OpId, OpState, Signer};
use steward_model::Action;
use time::OffsetDateTime;

/// A presentation on its way to the signed path: the signed bytes, the signatures, and the
/// judgement already made of them, if one was.
#[derive(Debug)]
pub(crate) struct Signed<'a> {
    pub(crate) payload: &'a [u8],
    pub(crate) sigs: &'a [Vec<u8>],
    pub(crate) pre: Option<Verified>,
}

/// A signature that passed the pipeline: its index in the presentation, and what it verified.
pub(crate) type Passed = (usize, VerifiedOp);

/// What `verify_each` found: the signatures that passed and every signature's verdict, or the
/// rejection that answers the presentation (with the verdicts so far).
pub(crate) type Judged = Result<(Vec<Passed>, Vec<SigVerdict>), (Rejection, Vec<SigVerdict>)>;

/// A presentation judged once, and under which trust store: the signed path reuses it while
/// no rotation has replaced the trust store since, and judges again otherwise.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) generation: u64,
    pub(crate) judged: Judged,
}

/// Who signed `v`, as the journal records it.
pub(crate) fn signer_of(v: &VerifiedOp) -> Signer {
    Signer {
        principal: v.principal.clone(),
        key_fingerprint: v.key_fingerprint.clone(),
        role: v.role,
    }
}

/// Whether approval `a` still counts against `v`'s trust store at `now`: the line that admitted
/// it is still there, with the same role, valid now; for a certificate, that line still admits
/// the certificate's principal and the certificate has not expired. Removing a key, or
/// narrowing a certificate authority's principals, withdraws the approvals it made.
pub(crate) fn in_force(v: &Verifier, a: &Approval, now: OffsetDateTime) -> bool {
    let at = now.unix_timestamp();
    if a.certificate_valid_before.is_some_and(|end| at >= end) {
        return false;
    }
    v.trust_store().entries().iter().any(|e| {
        e.fingerprint() == a.admitted_by
            && e.role == a.signer.role
            && crate::rotation::valid_at(e, at)
            && (a.certificate_valid_before.is_none()
                || (e.options.cert_authority && e.admits_principal(&a.signer.principal)))
    })
}

/// The approval a verified signature (`sig`, armored) makes over the payload with SHA-256
/// `digest`.
fn approval_of(v: &VerifiedOp, digest: &str, at_ms: i64, sig: &[u8]) -> Approval {
    Approval {
        signature: std::str::from_utf8(sig).ok().map(str::to_string),
        signer: signer_of(v),
        admitted_by: v.admitted_by.clone(),
        certificate_valid_before: v.certificate_valid_before,
        payload: digest.to_string(),
        not_after: v.payload.not_after.unix_timestamp(),
        at_ms,
    }
}

impl Core {
    /// Each signature through the pipeline, over the one payload. `Ok`: those that passed (at
    /// least one) and every signature's verdict so far (a passed one reads `counted` until
    /// the tally says otherwise). `Err`: a replay (the nonce is spent; the caller answers
    /// with the first outcome), or nothing passed (the first refusal, every detail named).
    /// Judges every signature over `payload` once, noting the trust store's generation first
    /// (a rotation during the judging makes the result stale, never wrongly fresh).
    pub(crate) fn judge(&self, payload: &[u8], sigs: &[Vec<u8>], now: OffsetDateTime) -> Verified {
        let generation = self.generation();
        Verified {
            generation,
            judged: self.verify_each(payload, sigs, now),
        }
    }

    pub(crate) fn verify_each(
        &self,
        payload: &[u8],
        sigs: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Judged {
        if sigs.is_empty() {
            return Err((
                Rejection::new(Reason::MalformedSignature, "no signature presented"),
                Vec::new(),
            ));
        }
        let mut passed = Vec::new();
        let mut verdicts = Vec::with_capacity(sigs.len());
        let mut refusals: Vec<Rejection> = Vec::new();
        for (i, sig) in sigs.iter().enumerate() {
            match self.verify(payload, sig, now) {
                Ok(v) => {
                    verdicts.push(SigVerdict::Counted(signer_of(&v)));
                    passed.push((i, v));
                }
                Err(r) => {
                    verdicts.push(SigVerdict::Refused {
                        reason: GateReason::Authz(r.reason),
                        detail: r.detail.clone(),
                    });
                    if r.reason == Reason::Replay {
                        return Err((r, verdicts));
                    }
                    refusals.push(r);
                }
            }
        }
        if !passed.is_empty() {
            return Ok((passed, verdicts));
        }
        let first = refusals.swap_remove(0);
        if sigs.len() == 1 {
            return Err((first, verdicts));
        }
        let detail = verdicts
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                SigVerdict::Refused { reason, detail } => {
                    Some(format!("signature {}: {reason}: {detail}", i + 1))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err((Rejection::new(first.reason, detail), verdicts))
    }

    /// The signed path for `action`: `existing` is the held op the signatures are presented
    /// for (None: a new signed submission); `pre` is this presentation already judged (reused
    /// while the trust store is the one it was judged under). Returns what to do and each
    /// signature's verdict.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn authorize(
        &self,
        existing: Option<OpId>,
        action: &Action,
        class: Class,
        sub: &Submission,
        signed: Signed<'_>,
        now: OffsetDateTime,
    ) -> (Step, Vec<SigVerdict>) {
        let mut verdicts = Vec::new();
        let step =
            match self.authorize_inner(existing, action, class, sub, signed, now, &mut verdicts) {
                Ok(op) => {
                    // The signature named the guest: the executor checks it still is that one.
                    let guard = if binds_identity(action) {
                        Guard::Identity(sub.identity.clone())
                    } else if matches!(action, Action::Create { .. }) {
                        Guard::Absent
                    } else {
                        Guard::Nothing
                    };
                    Step::Run {
                        op,
                        action: action.clone(),
                        signed: true,
                        guard,
                        authority: Authority::Admin,
                    }
                }
                Err(d) => Step::Answer(d),
            };
        (step, verdicts)
    }

    /// `Ok(op)`: the op is durably in `intent` with its nonce consumed; `Err`: the answer.
    #[allow(clippy::too_many_arguments)]
    fn authorize_inner(
        &self,
        existing: Option<OpId>,
        action: &Action,
        class: Class,
        sub: &Submission,
        signed: Signed<'_>,
        now: OffsetDateTime,
        verdicts: &mut Vec<SigVerdict>,
    ) -> Result<OpId, Decision> {
        let Signed { payload, sigs, pre } = signed;
        // The held op stays held on a refusal (a wrong signature must not cancel it); a new
        // submission's refusal is recorded as a refused op.
        let record_refusal = |reason: GateReason, detail: String| -> Decision {
            if existing.is_some() {
                return refused(existing, reason, detail);
            }
            let state = OpState::Refused {
                code: reason,
                detail: detail.clone(),
            };
            let op = self
                .journal
                .record(Self::new_op(action, class, sub), state)
                .ok()
                .map(|r| r.id);
            refused(op, reason, detail)
        };
        // 1. authz's locked pipeline (with the journal as nonce store), each signature, once
        // per presentation unless a rotation replaced the trust store since.
        let judged = match pre {
            Some(v) if v.generation == self.generation() => v.judged,
            _ => self.verify_each(payload, sigs, now),
        };
        let passed = match judged {
            Ok((passed, v)) => {
                *verdicts = v;
                passed
            }
            Err((r, v)) => {
                *verdicts = v;
                if r.reason == Reason::Replay {
                    return Err(self.rejection(existing, payload, r));
                }
                return Err(record_refusal(GateReason::Authz(r.reason), r.detail));
            }
        };
        // 2. role scoping: recovery keys rotate keys and nothing else.
        let role_denied = |v: &VerifiedOp| {
            format!(
                "a {} key may only rotate keys, not {}",
                v.role,
                action.op_kind()
            )
        };
        let mut operational = Vec::new();
        let mut denied = None;
        for (i, v) in passed {
            if v.role == Role::Operational {
                operational.push((i, v));
            } else {
                let detail = role_denied(&v);
                verdicts[i] = SigVerdict::Refused {
                    reason: GateReason::RoleDenied,
                    detail: detail.clone(),
                };
                denied.get_or_insert(detail);
            }
        }
        let Some((_, first)) = operational.first() else {
            let detail = denied.unwrap_or_default();
            return Err(record_refusal(GateReason::RoleDenied, detail));
        };
        // 3. binding: op kind, guest and params exactly those of the held action. Every
        // signature is over the same bytes, so one check binds them all.
        let b = binding_of(action, sub.identity.as_deref());
        if first.payload.op != b.op
            || first.payload.guest != Some(b.guest.get())
            || first.payload.params != b.params
        {
            let detail = format!(
                "signed {} on guest {:?} with {}; held {} on guest {} with {}",
                first.payload.op,
                first.payload.guest,
                serde_json::Value::Object(first.payload.params.clone()),
                b.op,
                b.guest,
                serde_json::Value::Object(b.params.clone())
            );
            for (i, _) in &operational {
                verdicts[*i] = SigVerdict::Refused {
                    reason: GateReason::BindingMismatch,
                    detail: detail.clone(),
                };
            }
            return Err(record_refusal(GateReason::BindingMismatch, detail));
        }
        // 3b. a change that removes volumes (or a move) names exactly what its keys hold on
        // the node now, at the digest it was signed for (`sub.observed`, read by the executor
        // just before).
        if claims_slots(action) {
            let checked = match &sub.observed {
                Some(observed) => check_claims(action, observed),
                None => Err("the guest's config could not be read, so the volumes the op names cannot be checked".into()),
            };
            if let Err(detail) = checked {
                for (i, _) in &operational {
                    verdicts[*i] = SigVerdict::Refused {
                        reason: GateReason::BindingMismatch,
                        detail: detail.clone(),
                    };
                }
                return Err(record_refusal(GateReason::BindingMismatch, detail));
            }
        }
        // 4. the tally: distinct approvers over these exact bytes, with what a held op
        // collected (each approval counts only while the line that admitted it still does).
        // The trust store is held, read-only, from here until the nonce step is durable: a
        // rotation that removes a key cannot land between counting its approval and acting on
        // it. (`verify` is not called under it: the lock is not re-entrant.)
        let Ok(store) = self.verifier.read() else {
            return Err(refused(
                existing,
                GateReason::Journal,
                "verifier lock poisoned",
            ));
        };
        let digest = payload_digest(payload);
        let needs = self
            .config
            .approval
            .threshold(action.op_kind(), Role::Operational);
        let mut tally = Tally::default();
        let mut counted: Vec<Approval> = Vec::new();
        if let Some(op) = existing {
            let prior = match self.journal.get(op) {
                Ok(r) => r.map(|r| r.approvals).unwrap_or_default(),
                Err(e) => return Err(refused(Some(op), GateReason::Journal, e.to_string())),
            };
            for a in prior {
                if a.payload == digest
                    && a.signer.role == Role::Operational
                    && in_force(&store, &a, now)
                    && tally.add(&a.signer)
                {
                    counted.push(a);
                }
            }
        }
        let before = counted.len();
        let at_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        for (i, v) in &operational {
            let approval = approval_of(v, &digest, at_ms, &sigs[*i]);
            if !in_force(&store, &approval, now) {
                // A rotation landed since this signature was verified.
                verdicts[*i] = SigVerdict::Refused {
                    reason: GateReason::Authz(Reason::UnknownSigner),
                    detail: "the line that admitted the signer changed since it was verified"
                        .into(),
                };
            } else if tally.add(&approval.signer) {
                verdicts[*i] = SigVerdict::Counted(approval.signer.clone());
                counted.push(approval);
            } else {
                verdicts[*i] = SigVerdict::AlreadyCounted(approval.signer);
            }
        }
        if tally.count() < usize::from(needs) {
            let fresh = counted[before..].to_vec();
            return Err(match existing {
                Some(op) => match self.journal.add_approvals(op, fresh) {
                    Ok(_) => Decision::PartlyApproved {
                        op,
                        needs,
                        approvals: tally.signers().to_vec(),
                    },
                    Err(e) => refused(Some(op), GateReason::Journal, e.to_string()),
                },
                None => record_refusal(
                    GateReason::Threshold,
                    format!(
                        "{} needs signatures from {needs} distinct operational keys, has {}: {}",
                        action.op_kind(),
                        tally.count(),
                        tally.names()
                    ),
                ),
            });
        }
        // 5. the nonce, consumed durably in the same step that moves the op to intent.
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
        // The signer of record is the one whose presentation met the threshold.
        let signer = counted[before..]
            .first()
            .or(counted.last())
            .map(|a| a.signer.clone())
            .unwrap_or_else(|| signer_of(first));
        // The proof the audit chain keeps: the exact bytes, every signature that counted, the
        // trust store they counted under. A payload is JSON (it passed the pipeline), so text.
        let proof = steward_audit::Proof {
            payload: String::from_utf8_lossy(payload).into_owned(),
            signatures: counted.iter().filter_map(|a| a.signature.clone()).collect(),
            trust_store: store.trust_store().digest().to_string(),
            host: store.config().host.clone(),
            action: Some(action.clone()),
            identity: sub.identity.clone(),
        };
        drop(store);
        let approvals = if needs > 1 { counted } else { Vec::new() };
        match self.journal.consume_nonce_into_intent_proven(
            op,
            &first.payload.nonce,
            first.nonce_keep_until,
            signer,
            approvals,
            proof,
        ) {
            Ok(Consumed::Fresh) => Ok(op),
            Ok(Consumed::AlreadyConsumed) => {
                if existing.is_none() {
                    let _ = self.journal.transition(
                        op,
                        OpState::Refused {
                            code: GateReason::Authz(Reason::Replay),
                            detail: "another presentation consumed the nonce first".into(),
                        },
                    );
                }
                Err(Decision::Replay {
                    first: self
                        .journal
                        .by_nonce(&first.payload.nonce)
                        .ok()
                        .flatten()
                        .map(Box::new),
                })
            }
            Err(e) => Err(refused(Some(op), GateReason::Journal, e.to_string())),
        }
    }
}
