//! The gate's seams with its neighbours: the journal runs off the async workers (a slow disk
//! delays the op it belongs to, not the runtime), and an executor's failure reaches the journal
//! typed.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_gate::{Decision, Failure, FailureKind, Gate, GateConfig, Outcome, Submission};
use steward_journal::{Journal, OpState};
use steward_lab::FakeExecutor;
use steward_model::{Action, GuestKind, Vmid};
use time::OffsetDateTime;

fn gate(dir: &tempfile::TempDir, result: Result<Option<String>, Failure>) -> (Gate, Arc<Journal>) {
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    // No signer can verify anything here; these tests only submit benign actions.
    let store = TrustStore::parse("empty", b"").unwrap();
    let verifier = Verifier::new(store, VerifyConfig::new("pve-a")).unwrap();
    let gate = Gate::new(
        verifier,
        journal.clone(),
        Box::new(FakeExecutor::answering(result)),
        GateConfig::default(),
    );
    (gate, journal)
}

fn start(n: u64) -> Action {
    Action::Start {
        vmid: Vmid::new(n).unwrap(),
        kind: GuestKind::Qemu,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_barrier_does_not_stall_other_tasks_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, journal) = gate(&dir, Ok(None));
    // Every durable write now takes 100 ms; a benign submission makes four or more of them.
    journal
        .test_hooks()
        .set_barrier_delay(Duration::from_millis(100));
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(5));
            loop {
                every.tick().await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let before = ticks.load(Ordering::Relaxed);
    let d = gate
        .submit(start(104), Submission::default(), OffsetDateTime::now_utc())
        .await;
    let during = ticks.load(Ordering::Relaxed) - before;
    ticker.abort();
    assert!(
        matches!(
            d,
            Decision::Executed {
                outcome: Outcome::Succeeded,
                ..
            }
        ),
        "{d:?}"
    );
    // ≥ 400 ms of barriers: had they run on this (only) worker thread, the ticker could not
    // have run during the submission at all.
    assert!(
        during >= 20,
        "the ticker ran {during} times during a ≥ 400 ms submission"
    );
}

#[tokio::test]
async fn an_executor_failure_reaches_the_journal_typed() {
    let dir = tempfile::tempdir().unwrap();
    let failure = Failure::new(
        FailureKind::Locked {
            lock: "backup".into(),
        },
        "VM is locked (backup)",
    );
    let (gate, journal) = gate(&dir, Err(failure.clone()));
    let d = gate
        .submit(start(104), Submission::default(), OffsetDateTime::now_utc())
        .await;
    let Decision::Executed {
        op,
        outcome: Outcome::Failed(got),
        ..
    } = d
    else {
        panic!("expected a failed execution, got {d:?}");
    };
    assert_eq!(got, failure);
    // Read back from a reopened journal: the kind and the lock's name survive.
    drop(gate);
    drop(journal);
    let journal = Journal::open(dir.path().join("journal")).unwrap();
    let rec = journal.get(op).unwrap().unwrap();
    assert_eq!(
        rec.state(),
        &OpState::Failed {
            failure: failure.clone()
        }
    );
}
