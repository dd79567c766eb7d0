//! The m-of-n half of the adversarial matrix: a threshold of two distinct operational keys for
//! `guest.destroy` and `keys.rotate`, signatures minted with real `ssh-keygen` (plain keys and
//! certificates), run against the real gate over a real journal with an executor that only
//! counts. "got" is the decision label; a `partly_approved` answer carries its count (`1/2`).

use crate::matrix_gate::{destroy, held, GateRow, HOST};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_gate::{ApprovalPolicy, Decision, Gate, GateConfig, Presented, SigVerdict, Submission};
use steward_journal::Journal;
use steward_lab::FakeExecutor;
use steward_testkit::{CertSpec, Key, KeyType, Keygen};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

fn policy() -> Result<ApprovalPolicy> {
    Ok(ApprovalPolicy::new(
        1,
        2,
        [
            ("guest.destroy".to_string(), 2),
            ("keys.rotate".to_string(), 2),
        ],
    )?)
}

fn open_gate(text: &str, dir: &Path, exec: FakeExecutor) -> Result<Gate> {
    let store = TrustStore::parse("matrix/mofn_signers", text.as_bytes())?;
    let verifier = Verifier::new(store, VerifyConfig::new(HOST))?;
    Ok(Gate::new(
        verifier,
        Arc::new(Journal::open_or_create(dir.join("journal"))?),
        Box::new(exec),
        GateConfig {
            trust_store_path: Some(dir.join("allowed_signers")),
            approval: policy()?,
        },
    ))
}

/// The label, with the count for a partial approval.
fn got(d: &Decision) -> String {
    match d {
        Decision::PartlyApproved {
            needs, approvals, ..
        } => format!("partly_approved {}/{needs}", approvals.len()),
        other => other.label(),
    }
}

/// Each signature's verdict, then the decision's detail.
fn detail(p: &Presented) -> String {
    let sigs: Vec<String> = p
        .signatures
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            SigVerdict::Counted(s) => format!("sig {}: counted {}", i + 1, s.principal),
            SigVerdict::AlreadyCounted(s) => {
                format!("sig {}: already counted {}", i + 1, s.principal)
            }
            SigVerdict::Refused { reason, .. } => format!("sig {}: refused:{reason}", i + 1),
        })
        .collect();
    format!(
        "{}; {}",
        sigs.join(", "),
        crate::matrix_gate::detail(&p.decision)
    )
}

struct Lab {
    kg: Keygen,
    alice: Key,
    bob: Key,
    vault: Key,
    ca: Key,
    text: String,
    dir: tempfile::TempDir,
    now: OffsetDateTime,
}

impl Lab {
    fn new() -> Result<Lab> {
        let kg = Keygen::new()?;
        let alice = kg.key(KeyType::Ed25519, "alice")?;
        let bob = kg.key(KeyType::Ed25519, "bob")?;
        let vault = kg.key(KeyType::Ed25519, "vault")?;
        let ca = kg.key(KeyType::Ed25519, "ca")?;
        let text = format!(
            "alice@steward.test namespaces=\"op@steward\" {}\nbob@steward.test namespaces=\"op@steward\" {}\nvault@steward.test namespaces=\"recovery@steward\" {}\n*@steward.test cert-authority,namespaces=\"op@steward\" {}\n",
            alice.public_line, bob.public_line, vault.public_line, ca.public_line
        );
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("allowed_signers"), &text)?;
        Ok(Lab {
            kg,
            alice,
            bob,
            vault,
            ca,
            text,
            dir,
            now: OffsetDateTime::now_utc(),
        })
    }

    fn sign(&self, key: &Path, ns: &str, payload: &str) -> Result<Vec<u8>> {
        Ok(self.kg.sign(key, ns, payload.as_bytes())?)
    }

    /// A certificate from the CA for `subject` naming `principal`, on a copy of the key (so
    /// that one key can carry several certificates); returns the certificate's path.
    fn cert(&self, subject: &Key, principal: &str, copy: &str) -> Result<std::path::PathBuf> {
        let private = self.kg.path(copy);
        std::fs::copy(&subject.private, &private)?;
        let public = std::path::PathBuf::from(format!("{}.pub", private.display()));
        std::fs::copy(&subject.public, &public)?;
        let copied = Key {
            private,
            public,
            public_line: subject.public_line.clone(),
        };
        Ok(self.kg.certify(
            &self.ca,
            &copied,
            &CertSpec {
                identity: principal,
                principals: &[principal],
                validity: "-5m:+1h",
                host: false,
                options: &[],
            },
        )?)
    }
}

/// Runs the m-of-n cases.
pub fn run() -> Result<Vec<GateRow>> {
    crate::matrix_gate::block_on(cases())
}

async fn cases() -> Result<Vec<GateRow>> {
    let l = Lab::new().context("m-of-n lab")?;
    let exec = FakeExecutor::default();
    let gate = open_gate(&l.text, l.dir.path(), exec.clone())?;
    let mut rows: Vec<GateRow> = Vec::new();
    let mut push = |name: &str, expected: &str, p: &Presented| {
        rows.push((name.into(), expected.into(), got(&p.decision), detail(p)));
    };
    let op_ns = "op@steward";
    let hold = |n: u32| {
        let g = &gate;
        let now = l.now;
        async move { held(&g.submit(destroy(n)?, Submission::default(), now).await) }
    };

    // Two distinct operational keys in one presentation.
    let (_, t) = hold(201).await?;
    let before = exec.count();
    let a = l.sign(&l.alice.private, op_ns, &t)?;
    let b = l.sign(&l.bob.private, op_ns, &t)?;
    let p = gate
        .present(t.as_bytes(), &[a.clone(), b.clone()], l.now)
        .await;
    push(
        "threshold 2: two distinct operational keys sign the held destroy: it executes",
        "executed",
        &p,
    );
    // Presented after execution.
    let p = gate
        .present(t.as_bytes(), std::slice::from_ref(&b), l.now)
        .await;
    push(
        "threshold 2: a signature presented after the op executed is a replay",
        "replay",
        &p,
    );
    let ran = exec.count() - before;

    // The same key twice.
    let (_, t) = hold(202).await?;
    let a = l.sign(&l.alice.private, op_ns, &t)?;
    let p = gate
        .present(t.as_bytes(), &[a.clone(), a.clone()], l.now)
        .await;
    push(
        "threshold 2: the same key signs twice: one approval, held",
        "partly_approved 1/2",
        &p,
    );

    // A plain key and a certificate for that key.
    let (_, t) = hold(203).await?;
    let a = l.sign(&l.alice.private, op_ns, &t)?;
    let cert = l.cert(&l.alice, "carol@steward.test", "alice-copy-1")?;
    let c = l.sign(&cert, op_ns, &t)?;
    let p = gate.present(t.as_bytes(), &[a, c], l.now).await;
    push(
        "threshold 2: a key's plain line and a certificate for the same key: one approval, held",
        "partly_approved 1/2",
        &p,
    );

    // Two certificates for one key.
    let (_, t) = hold(204).await?;
    let c1 = l.cert(&l.bob, "carol@steward.test", "bob-copy-1")?;
    let c2 = l.cert(&l.bob, "dave@steward.test", "bob-copy-2")?;
    let s1 = l.sign(&c1, op_ns, &t)?;
    let s2 = l.sign(&c2, op_ns, &t)?;
    let p = gate.present(t.as_bytes(), &[s1, s2], l.now).await;
    push(
        "threshold 2: two certificates (different principals) for one key: one approval, held",
        "partly_approved 1/2",
        &p,
    );

    // Two keys certified for one principal (what an SSO-backed CA hands one operator).
    let (_, t) = hold(210).await?;
    let k1 = l.kg.key(KeyType::Ed25519, "erin-laptop")?;
    let k2 = l.kg.key(KeyType::Ed25519, "erin-desktop")?;
    let e1 = l.cert(&k1, "erin@steward.test", "erin-1")?;
    let e2 = l.cert(&k2, "erin@steward.test", "erin-2")?;
    let s1 = l.sign(&e1, op_ns, &t)?;
    let s2 = l.sign(&e2, op_ns, &t)?;
    let p = gate.present(t.as_bytes(), &[s1, s2], l.now).await;
    push(
        "threshold 2: two keys certified for one principal: one operator, one approval, held",
        "partly_approved 1/2",
        &p,
    );

    // One good and one bad signature.
    let (_, t) = hold(205).await?;
    let a = l.sign(&l.alice.private, op_ns, &t)?;
    let stranger = l.kg.key(KeyType::Ed25519, "mallory")?;
    let m = l.sign(&stranger.private, op_ns, &t)?;
    let p = gate.present(t.as_bytes(), &[m, a], l.now).await;
    push(
        "threshold 2: one good and one bad signature: the bad one is reported and does not count, held",
        "partly_approved 1/2",
        &p,
    );

    // An operational and a recovery key on a destroy.
    let (_, t) = hold(206).await?;
    let a = l.sign(&l.alice.private, op_ns, &t)?;
    let v = l.sign(&l.vault.private, "recovery@steward", &t)?;
    let p = gate.present(t.as_bytes(), &[a, v], l.now).await;
    push(
        "threshold 2: an operational and a recovery key on a destroy: the recovery key's role does not count, held",
        "partly_approved 1/2",
        &p,
    );

    // Signatures over different bytes: alice over the template, bob over an edited copy that
    // binds the same action (another window); then carol's certificate over the template.
    let (_, t) = hold(207).await?;
    let a = l.sign(&l.alice.private, op_ns, &t)?;
    gate.present(t.as_bytes(), &[a], l.now).await;
    let mut edited: serde_json::Value = serde_json::from_str(&t)?;
    edited["not_after"] = serde_json::json!((l.now + Duration::minutes(50)).format(&Rfc3339)?);
    let edited = serde_json::to_string(&edited)?;
    let b = l.sign(&l.bob.private, op_ns, &edited)?;
    let p = gate.present(edited.as_bytes(), &[b], l.now).await;
    push(
        "threshold 2: approvals over different bytes (one op edited) are not counted together, held",
        "partly_approved 1/2",
        &p,
    );

    // A signed job carries its signatures together; it keeps nothing when it falls short. (A
    // job, not the held op's template: a payload with a nonce the agent minted is presented
    // for its op, never run as a job.)
    let (_, t) = hold(208).await?;
    let mut job: serde_json::Value = serde_json::from_str(&t)?;
    job["nonce"] = serde_json::json!(steward_testkit::nonce());
    let t = serde_json::to_string(&job)?;
    let a = l.sign(&l.alice.private, op_ns, &t)?;
    let p = gate
        .present(t.as_bytes(), std::slice::from_ref(&a), l.now)
        .await;
    push(
        "threshold 2: a signed job with one operator's signature is refused, and its nonce stays unspent",
        "refused:threshold_not_met",
        &p,
    );
    let b = l.sign(&l.bob.private, op_ns, &t)?;
    let p = gate.present(t.as_bytes(), &[a, b], l.now).await;
    push(
        "threshold 2: the same job again with two operators' signatures executes",
        "executed",
        &p,
    );

    // keys.rotate at threshold 2.
    let bob_only = format!(
        "alice@steward.test namespaces=\"op@steward\" {}\nvault@steward.test namespaces=\"recovery@steward\" {}\n",
        l.alice.public_line, l.vault.public_line
    );
    let rotate = serde_json::to_string(&serde_json::json!({
        "v": 1, "op": "keys.rotate", "host": HOST, "params": {"allowed_signers": bob_only},
        "nonce": steward_testkit::nonce(),
        "not_before": (l.now - Duration::minutes(1)).format(&Rfc3339)?,
        "not_after": (l.now + Duration::minutes(30)).format(&Rfc3339)?,
    }))?;
    let a = l.sign(&l.alice.private, op_ns, &rotate)?;
    let p = gate.present(rotate.as_bytes(), &[a], l.now).await;
    push(
        "threshold 2: keys.rotate signed by one operational key is refused",
        "refused:threshold_not_met",
        &p,
    );

    // Threshold reached across a restart: alice before, bob after; the executor runs once.
    let (_, t) = hold(209).await?;
    let a = l.sign(&l.alice.private, op_ns, &t)?;
    let first = gate.present(t.as_bytes(), &[a], l.now).await;
    drop(gate);
    let after = FakeExecutor::default();
    let reopened = open_gate(&l.text, l.dir.path(), after.clone())?;
    let b = l.sign(&l.bob.private, op_ns, &t)?;
    let p = reopened
        .present(
            t.as_bytes(),
            std::slice::from_ref(&b),
            OffsetDateTime::now_utc(),
        )
        .await;
    let again = reopened
        .present(t.as_bytes(), &[b], OffsetDateTime::now_utc())
        .await;
    rows.push((
        "threshold 2: one approval before a restart and one after: it executes once".into(),
        "partly_approved 1/2, executed, replay; ran x1".into(),
        format!(
            "{}, {}, {}; ran x{}",
            got(&first.decision),
            got(&p.decision),
            got(&again.decision),
            after.count()
        ),
        detail(&p),
    ));
    // A certificate approval withdrawn by narrowing the CA line: carol approves with a
    // certificate, a rotation (alice + bob) narrows the CA to erin@, then bob signs: 1/2.
    let (_, t) = held(
        &reopened
            .submit(destroy(211)?, Submission::default(), l.now)
            .await,
    )?;
    let carol = l.kg.key(KeyType::Ed25519, "carol")?;
    let cc = l.cert(&carol, "carol@steward.test", "carol-1")?;
    let first = reopened
        .present(t.as_bytes(), &[l.sign(&cc, op_ns, &t)?], l.now)
        .await;
    let narrowed = l.text.replace(
        "*@steward.test cert-authority",
        "erin@steward.test cert-authority",
    );
    let rotate = serde_json::to_string(&serde_json::json!({
        "v": 1, "op": "keys.rotate", "host": HOST, "params": {"allowed_signers": narrowed},
        "nonce": steward_testkit::nonce(),
        "not_before": (l.now - Duration::minutes(1)).format(&Rfc3339)?,
        "not_after": (l.now + Duration::minutes(30)).format(&Rfc3339)?,
    }))?;
    let rotated = reopened
        .present(
            rotate.as_bytes(),
            &[
                l.sign(&l.alice.private, op_ns, &rotate)?,
                l.sign(&l.bob.private, op_ns, &rotate)?,
            ],
            l.now,
        )
        .await;
    let p = reopened
        .present(t.as_bytes(), &[l.sign(&l.bob.private, op_ns, &t)?], l.now)
        .await;
    rows.push((
        "threshold 2: a certificate's approval stops counting when a rotation narrows its CA line's principals".into(),
        "partly_approved 1/2, rotated, partly_approved 1/2".into(),
        format!(
            "{}, {}, {}",
            got(&first.decision),
            got(&rotated.decision),
            got(&p.decision)
        ),
        detail(&p),
    ));
    rows.push((
        "threshold 2: the first case's op ran once, whatever was presented after".into(),
        "ran x1".into(),
        format!("ran x{ran}"),
        String::new(),
    ));
    Ok(rows)
}
