//! The security review of the running agent (issue #20), finding by finding, against the
//! engine over the simulator with real `ssh-keygen` signatures: each test reproduces what the
//! review saw and fails without its fix.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use steward_gate::{Decision, Outcome};
use steward_journal::OpState;
use steward_lab::*;
use steward_model::{Action, GuestKind, Vmid};
use tokio::sync::watch;

/// Security review, finding 1: `unused0` holds disk-7 (here disk-1); a hub shows the operator
/// "remove the old scratch disk-0" with the real digest. The signature names a volume the slot
/// does not hold: refused `binding_mismatch` before its nonce is spent, naming the key and both
/// volumes, and nothing reaches the node. The honest op for the same slot runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_disk_change_destroys_only_the_volume_it_names() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
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
    let d = l.engine.present(&lie, &[sig.to_vec()]).await.decision;
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
    let again = l.engine.present(&lie, &[sig.to_vec()]).await.decision;
    assert!(
        matches!(&again, Decision::Refused { reason, .. } if reason.code() == "binding_mismatch"),
        "{again:?}"
    );
    // The signature that names what the slot holds runs, and removes exactly that volume.
    let truth = config_job(101, params(&scratch));
    let sig = l.kg.sign(&l.op.private, "op@steward", &truth).unwrap();
    let d = l.engine.present(&truth, &[sig.to_vec()]).await.decision;
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
/// as a job. The template belongs to its op for good: its nonce is spent when the op is
/// superseded, so the signature is a replay and runs nothing (after retention forgot the op
/// too); and the new container's MACs are the agent's own, so it could not pass for the old one
/// anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_template_never_runs_as_a_job_on_a_forged_identity() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 102, "kind": "lxc", "state": "absent"}
    ]}))
    .unwrap();
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
    ]}))
    .unwrap();
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
    // The template's nonce was spent when its op was superseded: a replay, by either door,
    // even once retention has forgotten the op.
    let d = l
        .engine
        .present(&bytes, &[withheld.to_vec()])
        .await
        .decision;
    assert!(matches!(d, Decision::Replay { .. }), "{d:?}");
    let again = l
        .engine
        .present(&bytes, &[withheld.to_vec()])
        .await
        .decision;
    assert!(matches!(again, Decision::Replay { .. }), "{again:?}");
    l.journal.compact(i64::MAX).unwrap();
    let late = l
        .engine
        .present(&bytes, &[withheld.to_vec()])
        .await
        .decision;
    assert!(matches!(late, Decision::Replay { .. }), "{late:?}");
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
    let l = Lab::start(LabConfig {
        guests: 0,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 300, "kind": "lxc", "state": "stopped",
         "create": {"ostemplate": "local:vztmpl/no-such-template.tar.zst", "rootfs": "local-lvm:1",
                    "net0": "name=eth0,bridge=vmbr0"}}
    ]}))
    .unwrap();
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
    ]}))
    .unwrap();
    let passes = l.engine.status_now().passes;
    l.until("ten more passes", |l| {
        l.engine.status_now().passes >= passes + 10
    })
    .await;
    let again = attempts(&l);
    assert_eq!(again, after + 1, "one more attempt for the new spec");
    let _ = l.stop.send(true);
}

/// Security review, finding 6: benign actions go out with the everyday token, creates and
/// signed actions with the admin token (the simulator counts calls per token); and a
/// data-bearing change sent the benign way, as a classifier mistake would, meets a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benign_writes_use_the_everyday_token_and_a_misclassified_one_meets_403() {
    use steward_gate::{Authority, Executor, FailureKind, Guard};
    let l = Lab::start(LabConfig {
        guests: 6,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "running", "memory": "3 GiB", "name": "web"},
        {"vmid": 950, "kind": "qemu", "state": "stopped", "create": {"scsi0": "local-lvm:1"}},
        {"vmid": 103, "kind": "qemu", "state": "absent"}
    ]}))
    .unwrap();
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
    let d = l.engine.present(&bytes, &[sig.to_vec()]).await.decision;
    assert!(
        matches!(d, Decision::Executed { signed: true, .. }),
        "{d:?}"
    );
    assert!(calls_by(&l, 103, USER) >= 1, "the signed destroy");
    assert_eq!(calls_by(&l, 103, EVERYDAY_USER), 0);
    // A classifier mistake: a disk delete dispatched as benign. One that does not name the
    // volume it removes is refused by the executor before any call...
    let (digest, volume) = l.sim.with_node(|n| {
        let g = &n.st.guests[&104];
        let v = g.config["scsi0"].split(',').next().unwrap().to_string();
        (steward_pve_sim::Node::digest(g), v)
    });
    let mut change = steward_model::ConfigChange {
        delete: ["scsi0".into()].into(),
        digest: Some(digest),
        ..Default::default()
    };
    let silent = Action::SetConfig {
        vmid: Vmid::new(104).unwrap(),
        kind: GuestKind::Qemu,
        change: change.clone(),
    };
    let before = calls_by(&l, 104, EVERYDAY_USER);
    let e = l
        .executor()
        .unwrap()
        .dispatch(&silent, &Guard::Nothing, Authority::Everyday)
        .await
        .unwrap_err();
    assert!(e.detail.contains("binding_mismatch"), "{e:?}");
    assert_eq!(calls_by(&l, 104, EVERYDAY_USER), before, "nothing sent");
    // ...and one that names it truly meets Proxmox's 403 for the everyday token: the disk stays.
    change.removes.insert("scsi0".into(), volume);
    let change = Action::SetConfig {
        vmid: Vmid::new(104).unwrap(),
        kind: GuestKind::Qemu,
        change,
    };
    let e = l
        .executor()
        .unwrap()
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
    let mut l = Lab::start(LabConfig {
        guests: 6,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    // A destroy, and a create that attaches an existing volume (its identity is chosen afresh
    // by the agent each time it is asked for).
    let doc = json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 103, "kind": "qemu", "state": "absent"},
        {"vmid": 950, "kind": "qemu", "state": "stopped", "create": {"scsi0": "local-lvm:vm-100-disk-0"}}
    ]});
    l.desire(doc.clone()).unwrap();
    l.until("held", |l| l.engine.status_now().held == 2).await;
    let first = l.engine.held().await;
    for generation in 2..4 {
        l.restart().await.unwrap();
        let mut again = doc.clone();
        again["generation"] = json!(generation);
        l.desire(again).unwrap();
        let passes = l.engine.status_now().passes;
        l.until("passes", |l| l.engine.status_now().passes >= passes + 3)
            .await;
    }
    let held = l.engine.held().await;
    assert_eq!(held.len(), 2, "{held:?}");
    for (now, then) in held.iter().zip(&first) {
        assert_eq!(now.op, then.op);
        assert_eq!(now.template, then.template);
    }
    for vmid in [103, 950] {
        let minted = l
            .journal
            .all_ops()
            .unwrap()
            .iter()
            .filter(|r| r.guest.get() == vmid)
            .count();
        assert_eq!(minted, 1, "one op for {vmid}'s one request");
    }
    let _ = l.stop.send(true);
}

/// Security review, finding 11: a task that ends `WARNINGS: 1` succeeded, and what its log
/// warned about is kept with the op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_ends_with_warnings_keeps_them_with_its_op() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.sim.with_node(|n| n.st.warn_next = 1);
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "running"}
    ]}))
    .unwrap();
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
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.sim.with_node(|n| n.st.lose_next_answer = 1);
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 101, "kind": "qemu", "state": "running"}
    ]}))
    .unwrap();
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
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
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
            node: "pve-a".into(),
            reports: true,
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
    let first = delivered.lock().unwrap()[0].status.provider["report"].clone();
    assert_eq!(first.consecutive_failures, 2, "{first:?}");
    let e = first.last_error.as_deref().unwrap();
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
    let reported = delivered.lock().unwrap()[0].status.provider["jobs"].clone();
    assert!(reported.last_success_ms.is_some(), "{reported:?}");
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
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
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
    ]}))
    .unwrap();
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

/// Security review, finding 1 (the create half): a disk value that names a second volume behind
/// an allocation (`local-lvm:4,file=<another guest's disk>`) is not a new volume: the create is
/// held, and its summary names the existing volume it would attach (it said "no volumes").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_names_an_existing_volume_is_held_and_says_which() {
    let l = Lab::start(LabConfig {
        guests: 3,
        sweep: Duration::from_secs(3600),
        concurrency: 2,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    l.desire(json!({"version": 1, "generation": 1, "guests": [
        {"vmid": 950, "kind": "qemu", "state": "stopped",
         "create": {"scsi0": "local-lvm:4,file=local-lvm:vm-100-disk-0"}}
    ]}))
    .unwrap();
    l.until("held", |l| l.engine.status_now().held == 1).await;
    let h = l.engine.held().await.remove(0);
    assert_eq!(h.op_kind, "guest.create");
    assert!(
        h.summary.contains("local-lvm:vm-100-disk-0") && !h.summary.contains("no volumes"),
        "{}",
        h.summary
    );
    assert!(l.sim.with_node(|n| !n.st.guests.contains_key(&950)));
    let _ = l.stop.send(true);
}
