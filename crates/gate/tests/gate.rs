//! The gate end to end: real ssh-keygen signatures, a real (temporary) journal, a fake executor
//! that records what it was asked to run.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use steward_authz::{Reason, TrustStore, Verifier, VerifyConfig};
use steward_gate::{Decision, Gate, GateConfig, GateReason, Outcome, Submission};
use steward_journal::{Journal, OpState};
use steward_lab::FakeExecutor;
use steward_model::{Action, GuestKind, Vmid};
use steward_testkit::{Key, KeyType, Keygen};
use time::OffsetDateTime;

struct Lab {
    kg: Keygen,
    op: Key,
    recovery: Key,
    dir: tempfile::TempDir,
    exec: FakeExecutor,
    gate: Gate,
}

const HOST: &str = "pve-a";

fn signers(op: &Key, recovery: &Key) -> String {
    format!(
        "alice@steward.test namespaces=\"op@steward\" {}\nvault@steward.test namespaces=\"recovery@steward\" {}\n",
        op.public_line, recovery.public_line
    )
}

fn lab() -> Lab {
    let kg = Keygen::new().unwrap();
    let op = kg.key(KeyType::Ed25519, "alice").unwrap();
    let recovery = kg.key(KeyType::Ed25519, "vault").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = signers(&op, &recovery);
    let path = dir.path().join("allowed_signers");
    std::fs::write(&path, &text).unwrap();
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    let exec = FakeExecutor::default();
    let gate = gate_over(&text, journal, exec.clone(), path);
    Lab {
        kg,
        op,
        recovery,
        dir,
        exec,
        gate,
    }
}

fn gate_over(
    text: &str,
    journal: Arc<Journal>,
    exec: FakeExecutor,
    path: std::path::PathBuf,
) -> Gate {
    let store = TrustStore::parse("allowed_signers", text.as_bytes()).unwrap();
    let verifier = Verifier::new(store, VerifyConfig::new(HOST)).unwrap();
    Gate::new(
        verifier,
        journal,
        Box::new(exec),
        GateConfig {
            trust_store_path: Some(path),
            ..GateConfig::default()
        },
    )
}

fn vmid(n: u32) -> Vmid {
    Vmid::new(u64::from(n)).unwrap()
}

fn destroy(n: u32) -> Action {
    Action::Destroy {
        vmid: vmid(n),
        kind: GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: true,
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Lab {
    fn sign(&self, key: &Key, ns: &str, payload: &[u8]) -> Vec<u8> {
        self.kg.sign(&key.private, ns, payload).unwrap()
    }
    fn ran(&self) -> usize {
        self.exec.count()
    }
}

fn template_bytes(d: &Decision) -> (steward_journal::OpId, Vec<u8>) {
    match d {
        Decision::PendingSignature { op, template } => (*op, serde_json::to_vec(template).unwrap()),
        other => panic!("expected pending_signature, got {other:?}"),
    }
}

#[tokio::test]
async fn benign_runs_unsigned() {
    let l = lab();
    let d = l
        .gate
        .submit(
            Action::Start {
                vmid: vmid(104),
                kind: GuestKind::Qemu,
            },
            Submission::default(),
            now(),
        )
        .await;
    assert!(
        matches!(
            d,
            Decision::Executed {
                outcome: Outcome::Succeeded,
                signed: false,
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(l.ran(), 1);
    // A benign action runs with the everyday token; a create needs VM.Allocate, the admin's.
    let create = Action::Create {
        vmid: vmid(900),
        kind: GuestKind::Qemu,
        config: [("scsi0".to_string(), "local-lvm:4".to_string())].into(),
    };
    l.gate.submit(create, Submission::default(), now()).await;
    assert_eq!(
        l.exec.authorities().as_slice(),
        &[
            steward_gate::Authority::Everyday,
            steward_gate::Authority::Admin
        ]
    );
}

#[tokio::test]
async fn unsigned_destructive_is_held_then_released_by_its_signed_template() {
    let l = lab();
    let held = l
        .gate
        .submit(destroy(104), Submission::default(), now())
        .await;
    assert_eq!(l.ran(), 0, "never executed while held");
    let (op, payload) = template_bytes(&held);
    let sig = l.sign(&l.op, "op@steward", &payload);
    let d = l
        .gate
        .present(&payload, &[sig.to_vec()], now())
        .await
        .decision;
    assert!(
        matches!(
            d,
            Decision::Executed {
                signed: true,
                outcome: Outcome::Succeeded,
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(l.exec.ran().as_slice(), &[destroy(104)]);
    assert_eq!(
        l.exec.authorities().as_slice(),
        &[steward_gate::Authority::Admin],
        "the signed path runs with the admin token"
    );
    // Presented again: a replay, answered with the first outcome.
    let again = l
        .gate
        .present(&payload, &[sig.to_vec()], now())
        .await
        .decision;
    match again {
        Decision::Replay { first: Some(first) } => {
            assert_eq!(first.id, op);
            assert_eq!(first.state(), &OpState::Succeeded);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.ran(), 1);
}

#[tokio::test]
async fn binding_role_and_signer_are_checked() {
    let l = lab();
    let held = l
        .gate
        .submit(destroy(104), Submission::default(), now())
        .await;
    let (_, payload) = template_bytes(&held);
    let text = String::from_utf8(payload.clone()).unwrap();
    for (what, bad) in [
        ("guest", text.replace("\"guest\":104", "\"guest\":105")),
        ("op", text.replace("guest.destroy", "guest.rollback")),
        ("params", text.replace("\"purge\":true", "\"purge\":false")),
    ] {
        let sig = l.sign(&l.op, "op@steward", bad.as_bytes());
        let d = l
            .gate
            .present(bad.as_bytes(), &[sig.to_vec()], now())
            .await
            .decision;
        assert!(
            matches!(
                d,
                Decision::Refused {
                    reason: GateReason::BindingMismatch,
                    ..
                }
            ),
            "{what}: {d:?}"
        );
    }
    let sig = l.sign(&l.recovery, "recovery@steward", &payload);
    let d = l
        .gate
        .present(&payload, &[sig.to_vec()], now())
        .await
        .decision;
    assert!(
        matches!(
            d,
            Decision::Refused {
                reason: GateReason::RoleDenied,
                ..
            }
        ),
        "{d:?}"
    );
    let stranger = l.kg.key(KeyType::Ed25519, "mallory").unwrap();
    let sig = l.sign(&stranger, "op@steward", &payload);
    let d = l
        .gate
        .present(&payload, &[sig.to_vec()], now())
        .await
        .decision;
    assert!(
        matches!(
            d,
            Decision::Refused {
                reason: GateReason::Authz(Reason::UnknownSigner),
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(l.ran(), 0);
    // The held op is still held, and still releasable by the right signature.
    let sig = l.sign(&l.op, "op@steward", &payload);
    assert!(matches!(
        l.gate
            .present(&payload, &[sig.to_vec()], now())
            .await
            .decision,
        Decision::Executed { .. }
    ));
}

#[tokio::test]
async fn provenance_exceptions_and_hub_labels() {
    let l = lab();
    let j = Journal::open_or_create(l.dir.path().join("unused")).unwrap();
    drop(j);
    // The agent creates a scratch guest in a transaction, then rolls it back: benign.
    let txn = l.gate.begin_txn().await.unwrap();
    let gen = "0badc0de-0000-4000-8000-000000000900";
    let create = Action::Create {
        vmid: vmid(900),
        kind: GuestKind::Qemu,
        config: [("vmgenid".to_string(), gen.to_string())].into(),
    };
    let sub = Submission {
        txn: Some(txn),
        scratch: false,
        identity: Some(format!("vmgenid:{gen}")),
        observed: None,
    };
    assert!(matches!(
        l.gate.submit(create, sub.clone(), now()).await,
        Decision::Executed { .. }
    ));
    // The compensation destroys the referenced volumes only.
    let own = Action::Destroy {
        vmid: vmid(900),
        kind: GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: false,
    };
    let d = l.gate.submit(own, sub, now()).await;
    assert!(
        matches!(d, Decision::Executed { signed: false, .. }),
        "same-transaction rollback: {d:?}"
    );
    // Outside the transaction, a guest the agent did not create is destructive, whatever tags a
    // hub put on it: the classifier never sees tags.
    let d = l
        .gate
        .submit(destroy(901), Submission::default(), now())
        .await;
    assert!(matches!(d, Decision::PendingSignature { .. }), "{d:?}");
}

#[tokio::test]
async fn sixty_four_concurrent_presentations_execute_once() {
    let l = Arc::new(lab());
    let held = l
        .gate
        .submit(destroy(104), Submission::default(), now())
        .await;
    let (_, payload) = template_bytes(&held);
    let sig = l.sign(&l.op, "op@steward", &payload);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (l, payload, sig) = (l.clone(), payload.clone(), sig.clone());
        tasks.push(tokio::spawn(async move {
            l.gate
                .present(&payload, &[sig.to_vec()], now())
                .await
                .decision
        }));
    }
    let mut executed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Decision::Executed { .. } => executed += 1,
            Decision::Replay { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(executed, 1);
    assert_eq!(l.ran(), 1);
}

#[tokio::test]
async fn replay_is_caught_across_a_restart() {
    let l = lab();
    let held = l
        .gate
        .submit(destroy(104), Submission::default(), now())
        .await;
    let (_, payload) = template_bytes(&held);
    let sig = l.sign(&l.op, "op@steward", &payload);
    assert!(matches!(
        l.gate
            .present(&payload, &[sig.to_vec()], now())
            .await
            .decision,
        Decision::Executed { .. }
    ));
    let Lab {
        dir,
        op: opk,
        recovery,
        gate,
        ..
    } = l;
    drop(gate);
    let journal = Arc::new(Journal::open(dir.path().join("journal")).unwrap());
    let exec = FakeExecutor::default();
    let gate = gate_over(
        &signers(&opk, &recovery),
        journal,
        exec.clone(),
        dir.path().join("allowed_signers"),
    );
    let d = gate
        .present(&payload, &[sig.to_vec()], now())
        .await
        .decision;
    assert!(matches!(d, Decision::Replay { first: Some(_) }), "{d:?}");
    assert!(exec.ran().is_empty());
}

fn rotate_payload(text: &str) -> Vec<u8> {
    let t = now();
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "op": "keys.rotate", "host": HOST,
        "params": {"allowed_signers": text},
        "nonce": steward_testkit::nonce(),
        "not_before": fmt(t - time::Duration::minutes(1)),
        "not_after": fmt(t + time::Duration::minutes(30)),
    }))
    .unwrap()
}

#[tokio::test]
async fn key_rotation_rules() {
    let l = lab();
    let path = l.dir.path().join("allowed_signers");
    let before = std::fs::read_to_string(&path).unwrap();
    let bob = l.kg.key(KeyType::Ed25519, "bob").unwrap();
    let op_line = format!(
        "alice@steward.test namespaces=\"op@steward\" {}\n",
        l.op.public_line
    );
    let rec_line = format!(
        "vault@steward.test namespaces=\"recovery@steward\" {}\n",
        l.recovery.public_line
    );
    let bob_line = format!(
        "bob@steward.test namespaces=\"op@steward\" {}\n",
        bob.public_line
    );

    // An operational key removing the recovery key: role_denied.
    let p = rotate_payload(&op_line);
    let d = l
        .gate
        .present(&p, &[l.sign(&l.op, "op@steward", &p)], now())
        .await
        .decision;
    assert!(
        matches!(
            d,
            Decision::Refused {
                reason: GateReason::RoleDenied,
                ..
            }
        ),
        "{d:?}"
    );
    // The recovery key removing the last recovery key: refused.
    let p = rotate_payload(&format!("{op_line}{bob_line}"));
    let d = l
        .gate
        .present(&p, &[l.sign(&l.recovery, "recovery@steward", &p)], now())
        .await
        .decision;
    assert!(
        matches!(
            d,
            Decision::Refused {
                reason: GateReason::RotationRefused,
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "refusals write nothing"
    );

    // An operational key adding an operational key: applied, written, and in force.
    let new_text = format!("{op_line}{rec_line}{bob_line}");
    let p = rotate_payload(&new_text);
    let d = l
        .gate
        .present(&p, &[l.sign(&l.op, "op@steward", &p)], now())
        .await
        .decision;
    assert!(matches!(d, Decision::Rotated { entries: 3 }), "{d:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), new_text);
    let held = l
        .gate
        .submit(destroy(104), Submission::default(), now())
        .await;
    let (_, payload) = template_bytes(&held);
    let d = l
        .gate
        .present(&payload, &[l.sign(&bob, "op@steward", &payload)], now())
        .await
        .decision;
    assert!(
        matches!(d, Decision::Executed { signed: true, .. }),
        "bob's new key works: {d:?}"
    );
}

// ---- fixes from the gate's security review (each test failed before its fix) ----

#[tokio::test]
async fn provenance_names_the_guest_not_the_vmid() {
    let l = lab();
    let gen = "0badc0de-0000-4000-8000-000000000950";
    let create = Action::Create {
        vmid: vmid(950),
        kind: GuestKind::Qemu,
        config: [("vmgenid".to_string(), gen.to_string())].into(),
    };
    let mine = Submission {
        scratch: true,
        identity: Some(format!("vmgenid:{gen}")),
        ..Submission::default()
    };
    assert!(matches!(
        l.gate.submit(create, mine, now()).await,
        Decision::Executed { .. }
    ));
    let own = |kind| Action::Destroy {
        vmid: vmid(950),
        kind,
        purge: true,
        destroy_unreferenced_disks: false,
    };
    // The VMID now held by another guest (another identity), or by a guest of the other kind,
    // or a guest the engine could not identify: no provenance, so a signature is needed.
    for (kind, identity) in [
        (
            GuestKind::Qemu,
            Some("vmgenid:0badc0de-0000-4000-8000-00000000ffff".to_string()),
        ),
        (GuestKind::Lxc, Some(format!("vmgenid:{gen}"))),
        (GuestKind::Qemu, None),
    ] {
        let sub = Submission {
            identity,
            ..Submission::default()
        };
        let d = l.gate.submit(own(kind), sub, now()).await;
        assert!(
            matches!(d, Decision::PendingSignature { .. }),
            "{kind}: {d:?}"
        );
    }
    assert_eq!(l.ran(), 1, "only the create ran");
}

#[tokio::test]
async fn a_signed_everyday_action_is_refused_not_run_signed_or_unsigned() {
    // Signatures come in through one door, and a job runs only the ops Steward takes as
    // signed jobs: a signed `guest.start` is not one of them. It must not run on the signed
    // path (admin token), nor slip through as the benign action it names.
    let l = lab();
    let t = now();
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let payload = serde_json::to_vec(&serde_json::json!({
        "v": 1, "op": "guest.start", "host": HOST, "guest": 104, "params": {"kind": "qemu"},
        "nonce": steward_testkit::nonce(),
        "not_before": fmt(t - time::Duration::minutes(1)),
        "not_after": fmt(t + time::Duration::minutes(30)),
    }))
    .unwrap();
    let sig = l.sign(&l.op, "op@steward", &payload);
    for _ in 0..2 {
        let d = l
            .gate
            .present(&payload, std::slice::from_ref(&sig), now())
            .await
            .decision;
        assert!(
            matches!(&d, Decision::Refused { reason: GateReason::BindingMismatch, detail, .. }
                if detail.contains("guest.start")),
            "{d:?}"
        );
    }
    assert_eq!(l.ran(), 0);
}

#[tokio::test]
async fn a_held_disk_delete_names_its_volume_and_digest_in_the_template() {
    let l = lab();
    let node = |vol: &str| steward_gate::ObservedConfig {
        digest: "3f2a9c0d1e".into(),
        values: [("scsi1".to_string(), format!("{vol},size=8G"))].into(),
    };
    l.exec.set_config(104, node("local-lvm:vm-104-disk-9"));
    let change = steward_model::ConfigChange {
        delete: ["scsi1".into()].into(),
        digest: Some("3f2a9c0d1e".into()),
        removes: [("scsi1".to_string(), "local-lvm:vm-104-disk-1".to_string())].into(),
        ..Default::default()
    };
    let held = l
        .gate
        .submit(
            Action::SetConfig {
                vmid: vmid(104),
                kind: GuestKind::Qemu,
                change,
            },
            Submission::default(),
            now(),
        )
        .await;
    let Decision::PendingSignature { template, .. } = &held else {
        panic!("{held:?}");
    };
    assert_eq!(
        template["params"]["removes"]["scsi1"],
        "local-lvm:vm-104-disk-1"
    );
    assert_eq!(template["params"]["digest"], "3f2a9c0d1e");
    let (_, payload) = template_bytes(&held);
    let sig = l.sign(&l.op, "op@steward", &payload);
    // The slot holds another volume than the one the op names: refused, still held, nothing ran.
    let d = l
        .gate
        .present(&payload, &[sig.to_vec()], now())
        .await
        .decision;
    assert!(
        matches!(&d, Decision::Refused { reason: GateReason::BindingMismatch, detail, .. }
            if detail.contains("local-lvm:vm-104-disk-9")),
        "{d:?}"
    );
    assert_eq!(l.ran(), 0);
    l.exec.set_config(104, node("local-lvm:vm-104-disk-1"));
    let d = l
        .gate
        .present(&payload, &[sig.to_vec()], now())
        .await
        .decision;
    assert!(
        matches!(d, Decision::Executed { signed: true, .. }),
        "{d:?}"
    );
}

#[tokio::test]
async fn a_rotation_signed_with_a_certificate_is_admitted_by_its_ca_line() {
    let kg = Keygen::new().unwrap();
    let op = kg.key(KeyType::Ed25519, "alice").unwrap();
    let ca = kg.key(KeyType::Ed25519, "recovery-ca").unwrap();
    let vault = kg.key(KeyType::Ed25519, "vault").unwrap();
    let cert = kg
        .certify(
            &ca,
            &vault,
            &steward_testkit::CertSpec {
                identity: "vault",
                principals: &["vault@steward.test"],
                validity: "-5m:+1h",
                host: false,
                options: &[],
            },
        )
        .unwrap();
    let text = format!(
        "alice@steward.test namespaces=\"op@steward\" {}\n*@steward.test cert-authority,namespaces=\"recovery@steward\" {}\n",
        op.public_line, ca.public_line
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowed_signers");
    std::fs::write(&path, &text).unwrap();
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    let gate = gate_over(&text, journal, FakeExecutor::default(), path.clone());
    let bob = kg.key(KeyType::Ed25519, "bob").unwrap();
    let new_text = format!(
        "{text}bob@steward.test namespaces=\"op@steward\" {}\n",
        bob.public_line
    );
    let p = rotate_payload(&new_text);
    let sig = kg.sign(&cert, "recovery@steward", &p).unwrap();
    let d = gate.present(&p, &[sig.to_vec()], now()).await.decision;
    assert!(matches!(d, Decision::Rotated { entries: 3 }), "{d:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), new_text);
}

#[tokio::test]
async fn signed_ops_are_refused_while_the_clock_is_behind_the_last_nonce_prune() {
    let kg = Keygen::new().unwrap();
    let op = kg.key(KeyType::Ed25519, "alice").unwrap();
    let recovery = kg.key(KeyType::Ed25519, "vault").unwrap();
    let text = signers(&op, &recovery);
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    let gate = gate_over(
        &text,
        journal.clone(),
        FakeExecutor::default(),
        dir.path().join("s"),
    );
    // A prune ran with a clock an hour ahead (it was wrong, then corrected).
    journal.prune_nonces(now().unix_timestamp() + 3600).unwrap();
    let held = gate
        .submit(destroy(104), Submission::default(), now())
        .await;
    let (_, payload) = template_bytes(&held);
    let sig = kg.sign(&op.private, "op@steward", &payload).unwrap();
    let d = gate
        .present(&payload, &[sig.to_vec()], now())
        .await
        .decision;
    assert!(
        matches!(
            d,
            Decision::Refused {
                reason: GateReason::Authz(Reason::NonceStore),
                ..
            }
        ),
        "{d:?}"
    );
}
