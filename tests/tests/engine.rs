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
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_engine::{Engine, EngineConfig, NodeExecutor, Trigger};
use steward_gate::{Decision, Gate, GateConfig, Outcome};
use steward_journal::{Journal, NewOp, OpState};
use steward_model::{Action, GuestKind, Vmid};
use steward_proxmox_client::{tls, ApiToken, Endpoint, GuestWrite, PveClient, PveWriter, Trust};
use steward_pve_sim::{Privileges, Sim, SimConfig, SimToken};
use steward_testkit::{Key, KeyType, Keygen};
use tokio::sync::{mpsc, watch};

const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";
const USER: &str = "steward@pve!admin";
const EVERYDAY: &str = "steward@pve!agent=5f1e3c2a-0000-4000-8000-00000000e7e1";
const EVERYDAY_USER: &str = "steward@pve!agent";

/// What `steward-agent setup-token` grants the everyday token: observe, power, and the config
/// keys the planner manages (no VM.Allocate, disk, snapshot or backup privileges).
fn everyday_privileges() -> Privileges {
    Privileges::role_on("PVEAuditor", "/").unwrap().and(
        "/vms",
        &[
            "VM.Audit",
            "VM.PowerMgmt",
            "VM.Config.Memory",
            "VM.Config.CPU",
            "VM.Config.Options",
        ],
    )
}

/// The agent's executor: the everyday token's writer and the admin token's.
fn executor(sim: &Sim) -> NodeExecutor {
    let w = |t: &str| PveWriter::new(endpoint(sim), ApiToken::parse(t).unwrap(), "pve-a").unwrap();
    NodeExecutor::new(
        Box::new(w(EVERYDAY)),
        Box::new(w(ADMIN)),
        Duration::from_secs(10),
    )
}
const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

struct Lab {
    sim: Sim,
    engine: Arc<Engine>,
    journal: Arc<Journal>,
    triggers: mpsc::UnboundedSender<Trigger>,
    stop: watch::Sender<bool>,
    kg: Keygen,
    op: Key,
    text: String,
    sweep: Duration,
    concurrency: usize,
    _dir: tempfile::TempDir,
}

fn endpoint(s: &Sim) -> Endpoint {
    Endpoint {
        addr: s.addr.to_string(),
        server_name: "localhost".into(),
        trust: Trust::Fingerprint(tls::parse_fingerprint(&s.fingerprint).unwrap()),
        timeout: Duration::from_secs(5),
        keep_alive: true,
    }
}

async fn lab_with(guests: usize, sweep: Duration, concurrency: usize) -> Lab {
    let sim = Sim::start(SimConfig {
        guests,
        tokens: vec![
            (SimToken::parse(EVERYDAY).unwrap(), everyday_privileges()),
            (SimToken::parse(ADMIN).unwrap(), Privileges::all()),
        ],
        task_time: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kg = Keygen::new().unwrap();
    let op = kg.key(KeyType::Ed25519, "alice").unwrap();
    let text = format!(
        "alice@steward.test namespaces=\"op@steward\" {}\n",
        op.public_line
    );
    let journal = Arc::new(Journal::create(dir.path().join("journal")).unwrap());
    let (engine, triggers, stop) =
        start_engine(&sim, &text, journal.clone(), sweep, concurrency).await;
    Lab {
        sim,
        engine,
        journal,
        triggers,
        stop,
        kg,
        op,
        text,
        sweep,
        concurrency,
        _dir: dir,
    }
}

/// An engine (gate, both tokens' writers, reader) over `journal` against `sim`, recovered and
/// running.
async fn start_engine(
    sim: &Sim,
    text: &str,
    journal: Arc<Journal>,
    sweep: Duration,
    concurrency: usize,
) -> (
    Arc<Engine>,
    mpsc::UnboundedSender<Trigger>,
    watch::Sender<bool>,
) {
    let verifier = Verifier::new(
        TrustStore::parse("allowed_signers", text.as_bytes()).unwrap(),
        VerifyConfig::new("pve-a"),
    )
    .unwrap();
    let gate = Gate::new(
        verifier,
        journal.clone(),
        Box::new(executor(sim)),
        GateConfig::default(),
    );
    let reader =
        PveClient::new(endpoint(sim), ApiToken::parse(EVERYDAY).unwrap(), "pve-a").unwrap();
    let cfg = EngineConfig {
        interval: Duration::from_millis(150),
        concurrency,
        sweep_period: sweep,
        task_deadline: Duration::from_secs(10),
        token_user: USER.into(),
        everyday_token_user: EVERYDAY_USER.into(),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(400),
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(cfg, Arc::new(reader), gate, journal));
    engine.recover().await.unwrap();
    let (triggers, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(engine.clone().run(rx, stopped, Duration::from_secs(5)));
    (engine, triggers, stop)
}

impl Lab {
    /// Stops the engine and starts another over the same journal and node, as a restart of
    /// the agent would.
    async fn restart(&mut self) {
        let _ = self.stop.send(true);
        let (engine, triggers, stop) = start_engine(
            &self.sim,
            &self.text,
            self.journal.clone(),
            self.sweep,
            self.concurrency,
        )
        .await;
        (self.engine, self.triggers, self.stop) = (engine, triggers, stop);
    }

    fn desire(&self, doc: Value) {
        let d = steward_planner::document::parse_json("test", &doc.to_string()).unwrap();
        self.triggers.send(Trigger::Desired(Arc::new(d))).unwrap();
    }

    async fn until(&self, what: &str, mut f: impl FnMut(&Lab) -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < end,
                "timed out waiting for {what}: {:?}",
                self.engine.status_now()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn writes(&self, vmid: u32) -> u64 {
        self.sim.with_node(|n| {
            n.st.counters
                .calls
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{vmid} ")))
                .map(|(_, c)| *c)
                .sum()
        })
    }

    fn all_writes(&self) -> u64 {
        self.sim.with_node(|n| n.st.counters.calls.values().sum())
    }
}

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
    let l = lab_with(0, Duration::from_secs(2), 8).await;
    l.desire(mixed(50));
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
    let l = lab_with(6, Duration::from_millis(900), 4).await;
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "stopped", "description": "ours", "cores": 2},
        {"vmid": 103, "kind": "qemu", "state": "stopped", "memory": 2048}
    ]}));
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
    let w = PveWriter::new(endpoint(&l.sim), ApiToken::parse(ADMIN).unwrap(), "pve-a").unwrap();
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
    ]}));
    tokio::time::sleep(Duration::from_millis(800)).await;
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
    ]}));
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
    ]}));
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
    let l = lab_with(6, Duration::from_secs(3600), 4).await;
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "stopped", "cores": 2}
    ]}));
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
    ]}));
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
    let l = lab_with(6, Duration::from_secs(5), 4).await;
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "absent"}
    ]}));
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
    let d = l.engine.sign_pending(h.op, &bytes, &sig).await;
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
    let again = l.engine.signed_job(&bytes, &sig).await;
    assert!(
        matches!(again, Decision::Replay { first: Some(_) }),
        "{again:?}"
    );
    assert_eq!(l.writes(101), 1);
    let _ = l.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_adopts_or_abandons_and_never_dispatches_again() {
    let sim = Sim::start(SimConfig {
        guests: 6,
        tokens: vec![
            (SimToken::parse(EVERYDAY).unwrap(), everyday_privileges()),
            (SimToken::parse(ADMIN).unwrap(), Privileges::all()),
        ],
        task_time: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
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
    let w = PveWriter::new(endpoint(&sim), ApiToken::parse(ADMIN).unwrap(), "pve-a").unwrap();
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

    let reader = PveClient::new(endpoint(&sim), ApiToken::parse(ADMIN).unwrap(), "pve-a").unwrap();
    drop(w);
    let exec = executor(&sim);
    let kg = Keygen::new().unwrap();
    let op = kg.key(KeyType::Ed25519, "alice").unwrap();
    let text = format!(
        "alice@steward.test namespaces=\"op@steward\" {}\n",
        op.public_line
    );
    let verifier = Verifier::new(
        TrustStore::parse("s", text.as_bytes()).unwrap(),
        VerifyConfig::new("pve-a"),
    )
    .unwrap();
    let gate = Gate::new(
        verifier,
        journal.clone(),
        Box::new(exec),
        GateConfig::default(),
    );
    let engine = Engine::new(
        EngineConfig {
            token_user: USER.into(),
            task_deadline: Duration::from_secs(10),
            ..EngineConfig::default()
        },
        Arc::new(reader),
        gate,
        journal.clone(),
    );
    let r = engine.recover().await.unwrap();
    assert_eq!((r.abandoned, r.adopted, r.settled), (1, 1, 1), "{r:?}");
    assert!(matches!(
        journal.get(lost).unwrap().unwrap().state(),
        OpState::Abandoned { .. }
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    let again = engine.recover().await.unwrap();
    assert_eq!(again, steward_engine::Recovery::default());
    let calls: BTreeMap<String, u64> = sim.with_node(|n| n.st.counters.calls.clone());
    assert!(sim.with_node(|n| n.st.guests.contains_key(&101)));
    assert_eq!(calls.get(&format!("103 destroy {USER}")), Some(&1));
    assert_eq!(calls.get(&format!("101 destroy {USER}")), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_names_the_guest_and_never_reaches_another_at_its_vmid() {
    let l = lab_with(6, Duration::from_secs(3600), 4).await;
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "absent"}
    ]}));
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
    l.desire(json!({"version": 1, "generation": 2, "guests": []}));
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
    let d = l.engine.sign_pending(h.op, &bytes, &sig).await;
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
    let again = l.engine.signed_job(&bytes, &sig).await;
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
    let l = lab_with(6, Duration::from_secs(5), 4).await;
    // A create that attaches another guest's existing volume is held for a signature.
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 950, "kind": "qemu", "state": "stopped", "create": {"scsi0": "local-lvm:vm-100-disk-0"}}
    ]}));
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
    let sim = Sim::start(SimConfig {
        tokens: vec![
            (SimToken::parse(EVERYDAY).unwrap(), everyday_privileges()),
            (SimToken::parse(ADMIN).unwrap(), Privileges::all()),
        ],
        task_time: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let exec = executor(&sim);
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
    let lab = lab_with(3, Duration::from_secs(60), 2).await;
    let before = lab.engine.guest_locks_kept();
    // A hostile hub: payloads naming 300 VMIDs nobody manages, with garbage signatures.
    for vmid in 5000..5300u32 {
        let payload = format!("{{\"guest\": {vmid}, \"op\": \"guest.destroy\"}}");
        let d = lab
            .engine
            .present(
                payload.as_bytes(),
                b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
            )
            .await;
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
    let lab = lab_with(3, Duration::from_secs(60), 2).await;
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
    ]}));
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
    ]}));
    lab.until("the status says the journal fails", |l| {
        l.engine.status_now().journal_error.is_some()
    })
    .await;
    let why = lab.engine.status_now().journal_error.unwrap();
    assert!(why.contains("No space left on device"), "{why}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
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

/// A signed `guest.config` job as a hub would compose it: `params` as given, a fresh nonce and a
/// thirty-minute window.
fn config_job(guest: u32, params: Value) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    serde_json::to_vec(&json!({
        "v": 1, "op": "guest.config", "host": "pve-a", "guest": guest, "params": params,
        "nonce": steward_testkit::nonce(),
        "not_before": fmt(now - time::Duration::minutes(1)),
        "not_after": fmt(now + time::Duration::minutes(30)),
    }))
    .unwrap()
}

/// Security review, finding 1: `unused0` holds disk-7 (here disk-1); a hub shows the operator
/// "remove the old scratch disk-0" with the real digest. The signature names a volume the slot
/// does not hold: refused `binding_mismatch` before its nonce is spent, naming the key and both
/// volumes, and nothing reaches the node. The honest op for the same slot runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_disk_change_destroys_only_the_volume_it_names() {
    let l = lab_with(3, Duration::from_secs(3600), 2).await;
    let scratch = l.sim.with_node(|n| {
        let v =
            n.st.volumes
                .allocate(
                    "local-lvm",
                    101,
                    4 << 30,
                    steward_pve_sim::Kind::Qemu,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs(),
                )
                .unwrap();
        let g = n.st.guests.get_mut(&101).unwrap();
        g.config.insert("unused0".into(), v.clone());
        v
    });
    assert_ne!(scratch, "local-lvm:vm-101-disk-0");
    let (digest, identity) = l.sim.with_node(|n| {
        let g = &n.st.guests[&101];
        (
            steward_pve_sim::Node::digest(g),
            format!("vmgenid:{}", g.config["vmgenid"]),
        )
    });
    let params = |named: &str| {
        json!({"kind": "qemu", "set": {}, "delete": ["unused0"], "digest": digest,
               "removes": {"unused0": named}, "identity": identity})
    };
    let lie = config_job(101, params("local-lvm:vm-101-disk-0"));
    let sig = l.kg.sign(&l.op.private, "op@steward", &lie).unwrap();
    let d = l.engine.signed_job(&lie, &sig).await;
    match &d {
        Decision::Refused { reason, detail, .. } => {
            assert_eq!(reason.code(), "binding_mismatch", "{detail}");
            assert!(
                detail.contains("unused0")
                    && detail.contains("local-lvm:vm-101-disk-0")
                    && detail.contains(&scratch),
                "{detail}"
            );
        }
        other => panic!("expected binding_mismatch, got {other:?}"),
    }
    assert!(l
        .sim
        .with_node(|n| n.st.volumes.owned_by(101).contains(&scratch)));
    assert_eq!(l.writes(101), 0, "nothing reached the node");
    // The nonce was not spent: the same bytes are refused again for the same reason, not as a
    // replay.
    let again = l.engine.signed_job(&lie, &sig).await;
    assert!(
        matches!(&again, Decision::Refused { reason, .. } if reason.code() == "binding_mismatch"),
        "{again:?}"
    );
    // The signature that names what the slot holds runs, and removes exactly that volume.
    let truth = config_job(101, params(&scratch));
    let sig = l.kg.sign(&l.op.private, "op@steward", &truth).unwrap();
    let d = l.engine.signed_job(&truth, &sig).await;
    assert!(
        matches!(
            d,
            Decision::Executed {
                outcome: Outcome::Succeeded,
                signed: true,
                ..
            }
        ),
        "{d:?}"
    );
    let left = l.sim.with_node(|n| n.st.volumes.owned_by(101));
    assert!(!left.contains(&scratch), "{left:?}");
    assert!(
        left.contains(&"local-lvm:vm-101-disk-0".to_string()),
        "{left:?}"
    );
    let _ = l.stop.send(true);
}

/// Security review, finding 2: an LXC destroy is held, the operator signs, the hub withholds
/// the signature; the container leaves the node (the held op is superseded); the hub has a new
/// container created at the VMID with the old MAC on `net1`, then sends the withheld signature
/// as a job. The template belongs to its op for good: spent as not held, never run; and the
/// new container's MACs are the agent's own, so it could not pass for the old one anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_template_never_runs_as_a_job_on_a_forged_identity() {
    let l = lab_with(3, Duration::from_secs(3600), 2).await;
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 102, "kind": "lxc", "state": "absent"}
    ]}));
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let h = l.engine.held().await.remove(0);
    let identity = h.template["params"]["identity"]
        .as_str()
        .unwrap()
        .to_string();
    let mac = identity.strip_prefix("hwaddr:").unwrap().to_string();
    let bytes = serde_json::to_vec(&h.template).unwrap();
    let withheld = l.kg.sign(&l.op.private, "op@steward", &bytes).unwrap();
    l.sim.with_node(|n| n.remove_guest(102));
    l.until("superseded", |l| l.engine.status_now().held == 0)
        .await;
    l.desire(json!({"version": 1, "generation": 2, "guests": [
        {"vmid": 102, "kind": "lxc", "state": "stopped",
         "create": {"ostemplate": TEMPLATE, "rootfs": "local-lvm:1",
                    "net1": format!("name=eth1,bridge=vmbr0,hwaddr={mac}")}}
    ]}));
    l.until("created", |l| {
        l.sim
            .with_node(|n| n.st.guests.get(&102).is_some_and(|g| g.lock.is_none()))
    })
    .await;
    let net1 = l
        .sim
        .with_node(|n| n.st.guests[&102].config["net1"].clone());
    assert!(
        !net1.to_ascii_uppercase().contains(&mac),
        "the hub chose the new container's MAC: {net1}"
    );
    let d = l.engine.present(&bytes, &withheld).await;
    assert!(
        matches!(&d, Decision::Refused { reason, detail, .. }
            if reason.code() == "binding_mismatch" && detail.contains("not a held")),
        "{d:?}"
    );
    // Spent: the same bytes again are a replay.
    let again = l.engine.signed_job(&bytes, &withheld).await;
    assert!(matches!(again, Decision::Replay { .. }), "{again:?}");
    assert!(l.sim.with_node(|n| n.st.guests.contains_key(&102)));
    let destroys = l.sim.with_node(|n| n.st.counters.of(102, "destroy"));
    assert_eq!(destroys, 0);
    let _ = l.stop.send(true);
}

/// Security review, finding 3: a hub asks for a container from a template that does not exist.
/// Each create fails the same way: the engine backs off and, after `PARK_AFTER` failures in a
/// row, parks the guest with the failure shown in its status, instead of sending creates (and
/// journaling ops) in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_the_same_way_backs_off_and_parks() {
    let l = lab_with(0, Duration::from_secs(3600), 2).await;
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 300, "kind": "lxc", "state": "stopped",
         "create": {"ostemplate": "local:vztmpl/no-such-template.tar.zst", "rootfs": "local-lvm:1",
                    "net0": "name=eth0,bridge=vmbr0"}}
    ]}));
    l.until("parked", |l| {
        l.engine
            .status_now()
            .parked
            .iter()
            .any(|p| p.vmid == 300 && p.why.contains("in a row"))
    })
    .await;
    // Each attempt is one journaled create (the simulator refuses before it counts a call).
    let attempts = |l: &Lab| {
        l.journal
            .all_ops()
            .unwrap()
            .iter()
            .filter(|r| r.guest.get() == 300 && matches!(r.action, Action::Create { .. }))
            .count()
    };
    let creates = attempts(&l);
    let passes = l.engine.status_now().passes;
    l.until("ten more passes", |l| {
        l.engine.status_now().passes >= passes + 10
    })
    .await;
    let after = attempts(&l);
    assert_eq!(after, creates, "no create while parked");
    assert_eq!(
        after,
        steward_engine::PARK_AFTER as usize,
        "attempts before parking"
    );
    let why = l.engine.status_now().parked[0].why.clone();
    assert!(why.contains("no-such-template"), "{why}");
    // A new desired spec is a reason to try again: one attempt, then parked again.
    l.desire(json!({"version": 1, "generation": 2, "guests": [
        {"vmid": 300, "kind": "lxc", "state": "stopped", "memory": 256,
         "create": {"ostemplate": "local:vztmpl/no-such-template.tar.zst", "rootfs": "local-lvm:1",
                    "net0": "name=eth0,bridge=vmbr0"}}
    ]}));
    let passes = l.engine.status_now().passes;
    l.until("ten more passes", |l| {
        l.engine.status_now().passes >= passes + 10
    })
    .await;
    let again = attempts(&l);
    assert_eq!(again, after + 1, "one more attempt for the new spec");
    let _ = l.stop.send(true);
}

/// Calls the simulator counted for `vmid` by token user `user` (`steward@pve!agent`).
fn calls_by(l: &Lab, vmid: u32, user: &str) -> u64 {
    l.sim.with_node(|n| {
        n.st.counters
            .calls
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{vmid} ")) && k.ends_with(&format!(" {user}")))
            .map(|(_, c)| *c)
            .sum()
    })
}

/// Security review, finding 6: benign actions go out with the everyday token, creates and
/// signed actions with the admin token (the simulator counts calls per token); and a
/// data-bearing change sent the benign way, as a classifier mistake would, meets a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benign_writes_use_the_everyday_token_and_a_misclassified_one_meets_403() {
    use steward_gate::{Authority, Executor, FailureKind, Guard};
    let l = lab_with(6, Duration::from_secs(3600), 2).await;
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "running", "memory": "3 GiB", "name": "web"},
        {"vmid": 950, "kind": "qemu", "state": "stopped", "create": {"scsi0": "local-lvm:1"}},
        {"vmid": 103, "kind": "qemu", "state": "absent"}
    ]}));
    l.until("converged and held", |l| {
        let s = l.engine.status_now();
        s.held == 1
            && l.sim.with_node(|n| {
                n.st.guests.contains_key(&950)
                    && n.st.guests[&101].status == "running"
                    && n.st.guests[&101].config.get("name").map(String::as_str) == Some("web")
            })
    })
    .await;
    assert!(calls_by(&l, 101, EVERYDAY_USER) >= 2, "start and config");
    assert_eq!(
        calls_by(&l, 101, USER),
        0,
        "nothing benign with the admin token"
    );
    assert_eq!(calls_by(&l, 950, USER), 1, "the create needs VM.Allocate");
    let h = l.engine.held().await.remove(0);
    let bytes = serde_json::to_vec(&h.template).unwrap();
    let sig = l.kg.sign(&l.op.private, "op@steward", &bytes).unwrap();
    let d = l.engine.sign_pending(h.op, &bytes, &sig).await;
    assert!(
        matches!(d, Decision::Executed { signed: true, .. }),
        "{d:?}"
    );
    assert!(calls_by(&l, 103, USER) >= 1, "the signed destroy");
    assert_eq!(calls_by(&l, 103, EVERYDAY_USER), 0);
    // A classifier mistake: a disk delete dispatched as benign. Proxmox (here its simulator)
    // answers 403 to the everyday token and the disk stays.
    let digest = l
        .sim
        .with_node(|n| steward_pve_sim::Node::digest(&n.st.guests[&104]));
    let change = Action::SetConfig {
        vmid: Vmid::new(104).unwrap(),
        kind: GuestKind::Qemu,
        change: steward_model::ConfigChange {
            delete: ["scsi0".into()].into(),
            digest: Some(digest),
            ..Default::default()
        },
    };
    let e = executor(&l.sim)
        .dispatch(&change, &Guard::Nothing, Authority::Everyday)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Denied, "{e:?}");
    assert!(l
        .sim
        .with_node(|n| n.st.guests[&104].config.contains_key("scsi0")));
    let _ = l.stop.send(true);
}

/// Security review, finding 7: a restart, or the same destroy asked for again, finds the op
/// already held for it instead of minting another template (four templates for one guest in
/// one run, before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_held_op_per_guest_and_action_across_restarts() {
    let mut l = lab_with(6, Duration::from_secs(3600), 2).await;
    let doc = json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 103, "kind": "qemu", "state": "absent"}
    ]});
    l.desire(doc.clone());
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let first = l.engine.held().await.remove(0);
    for generation in 2..4 {
        l.restart().await;
        let mut again = doc.clone();
        again["generation"] = json!(generation);
        l.desire(again);
        let passes = l.engine.status_now().passes;
        l.until("passes", |l| l.engine.status_now().passes >= passes + 3)
            .await;
    }
    let held = l.engine.held().await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].op, first.op);
    assert_eq!(held[0].template, first.template);
    let minted = l
        .journal
        .all_ops()
        .unwrap()
        .iter()
        .filter(|r| r.guest.get() == 103)
        .count();
    assert_eq!(minted, 1, "one op for the one destroy");
    let _ = l.stop.send(true);
}

/// Security review, finding 11: a task that ends `WARNINGS: 1` succeeded, and what its log
/// warned about is kept with the op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_ends_with_warnings_keeps_them_with_its_op() {
    let l = lab_with(3, Duration::from_secs(3600), 2).await;
    l.sim.with_node(|n| n.st.warn_next = 1);
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "running"}
    ]}));
    l.until("101 running", |l| {
        l.sim.with_node(|n| n.st.guests[&101].status == "running")
    })
    .await;
    l.until("the start journaled", |l| {
        l.journal
            .all_ops()
            .unwrap()
            .iter()
            .any(|r| matches!(r.action, Action::Start { .. }) && r.state() == &OpState::Succeeded)
    })
    .await;
    let start = l
        .journal
        .all_ops()
        .unwrap()
        .into_iter()
        .find(|r| matches!(r.action, Action::Start { .. }))
        .unwrap();
    assert_eq!(start.warnings, vec!["WARN: injected warning".to_string()]);
    let _ = l.stop.send(true);
}

/// Security review, finding 10: the node carries out a start but its answer is lost. The
/// executor looks the task up before calling it a failure: the op follows the task it finds and
/// succeeds, and no second start is ever sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_answer_is_lost_follows_the_task_it_started() {
    let l = lab_with(3, Duration::from_secs(3600), 2).await;
    l.sim.with_node(|n| n.st.lose_next_answer = 1);
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "running"}
    ]}));
    l.until("101 running and its op settled", |l| {
        l.sim.with_node(|n| n.st.guests[&101].status == "running")
            && l.journal
                .all_ops()
                .unwrap()
                .iter()
                .any(|r| r.state().is_terminal())
    })
    .await;
    let passes = l.engine.status_now().passes;
    l.until("more passes", |l| {
        l.engine.status_now().passes >= passes + 3
    })
    .await;
    assert_eq!(
        l.sim.with_node(|n| n.st.lose_next_answer),
        0,
        "an answer was lost"
    );
    assert_eq!(l.sim.with_node(|n| n.st.counters.of(101, "start")), 1);
    let ops = l.journal.all_ops().unwrap();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0].state(), &OpState::Succeeded, "{ops:?}");
    assert!(ops[0]
        .history
        .iter()
        .any(|t| matches!(t.state, OpState::Dispatched { .. })));
    let _ = l.stop.send(true);
}

/// A provider channel for the feed test: a desired-state poll that never answers, jobs that
/// come once, and reports that fail `fail_reports` times before they are delivered.
struct Hostile {
    jobs: Vec<steward_providers::Job>,
    fail_reports: usize,
    delivered: Arc<std::sync::Mutex<Vec<steward_providers::Report>>>,
}

#[async_trait::async_trait]
impl steward_providers::Provider for Hostile {
    fn describe(&self) -> String {
        "hostile test hub".into()
    }
    async fn poll(&mut self) -> steward_providers::Update {
        std::future::pending().await
    }
    async fn jobs(&mut self) -> Result<Vec<steward_providers::Job>, String> {
        Ok(std::mem::take(&mut self.jobs))
    }
    async fn report(&mut self, report: &steward_providers::Report) -> Result<(), String> {
        if self.fail_reports > 0 {
            self.fail_reports -= 1;
            return Err("503 Service Unavailable\n\x1b[2Jforged".into());
        }
        self.delivered.lock().unwrap().push(report.clone());
        Ok(())
    }
}

/// Security review, finding 9: a hung desired-state poll does not hold up signed jobs or
/// reports, and each channel's health (last success, last error, failures in a row) shows in
/// the status (which reports carry) and in metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_channels_do_not_wait_on_each_other_and_show_their_health() {
    let l = lab_with(3, Duration::from_secs(3600), 2).await;
    let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hostile = |jobs: Vec<steward_providers::Job>,
                   fail_reports: usize|
     -> Box<dyn steward_providers::Provider> {
        Box::new(Hostile {
            jobs,
            fail_reports,
            delivered: delivered.clone(),
        })
    };
    let job = steward_providers::Job {
        id: "job-1".into(),
        payload: "{\"v\":1}".into(),
        signatures: vec![
            "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".into(),
        ],
    };
    let (stop, stopped) = watch::channel(false);
    let feed = tokio::spawn(steward_engine::feed(
        l.engine.clone(),
        steward_engine::Channels {
            desired: hostile(Vec::new(), 0),
            jobs: hostile(vec![job], 0),
            report: hostile(Vec::new(), 2),
        },
        l.triggers.clone(),
        stopped,
        steward_engine::FeedConfig {
            every: Duration::from_millis(100),
            report_every: Duration::from_millis(100),
        },
    ));
    l.until("the job's result reported", |_| {
        delivered
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.results.iter().any(|j| j.job == "job-1"))
    })
    .await;
    // The report that went through carries the status as it was before it: two failures in a
    // row on the report channel, the last one's text escaped.
    let first = delivered.lock().unwrap()[0].status["provider"]["report"].clone();
    assert_eq!(first["consecutive_failures"], 2, "{first}");
    let e = first["last_error"].as_str().unwrap();
    assert!(
        e.contains("503") && !e.contains('\n') && !e.contains('\x1b'),
        "{e}"
    );
    let status = l.engine.status_now();
    assert_eq!(status.provider["report"].consecutive_failures, 0);
    assert!(status.provider["report"].last_success_ms.is_some());
    assert!(status.provider["jobs"].last_success_ms.is_some());
    assert!(
        !status.provider.contains_key("desired"),
        "the hung poll never ended: {:?}",
        status.provider
    );
    let metrics = l.engine.metrics().encode();
    assert!(
        metrics.contains("steward_provider_consecutive_failures{channel=\"report\"} 0"),
        "{metrics}"
    );
    let reported = delivered.lock().unwrap()[0].status["provider"]["jobs"].clone();
    assert!(reported["last_success_ms"].is_i64(), "{reported}");
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), feed)
        .await
        .expect("the feed stops on shutdown, its hung poll too")
        .unwrap();
    let _ = l.stop.send(true);
}

/// Security review, finding 7: a held destroy's summary names every volume it would take:
/// the config's disks and its `vmstate`, the volumes only a snapshot references, and (the
/// planner's destroys remove unreferenced disks) the guest's volumes no config references.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_destroy_names_snapshot_only_state_and_unreferenced_volumes() {
    let l = lab_with(3, Duration::from_secs(3600), 2).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (old, orphan) = l.sim.with_node(|n| {
        let mut alloc = || {
            n.st.volumes
                .allocate("local-lvm", 101, 4 << 30, steward_pve_sim::Kind::Qemu, now)
                .unwrap()
        };
        let (old, orphan) = (alloc(), alloc());
        let g = n.st.guests.get_mut(&101).unwrap();
        g.config.insert("scsi1".into(), format!("{old},size=4G"));
        n.add_snapshot(101, "pre-upgrade").unwrap();
        let g = n.st.guests.get_mut(&101).unwrap();
        g.config.remove("scsi1");
        g.config
            .insert("vmstate".into(), "local-lvm:vm-101-state-suspend".into());
        (old, orphan)
    });
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "absent"}
    ]}));
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let mut summary = String::new();
    for _ in 0..50 {
        summary = l.engine.held().await.remove(0).summary;
        if summary.contains("no config") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for want in [
        "local-lvm:vm-101-disk-0 (32G)".to_string(),
        "local-lvm:vm-101-state-suspend".to_string(),
        format!("{old} (4G, only in snapshot pre-upgrade)"),
        format!("{orphan} (4G, referenced by no config)"),
    ] {
        assert!(summary.contains(&want), "{want} not in: {summary}");
    }
    let _ = l.stop.send(true);
}
