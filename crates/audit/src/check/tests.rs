//! The offline check on chains built here with real `ssh-keygen` signatures: a signed destroy
//! proven; a binding that differs, a key the store does not hold, a destructive op dispatched
//! with no intent, all unproven; a key rotation replayed from the chain (and, dropped from it,
//! the next signer unknown); heads parsed and checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::json;
use steward_model::{GuestKind, Vmid};
use steward_testkit::{KeyType, Keygen, OpDoc};

const NOW_MS: i64 = 1_795_068_000_000; // 2026-11-19T06:00:00Z, inside the window below
const FROM: &str = "2026-11-19T00:00:00Z";
const UNTIL: &str = "2026-11-19T12:00:00Z";

fn destroy(vmid: u64, purge: bool) -> Action {
    Action::Destroy {
        vmid: Vmid::new(vmid).unwrap(),
        kind: GuestKind::Qemu,
        purge,
        destroy_unreferenced_disks: false,
    }
}

/// The bytes an operator signs for `action`, as the gate's template would carry them.
fn payload(action: &Action) -> String {
    let b = binding_of(action, None);
    let mut doc = OpDoc::destroy("pve-a", b.guest.get(), FROM, UNTIL);
    doc.op = b.op.into();
    doc.params = Value::Object(b.params).to_string();
    String::from_utf8(doc.to_bytes()).unwrap()
}

struct Chain {
    entries: Vec<AuditEntry>,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            entries: Vec::new(),
        }
    }

    fn push(&mut self, event: Value) -> &mut Chain {
        let prev = self
            .entries
            .last()
            .map_or(GENESIS.to_string(), |e| e.hash.clone());
        let seq = self.entries.len() as u64 + 1;
        self.entries
            .push(AuditEntry::new(seq, NOW_MS + seq as i64, &prev, event));
        self
    }

    /// A destructive op entering intent with `proof`.
    fn intent(&mut self, op: u64, action: &Action, proof: Option<Proof>) -> &mut Chain {
        let mut e = json!({"type": "transition", "op": op, "guest": action.vmid().get(),
            "action": action.op_kind(), "class": "destructive", "from": "pending_signature",
            "to": {"state": "intent"}});
        if let Some(p) = proof {
            e["proof"] = serde_json::to_value(p).unwrap();
        }
        self.push(e)
    }

    fn state(&mut self, op: u64, action: &Action, state: &str) -> &mut Chain {
        self.push(
            json!({"type": "transition", "op": op, "guest": action.vmid().get(),
            "action": action.op_kind(), "class": "destructive", "to": {"state": state}}),
        )
    }

    fn text(&self) -> String {
        self.entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }
}

struct Keys {
    kg: Keygen,
    alice: steward_testkit::Key,
    bob: steward_testkit::Key,
    rescue: steward_testkit::Key,
}

fn keys() -> Keys {
    let kg = Keygen::new().unwrap();
    Keys {
        alice: kg.key(KeyType::Ed25519, "alice").unwrap(),
        bob: kg.key(KeyType::Ed25519, "bob").unwrap(),
        rescue: kg.key(KeyType::Ed25519, "rescue").unwrap(),
        kg,
    }
}

fn store(text: &str) -> TrustStore {
    TrustStore::parse("allowed_signers", text.as_bytes()).unwrap()
}

fn sign(k: &Keys, key: &steward_testkit::Key, ns: &str, payload: &str) -> String {
    String::from_utf8(
        k.kg.sign(&key.private, ns, payload.as_bytes())
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

fn proof(action: Option<&Action>, payload: String, sigs: Vec<String>, store: &TrustStore) -> Proof {
    Proof {
        payload,
        signatures: sigs,
        trust_store: store.digest().to_string(),
        host: "pve-a".into(),
        action: action.cloned(),
        identity: None,
    }
}

fn first_text(k: &Keys) -> String {
    format!(
        "alice@steward.test namespaces=\"op@steward\" {}\nrescue@steward.test namespaces=\"recovery@steward\" {}\n",
        k.alice.public_line, k.rescue.public_line
    )
}

/// The proof of `a` signed by alice (an operator) under `s`.
fn signed_by_alice(k: &Keys, a: &Action, s: &TrustStore) -> Proof {
    let p = payload(a);
    proof(
        Some(a),
        p.clone(),
        vec![sign(k, &k.alice, "op@steward", &p)],
        s,
    )
}

#[test]
fn a_signed_destroy_is_proven_and_a_binding_that_differs_is_not() {
    let k = keys();
    let text = first_text(&k);
    let s = store(&text);
    let a = destroy(104, true);
    let p = payload(&a);
    let good = signed_by_alice(&k, &a, &s);
    let mut c = Chain::new();
    c.push(json!({"type": "gate_decision", "decision": "pending_signature"}))
        .intent(7, &a, Some(good.clone()))
        .state(7, &a, "dispatched")
        .state(7, &a, "succeeded");
    let r = check(&c.text(), &[store(&text)], None);
    assert!(r.proven(), "{r:?}");
    assert_eq!(r.rows.len(), 1);
    assert!(r.rows[0].signers[0].starts_with("alice@steward.test (SHA256:"));
    assert_eq!(r.head.as_ref().map(|h| h.0), Some(4));

    // What ran is not what was signed: the proof's action says purge=false.
    let other = destroy(104, false);
    let mut c = Chain::new();
    c.intent(
        7,
        &other,
        Some(Proof {
            action: Some(other.clone()),
            ..good.clone()
        }),
    );
    let r = check(&c.text(), &[store(&text)], None);
    let why = r.rows[0].verdict.clone().unwrap_err();
    assert!(
        why.contains("entry 1") && why.contains("not what was signed"),
        "{why}"
    );

    // A recovery key's signature authorizes no guest op.
    let by_rescue = proof(
        Some(&a),
        p.clone(),
        vec![sign(&k, &k.rescue, "recovery@steward", &p)],
        &s,
    );
    let mut c = Chain::new();
    c.intent(7, &a, Some(by_rescue));
    assert!(!check(&c.text(), &[store(&text)], None).proven());

    // No proof, or a destructive op dispatched with no intent before it.
    let mut c = Chain::new();
    c.intent(7, &a, None);
    assert!(!check(&c.text(), &[store(&text)], None).proven());
    let mut c = Chain::new();
    c.state(8, &a, "dispatched");
    let r = check(&c.text(), &[store(&text)], None);
    assert!(!r.proven(), "{r:?}");
}

#[test]
fn a_rotation_is_replayed_from_the_chain_and_without_it_the_new_key_is_unknown() {
    let k = keys();
    let first = first_text(&k);
    let s1 = store(&first);
    let second = format!(
        "{first}bob@steward.test namespaces=\"op@steward\" {}\n",
        k.bob.public_line
    );
    let s2 = store(&second);
    let mut rot = OpDoc::destroy("pve-a", 0, FROM, UNTIL);
    rot.op = "keys.rotate".into();
    rot.guest = None;
    rot.params = json!({"allowed_signers": second}).to_string();
    let rot = String::from_utf8(rot.to_bytes()).unwrap();
    let rotation = json!({"type": ROTATION_EVENT, "new_trust_store": s2.digest(),
        "proof": proof(None, rot.clone(), vec![sign(&k, &k.rescue, "recovery@steward", &rot)], &s1)});
    let a = destroy(105, true);
    let p = payload(&a);
    let by_bob = proof(
        Some(&a),
        p.clone(),
        vec![sign(&k, &k.bob, "op@steward", &p)],
        &s2,
    );

    let mut c = Chain::new();
    c.push(rotation.clone()).intent(9, &a, Some(by_bob.clone()));
    let r = check(&c.text(), &[store(&first)], None);
    assert!(r.proven(), "{r:?}");
    assert_eq!(r.rows[0].op, "keys.rotate");
    assert!(r.rows[1].signers[0].starts_with("bob@steward.test"));

    // The rotation left out: bob's signature was made under a store the file does not give.
    let mut c = Chain::new();
    c.intent(9, &a, Some(by_bob.clone()));
    let r = check(&c.text(), &[store(&first)], None);
    let why = r.rows[0].verdict.clone().unwrap_err();
    assert!(why.contains("trust store"), "{why}");

    // A rotation whose recorded store is not the text signed.
    let mut forged = rotation.clone();
    forged["new_trust_store"] = json!(s1.digest());
    let mut c = Chain::new();
    c.push(forged);
    assert!(!check(&c.text(), &[store(&first)], None).proven());
}

#[test]
fn heads_parse_and_must_be_found() {
    let h: Head = format!("12:{}", "ab".repeat(32)).parse().unwrap();
    assert_eq!(h.seq, Some(12));
    assert!("12:xyz".parse::<Head>().is_err());
    assert!("x:abab".parse::<Head>().is_err());
    let mut c = Chain::new();
    c.push(json!({"type": "note"}))
        .push(json!({"type": "note"}));
    let head = Head {
        seq: Some(2),
        hash: c.entries[1].hash.clone(),
    };
    assert!(check(&c.text(), &[TrustStore::empty("none")], Some(&head)).proven());
    let wrong_seq = Head {
        seq: Some(1),
        ..head.clone()
    };
    assert!(!check(&c.text(), &[TrustStore::empty("none")], Some(&wrong_seq)).proven());
    assert!(!check("", &[TrustStore::empty("none")], None).proven());
}

#[test]
fn a_store_loaded_that_no_file_or_rotation_gives_is_unproven_until_the_auditor_vouches() {
    let k = keys();
    let first = first_text(&k);
    let edited = format!(
        "{first}bob@steward.test namespaces=\"op@steward\" {}\n",
        k.bob.public_line
    );
    let loaded = |text: &str| json!({"type": LOADED_EVENT, "trust_store": store(text).digest(), "source": "/etc/steward/allowed_signers"});
    let a = destroy(106, true);
    let p = payload(&a);
    let by_bob = proof(
        Some(&a),
        p.clone(),
        vec![sign(&k, &k.bob, "op@steward", &p)],
        &store(&edited),
    );
    let mut c = Chain::new();
    c.push(loaded(&first))
        .push(loaded(&edited))
        .intent(3, &a, Some(by_bob));
    // Only the first file: the hand-edited store is named, and bob's destroy is unproven.
    let r = check(&c.text(), &[store(&first)], None);
    assert_eq!(r.rows.len(), 2, "{r:?}");
    assert!(r.rows[0]
        .verdict
        .as_ref()
        .is_err_and(|e| e.contains("entry 2")));
    assert!(r.rows[1].verdict.is_err());
    // The auditor gives the edited file too: both proven.
    let r = check(&c.text(), &[store(&first), store(&edited)], None);
    assert!(r.proven(), "{r:?}");
}

#[test]
fn a_destroy_the_node_calls_benign_is_judged_by_the_auditors_classifier() {
    let a = destroy(107, true);
    let first = |op: u64, action: &Action, class: &str, txn: Option<u64>| {
        json!({"type": "transition", "op": op, "guest": action.vmid().get(),
            "action": action.op_kind(), "class": class, "to": {"state": "planned"},
            "action_spec": action, "txn": txn})
    };
    let ran = |op: u64, action: &Action, class: &str| {
        json!({"type": "transition", "op": op, "guest": action.vmid().get(),
            "action": action.op_kind(), "class": class, "to": {"state": "succeeded"}})
    };
    // A lying node records the destroy as benign and keeps no signature: unproven.
    let mut c = Chain::new();
    c.push(first(1, &a, "benign", None))
        .push(ran(1, &a, "benign"));
    let r = check(&c.text(), &[TrustStore::empty("none")], None);
    assert!(!r.proven(), "{r:?}");
    assert!(r.rows[0]
        .verdict
        .as_ref()
        .is_err_and(|e| e.contains("no kept signature")));

    // A compensating destroy of a guest the agent created in the same transaction: proven
    // from the chain itself.
    let create = Action::Create {
        vmid: Vmid::new(107).unwrap(),
        kind: GuestKind::Qemu,
        config: Default::default(),
    };
    let mut c = Chain::new();
    c.push(first(1, &create, "benign", Some(5)))
        .push(ran(1, &create, "benign"))
        .push(first(2, &a, "benign", Some(5)))
        .push(ran(2, &a, "benign"));
    let r = check(&c.text(), &[TrustStore::empty("none")], None);
    assert!(r.proven(), "{r:?}");
    assert!(r.rows[0].what.contains("transaction 5"));
    // ... but not one from another transaction.
    let mut c = Chain::new();
    c.push(first(1, &create, "benign", Some(5)))
        .push(ran(1, &create, "benign"))
        .push(first(2, &a, "benign", Some(6)))
        .push(ran(2, &a, "benign"));
    assert!(!check(&c.text(), &[TrustStore::empty("none")], None).proven());
}

#[test]
fn an_unsigned_destructive_op_counts_from_its_intent_whatever_it_ended_as() {
    let a = destroy(108, true);
    let step = |op: u64, action: &Action, class: &str, state: &str| {
        let mut e = json!({"type": "transition", "op": op, "guest": action.vmid().get(),
            "action": action.op_kind(), "class": class, "to": {"state": state}});
        if state == "planned" {
            e["action_spec"] = serde_json::to_value(action).unwrap();
        }
        e
    };
    let none = || [TrustStore::empty("none")];
    let one_unsigned = |c: &Chain, state: &str| {
        let r = check(&c.text(), &none(), None);
        assert!(!r.proven(), "{state}: {r:?}");
        assert_eq!(r.rows.len(), 1, "{state}: {r:?}");
        assert!(
            r.rows[0].verdict.as_ref().is_err_and(
                |e| e.contains(&format!("destructive op {state} with no kept signature"))
            ),
            "{state}: {r:?}"
        );
    };
    // A lying node records the destroy as benign and brings it to intent: unproven there,
    // whatever follows (a stop may have run, or a synchronous write), or if nothing follows.
    for end in [None, Some("failed"), Some("moved"), Some("abandoned")] {
        let mut c = Chain::new();
        c.push(step(1, &a, "benign", "planned"))
            .push(step(1, &a, "benign", "intent"));
        if let Some(end) = end {
            c.push(step(1, &a, "benign", end));
        }
        one_unsigned(&c, "intent");
    }
    // A chain that skips `intent` is no excuse: failed or moved straight from planned.
    for end in ["failed", "moved"] {
        let mut c = Chain::new();
        c.push(step(1, &a, "benign", "planned"))
            .push(step(1, &a, "benign", end));
        one_unsigned(&c, end);
    }
    // A held destroy that never entered intent (superseded) ran nothing: no row.
    let mut c = Chain::new();
    c.push(step(1, &a, "destructive", "planned"))
        .push(step(1, &a, "destructive", "pending_signature"))
        .push(step(1, &a, "destructive", "abandoned"));
    let r = check(&c.text(), &none(), None);
    assert!(r.proven() && r.rows.is_empty(), "{r:?}");
    // A benign start that failed: no row.
    let start = Action::Start {
        vmid: Vmid::new(108).unwrap(),
        kind: GuestKind::Qemu,
    };
    let mut c = Chain::new();
    c.push(step(2, &start, "benign", "planned"))
        .push(step(2, &start, "benign", "intent"))
        .push(step(2, &start, "benign", "failed"));
    let r = check(&c.text(), &none(), None);
    assert!(r.proven() && r.rows.is_empty(), "{r:?}");
    // A compensating destroy (the agent created the guest in the same transaction) that
    // failed or was abandoned: proven from the chain.
    let create = Action::Create {
        vmid: Vmid::new(108).unwrap(),
        kind: GuestKind::Qemu,
        config: Default::default(),
    };
    let undo = destroy(108, false);
    for end in ["failed", "abandoned"] {
        let mut first = step(1, &create, "benign", "planned");
        first["txn"] = json!(5);
        let mut second = step(2, &undo, "benign", "planned");
        second["txn"] = json!(5);
        let mut c = Chain::new();
        c.push(first)
            .push(step(1, &create, "benign", "intent"))
            .push(step(1, &create, "benign", "succeeded"))
            .push(second)
            .push(step(2, &undo, "benign", "intent"))
            .push(step(2, &undo, "benign", end));
        let r = check(&c.text(), &none(), None);
        assert!(r.proven(), "{end}: {r:?}");
        assert_eq!(r.rows.len(), 1, "{end}: {r:?}");
        assert!(r.rows[0].what.contains("transaction 5"), "{end}: {r:?}");
    }
}

#[test]
fn a_signed_op_the_node_called_benign_is_judged_on_its_proof_and_may_fail() {
    let k = keys();
    let text = first_text(&k);
    let a = destroy(109, true);
    let good = signed_by_alice(&k, &a, &store(&text));
    // Its intent recorded `benign` but carries the proof: one proven row, whatever follows.
    for end in ["failed", "moved"] {
        let mut c = Chain::new();
        c.push(
            json!({"type": "transition", "op": 7, "guest": 109, "action": a.op_kind(),
            "class": "benign", "to": {"state": "intent"},
            "proof": serde_json::to_value(&good).unwrap()}),
        )
        .state(7, &a, end);
        let r = check(&c.text(), &[store(&text)], None);
        assert!(r.proven(), "{end}: {r:?}");
        assert_eq!(r.rows.len(), 1, "{end}: {r:?}");
    }
}
