//! An op cut off by a migration ends as moved, not failed (#23): the gate with the agent's
//! real executor against a two-node simulated cluster over TLS. A guest that migrated away
//! between the plan and the call, one whose migration is under way when the call arrives, and
//! an op in flight at a crash that left no trace here, whose guest has left since: each op is
//! journaled `moved`, with the node that holds the guest when that is known, and nothing
//! reaches the guest's new node. A lock that is not a migration's, a `lock: migrate` with no
//! migration running, a create of a VMID another node holds, and a task that failed before its
//! guest left stay failures.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_gate::{Decision, FailureKind, Gate, GateConfig, Outcome, Submission};
use steward_journal::{Class, Journal, NewOp, OpState};
use steward_lab::{control, executor, rig, sim_tokens, RigConfig, ADMIN, EVERYDAY};
use steward_model::{Action, ConfigChange, GuestKind, Vmid};
use steward_proxmox_client::{ApiToken, GuestRead, GuestWrite, PveWriter};
use steward_pve_sim::{Sim, SimConfig};
use time::OffsetDateTime;

async fn cluster() -> Sim {
    Sim::start(SimConfig {
        node: "pve-a".into(),
        peers: vec!["pve-b".into()],
        guests: 5,
        tokens: sim_tokens().unwrap(),
        task_time: Duration::from_millis(150),
        control: Some("127.0.0.1:0".parse().unwrap()),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn gate(sim: &Sim, journal: Arc<Journal>) -> Gate {
    // No signer: these tests submit benign actions only.
    let store = TrustStore::parse("empty", b"").unwrap();
    let verifier = Verifier::new(store, VerifyConfig::new("pve-a")).unwrap();
    let exec = executor(
        &sim.addr.to_string(),
        &sim.fingerprint,
        EVERYDAY,
        Duration::from_secs(10),
    )
    .unwrap();
    Gate::new(verifier, journal, Box::new(exec), GateConfig::default())
}

fn vmid(n: u32) -> Vmid {
    Vmid::new(u64::from(n)).unwrap()
}

fn start(n: u32) -> Action {
    Action::Start {
        vmid: vmid(n),
        kind: GuestKind::Qemu,
    }
}

/// `memory` set on `n`, at the digest the guest has now (as a pass would plan it).
fn memory(sim: &Sim, n: u32, mb: &str) -> Action {
    let digest = sim.with_node(|node| steward_pve_sim::Node::digest(&node.st.guests[&n]));
    Action::SetConfig {
        vmid: vmid(n),
        kind: GuestKind::Qemu,
        change: ConfigChange {
            set: [("memory".to_string(), mb.to_string())].into(),
            digest: Some(digest),
            ..ConfigChange::default()
        },
    }
}

/// The node holding `n` and its memory there (tasks due by now have ended, as a request to
/// any node would see).
fn held_by(sim: &Sim, n: u32) -> (String, Option<String>) {
    sim.with_cluster(|c| {
        c.tick();
        let node = c.owner(n).unwrap().to_string();
        let memory = c.nodes[&node].st.guests[&n].config.get("memory").cloned();
        (node, memory)
    })
}

/// Acts behind the agent's back on the control listener (`POST path` with `body`).
async fn act(sim: &Sim, path: &str, body: &str) {
    let (status, v) = control(sim.control_addr.unwrap(), "POST", path, body)
        .await
        .unwrap();
    assert_eq!(status, 200, "{path}: {v}");
}

/// Migrates `n` out of band (as root on the node, `qm migrate`) and returns the task's UPID.
async fn migrate(sim: &Sim, n: u32, params: &str) -> String {
    let (status, v) = control(
        sim.control_addr.unwrap(),
        "POST",
        &format!("/guests/{n}/migrate"),
        params,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{v}");
    v["upid"].as_str().unwrap().to_string()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < end, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `action` journaled up to its intent (a crash fell before the POST's answer).
fn in_intent(journal: &Journal, action: Action) -> steward_journal::OpRecord {
    let op = journal
        .record(
            NewOp {
                action,
                class: Class::Benign,
                txn: None,
                scratch: false,
                identity: None,
            },
            OpState::Planned,
        )
        .unwrap();
    journal.transition(op.id, OpState::Intent).unwrap();
    op
}

/// Where the guest went and what failed, for a decision that ended its op as moved.
fn moved(d: &Decision) -> (Option<String>, FailureKind) {
    match d {
        Decision::Executed {
            outcome: Outcome::Moved { node, failure },
            ..
        } => (node.clone(), failure.kind.clone()),
        other => panic!("expected the op ended as moved, got {other:?}"),
    }
}

fn submitted(d: &Decision) -> steward_journal::OpId {
    match d {
        Decision::Executed { op, .. } => *op,
        other => panic!("not executed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_cut_off_by_a_migration_ends_as_moved_and_another_lock_stays_a_failure() {
    let sim = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    let g = gate(&sim, journal.clone());
    let now = OffsetDateTime::now_utc;

    // 101 (a stopped VM) is planned a change here, then migrates to pve-b before the call.
    let change = memory(&sim, 101, "3072");
    let before = held_by(&sim, 101).1;
    migrate(&sim, 101, r#"{"target": "pve-b"}"#).await;
    until("101 on pve-b", || held_by(&sim, 101).0 == "pve-b").await;
    let d = g.submit(change, Submission::default(), now()).await;
    assert_eq!(
        moved(&d),
        (Some("pve-b".to_string()), FailureKind::NotFound)
    );
    match journal.get(submitted(&d)).unwrap().unwrap().state() {
        OpState::Moved { node, .. } => assert_eq!(node.as_deref(), Some("pve-b")),
        other => panic!("journaled {}", other.name()),
    }
    assert_eq!(
        held_by(&sim, 101),
        ("pve-b".into(), before),
        "nothing was written on the guest's new node"
    );

    // 100 (a running VM) is migrating when the call arrives: the migration's task hangs, so the
    // guest keeps `lock: migrate` for as long as the test looks.
    let change = memory(&sim, 100, "3072");
    act(&sim, "/tasks/hang-next", r#"{"n": 1}"#).await;
    migrate(
        &sim,
        100,
        r#"{"target": "pve-b", "online": "1", "with-local-disks": "1"}"#,
    )
    .await;
    // qemu-server checks the digest before the lock, and `lock: migrate` changed it.
    let d = g.submit(change, Submission::default(), now()).await;
    assert_eq!(moved(&d), (None, FailureKind::DigestMoved));
    assert!(matches!(
        journal.get(submitted(&d)).unwrap().unwrap().state(),
        OpState::Moved { node: None, .. }
    ));
    // A stop, which carries no digest, meets the lock itself.
    let stop = Action::Stop {
        vmid: vmid(100),
        kind: GuestKind::Qemu,
    };
    let d = g.submit(stop, Submission::default(), now()).await;
    assert_eq!(
        moved(&d),
        (
            None,
            FailureKind::Locked {
                lock: "migrate".into()
            }
        )
    );
    assert_eq!(
        sim.with_node(|n| n.st.guests[&100].status.clone()),
        "running",
        "the stop did not run"
    );

    // 103 is locked by a backup, not a migration: the same refusal stays a failure the retry
    // policy counts.
    act(&sim, "/guests/103/lock", r#"{"lock": "backup"}"#).await;
    let change = memory(&sim, 103, "3072");
    let d = g.submit(change, Submission::default(), now()).await;
    match &d {
        Decision::Executed {
            outcome: Outcome::Failed(f),
            ..
        } => assert_eq!(
            f.kind,
            FailureKind::Locked {
                lock: "backup".into()
            }
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(
        journal.get(submitted(&d)).unwrap().unwrap().state(),
        OpState::Failed { .. }
    ));

    // 104 keeps a `lock: migrate` that a failed migration left behind, with no migration
    // running: nothing is moving, so the failure stands (the lock policy then parks it).
    let change = memory(&sim, 104, "3072");
    act(&sim, "/guests/104/lock", r#"{"lock": "migrate"}"#).await;
    let d = g.submit(change, Submission::default(), now()).await;
    assert!(
        matches!(&d, Decision::Executed { outcome: Outcome::Failed(f), .. } if f.kind == FailureKind::DigestMoved),
        "{d:?}"
    );

    // A create of a VMID pve-b holds was never this node's guest: a failure, not a move.
    let create = Action::Create {
        vmid: vmid(106),
        kind: GuestKind::Qemu,
        config: [("memory".to_string(), "512".to_string())].into(),
    };
    assert_eq!(held_by(&sim, 106).0, "pve-b");
    let d = g.submit(create, Submission::default(), now()).await;
    match &d {
        Decision::Executed {
            outcome: Outcome::Failed(f),
            ..
        } => assert!(f.detail.contains("already exists on node 'pve-b'"), "{f:?}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_ends_an_op_whose_guest_left_during_the_crash_as_moved() {
    let sim = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    // The agent crashed between the intent to start 101 and the POST; meanwhile an
    // administrator migrated 101 to pve-b. The same for 103, which stayed: abandoned as before.
    let op = in_intent(&journal, start(101));
    let stays = in_intent(&journal, start(103));
    migrate(&sim, 101, r#"{"target": "pve-b"}"#).await;
    until("101 on pve-b", || held_by(&sim, 101).0 == "pve-b").await;
    // And a stop of 104 whose task had failed before the crash let it be recorded, 104
    // migrated since: the task's own failure stands (a migration after it says nothing about
    // why it failed).
    let w = PveWriter::new(
        steward_lab::endpoint(&sim.addr.to_string(), &sim.fingerprint).unwrap(),
        ApiToken::parse(ADMIN).unwrap(),
        "pve-a",
    )
    .unwrap();
    sim.with_node(|n| n.st.fail_next = 1);
    let u = w.stop(GuestKind::Qemu, vmid(104)).await.unwrap();
    assert!(w.wait_task(&u, Duration::from_secs(5)).await.is_err());
    let stop = in_intent(
        &journal,
        Action::Stop {
            vmid: vmid(104),
            kind: GuestKind::Qemu,
        },
    );
    journal
        .transition(
            stop.id,
            OpState::Dispatched {
                upid: u.to_string(),
            },
        )
        .unwrap();
    migrate(
        &sim,
        104,
        r#"{"target": "pve-b", "online": "1", "with-local-disks": "1"}"#,
    )
    .await;
    until("104 on pve-b", || held_by(&sim, 104).0 == "pve-b").await;

    let r = rig(
        &sim.addr.to_string(),
        &sim.fingerprint,
        journal.clone(),
        RigConfig {
            everyday: ADMIN,
            run: false,
            ..RigConfig::default()
        },
    )
    .await
    .unwrap();
    let rec = r.recovered.unwrap().recovery;
    assert_eq!(
        (rec.moved, rec.abandoned, rec.settled),
        (1, 1, 1),
        "{rec:?}"
    );
    match journal.get(stop.id).unwrap().unwrap().state() {
        OpState::Failed { failure } => assert!(
            matches!(failure.kind, FailureKind::TaskFailed { .. }),
            "{failure:?}"
        ),
        other => panic!("journaled {}", other.name()),
    }
    match journal.get(op.id).unwrap().unwrap().state() {
        OpState::Moved { node, .. } => assert_eq!(node.as_deref(), Some("pve-b")),
        other => panic!("journaled {}", other.name()),
    }
    assert!(matches!(
        journal.get(stays.id).unwrap().unwrap().state(),
        OpState::Abandoned { .. }
    ));
}
