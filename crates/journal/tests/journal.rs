//! The journal's contract: checked lifecycle, durable index, idempotency by nonce, provenance,
//! tamper-evident audit, strict opening, retention.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use steward_authz::{Consumed, Nonce, NonceStore, Role};
use steward_journal::{Class, Journal, JournalError, NewOp, OpState, Signer};
use steward_model::{Action, Failure, FailureKind, GuestKind, Vmid};

fn vmid(n: u32) -> Vmid {
    Vmid::new(u64::from(n)).unwrap()
}

fn start(n: u32) -> NewOp {
    NewOp {
        action: Action::Start {
            vmid: vmid(n),
            kind: GuestKind::Qemu,
        },
        class: Class::Benign,
        txn: None,
        scratch: false,
        identity: None,
    }
}

fn destroy(n: u32) -> NewOp {
    NewOp {
        action: Action::Destroy {
            vmid: vmid(n),
            kind: GuestKind::Qemu,
            purge: true,
            destroy_unreferenced_disks: true,
        },
        class: Class::Destructive,
        txn: None,
        scratch: false,
        identity: None,
    }
}

fn nonce(i: u8) -> Nonce {
    // 16 bytes, base64url without padding: the last character carries 2 spare bits, so vary
    // the first.
    Nonce::parse(&format!("{}AAAAAAAAAAAAAAAAAAAAA", (b'A' + i % 26) as char)).unwrap()
}

fn signer() -> Signer {
    Signer {
        principal: "alice@steward.test".into(),
        key_fingerprint: "SHA256:x".into(),
        role: Role::Operational,
    }
}

fn fresh() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path().join("journal")).unwrap();
    (dir, j)
}

#[test]
fn a_benign_op_walks_its_lifecycle_and_keeps_its_history() {
    let (_d, j) = fresh();
    let op = j.record(start(104), OpState::Planned).unwrap();
    j.transition(op.id, OpState::Intent).unwrap();
    assert_eq!(j.in_flight().unwrap().len(), 1);
    j.transition(
        op.id,
        OpState::Dispatched {
            upid: "UPID:pve-a:1".into(),
        },
    )
    .unwrap();
    assert_eq!(j.in_flight().unwrap()[0].id, op.id);
    let done = j.transition(op.id, OpState::Succeeded).unwrap();
    assert!(j.in_flight().unwrap().is_empty());
    let names: Vec<&str> = done.history.iter().map(|t| t.state.name()).collect();
    assert_eq!(names, ["planned", "intent", "dispatched", "succeeded"]);
    assert!(done.history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let report = j.verify_audit_chain().unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.entries, 4);
}

#[test]
fn illegal_transitions_are_refused_and_change_nothing() {
    let (_d, j) = fresh();
    let op = j.record(start(104), OpState::Planned).unwrap();
    let e = j
        .transition(op.id, OpState::Dispatched { upid: "u".into() })
        .unwrap_err();
    assert!(matches!(e, JournalError::IllegalTransition { .. }), "{e}");
    assert_eq!(j.get(op.id).unwrap().unwrap(), op);
    j.transition(
        op.id,
        OpState::Refused {
            code: steward_journal::GateReason::BindingMismatch,
            detail: "no".into(),
        },
    )
    .unwrap();
    assert!(j.transition(op.id, OpState::Intent).is_err());
    assert_eq!(j.verify_audit_chain().unwrap().entries, 2);
    assert!(matches!(
        j.transition(steward_journal::OpId(999_999), OpState::Intent),
        Err(JournalError::UnknownOp(_))
    ));
}

#[test]
fn a_destructive_op_reaches_intent_only_through_its_nonce() {
    let (_d, j) = fresh();
    let op = j
        .record(
            destroy(104),
            OpState::PendingSignature {
                template: serde_json::json!({"op": "guest.destroy"}),
            },
        )
        .unwrap();
    assert!(matches!(
        j.transition(op.id, OpState::Intent),
        Err(JournalError::NeedsNonce(_))
    ));
    let n = nonce(1);
    assert_eq!(
        j.consume_nonce_into_intent(op.id, &n, 2_000_000_000, signer(), Vec::new())
            .unwrap(),
        Consumed::Fresh
    );
    let rec = j.get(op.id).unwrap().unwrap();
    assert_eq!(rec.state(), &OpState::Intent);
    assert_eq!(rec.nonce.as_deref(), Some(n.as_str()));
    assert_eq!(rec.signer, Some(signer()));
    j.transition(
        op.id,
        OpState::Failed {
            failure: Failure::new(
                FailureKind::Locked {
                    lock: "backup".into(),
                },
                "VM is locked (backup)",
            ),
        },
    )
    .unwrap();
    // A second presentation: a replay, and the journal can still say what the first did.
    let other = j.record(destroy(104), OpState::Planned).unwrap();
    assert_eq!(
        j.consume_nonce_into_intent(other.id, &n, 2_000_000_000, signer(), Vec::new())
            .unwrap(),
        Consumed::AlreadyConsumed
    );
    assert_eq!(j.get(other.id).unwrap().unwrap().state(), &OpState::Planned);
    let first = j.by_nonce(&n).unwrap().unwrap();
    assert_eq!(first.id, op.id);
    assert!(matches!(first.state(), OpState::Failed { .. }));
}

#[test]
fn concurrent_presentations_of_one_nonce_exactly_one_wins() {
    let (_d, j) = fresh();
    let j = Arc::new(j);
    let n = nonce(2);
    let ops: Vec<_> = (0..64)
        .map(|_| j.record(destroy(104), OpState::Planned).unwrap().id)
        .collect();
    let handles: Vec<_> = ops
        .into_iter()
        .map(|id| {
            let (j, n) = (j.clone(), n.clone());
            std::thread::spawn(move || {
                j.consume_nonce_into_intent(id, &n, 2_000_000_000, signer(), Vec::new())
                    .unwrap()
            })
        })
        .collect();
    let fresh = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|c| *c == Consumed::Fresh)
        .count();
    assert_eq!(fresh, 1);
    assert_eq!(j.in_flight().unwrap().len(), 1);
    // The plain NonceStore view agrees.
    assert!(j.is_consumed(&n).unwrap());
    assert_eq!(j.consume(&n, 0).unwrap(), Consumed::AlreadyConsumed);
    assert!(j.verify_audit_chain().unwrap().intact());
}

#[test]
fn provenance_is_recorded_by_the_agents_own_create() {
    let (_d, j) = fresh();
    let txn = j.new_txn().unwrap();
    let create = NewOp {
        action: Action::Create {
            vmid: vmid(900),
            kind: GuestKind::Lxc,
            config: Default::default(),
        },
        class: Class::Benign,
        txn: Some(txn),
        scratch: true,
        identity: None,
    };
    let op = j.record(create, OpState::Planned).unwrap();
    assert!(j.provenance(vmid(900)).unwrap().is_empty());
    j.transition(op.id, OpState::Intent).unwrap();
    j.transition(op.id, OpState::Dispatched { upid: "u".into() })
        .unwrap();
    assert!(
        j.provenance(vmid(900)).unwrap().is_empty(),
        "only success establishes it"
    );
    j.transition(op.id, OpState::Succeeded).unwrap();
    let facts = j.provenance(vmid(900)).unwrap();
    assert_eq!(facts.len(), 1);
    assert_eq!(
        (facts[0].created_by, facts[0].txn, facts[0].scratch),
        (op.id, Some(txn), true)
    );
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (id, n) = {
        let j = Journal::create(&path).unwrap();
        let op = j.record(destroy(104), OpState::Planned).unwrap();
        let n = nonce(3);
        j.consume_nonce_into_intent(op.id, &n, 2_000_000_000, signer(), Vec::new())
            .unwrap();
        (op.id, n)
    };
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.in_flight().unwrap()[0].id, id);
    assert!(j.is_consumed(&n).unwrap());
    assert!(j.verify_audit_chain().unwrap().intact());
    let again = j.record(start(105), OpState::Planned).unwrap();
    assert!(again.id.0 > id.0, "ids are never reused");
}

#[test]
fn opening_is_strict_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = Journal::open(&missing).unwrap_err();
    assert!(
        e.to_string().contains("nope") && e.to_string().contains("not a journal"),
        "{e}"
    );
    std::fs::create_dir(dir.path().join("busy")).unwrap();
    std::fs::write(dir.path().join("busy/file"), "x").unwrap();
    let e = Journal::create(dir.path().join("busy")).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    assert!(dir.path().join("busy/file").exists(), "nothing was touched");

    let set_schema = |path: &std::path::Path, v: Option<u32>| {
        let db = sled::open(path).unwrap();
        let tree = db.open_tree("journal").unwrap();
        match v {
            Some(v) => tree.insert("m/schema", &v.to_be_bytes()).unwrap(),
            None => tree.remove("m/schema").unwrap(),
        };
        db.flush().unwrap();
    };
    let newer = dir.path().join("newer");
    drop(Journal::create(&newer).unwrap());
    set_schema(&newer, Some(steward_journal::SCHEMA_VERSION + 1));
    let e = Journal::open(&newer).unwrap_err();
    assert!(
        matches!(e, JournalError::SchemaTooNew { found: 2, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("newer"), "{e}");

    let foreign = dir.path().join("foreign");
    drop(Journal::create(&foreign).unwrap());
    set_schema(&foreign, None);
    let e = Journal::open(&foreign).unwrap_err();
    assert!(e.to_string().contains("no schema version"), "{e}");
    assert!(e.to_string().contains("foreign"), "{e}");
}

#[test]
fn audit_tampering_is_detected() {
    for tamper in ["remove-middle", "alter", "remove-last"] {
        let (_d, j) = fresh();
        for i in 0..5 {
            j.audit(serde_json::json!({"type": "decision", "i": i}))
                .unwrap();
        }
        assert!(j.verify_audit_chain().unwrap().intact());
        let tree = j.raw_tree_for_tests().unwrap();
        let key = steward_journal::audit_key;
        match tamper {
            "remove-middle" => {
                tree.remove(key(3)).unwrap().unwrap();
            }
            "alter" => {
                let raw = tree.get(key(2)).unwrap().unwrap();
                let text = String::from_utf8(raw.to_vec())
                    .unwrap()
                    .replace("\"i\":1", "\"i\":7");
                assert_ne!(
                    text.as_bytes(),
                    &raw[..],
                    "the tamper must change something"
                );
                tree.insert(key(2), text.as_bytes()).unwrap();
            }
            _ => {
                tree.remove(key(5)).unwrap().unwrap();
            }
        }
        let report = j.verify_audit_chain().unwrap();
        assert!(!report.intact(), "{tamper} went unnoticed");
    }
}

#[test]
fn nonces_are_pruned_after_their_window_never_before() {
    let (_d, j) = fresh();
    j.consume(&nonce(4), 1_000).unwrap();
    j.consume(&nonce(5), 2_000).unwrap();
    assert_eq!(j.prune_nonces(1_000).unwrap(), 0, "keep_until is inclusive");
    assert_eq!(j.prune_nonces(1_001).unwrap(), 1);
    assert!(!j.is_consumed(&nonce(4)).unwrap());
    assert!(j.is_consumed(&nonce(5)).unwrap());
}

#[test]
fn pruning_never_runs_with_a_clock_behind_the_last_prune() {
    let (dir, j) = fresh();
    j.consume(&nonce(6), 1_500).unwrap();
    assert_eq!(j.prune_nonces(1_200).unwrap(), 0);
    // The clock went back: refused, nothing pruned, also after a reopen.
    let e = j.prune_nonces(1_100).unwrap_err();
    assert!(
        matches!(
            e,
            JournalError::ClockBehind {
                last: 1_200,
                now: 1_100
            }
        ),
        "{e}"
    );
    drop(j);
    let j = Journal::open(dir.path().join("journal")).unwrap();
    assert!(j.prune_nonces(1_199).is_err());
    assert!(j.is_consumed(&nonce(6)).unwrap());
    assert_eq!(j.prune_nonces(1_600).unwrap(), 1);
}

#[test]
fn compaction_drops_old_terminal_ops_and_keeps_the_rest() {
    let (_d, j) = fresh();
    let done = j.record(start(104), OpState::Planned).unwrap();
    j.transition(done.id, OpState::Intent).unwrap();
    j.transition(done.id, OpState::Succeeded).unwrap();
    let flying = j.record(start(105), OpState::Planned).unwrap();
    j.transition(flying.id, OpState::Intent).unwrap();
    let audit_before = j.verify_audit_chain().unwrap().entries;
    assert_eq!(j.compact(0).unwrap(), 0, "nothing is older than the epoch");
    assert_eq!(j.compact(i64::MAX).unwrap(), 1);
    assert!(j.get(done.id).unwrap().is_none());
    assert!(j.get(flying.id).unwrap().is_some());
    let after = j.verify_audit_chain().unwrap();
    assert!(after.intact());
    assert_eq!(after.entries, audit_before, "audit stays");
}

#[test]
fn a_journal_held_open_elsewhere_is_refused_with_a_clear_error() {
    let (dir, j) = fresh();
    let e = Journal::open(dir.path().join("journal")).unwrap_err();
    assert!(e.to_string().contains("locked by another process"), "{e}");
    drop(j);
    // Once released, it opens (sled's threads let go of the lock shortly after the drop).
    Journal::open(dir.path().join("journal")).unwrap();
}

#[test]
fn provenance_names_the_guest_and_is_forgotten_when_the_vmid_is_seen_absent() {
    let (_d, j) = fresh();
    let create = NewOp {
        action: Action::Create {
            vmid: Vmid::new(300).unwrap(),
            kind: GuestKind::Lxc,
            config: [(
                "net0".to_string(),
                "name=eth0,hwaddr=BC:24:11:00:00:01,bridge=vmbr0".to_string(),
            )]
            .into(),
        },
        class: Class::Benign,
        txn: None,
        scratch: true,
        identity: None,
    };
    let op = j.record(create, OpState::Planned).unwrap();
    j.transition(op.id, OpState::Intent).unwrap();
    j.transition(op.id, OpState::Succeeded).unwrap();
    let facts = j.provenance(Vmid::new(300).unwrap()).unwrap();
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].kind, GuestKind::Lxc);
    assert_eq!(
        facts[0].identity.as_deref(),
        Some("hwaddr:BC:24:11:00:00:01")
    );
    assert!(j.forget_provenance(Vmid::new(300).unwrap()).unwrap());
    assert!(j.provenance(Vmid::new(300).unwrap()).unwrap().is_empty());
    assert!(!j.forget_provenance(Vmid::new(300).unwrap()).unwrap());
    assert!(j.verify_audit_chain().is_ok());
}

fn approval(key: &str, payload: &str) -> steward_journal::Approval {
    steward_journal::Approval {
        signer: Signer {
            principal: format!("{key}@steward.test"),
            key_fingerprint: format!("SHA256:{key}"),
            role: Role::Operational,
        },
        admitted_by: format!("SHA256:{key}"),
        certificate_valid_before: None,
        payload: payload.into(),
        not_after: 2_000_000_000,
        at_ms: 1,
        signature: None,
    }
}

#[test]
fn approvals_are_kept_with_the_held_op_across_a_reopen_once_per_key_and_never_after_it_ran() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let held = OpState::PendingSignature {
        template: serde_json::json!({"op": "guest.destroy"}),
    };
    let id = {
        let j = Journal::create(&path).unwrap();
        let op = j.record(destroy(104), held).unwrap();
        let rec = j
            .add_approvals(
                op.id,
                vec![approval("alice", "aa"), approval("alice", "aa")],
            )
            .unwrap();
        assert_eq!(
            rec.approvals.len(),
            1,
            "one key over the same bytes counts once"
        );
        op.id
    };
    let j = Journal::open(&path).unwrap();
    let rec = j.get(id).unwrap().unwrap();
    assert_eq!(rec.approvals, vec![approval("alice", "aa")]);
    // The same key over other bytes is recorded (it is not counted with the first: the gate
    // decides that); a second key is added.
    let rec = j
        .add_approvals(id, vec![approval("alice", "bb"), approval("bob", "aa")])
        .unwrap();
    assert_eq!(rec.approvals.len(), 3);
    let n = nonce(9);
    let counted = vec![approval("alice", "aa"), approval("bob", "aa")];
    j.consume_nonce_into_intent(id, &n, 2_000_000_000, signer(), counted.clone())
        .unwrap();
    let rec = j.get(id).unwrap().unwrap();
    assert_eq!(
        rec.approvals, counted,
        "what counted replaces what was collected"
    );
    assert!(matches!(
        j.add_approvals(id, vec![approval("carol", "aa")]),
        Err(JournalError::NotHeld(_, "intent"))
    ));
    assert!(j.verify_audit_chain().unwrap().intact());
}

#[test]
fn pruning_the_oldest_audit_entries_keeps_the_rest_verifiable_and_tampering_visible() {
    let (_d, j) = fresh();
    for i in 0..6 {
        j.record(start(100 + i), OpState::Planned).unwrap();
    }
    assert_eq!(j.verify_audit_chain().unwrap().entries, 6);
    // Everything written so far is older than "now + 1 s".
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let cutoff = i64::try_from(now_ms).unwrap() + 1000;
    assert_eq!(j.prune_audit(cutoff).unwrap(), 6);
    let report = j.verify_audit_chain().unwrap();
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.entries, 1, "only the prune's own entry is left");
    j.record(start(200), OpState::Planned).unwrap();
    assert!(j.verify_audit_chain().unwrap().intact());
    assert_eq!(
        j.prune_audit(0).unwrap(),
        0,
        "nothing is older than the epoch"
    );
    // Without its anchor the rest no longer verifies: a prune cannot be hidden.
    j.raw_tree_for_tests()
        .unwrap()
        .remove(b"m/audit_anchor")
        .unwrap();
    assert!(!j.verify_audit_chain().unwrap().intact());
}

#[test]
fn a_journal_from_before_the_held_index_is_indexed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let held = {
        let j = Journal::create(&path).unwrap();
        let held = j
            .record(
                destroy(105),
                OpState::PendingSignature {
                    template: serde_json::json!({"op": "guest.destroy"}),
                },
            )
            .unwrap();
        j.record(start(104), OpState::Planned).unwrap();
        assert_eq!(j.held().unwrap().len(), 1);
        // What an older agent left: the op, and neither the index nor its marker.
        let tree = j.raw_tree_for_tests().unwrap();
        let keys: Vec<_> = tree
            .iter()
            .keys()
            .map(Result::unwrap)
            .filter(|k| k.starts_with(b"h/") || k.as_ref() == b"m/held_index")
            .collect();
        assert_eq!(keys.len(), 2, "one held entry and the marker");
        for k in keys {
            tree.remove(k).unwrap();
        }
        tree.flush().unwrap();
        held.id
    };
    let j = Journal::open(&path).unwrap();
    let ids: Vec<_> = j.held().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![held]);
}
