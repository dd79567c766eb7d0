//! The Proxmox client's whole surface against the simulator, over real TLS on 127.0.0.1.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;
use steward_model::{ConfigChange, GuestKind, Vmid};
use steward_proxmox_client::{
    tls, ApiError, ApiToken, Endpoint, GuestRead, GuestWrite, PveWriter, TaskFilter, Trust,
};
use steward_pve_sim::{Faults, Privileges, Sim, SimConfig, SimToken};

const TOKEN: &str = "root@pam!steward=5f1e3c2a-0000-4000-8000-00000000c0de";
const AUDITOR: &str = "audit@pve!ro=5f1e3c2a-0000-4000-8000-0000000a0d17";

async fn sim(faults: Faults, task_ms: u64) -> Sim {
    Sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        node: "pve-a".into(),
        guests: 6,
        tokens: vec![
            (SimToken::parse(TOKEN).unwrap(), Privileges::all()),
            (SimToken::parse(AUDITOR).unwrap(), Privileges::audit_only()),
        ],
        task_time: Duration::from_millis(task_ms),
        faults,
        seed: 7,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// The tests exercise both halves, so they hold the write half (which also reads).
fn client_with(sim: &Sim, token: &str, trust: Trust) -> PveWriter {
    let endpoint = Endpoint {
        addr: sim.addr.to_string(),
        server_name: "localhost".into(),
        trust,
        timeout: Duration::from_secs(5),
        keep_alive: true,
    };
    PveWriter::new(endpoint, ApiToken::parse(token).unwrap(), "pve-a").unwrap()
}

fn client(sim: &Sim) -> PveWriter {
    client_with(
        sim,
        TOKEN,
        Trust::Fingerprint(tls::parse_fingerprint(&sim.fingerprint).unwrap()),
    )
}

fn v(n: u32) -> Vmid {
    Vmid::new(u64::from(n)).unwrap()
}

fn change(set: &[(&str, &str)], delete: &[&str], digest: Option<String>) -> ConfigChange {
    ConfigChange {
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        delete: delete.iter().map(|k| k.to_string()).collect(),
        digest,
        ..ConfigChange::default()
    }
}

#[tokio::test]
async fn reads_in_proxmox_forms() {
    let s = sim(Faults::default(), 50).await;
    let c = client(&s);
    let guests = c.list_guests().await.unwrap();
    assert_eq!(guests.len(), 6);
    // LXC's vmid arrives as a string in the list; the client reads it all the same.
    let ct = guests.iter().find(|g| g.kind == GuestKind::Lxc).unwrap();
    assert_eq!(ct.vmid, v(102));
    assert_eq!(
        guests[0].maxmem,
        Some(2048 * 1024 * 1024),
        "list memory is bytes"
    );
    let cfg = c.config(GuestKind::Qemu, v(100)).await.unwrap();
    assert_eq!(
        cfg.values.get("memory").map(String::as_str),
        Some("2048"),
        "config memory is MiB"
    );
    assert_eq!(cfg.digest.len(), 40);
    let status = c.status(GuestKind::Qemu, v(100)).await.unwrap();
    assert_eq!(status["status"], "running");
    assert!(matches!(
        c.config(GuestKind::Qemu, v(999)).await,
        Err(ApiError::NotFound(_))
    ));
}

#[tokio::test]
async fn config_writes_carry_the_digest_and_stale_ones_are_refused() {
    let s = sim(Faults::default(), 50).await;
    let c = client(&s);
    let before = c.config(GuestKind::Qemu, v(101)).await.unwrap();
    c.set_config(
        GuestKind::Qemu,
        v(101),
        &change(
            &[("description", "web")],
            &["tags"],
            Some(before.digest.clone()),
        ),
    )
    .await
    .unwrap();
    let after = c.config(GuestKind::Qemu, v(101)).await.unwrap();
    assert_ne!(after.digest, before.digest, "every write moves the digest");
    // QEMU reads a description back as written; LXC adds a newline to each line.
    assert_eq!(
        after.values.get("description").map(String::as_str),
        Some("web")
    );
    assert!(!after.values.contains_key("tags"));
    let stale = c
        .set_config(
            GuestKind::Qemu,
            v(101),
            &change(&[("cores", "4")], &[], Some(before.digest)),
        )
        .await;
    assert!(
        matches!(stale, Err(ApiError::DigestMismatch(_))),
        "{stale:?}"
    );
    let bad = c
        .set_config(
            GuestKind::Qemu,
            v(101),
            &change(&[("memory", "8")], &[], None),
        )
        .await;
    match bad {
        Err(ApiError::Api {
            status: 400,
            errors: Some(e),
            ..
        }) => assert!(e["memory"].as_str().unwrap().contains("16")),
        other => panic!("{other:?}"),
    }
    // A running VM's memory change waits for a restart: config shows it, pending lists it.
    c.set_config(
        GuestKind::Qemu,
        v(100),
        &change(&[("memory", "4096")], &[], None),
    )
    .await
    .unwrap();
    assert_eq!(
        c.config(GuestKind::Qemu, v(100)).await.unwrap().values["memory"],
        "4096"
    );
    let pending = c.pending(GuestKind::Qemu, v(100)).await.unwrap();
    let mem = pending.iter().find(|p| p.key == "memory").unwrap();
    assert_eq!(
        (mem.value.as_deref(), mem.pending.as_deref()),
        (Some("2048"), Some("4096"))
    );
}

#[tokio::test]
async fn tasks_locks_and_lifecycle() {
    let s = sim(Faults::default(), 100).await;
    let c = client(&s);
    // qemu-server checks "already running" in the worker: 200 + UPID, then the task fails.
    let again = c.start(GuestKind::Qemu, v(100)).await.unwrap();
    let e = c
        .wait_task(&again, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ApiError::TaskFailed { exitstatus, .. } if exitstatus == "VM 100 already running"),
        "{e:?}"
    );
    let upid = c.shutdown(GuestKind::Qemu, v(100), 30, true).await.unwrap();
    assert_eq!(upid.kind, "qmshutdown");
    assert!(c.task_status_once(&upid).await.unwrap().running);
    let done = c.wait_task(&upid, Duration::from_secs(5)).await.unwrap();
    assert!(done.succeeded());
    assert_eq!(
        c.status(GuestKind::Qemu, v(100)).await.unwrap()["status"],
        "stopped"
    );

    let mut cfg = BTreeMap::new();
    cfg.insert("memory".to_string(), "1024".to_string());
    cfg.insert("scsi0".to_string(), "local-lvm:8".to_string());
    let created = c.create(GuestKind::Qemu, v(900), &cfg).await.unwrap();
    // While the create task runs, the guest is locked: a start's task fails on the lock, and
    // the client calls that failure Locked.
    let locked = c.start(GuestKind::Qemu, v(900)).await.unwrap();
    let e = c
        .wait_task(&locked, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        e.failure().kind,
        steward_model::FailureKind::Locked {
            lock: "create".into()
        },
        "{e:?}"
    );
    c.wait_task(&created, Duration::from_secs(5)).await.unwrap();
    let destroyed = c
        .destroy(GuestKind::Qemu, v(900), true, true)
        .await
        .unwrap();
    c.wait_task(&destroyed, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(
        c.config(GuestKind::Qemu, v(900)).await,
        Err(ApiError::NotFound(_))
    ));
    let tasks = c.list_tasks(&TaskFilter::default()).await.unwrap();
    for u in [&upid, &created, &destroyed] {
        assert!(
            tasks
                .iter()
                .any(|t| &t.upid == u && t.status.as_deref() == Some("OK")),
            "{u}"
        );
    }
    // Reboot of a running guest is a task; the asynchronous config POST is a `qmconfig` task.
    let r = c.reboot(GuestKind::Qemu, v(104)).await.unwrap();
    assert_eq!(r.kind, "qmreboot");
    c.wait_task(&r, Duration::from_secs(5)).await.unwrap();
    let d = c.config(GuestKind::Qemu, v(103)).await.unwrap().digest;
    let answer = c
        .set_config_async(v(103), &change(&[("cores", "3")], &[], Some(d)))
        .await
        .unwrap();
    let answer = answer.expect("a qmconfig task");
    assert_eq!(answer.kind, "qmconfig");
    c.wait_task(&answer, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        c.config(GuestKind::Qemu, v(103)).await.unwrap().values["cores"],
        "3"
    );
    // A QEMU stop of a locked VM: the task fails on the lock.
    s.lock(101, Some("backup"));
    let stop = c.stop(GuestKind::Qemu, v(101)).await.unwrap();
    let e = c
        .wait_task(&stop, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ApiError::TaskFailed {
            upid: stop.to_string(),
            exitstatus: "VM is locked (backup)".into()
        }
    );
    assert_eq!(
        e.failure().kind,
        steward_model::FailureKind::Locked {
            lock: "backup".into()
        }
    );
}

#[tokio::test]
async fn trust_and_tokens() {
    let s = sim(Faults::default(), 50).await;
    let wrong = client_with(&s, TOKEN, Trust::Fingerprint([0xAB; 32]));
    match wrong.list_guests().await {
        Err(ApiError::Transport(m)) => assert!(m.contains("fingerprint"), "{m}"),
        other => panic!("a wrong pin must refuse the connection: {other:?}"),
    }
    let pin = Trust::Fingerprint(tls::parse_fingerprint(&s.fingerprint).unwrap());
    let bad = client_with(
        &s,
        "root@pam!steward=00000000-0000-0000-0000-000000000000",
        pin.clone(),
    );
    assert_eq!(bad.list_guests().await.unwrap_err(), ApiError::Unauthorized);
    let auditor = client_with(&s, AUDITOR, pin);
    assert_eq!(auditor.list_guests().await.unwrap().len(), 6);
    assert!(
        matches!(auditor.stop(GuestKind::Qemu, v(100)).await, Err(ApiError::PermissionDenied(m)) if m.contains("VM.PowerMgmt"))
    );
    // The secret never shows.
    assert!(!format!("{bad:?}").contains("00000000-0000"));
}

#[tokio::test]
async fn failing_hanging_and_lost_tasks() {
    let failing = sim(
        Faults {
            task_fail_rate: 1.0,
            ..Faults::default()
        },
        20,
    )
    .await;
    let c = client(&failing);
    let u = c.stop(GuestKind::Qemu, v(100)).await.unwrap();
    assert!(matches!(
        c.wait_task(&u, Duration::from_secs(5)).await,
        Err(ApiError::TaskFailed { .. })
    ));

    let hanging = sim(
        Faults {
            task_hang_rate: 1.0,
            ..Faults::default()
        },
        20,
    )
    .await;
    let c = client(&hanging);
    let u = c.stop(GuestKind::Qemu, v(100)).await.unwrap();
    assert!(matches!(
        c.wait_task(&u, Duration::from_millis(300)).await,
        Err(ApiError::Timeout(_))
    ));
    hanging.restart_node();
    let after = c.task_status_once(&u).await.unwrap();
    assert_eq!(
        (after.running, after.exitstatus.as_deref()),
        (false, Some("unexpected status"))
    );
}

#[tokio::test]
async fn idempotent_reads_ride_out_injected_5xx_and_resets() {
    let s = sim(
        Faults {
            error_rate: 0.2,
            reset_rate: 0.1,
            ..Faults::default()
        },
        20,
    )
    .await;
    let c = client(&s);
    let mut ok = 0;
    for _ in 0..20 {
        if c.list_guests().await.is_ok() {
            ok += 1;
        }
    }
    // Each read is retried up to 3 times; with 30 % of requests failing, nearly all succeed.
    assert!(ok >= 18, "{ok}/20 reads succeeded");
    assert!(
        c.requests_sent() > 40,
        "retries happened: {}",
        c.requests_sent()
    );
}

#[tokio::test]
async fn one_pending_read_tells_what_config_and_pending_tell_together() {
    let s = sim(Faults::default(), 50).await;
    let c = client(&s);
    for (kind, vmid) in [(GuestKind::Qemu, v(101)), (GuestKind::Lxc, v(102))] {
        // A change that waits for a restart when the guest runs, and one applied at once.
        let status = c.status(kind, vmid).await.unwrap();
        let before = c.config(kind, vmid).await.unwrap();
        c.set_config(
            kind,
            vmid,
            &change(
                &[("memory", "3072"), ("description", "pending test")],
                &[],
                Some(before.digest),
            ),
        )
        .await
        .unwrap();
        let config = c.config(kind, vmid).await.unwrap();
        let pending: std::collections::BTreeSet<String> = c
            .pending(kind, vmid)
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.pending.is_some() || p.delete)
            .map(|p| p.key)
            .collect();
        let (one, keys) = c.config_and_pending(kind, vmid).await.unwrap();
        assert_eq!(one, config, "{kind} {vmid} ({})", status["status"]);
        assert_eq!(keys, pending);
    }
}
