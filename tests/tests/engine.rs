//! The engine against the simulator over real TLS, with real `ssh-keygen` signatures: converge
//! from nothing, idempotence, drift healed by the sweep, locks waited out or parked, a digest
//! race re-planned, a held destroy summarized, signed, run once and replayed, and recovery after
//! a crash between intent and POST and between POST and outcome.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use steward_engine::EngineConfig;
use steward_gate::{Decision, Outcome};
use steward_journal::{Journal, NewOp, OpState};
use steward_lab::*;
use steward_model::{Action, GuestKind, Vmid};
use steward_proxmox_client::{ApiToken, GuestWrite, PveWriter};

fn mixed(n: u32) -> Value {
    let guests: Vec<Value> = (0..n)
        .map(|i| {
            let vmid = 200 + i;
            if i % 3 == 2 {
                json!({"vmid": vmid, "kind": "lxc", "state": "stopped", "memory": 256, "tags": ["ct"],
                       "create": {"ostemplate": TEMPLATE, "rootfs": "local-lvm:1", "net0": "name=eth0,bridge=vmbr0"}})
            } else {
                json!({"vmid": vmid, "kind": "qemu", "state": "running", "name": format!("vm{vmid}"), "memory": "1 GiB",
                       "cores": 2, "tags": ["web", "prod"], "description": "managed",
                       "create": {"scsi0": "local-lvm:1", "net0": "virtio,bridge=vmbr0"}})
            }
        })
        .collect();
    json!({"version": 1, "generation": 1, "guests": guests})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_fifty_guests_from_nothing_then_writes_nothing() {
    let l = Lab::start(LabConfig {
        guests: 0,
        sweep: Duration::from_secs(2),
        concurrency: 8,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(mixed(50)).unwrap();
    l.until("50 converged", |l| l.engine.status_now().converged == 50)
        .await;
    let created = l.sim.with_node(|n| n.st.guests.len());
    assert_eq!(created, 50);
    // Created guests carry the identity the agent gave them, and the journal knows it.
    let facts = l.journal.provenance(Vmid::new(200).unwrap()).unwrap();
    assert!(facts[0]
        .identity
        .as_deref()
        .is_some_and(|i| i.starts_with("vmgenid:")));
    // Idempotence: passes go on, and nothing more is written.
    let before = l.all_writes();
    let passes = l.engine.status_now().passes;
    l.until("three more passes", |l| {
        l.engine.status_now().passes >= passes + 3
    })
    .await;
    assert_eq!(l.all_writes(), before, "a converged node gets no writes");
    let _ = l.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_no_list_shows_is_healed_within_one_sweep_and_locks_are_waited_out() {
    let l = Lab::start(LabConfig {
        guests: 6,
        sweep: Duration::from_millis(900),
        concurrency: 4,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "stopped", "description": "ours", "cores": 2},
        {"vmid": 103, "kind": "qemu", "state": "stopped", "memory": 2048}
    ]}))
    .unwrap();
    l.until("converged", |l| l.engine.status_now().converged == 2)
        .await;
    // Another tool edits a key no list field shows: only the sweep can see it.
    l.sim.with_node(|n| {
        n.edit(
            101,
            &[("description".to_string(), "theirs".to_string())].into(),
            &[],
        )
        .unwrap()
    });
    let t0 = std::time::Instant::now();
    l.until("drift healed", |l| {
        l.sim.with_node(|n| {
            n.st.guests[&101]
                .config
                .get("description")
                .map(String::as_str)
                == Some("ours")
        })
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "healed in {:?}",
        t0.elapsed()
    );
    // A guest locked by a running backup is not written while locked, then converges.
    l.sim.with_node(|n| n.st.hang_next = 1);
    let w = PveWriter::new(
        endpoint(&l.sim.addr.to_string(), &l.sim.fingerprint).unwrap(),
        ApiToken::parse(ADMIN).unwrap(),
        "pve-a",
    )
    .unwrap();
    // A task that runs (and changes nothing: 103 is stopped already) stands for the backup.
    let _backup = w
        .stop(GuestKind::Qemu, Vmid::new(103).unwrap())
        .await
        .unwrap();
    l.sim.lock(103, Some("backup"));
    let writes = l.writes(103);
    l.desire(json!({"version": 1, "generation": 2, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "stopped", "description": "ours", "cores": 2},
        {"vmid": 103, "kind": "qemu", "state": "stopped", "memory": 4096}
    ]}))
    .unwrap();
    l.passes(3).await;
    assert_eq!(l.writes(103), writes, "never forced past a lock");
    assert!(
        !l.engine.status_now().parked.iter().any(|p| p.vmid == 103),
        "a lock with a task behind it is waited for, not parked"
    );
    l.sim.lock(103, None);
    l.sim.with_node(|n| {
        for t in n.st.tasks.iter_mut().filter(|t| t.ends_ms.is_none()) {
            t.ends_ms = Some(0);
        }
    });
    l.until("memory set after unlock", |l| {
        l.sim.with_node(|n| {
            n.st.guests[&103].config.get("memory").map(String::as_str) == Some("4096")
        })
    })
    .await;
    // A backup lock with no task behind it (the backup died) is parked, not retried forever.
    l.sim.lock(104, Some("backup"));
    l.desire(json!({"version": 1, "generation": 3, "guests": [
        {"vmid": 104, "kind": "qemu", "state": "running", "memory": 1024}
    ]}))
    .unwrap();
    l.until("dead backup lock parked", |l| {
        l.engine.status_now().parked.iter().any(|p| p.vmid == 104)
    })
    .await;
    assert_eq!(l.writes(104), 0);
    // A lock no token can clear is parked for an administrator, not retried.
    l.sim
        .with_node(|n| n.leftover(150, steward_pve_sim::Kind::Qemu, "create"));
    l.desire(json!({"version": 1, "generation": 4, "guests": [
        {"vmid": 150, "kind": "qemu", "state": "stopped", "memory": 1024}
    ]}))
    .unwrap();
    l.until("parked", |l| {
        l.engine
            .status_now()
            .parked
            .iter()
            .any(|p| p.vmid == 150 && p.why.contains("administrator"))
    })
    .await;
    assert_eq!(l.writes(150), 0);
    let _ = l.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_race_is_replanned_not_retried_blindly() {
    // A long sweep: the engine does not see the out-of-band edit before it writes.
    let l = Lab::start(LabConfig {
        guests: 6,
        sweep: Duration::from_secs(3600),
        concurrency: 4,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "stopped", "cores": 2}
    ]}))
    .unwrap();
    l.until("converged", |l| l.engine.status_now().converged == 1)
        .await;
    // Another tool changes an unmanaged key the list does not show: the digest moves silently.
    l.sim.with_node(|n| {
        n.edit(
            101,
            &[("boot".to_string(), "order=net0".to_string())].into(),
            &[],
        )
        .unwrap()
    });
    l.desire(json!({"version": 1, "generation": 2, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "stopped", "cores": 4}
    ]}))
    .unwrap();
    l.until("cores 4", |l| {
        l.sim
            .with_node(|n| n.st.guests[&101].config.get("cores").map(String::as_str) == Some("4"))
    })
    .await;
    let ops = l.journal.all_ops().unwrap();
    let moved = ops.iter().any(
        |r| matches!(r.state(), OpState::Failed { failure } if failure.code() == "digest_moved"),
    );
    assert!(moved, "the first write met the moved digest: {ops:#?}");
    // The other tool's change survived: the write was re-planned against the new config.
    assert_eq!(
        l.sim
            .with_node(|n| n.st.guests[&101].config.get("boot").cloned()),
        Some("order=net0".into())
    );
    let _ = l.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_destroy_is_held_summarized_signed_run_once_and_replayed() {
    let l = Lab::start(LabConfig {
        guests: 6,
        sweep: Duration::from_secs(5),
        concurrency: 4,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "absent"}
    ]}))
    .unwrap();
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let held = l.engine.held().await;
    assert_eq!(held.len(), 1);
    let h = &held[0];
    assert!(
        h.summary.contains("local-lvm:vm-101-disk-0 (32G)"),
        "{}",
        h.summary
    );
    assert!(h.summary.contains("guest-101"), "{}", h.summary);
    assert_eq!(l.writes(101), 0, "nothing ran unsigned");
    let bytes = serde_json::to_vec(&h.template).unwrap();
    let sig = l.kg.sign(&l.op.private, "op@steward", &bytes).unwrap();
    let d = l.engine.present(&bytes, &[sig.to_vec()]).await.decision;
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
    assert!(l.sim.with_node(|n| !n.st.guests.contains_key(&101)));
    let destroys = l.sim.with_node(|n| {
        n.st.counters
            .calls
            .iter()
            .filter(|(k, _)| k.starts_with("101 destroy"))
            .map(|(_, c)| *c)
            .sum::<u64>()
    });
    assert_eq!(destroys, 1);
    // The same signed bytes again, as a job: a replay, and the sim sees no second destroy.
    let again = l.engine.present(&bytes, &[sig.to_vec()]).await.decision;
    assert!(
        matches!(again, Decision::Replay { first: Some(_) }),
        "{again:?}"
    );
    assert_eq!(l.writes(101), 1);
    let _ = l.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_adopts_or_abandons_and_never_dispatches_again() {
    let sim = sim_with(6).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    let destroy = |n: u32| Action::Destroy {
        vmid: Vmid::new(u64::from(n)).unwrap(),
        kind: GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: false,
    };
    let intent = |a: Action, nonce: &str| {
        let rec = journal
            .record(
                NewOp {
                    action: a,
                    class: steward_journal::Class::Destructive,
                    txn: None,
                    scratch: false,
                    identity: None,
                },
                OpState::Planned,
            )
            .unwrap();
        let signer = steward_journal::Signer {
            principal: "alice@steward.test".into(),
            key_fingerprint: "SHA256:x".into(),
            role: steward_authz::Role::Operational,
        };
        journal
            .consume_nonce_into_intent(
                rec.id,
                &steward_authz::Nonce::parse(nonce).unwrap(),
                i64::MAX,
                signer,
                Vec::new(),
            )
            .unwrap();
        rec.id
    };
    // Crash between intent and POST: the destroy of 101 never reached the node.
    let lost = intent(destroy(101), &steward_testkit::nonce());
    // Crash between POST and outcome: the destroy of 103 was sent, its UPID never journaled.
    let sent = intent(destroy(103), &steward_testkit::nonce());
    let w = PveWriter::new(
        endpoint(&sim.addr.to_string(), &sim.fingerprint).unwrap(),
        ApiToken::parse(ADMIN).unwrap(),
        "pve-a",
    )
    .unwrap();
    w.destroy(GuestKind::Qemu, Vmid::new(103).unwrap(), true, false)
        .await
        .unwrap();
    // Crash after the UPID was journaled: the stop of 100 is followed to its end.
    let stop = journal
        .record(
            NewOp {
                action: Action::Stop {
                    vmid: Vmid::new(100).unwrap(),
                    kind: GuestKind::Qemu,
                },
                class: steward_journal::Class::Benign,
                txn: None,
                scratch: false,
                identity: None,
            },
            OpState::Planned,
        )
        .unwrap();
    journal.transition(stop.id, OpState::Intent).unwrap();
    let u = w
        .stop(GuestKind::Qemu, Vmid::new(100).unwrap())
        .await
        .unwrap();
    journal
        .transition(
            stop.id,
            OpState::Dispatched {
                upid: u.to_string(),
            },
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    drop(w);
    // The agent's reader is the admin token here: recovery reads the admin token's tasks.
    let rig = rig(
        &sim.addr.to_string(),
        &sim.fingerprint,
        journal.clone(),
        RigConfig {
            engine: EngineConfig {
                task_deadline: Duration::from_secs(10),
                ..EngineConfig::default()
            },
            everyday: ADMIN,
            run: false,
            ..RigConfig::default()
        },
    )
    .await
    .unwrap();
    let engine = rig.engine.clone();
    let r = rig.recovered.unwrap().recovery;
    assert_eq!((r.abandoned, r.adopted, r.settled), (1, 1, 1), "{r:?}");
    assert!(matches!(
        journal.get(lost).unwrap().unwrap().state(),
        OpState::Abandoned { .. }
    ));
    // The adopted task's outcome is recorded by recovery's waiter, after `recover` returned.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while !journal.get(sent).unwrap().unwrap().state().is_terminal() {
        assert!(
            tokio::time::Instant::now() < end,
            "adopted op never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let adopted = journal.get(sent).unwrap().unwrap();
    assert!(adopted.history.iter().any(
        |t| matches!(&t.state, OpState::Dispatched { upid } if upid.contains(":qmdestroy:103:"))
    ));
    assert_eq!(adopted.state(), &OpState::Succeeded);
    assert_eq!(
        journal.get(stop.id).unwrap().unwrap().state(),
        &OpState::Succeeded
    );
    // Recovery again is a no-op, and nothing was dispatched by it: 101 still exists, 103 was
    // destroyed exactly once.
    let again = engine.recover().await.unwrap().recovery;
    assert_eq!(again, steward_engine::Recovery::default());
    let calls: BTreeMap<String, u64> = sim.with_node(|n| n.st.counters.calls.clone());
    assert!(sim.with_node(|n| n.st.guests.contains_key(&101)));
    assert_eq!(calls.get(&format!("103 destroy {USER}")), Some(&1));
    assert_eq!(calls.get(&format!("101 destroy {USER}")), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_names_the_guest_and_never_reaches_another_at_its_vmid() {
    let l = Lab::start(LabConfig {
        guests: 6,
        sweep: Duration::from_secs(3600),
        concurrency: 4,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "absent"}
    ]}))
    .unwrap();
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let h = l.engine.held().await.remove(0);
    let identity = h.template["params"]["identity"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(identity.starts_with("vmgenid:"), "{identity}");
    let bytes = serde_json::to_vec(&h.template).unwrap();
    let sig = l.kg.sign(&l.op.private, "op@steward", &bytes).unwrap();
    // Before the operator's signature arrives, 101 is destroyed some other way and a customer's
    // guest takes the VMID. The engine stops managing 101 meanwhile (a long sweep: it has not
    // looked at the new guest's config yet).
    l.desire(json!({"version": 1, "generation": 2, "guests": []}))
        .unwrap();
    l.sim.with_node(|n| {
        n.remove_guest(101);
        n.add_guest(
            101,
            steward_pve_sim::Kind::Qemu,
            [(
                "vmgenid".to_string(),
                "0badc0de-0000-4000-8000-00000000c057".to_string(),
            )]
            .into(),
            false,
        );
    });
    // The signature, presented for the held op and again as a job: the customer's guest is
    // never destroyed.
    let d = l.engine.present(&bytes, &[sig.to_vec()]).await.decision;
    assert!(
        !matches!(
            d,
            Decision::Executed {
                outcome: Outcome::Succeeded,
                ..
            }
        ),
        "{d:?}"
    );
    let again = l.engine.present(&bytes, &[sig.to_vec()]).await.decision;
    assert!(
        !matches!(
            again,
            Decision::Executed {
                outcome: Outcome::Succeeded,
                ..
            }
        ),
        "{again:?}"
    );
    assert!(
        l.sim.with_node(|n| n.st.guests.contains_key(&101)),
        "the customer's guest is still there"
    );
    let destroys = l.sim.with_node(|n| {
        n.st.counters
            .calls
            .iter()
            .filter(|(k, _)| k.starts_with("101 destroy"))
            .map(|(_, c)| *c)
            .sum::<u64>()
    });
    assert_eq!(destroys, 0);
    let _ = l.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_create_stays_held_until_something_takes_its_vmid() {
    let l = Lab::start(LabConfig {
        guests: 6,
        sweep: Duration::from_secs(5),
        concurrency: 4,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    // A create that attaches another guest's existing volume is held for a signature.
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 950, "kind": "qemu", "state": "stopped", "create": {"scsi0": "local-lvm:vm-100-disk-0"}}
    ]})).unwrap();
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let passes = l.engine.status_now().passes;
    l.until("more passes", |l| {
        l.engine.status_now().passes >= passes + 3
    })
    .await;
    assert_eq!(
        l.engine.status_now().held,
        1,
        "a create is not superseded for its guest being absent"
    );
    let _ = l.stop.send(true);
}

#[tokio::test]
async fn the_executor_refuses_a_create_on_a_taken_vmid_and_a_destroy_of_another_guest() {
    use steward_gate::{Authority, Executor, Guard};
    let sim = sim_with(6).await.unwrap();
    let exec = executor(
        &sim.addr.to_string(),
        &sim.fingerprint,
        EVERYDAY,
        Duration::from_secs(10),
    )
    .unwrap();
    let create = Action::Create {
        vmid: Vmid::new(101).unwrap(),
        kind: GuestKind::Qemu,
        config: [
            ("archive".to_string(), "local:backup/x".to_string()),
            ("force".to_string(), "1".to_string()),
        ]
        .into(),
    };
    assert!(
        exec.dispatch(&create, &Guard::Absent, Authority::Admin)
            .await
            .is_err(),
        "101 exists"
    );
    let destroy = Action::Destroy {
        vmid: Vmid::new(101).unwrap(),
        kind: GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: false,
    };
    let other = Guard::Identity(Some("vmgenid:0badc0de-0000-4000-8000-00000000ffff".into()));
    assert!(exec
        .dispatch(&destroy, &other, Authority::Admin)
        .await
        .is_err());
    assert!(sim.with_node(|n| n.st.guests.contains_key(&101)));
    assert_eq!(
        sim.with_node(|n| n.st.counters.calls.len()),
        0,
        "nothing reached the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_jobs_naming_made_up_guests_leave_no_state_behind() {
    let lab = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(60),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let before = lab.engine.guest_locks_kept();
    // A hostile hub: payloads naming 300 VMIDs nobody manages, with garbage signatures.
    for vmid in 5000..5300u32 {
        let payload = format!("{{\"guest\": {vmid}, \"op\": \"guest.destroy\"}}");
        let d = lab
            .engine
            .present(
                payload.as_bytes(),
                &[b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".to_vec()],
            )
            .await
            .decision;
        assert!(matches!(d, steward_gate::Decision::Refused { .. }), "{d:?}");
    }
    assert!(
        lab.engine.guest_locks_kept() <= before + 3,
        "{} locks kept",
        lab.engine.guest_locks_kept()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_journal_stops_every_action_says_why_and_recovers() {
    let lab = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(60),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let memory = |l: &Lab, vmid: u32| {
        l.sim.with_node(|n| {
            n.st.guests
                .get(&vmid)
                .and_then(|g| g.config.get("memory").cloned())
        })
    };
    // 101 converges while the disk is fine: an acknowledged op.
    lab.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "stopped", "memory": 3072}
    ]}))
    .unwrap();
    lab.until("101 at 3 GiB", |l| {
        memory(l, 101).as_deref() == Some("3072")
    })
    .await;
    let acknowledged = lab.journal.all_ops().unwrap();
    // The disk fills: every barrier fails from now on.
    lab.journal.test_hooks().fail_next_barriers(u32::MAX);
    let before = lab.writes(100);
    lab.desire(json!({"version": 1, "generation": 2, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "stopped", "memory": 3072},
        {"vmid": 100, "kind": "qemu", "state": "running", "memory": 1536}
    ]}))
    .unwrap();
    lab.until("the status says the journal fails", |l| {
        l.engine.status_now().journal_error.is_some()
    })
    .await;
    let why = lab.engine.status_now().journal_error.unwrap();
    assert!(why.contains("No space left on device"), "{why}");
    lab.passes(3).await;
    assert_eq!(
        lab.writes(100),
        before,
        "nothing may be sent while the journal fails"
    );
    // Space again: the engine resumes by itself (it backs off, it does not park).
    lab.journal.test_hooks().fail_next_barriers(0);
    // (A running VM takes the new memory as pending: the write is what counts here.)
    lab.until("100's memory written once writes succeed", |l| {
        l.writes(100) > before && l.engine.status_now().converged == 2
    })
    .await;
    lab.until("the status clears", |l| {
        l.engine.status_now().journal_error.is_none()
    })
    .await;
    // Nothing acknowledged before the fault was lost.
    for op in acknowledged {
        let now = lab.journal.get(op.id).unwrap().unwrap();
        assert!(now.history.len() >= op.history.len(), "{}", op.id);
    }
    assert!(lab
        .journal
        .verify_audit_chain()
        .unwrap()
        .problems
        .is_empty());
}

/// A node without quorum (#23): a held destroy presented with its signature runs nothing,
/// spends nothing and stays held, refused `no_quorum`; once quorum is back the same signed
/// bytes run, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_presented_without_quorum_spends_nothing_and_runs_when_quorum_is_back() {
    let l = Lab::start(LabConfig {
        guests: 6,
        sweep: Duration::from_secs(5),
        concurrency: 4,
        peers: vec!["pve-b".into()],
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "absent"}
    ]}))
    .unwrap();
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let h = l.engine.held().await.remove(0);
    let bytes = serde_json::to_vec(&h.template).unwrap();
    let sig = l.kg.sign(&l.op.private, "op@steward", &bytes).unwrap();
    l.sim
        .with_cluster(|c| c.set_quorum("pve-a", false))
        .unwrap();
    l.until("no quorum seen", |l| {
        let _ = l.triggers.send(steward_engine::Trigger::ReconcileNow);
        l.engine.status_now().no_quorum
    })
    .await;
    let d = l.engine.present(&bytes, &[sig.to_vec()]).await.decision;
    assert!(
        matches!(&d, Decision::Refused { reason, .. } if reason.code() == "no_quorum"),
        "{d:?}"
    );
    l.passes(2).await;
    assert_eq!(l.writes(101), 0, "nothing reached the node");
    assert_eq!(l.engine.held().await.len(), 1, "still held");
    l.sim.with_cluster(|c| c.set_quorum("pve-a", true)).unwrap();
    l.until("quorum seen", |l| {
        let _ = l.triggers.send(steward_engine::Trigger::ReconcileNow);
        !l.engine.status_now().no_quorum
    })
    .await;
    let d = l.engine.present(&bytes, &[sig.to_vec()]).await.decision;
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
    assert!(l.sim.with_node(|n| !n.st.guests.contains_key(&101)));
    assert_eq!(l.writes(101), 1);
    let _ = l.stop.send(true);
}
