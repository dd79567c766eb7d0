//! Random sequences of legal and illegal steps against an in-memory model of the state machine:
//! after every step, and after every reopen, the journal agrees with the model.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use steward_authz::{Consumed, Nonce, Role};
use steward_journal::{lifecycle, Class, Journal, NewOp, OpId, OpState, Signer};
use steward_model::{Action, Failure, FailureKind, GuestKind, Vmid};

#[derive(Clone, Debug)]
enum Step {
    Record { destructive: bool, initial: u8 },
    Transition { op: usize, to: u8 },
    Consume { op: usize, nonce: u8 },
    Reopen,
}

fn state(i: u8) -> OpState {
    match i % 9 {
        0 => OpState::Planned,
        1 => OpState::PendingSignature {
            template: serde_json::json!({"op": "guest.destroy"}),
        },
        2 => OpState::Refused {
            code: steward_journal::GateReason::BindingMismatch,
            detail: "signed guest.destroy on 104; held guest.destroy on 105".into(),
        },
        3 => OpState::Intent,
        4 => OpState::Dispatched {
            upid: "UPID:pve-a:0000001:00000001:00000001:qmstart:104:root@pam!steward:".into(),
        },
        5 => OpState::Succeeded,
        6 => OpState::Failed {
            failure: Failure::new(
                FailureKind::Locked {
                    lock: "backup".into(),
                },
                "VM is locked (backup)",
            ),
        },
        7 => OpState::Moved {
            node: Some("pve-b".into()),
            failure: Failure::new(FailureKind::NotFound, "no such VM"),
        },
        _ => OpState::Abandoned {
            reason: "not in the task list".into(),
        },
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<bool>(), 0u8..3).prop_map(|(destructive, initial)| Step::Record { destructive, initial }),
        6 => (any::<usize>(), any::<u8>()).prop_map(|(op, to)| Step::Transition { op, to }),
        2 => (any::<usize>(), 0u8..4).prop_map(|(op, nonce)| Step::Consume { op, nonce }),
        1 => Just(Step::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    ops: BTreeMap<OpId, (Class, Vec<OpState>)>,
    nonces: BTreeSet<u8>,
}

fn nonce(i: u8) -> Nonce {
    Nonce::parse(&format!("{}AAAAAAAAAAAAAAAAAAAAA", (b'A' + i) as char)).unwrap()
}

fn check(j: &Journal, m: &Model) -> Result<(), TestCaseError> {
    let flying: BTreeSet<OpId> = j.in_flight().unwrap().iter().map(|r| r.id).collect();
    let want: BTreeSet<OpId> = m
        .ops
        .iter()
        .filter(|(_, (_, h))| h.last().is_some_and(OpState::is_in_flight))
        .map(|(id, _)| *id)
        .collect();
    prop_assert_eq!(flying, want);
    let held: BTreeSet<OpId> = j.held().unwrap().iter().map(|r| r.id).collect();
    let want: BTreeSet<OpId> = m
        .ops
        .iter()
        .filter(|(_, (_, h))| matches!(h.last(), Some(OpState::PendingSignature { .. })))
        .map(|(id, _)| *id)
        .collect();
    prop_assert_eq!(held, want, "the held index agrees with the ops' states");
    for (id, (_, hist)) in &m.ops {
        let rec = j.get(*id).unwrap().unwrap();
        let got: Vec<&OpState> = rec.history.iter().map(|t| &t.state).collect();
        let want: Vec<&OpState> = hist.iter().collect();
        prop_assert_eq!(got, want);
    }
    for n in 0..4u8 {
        prop_assert_eq!(j.nonce_consumed(&nonce(n)).unwrap(), m.nonces.contains(&n));
    }
    prop_assert!(j.verify_audit_chain().unwrap().intact());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn journal_agrees_with_the_model(steps in prop::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut j = Journal::create(&path).unwrap();
        let mut m = Model::default();
        for s in steps {
            match s {
                Step::Record { destructive, initial } => {
                    let class = if destructive { Class::Destructive } else { Class::Benign };
                    let new = NewOp {
                        action: Action::Start { vmid: Vmid::new(104).unwrap(), kind: GuestKind::Qemu },
                        class,
                        txn: None,
                        scratch: false,
                        identity: None,
                    };
                    let st = state(initial);
                    let rec = j.record(new, st.clone()).unwrap();
                    m.ops.insert(rec.id, (class, vec![st]));
                }
                Step::Transition { op, to } => {
                    if m.ops.is_empty() { continue; }
                    let id = *m.ops.keys().nth(op % m.ops.len()).unwrap();
                    let to = state(to);
                    let (class, hist) = m.ops.get_mut(&id).unwrap();
                    let legal = lifecycle::allowed(hist.last().unwrap(), &to)
                        && !(to == OpState::Intent && *class == Class::Destructive);
                    let got = j.transition(id, to.clone());
                    prop_assert_eq!(got.is_ok(), legal, "{:?}", got.err());
                    if legal { hist.push(to); }
                }
                Step::Consume { op, nonce: n } => {
                    if m.ops.is_empty() { continue; }
                    let id = *m.ops.keys().nth(op % m.ops.len()).unwrap();
                    let signer = Signer { principal: "p".into(), key_fingerprint: "SHA256:f".into(), role: Role::Operational };
                    let got = j.consume_nonce_into_intent(id, &nonce(n), 2_000_000_000, signer, Vec::new());
                    let (_, hist) = m.ops.get_mut(&id).unwrap();
                    if m.nonces.contains(&n) {
                        prop_assert_eq!(got.unwrap(), Consumed::AlreadyConsumed);
                    } else if lifecycle::allowed(hist.last().unwrap(), &OpState::Intent) {
                        prop_assert_eq!(got.unwrap(), Consumed::Fresh);
                        hist.push(OpState::Intent);
                        m.nonces.insert(n);
                    } else {
                        prop_assert!(got.is_err());
                    }
                }
                Step::Reopen => {
                    drop(j);
                    j = Journal::open(&path).unwrap();
                }
            }
            check(&j, &m)?;
        }
        drop(j);
        let j = Journal::open(&path).unwrap();
        check(&j, &m)?;
    }
}
