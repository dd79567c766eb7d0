//! The simulator behaves as Proxmox VE does, where the engine will depend on it: privileges per
//! token and path (lists filtered, per-key config privileges, root-only options), parameters
//! checked against the schema, pending changes, what create stores, the disk lifecycle
//! (detach → unusedN → removal), snapshots, the task list, crash leftovers no token can clear,
//! the out-of-band actor, state that survives a restart, and the config-file view. Real TLS on
//! 127.0.0.1, through the real client.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use steward_model::{ConfigChange, GuestKind, Vmid};
use steward_proxmox_client::{
    tls, ApiError, ApiToken, Endpoint, GuestRead, GuestWrite, PveClient, PveWriter, TaskFilter,
    TaskSource, Trust,
};
use steward_pve_sim::{Privileges, Sim, SimConfig, SimToken};

const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";
const EVERYDAY: &str = "steward@pve!agent=5f1e3c2a-0000-4000-8000-00000000e7e1";
const AUDITOR: &str = "audit@pve!ro=5f1e3c2a-0000-4000-8000-0000000a0d17";
const ONE_VM: &str = "tenant@pve!one=5f1e3c2a-0000-4000-8000-000000000001";
const BACKUP: &str = "backup@pve!bk=5f1e3c2a-0000-4000-8000-00000000bac0";

fn grants(spec: &[&str]) -> Privileges {
    Privileges(
        spec.iter()
            .map(|g| Privileges::parse_grant(g).unwrap())
            .collect(),
    )
}

async fn sim_with(extra: SimConfig) -> Sim {
    Sim::start(SimConfig {
        tokens: vec![
            (SimToken::parse(ADMIN).unwrap(), Privileges::all()),
            (
                SimToken::parse(EVERYDAY).unwrap(),
                // Not PVEVMUser: it carries VM.Backup, which restores over an existing guest.
                grants(&[
                    "VM.Audit+VM.PowerMgmt+VM.Config.Memory+VM.Config.CPU+VM.Config.Options@/vms",
                    "PVEAuditor@/",
                ]),
            ),
            (SimToken::parse(AUDITOR).unwrap(), Privileges::audit_only()),
            (
                SimToken::parse(ONE_VM).unwrap(),
                grants(&["PVEVMAdmin@/vms/100"]),
            ),
            (
                SimToken::parse(BACKUP).unwrap(),
                grants(&["PVEVMUser@/vms", "PVEDatastoreUser@/storage"]),
            ),
        ],
        task_time: Duration::from_millis(30),
        ..extra
    })
    .await
    .unwrap()
}

async fn sim() -> Sim {
    sim_with(SimConfig::default()).await
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

fn writer(s: &Sim, token: &str) -> PveWriter {
    PveWriter::new(endpoint(s), ApiToken::parse(token).unwrap(), "pve-a").unwrap()
}

fn reader(s: &Sim, token: &str) -> PveClient {
    PveClient::new(endpoint(s), ApiToken::parse(token).unwrap(), "pve-a").unwrap()
}

fn v(n: u32) -> Vmid {
    Vmid::new(u64::from(n)).unwrap()
}

fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn set(pairs: &[(&str, &str)], delete: &[&str]) -> ConfigChange {
    ConfigChange {
        set: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        delete: delete.iter().map(|k| k.to_string()).collect(),
        digest: None,
        removes: BTreeMap::new(),
        keeps: Default::default(),
    }
}

fn denied(r: Result<impl std::fmt::Debug, ApiError>, privilege: &str) {
    match r {
        Err(ApiError::PermissionDenied(m)) => assert!(m.contains(privilege), "{m}"),
        other => panic!("expected a 403 naming {privilege}, got {other:?}"),
    }
}

fn param_error(r: Result<impl std::fmt::Debug, ApiError>, key: &str, text: &str) {
    match r {
        Err(ApiError::Api {
            status: 400,
            errors: Some(e),
            ..
        }) => assert!(e[key].as_str().is_some_and(|m| m.contains(text)), "{e}"),
        other => panic!("expected a 400 on {key} ({text}), got {other:?}"),
    }
}

/// The volume ids `vmid` owns on local-lvm.
async fn volumes_of(w: &PveWriter, vmid: u32) -> Vec<String> {
    let list = w
        .raw(
            "GET",
            "/nodes/pve-a/storage/local-lvm/content",
            &p(&[("vmid", &vmid.to_string())]),
        )
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["volid"].as_str().unwrap().to_string())
        .collect()
}

async fn wait(w: &PveWriter, u: &steward_proxmox_client::Upid) {
    w.wait_task(u, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn privileges_are_checked_per_token_path_and_key_and_lists_are_filtered() {
    let s = sim().await;
    let everyday = writer(&s, EVERYDAY);
    // The everyday token powers guests and changes benign keys...
    let u = everyday.stop(GuestKind::Qemu, v(100)).await.unwrap();
    wait(&everyday, &u).await;
    everyday
        .set_config(
            GuestKind::Qemu,
            v(101),
            &set(&[("cores", "4"), ("tags", "x")], &[]),
        )
        .await
        .unwrap();
    // ...but cannot destroy, touch disks, roll back or create.
    denied(
        everyday.destroy(GuestKind::Qemu, v(101), true, false).await,
        "VM.Allocate",
    );
    denied(
        everyday
            .set_config(GuestKind::Qemu, v(101), &set(&[], &["scsi0"]))
            .await,
        "VM.Config.Disk",
    );
    denied(
        everyday.unlink_disks(v(101), &["scsi0".into()], true).await,
        "VM.Config.Disk",
    );
    s.with_node(|n| n.add_snapshot(101, "s1").unwrap());
    denied(
        everyday.rollback(GuestKind::Qemu, v(101), "s1").await,
        "VM.Snapshot",
    );
    denied(
        everyday
            .create(
                GuestKind::Qemu,
                v(900),
                &BTreeMap::from([("memory".into(), "512".into())]),
            )
            .await,
        "VM.Allocate",
    );
    // QEMU `startup` also needs Sys.Modify on / (qemu-server).
    denied(
        everyday
            .set_config(
                GuestKind::Qemu,
                v(101),
                &set(&[("startup", "order=1")], &[]),
            )
            .await,
        "Sys.Modify",
    );
    // The auditor changes nothing.
    let auditor = writer(&s, AUDITOR);
    denied(auditor.start(GuestKind::Qemu, v(101)).await, "VM.PowerMgmt");
    denied(
        auditor
            .set_config(GuestKind::Qemu, v(101), &set(&[("cores", "2")], &[]))
            .await,
        "VM.Config",
    );
    assert_eq!(auditor.list_guests().await.unwrap().len(), 6);
    // A token with rights on /vms/100 only sees guest 100, in lists and cluster resources.
    let one = reader(&s, ONE_VM);
    let seen: Vec<u32> = one
        .list_guests()
        .await
        .unwrap()
        .iter()
        .map(|g| g.vmid.get())
        .collect();
    assert_eq!(seen, vec![100]);
    let res = one
        .get_raw("/cluster/resources", &p(&[("type", "vm")]))
        .await
        .unwrap();
    assert_eq!(res.as_array().unwrap().len(), 1);
    // Tasks: a token sees its own without Sys.Audit; another's needs it.
    let mine = writer(&s, ONE_VM)
        .start(GuestKind::Qemu, v(100))
        .await
        .unwrap();
    one.task_status_once(&mine).await.unwrap();
    denied(one.task_status_once(&u).await, "Sys.Audit");
    let listed = one.list_tasks(&TaskFilter::default()).await.unwrap();
    assert!(
        listed.iter().all(|t| t.upid.user == "tenant@pve!one"),
        "{listed:?}"
    );
    // /access/permissions answers the caller's own privileges.
    let perms = one.get_raw("/access/permissions", &[]).await.unwrap();
    assert_eq!(perms["/vms/100"]["VM.Allocate"], 1, "{perms}");
}

#[tokio::test]
async fn parameters_are_checked_against_the_schema_and_root_only_options_refused() {
    let s = sim().await;
    let w = writer(&s, ADMIN);
    param_error(
        w.set_config(GuestKind::Qemu, v(101), &set(&[("bogus", "1")], &[]))
            .await,
        "bogus",
        "not defined in schema",
    );
    param_error(
        w.set_config(GuestKind::Qemu, v(101), &set(&[], &["bogus"]))
            .await,
        "delete",
        "unknown option 'bogus'",
    );
    param_error(
        w.set_config(GuestKind::Qemu, v(101), &set(&[("onboot", "maybe")], &[]))
            .await,
        "onboot",
        "boolean",
    );
    param_error(
        w.raw(
            "PUT",
            "/nodes/pve-a/qemu/101/config",
            &p(&[("cores", "2"), ("skiplock", "1")]),
        )
        .await,
        "skiplock",
        "Only root may use this option.",
    );
    // As qemu-server: a root-only option set false passes; the refusal comes after the
    // privilege check (a token without the privilege meets the 403 first); `lock` in a QEMU
    // config write dies in the handler's permission walk, a 500.
    w.raw(
        "PUT",
        "/nodes/pve-a/qemu/101/config",
        &p(&[("cores", "2"), ("skiplock", "0")]),
    )
    .await
    .unwrap();
    denied(
        writer(&s, AUDITOR)
            .raw(
                "PUT",
                "/nodes/pve-a/qemu/101/config",
                &p(&[("cores", "2"), ("skiplock", "1")]),
            )
            .await,
        "VM.Config",
    );
    match w
        .raw(
            "PUT",
            "/nodes/pve-a/qemu/101/config",
            &p(&[("lock", "backup")]),
        )
        .await
    {
        Err(ApiError::Api {
            status: 500,
            message,
            ..
        }) => assert!(
            message.contains("only root can set 'lock' config"),
            "{message}"
        ),
        other => panic!("expected a 500, got {other:?}"),
    }
    // Paths are percent-decoded: an encoded UPID finds its task.
    let u = w.stop(GuestKind::Qemu, v(100)).await.unwrap();
    let encoded = u.to_string().replace(':', "%3A").replace('!', "%21");
    let st = w
        .raw("GET", &format!("/nodes/pve-a/tasks/{encoded}/status"), &[])
        .await
        .unwrap();
    assert_eq!(st["upid"], u.to_string());
    // An unknown UPID is a 400, not a 500.
    param_error(
        w.raw(
            "GET",
            "/nodes/pve-a/tasks/UPID:pve-a:00000001:00000001:00000001:qmstart:1:x@pve:/status",
            &[],
        )
        .await,
        "upid",
        "no such task",
    );
}

#[tokio::test]
async fn pending_changes_deletions_and_revert_on_a_running_vm() {
    let s = sim().await;
    let w = writer(&s, ADMIN);
    // 100 runs: memory is cold, description is hot, tags go in sorted, de-duplicated, lower-case.
    w.set_config(
        GuestKind::Qemu,
        v(100),
        &set(
            &[
                ("memory", "4096"),
                ("description", "db\n"),
                ("tags", "Web prod,web"),
            ],
            &["cores"],
        ),
    )
    .await
    .unwrap();
    let cfg = w.config(GuestKind::Qemu, v(100)).await.unwrap().values;
    assert_eq!(
        cfg["memory"], "4096",
        "the default view applies pending values"
    );
    assert!(
        !cfg.contains_key("cores"),
        "a pending deletion is applied in the default view"
    );
    assert_eq!(cfg["tags"], "prod;web");
    assert_eq!(cfg["description"], "db");
    let current = w
        .raw(
            "GET",
            "/nodes/pve-a/qemu/100/config",
            &p(&[("current", "1")]),
        )
        .await
        .unwrap();
    assert_eq!(current["memory"], "2048");
    assert_eq!(current["cores"], 2);
    let pending = w.pending(GuestKind::Qemu, v(100)).await.unwrap();
    let get = |k: &str| pending.iter().find(|e| e.key == k).unwrap().clone();
    assert_eq!(get("memory").pending.as_deref(), Some("4096"));
    assert!(get("cores").delete);
    assert_eq!(get("description").pending, None, "hot keys apply at once");
    // Revert drops the pending memory change.
    w.raw(
        "PUT",
        "/nodes/pve-a/qemu/100/config",
        &p(&[("revert", "memory")]),
    )
    .await
    .unwrap();
    assert_eq!(
        w.config(GuestKind::Qemu, v(100)).await.unwrap().values["memory"],
        "2048"
    );
    // A start applies what was pending (reboot here).
    let r = w.reboot(GuestKind::Qemu, v(100)).await.unwrap();
    wait(&w, &r).await;
    assert!(w
        .pending(GuestKind::Qemu, v(100))
        .await
        .unwrap()
        .iter()
        .all(|e| e.pending.is_none() && !e.delete));
    // LXC reads its description back with a newline per line.
    w.set_config(GuestKind::Lxc, v(102), &set(&[("description", "ct")], &[]))
        .await
        .unwrap();
    assert_eq!(
        w.config(GuestKind::Lxc, v(102)).await.unwrap().values["description"],
        "ct\n"
    );
}

#[tokio::test]
async fn create_stores_what_proxmox_makes_and_disks_go_through_unused() {
    let s = sim().await;
    let w = writer(&s, ADMIN);
    let cfg = BTreeMap::from([
        ("memory".to_string(), "1024".to_string()),
        ("scsi0".to_string(), "local-lvm:4,ssd=1".to_string()),
        ("scsi1".to_string(), "local-lvm:2".to_string()),
        ("net0".to_string(), "virtio,bridge=vmbr0".to_string()),
        ("tags".to_string(), "B;a".to_string()),
    ]);
    let u = w.create(GuestKind::Qemu, v(900), &cfg).await.unwrap();
    assert_eq!(u.kind, "qmcreate");
    wait(&w, &u).await;
    let c = w.config(GuestKind::Qemu, v(900)).await.unwrap().values;
    assert_eq!(c["scsi0"], "local-lvm:vm-900-disk-0,ssd=1,size=4G");
    assert_eq!(c["scsi1"], "local-lvm:vm-900-disk-1,size=2G");
    assert!(c["net0"].starts_with("virtio=BC:24:11:"), "{}", c["net0"]);
    assert!(c["smbios1"].starts_with("uuid="));
    assert_eq!(c["vmgenid"].len(), 36);
    assert!(c["meta"].contains("ctime="));
    assert_eq!(c["boot"], "order=scsi0;scsi1;net0");
    assert_eq!(c["tags"], "a;b");
    // Detach scsi1: it becomes unused0; deleting unused0 removes the volume from storage.
    w.set_config(GuestKind::Qemu, v(900), &set(&[], &["scsi1"]))
        .await
        .unwrap();
    let c = w.config(GuestKind::Qemu, v(900)).await.unwrap().values;
    assert_eq!(c["unused0"], "local-lvm:vm-900-disk-1");
    assert_eq!(volumes_of(&w, 900).await.len(), 2);
    w.set_config(GuestKind::Qemu, v(900), &set(&[], &["unused0"]))
        .await
        .unwrap();
    assert_eq!(
        volumes_of(&w, 900).await,
        vec!["local-lvm:vm-900-disk-0".to_string()]
    );
    // Resize grows; shrinking fails in the task, as qemu-server does.
    let grow = w
        .raw(
            "PUT",
            "/nodes/pve-a/qemu/900/resize",
            &p(&[("disk", "scsi0"), ("size", "+1G")]),
        )
        .await
        .unwrap();
    let grow: steward_proxmox_client::Upid = grow.as_str().unwrap().parse().unwrap();
    wait(&w, &grow).await;
    assert!(w.config(GuestKind::Qemu, v(900)).await.unwrap().values["scsi0"].ends_with("size=5G"));
    let shrink = w
        .raw(
            "PUT",
            "/nodes/pve-a/qemu/900/resize",
            &p(&[("disk", "scsi0"), ("size", "1G")]),
        )
        .await
        .unwrap();
    let shrink: steward_proxmox_client::Upid = shrink.as_str().unwrap().parse().unwrap();
    let e = w
        .wait_task(&shrink, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("shrinking disks is not supported"),
        "{e}"
    );
    // Unlink with force deletes the disk outright.
    w.unlink_disks(v(900), &["scsi0".into()], true)
        .await
        .unwrap();
    assert!(volumes_of(&w, 900).await.is_empty());
    // Destroy with destroy-unreferenced-disks also removes the volumes nothing references.
    s.with_node(|n| {
        n.edit(103, &BTreeMap::new(), &["scsi0".to_string()])
            .unwrap()
    });
    assert_eq!(volumes_of(&w, 103).await.len(), 1, "an orphaned volume");
    let d = w
        .destroy(GuestKind::Qemu, v(103), true, true)
        .await
        .unwrap();
    wait(&w, &d).await;
    assert!(volumes_of(&w, 103).await.is_empty());
}

#[tokio::test]
async fn snapshots_rollback_and_restore_over_an_existing_guest() {
    let s = sim().await;
    let w = writer(&s, ADMIN);
    let u = w
        .raw(
            "POST",
            "/nodes/pve-a/qemu/101/snapshot",
            &p(&[("snapname", "before")]),
        )
        .await
        .unwrap();
    wait(&w, &u.as_str().unwrap().parse().unwrap()).await;
    w.set_config(GuestKind::Qemu, v(101), &set(&[("cores", "8")], &[]))
        .await
        .unwrap();
    let snaps = w
        .raw("GET", "/nodes/pve-a/qemu/101/snapshot", &[])
        .await
        .unwrap();
    let names: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["before", "current"]);
    let r = w.rollback(GuestKind::Qemu, v(101), "before").await.unwrap();
    assert_eq!(r.kind, "qmrollback");
    wait(&w, &r).await;
    assert_eq!(
        w.config(GuestKind::Qemu, v(101)).await.unwrap().values["cores"],
        "2"
    );
    // Restore over 100 (which has a backup): VM.Backup suffices when the guest exists.
    let backups = w
        .raw(
            "GET",
            "/nodes/pve-a/storage/local/content",
            &p(&[("content", "backup"), ("vmid", "100")]),
        )
        .await
        .unwrap();
    let archive = backups[0]["volid"].as_str().unwrap().to_string();
    let bk = writer(&s, BACKUP);
    let u = bk.stop(GuestKind::Qemu, v(100)).await.unwrap();
    wait(&bk, &u).await;
    let restore = bk
        .restore_over(GuestKind::Qemu, v(100), &archive)
        .await
        .unwrap();
    assert_eq!(restore.kind, "qmrestore");
    wait(&bk, &restore).await;
    // A token without VM.Backup or VM.Allocate cannot (PVEVMUser would: it holds VM.Backup).
    denied(
        writer(&s, EVERYDAY)
            .restore_over(GuestKind::Qemu, v(100), &archive)
            .await,
        "VM.Backup",
    );
}

#[tokio::test]
async fn tasks_list_as_proxmox_lists_them() {
    let s = sim_with(SimConfig {
        task_time: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let w = writer(&s, ADMIN);
    let running = w.stop(GuestKind::Qemu, v(100)).await.unwrap();
    let list = w.list_tasks(&TaskFilter::default()).await.unwrap();
    let t = list.iter().find(|t| t.upid == running).unwrap();
    assert!(t.running && t.status.is_none());
    let raw = w
        .raw("GET", "/nodes/pve-a/tasks", &p(&[("source", "active")]))
        .await
        .unwrap();
    assert_eq!(raw[0]["status"], "RUNNING");
    // Archive (the default source) holds only ended tasks.
    let archive = w
        .list_tasks(&TaskFilter {
            source: TaskSource::Archive,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert!(archive.iter().all(|t| !t.running));
    // 60 ended tasks: the list holds 50 unless `limit` says otherwise.
    s.with_node(|n| {
        for _ in 0..60 {
            n.power(steward_pve_sim::Kind::Qemu, 101, "stop", "x@pve")
                .unwrap();
        }
        for t in n.st.tasks.iter_mut() {
            t.ends_ms = Some(0);
        }
        n.tick();
    });
    assert_eq!(
        w.list_tasks(&TaskFilter::default()).await.unwrap().len(),
        50
    );
    let all = w
        .list_tasks(&TaskFilter {
            limit: Some(1000),
            vmid: Some(v(101)),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 60);
    // A task ending WARNINGS counts as success.
    s.with_node(|n| n.st.warn_next = 1);
    let warned = w.stop(GuestKind::Qemu, v(103)).await.unwrap();
    s.with_node(|n| {
        n.st.tasks.last_mut().unwrap().ends_ms = Some(0);
        n.tick();
    });
    let st = w.wait_task(&warned, Duration::from_secs(5)).await.unwrap();
    assert_eq!((st.succeeded(), st.warnings()), (true, Some(1)));
    let log = w
        .raw("GET", &format!("/nodes/pve-a/tasks/{warned}/log"), &[])
        .await
        .unwrap();
    assert_eq!(
        log.as_array().unwrap().last().unwrap()["t"],
        "TASK WARNINGS: 1"
    );
    // `errors=1` drops the tasks that ended OK and nothing else (pve-manager's `Tasks.pm`
    // turns off only `ok` in its status filter): the warned task stays, as does a failed one.
    s.with_node(|n| n.st.fail_next = 1);
    let failed = w.stop(GuestKind::Qemu, v(103)).await.unwrap();
    s.with_node(|n| {
        n.st.tasks.last_mut().unwrap().ends_ms = Some(0);
        n.tick();
    });
    let errors = w
        .list_tasks(&TaskFilter {
            errors: true,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let upids: Vec<String> = errors.iter().map(|t| t.upid.to_string()).collect();
    assert_eq!(
        upids,
        [failed.to_string(), warned.to_string()],
        "newest first, no OK task: {errors:?}"
    );
    // A token's ended task names user and token apart, in the list and in its status; the
    // type filter is exact, the user filter a case-insensitive part of that user.
    let listed = w
        .raw("GET", "/nodes/pve-a/tasks", &p(&[("typefilter", "qmstop")]))
        .await
        .unwrap();
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["upid"] == warned.to_string())
        .unwrap()
        .clone();
    assert_eq!(
        (&mine["user"], &mine["tokenid"]),
        (
            &serde_json::json!("steward@pve"),
            &serde_json::json!("admin")
        )
    );
    let st = w
        .raw("GET", &format!("/nodes/pve-a/tasks/{warned}/status"), &[])
        .await
        .unwrap();
    assert_eq!(
        (&st["user"], &st["tokenid"]),
        (
            &serde_json::json!("steward@pve"),
            &serde_json::json!("admin")
        )
    );
    let part = w
        .raw("GET", "/nodes/pve-a/tasks", &p(&[("typefilter", "qmsto")]))
        .await
        .unwrap();
    assert_eq!(part, serde_json::json!([]), "typefilter is exact");
    let by_user = |f: &str| {
        let f = f.to_string();
        let w = &w;
        async move {
            w.raw(
                "GET",
                "/nodes/pve-a/tasks",
                &p(&[("userfilter", f.as_str()), ("limit", "1000")]),
            )
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len()
        }
    };
    assert!(by_user("STEWARD@pve").await >= 2);
    assert_eq!(
        by_user("steward@pve!admin").await,
        0,
        "ended tasks list the user alone"
    );
}

#[tokio::test]
async fn crash_leftovers_stay_locked_for_every_token() {
    let s = sim().await;
    s.with_node(|n| n.leftover(950, steward_pve_sim::Kind::Qemu, "create"));
    let w = writer(&s, ADMIN);
    let g = w.list_guests().await.unwrap();
    assert_eq!(
        g.iter().find(|g| g.vmid == v(950)).unwrap().lock.as_deref(),
        Some("create")
    );
    // Deleting the lock through the API meets the lock; skiplock is root's alone.
    let e = w
        .set_config(GuestKind::Qemu, v(950), &set(&[("name", "x")], &[]))
        .await
        .unwrap_err();
    assert_eq!(
        e.failure().kind,
        steward_model::FailureKind::Locked {
            lock: "create".into()
        }
    );
    param_error(
        w.raw("DELETE", "/nodes/pve-a/qemu/950", &p(&[("skiplock", "1")]))
            .await,
        "skiplock",
        "Only root",
    );
    let d = w
        .destroy(GuestKind::Qemu, v(950), true, false)
        .await
        .unwrap();
    let e = w.wait_task(&d, Duration::from_secs(5)).await.unwrap_err();
    assert!(e.to_string().contains("VM is locked (create)"), "{e}");
}

async fn control(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    steward_lab::control(addr, method, path, body)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_out_of_band_actor_state_dir_and_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || SimConfig {
        control: Some("127.0.0.1:0".parse().unwrap()),
        state_dir: Some(dir.path().join("state")),
        conf_dir: Some(dir.path().join("etc-pve")),
        ..SimConfig::default()
    };
    let s = sim_with(cfg()).await;
    let c = s.control_addr.unwrap();
    let w = writer(&s, ADMIN);
    let conf = dir.path().join("etc-pve/qemu-server/101.conf");
    let other = dir.path().join("etc-pve/qemu-server/103.conf");
    let mtime = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let (before, other_before) = (mtime(&conf), mtime(&other));
    let digest = w.config(GuestKind::Qemu, v(101)).await.unwrap().digest;
    std::thread::sleep(Duration::from_millis(20));
    // Another tool edits 101: the digest moves, its file is rewritten, 103's is not.
    let (st, _) = control(c, "POST", "/guests/101/config", r#"{"set":{"cores":"6"}}"#).await;
    assert_eq!(st, 200);
    assert_ne!(
        w.config(GuestKind::Qemu, v(101)).await.unwrap().digest,
        digest
    );
    assert!(mtime(&conf) > before);
    assert_eq!(mtime(&other), other_before);
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .contains("cores: 6\n"));
    // A lock set out of band is what the API sees.
    control(c, "POST", "/guests/103/lock", r#"{"lock":"backup"}"#).await;
    let g = w.list_guests().await.unwrap();
    assert_eq!(
        g.iter().find(|g| g.vmid == v(103)).unwrap().lock.as_deref(),
        Some("backup")
    );
    // The counters say which token did what to which guest.
    let u = w.stop(GuestKind::Qemu, v(100)).await.unwrap();
    wait(&w, &u).await;
    let (_, counters) = control(c, "GET", "/counters", "").await;
    assert!(
        counters.as_array().unwrap().iter().any(|e| e["vmid"] == 100
            && e["call"] == "stop"
            && e["token"] == "steward@pve!admin"
            && e["count"] == 1),
        "{counters}"
    );
    // Fail the next task.
    control(c, "POST", "/tasks/fail-next", r#"{"n":1}"#).await;
    let u = w.start(GuestKind::Qemu, v(100)).await.unwrap();
    assert!(w.wait_task(&u, Duration::from_secs(5)).await.is_err());
    // The node survives a restart of the simulator.
    let create = w
        .create(
            GuestKind::Qemu,
            v(901),
            &BTreeMap::from([("memory".into(), "512".into())]),
        )
        .await
        .unwrap();
    wait(&w, &create).await;
    s.shutdown();
    drop(s);
    let again = sim_with(cfg()).await;
    let w2 = writer(&again, ADMIN);
    assert_eq!(
        w2.config(GuestKind::Qemu, v(901)).await.unwrap().values["memory"],
        "512"
    );
    assert!(w2.task_status_once(&create).await.unwrap().succeeded());
    assert_eq!(
        w2.list_guests()
            .await
            .unwrap()
            .iter()
            .find(|g| g.vmid == v(103))
            .unwrap()
            .lock
            .as_deref(),
        Some("backup")
    );
}

async fn volumes_on(w: &PveWriter, storage: &str, vmid: u32) -> Vec<String> {
    let list = w
        .raw(
            "GET",
            &format!("/nodes/pve-a/storage/{storage}/content"),
            &p(&[("vmid", &vmid.to_string())]),
        )
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["volid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_disk_moves_to_another_storage_as_qemu_server_and_pve_container_move_one() {
    let s = sim().await;
    let w = writer(&s, ADMIN);
    let cfg = BTreeMap::from([
        ("scsi0".to_string(), "local-lvm:4,ssd=1".to_string()),
        ("scsi1".to_string(), "local-lvm:2".to_string()),
        (
            "ide2".to_string(),
            "local:iso/debian-12.iso,media=cdrom".to_string(),
        ),
    ]);
    let u = w.create(GuestKind::Qemu, v(900), &cfg).await.unwrap();
    wait(&w, &u).await;
    let q = GuestKind::Qemu;
    // The everyday token holds no VM.Config.Disk.
    denied(
        writer(&s, EVERYDAY)
            .move_disk(q, v(900), "scsi1", "local-zfs", false, None)
            .await,
        "VM.Config.Disk",
    );
    let refused = |r: Result<steward_proxmox_client::Upid, ApiError>, text: &str| {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(text), "{e} (expected {text:?})");
    };
    refused(
        w.move_disk(q, v(900), "scsi1", "local-zfs", false, Some("0123"))
            .await,
        "detected modified configuration",
    );
    refused(
        w.move_disk(q, v(900), "scsi1", "local-lvm", false, None)
            .await,
        "you can't move to the same storage with same format",
    );
    refused(
        w.move_disk(q, v(900), "ide2", "local-zfs", false, None)
            .await,
        "you can't move a cdrom",
    );
    refused(
        w.move_disk(q, v(900), "scsi7", "local-zfs", false, None)
            .await,
        "disk 'scsi7' does not exist",
    );
    refused(
        w.move_disk(q, v(900), "scsi1", "nowhere", false, None)
            .await,
        "storage 'nowhere' does not exist",
    );

    // Kept: the source becomes unusedN; the slot names the copy, with its options and size.
    let digest = w.config(q, v(900)).await.unwrap().digest;
    let u = w
        .move_disk(q, v(900), "scsi1", "local-zfs", false, Some(&digest))
        .await
        .unwrap();
    assert_eq!(u.kind, "qmmove");
    wait(&w, &u).await;
    let c = w.config(q, v(900)).await.unwrap().values;
    assert_eq!(c["scsi1"], "local-zfs:vm-900-disk-0,size=2G");
    assert_eq!(c["unused0"], "local-lvm:vm-900-disk-1");

    // Deleted: the source is gone from its storage, and nothing else.
    let u = w
        .move_disk(q, v(900), "scsi0", "local-zfs", true, None)
        .await
        .unwrap();
    wait(&w, &u).await;
    let c = w.config(q, v(900)).await.unwrap().values;
    assert_eq!(c["scsi0"], "local-zfs:vm-900-disk-1,ssd=1,size=4G");
    assert_eq!(
        volumes_on(&w, "local-lvm", 900).await,
        vec!["local-lvm:vm-900-disk-1".to_string()]
    );
    assert_eq!(volumes_on(&w, "local-zfs", 900).await.len(), 2);

    // A volume a snapshot references is never deleted by a move.
    let u = w
        .raw(
            "POST",
            "/nodes/pve-a/qemu/900/snapshot",
            &p(&[("snapname", "pre")]),
        )
        .await
        .unwrap();
    wait(&w, &u.as_str().unwrap().parse().unwrap()).await;
    refused(
        w.move_disk(q, v(900), "scsi0", "local-lvm", true, None)
            .await,
        "you can't move a disk with snapshots and delete the source",
    );

    // A container moves only while stopped, and is locked `disk` while it does.
    let l = GuestKind::Lxc;
    refused(
        w.move_disk(l, v(102), "rootfs", "local-zfs", true, None)
            .await,
        "cannot move volumes of a running container",
    );
    let u = w.stop(l, v(102)).await.unwrap();
    wait(&w, &u).await;
    let source = w.config(l, v(102)).await.unwrap().values["rootfs"].clone();
    let u = w
        .move_disk(l, v(102), "rootfs", "local-zfs", true, None)
        .await
        .unwrap();
    assert_eq!(u.kind, "move_volume");
    wait(&w, &u).await;
    let c = w.config(l, v(102)).await.unwrap().values;
    assert!(c["rootfs"].starts_with("local-zfs:vm-102-disk-"), "{c:?}");
    assert!(!c.contains_key("lock"));
    let source_volume = source.split(',').next().unwrap().to_string();
    assert!(!volumes_on(&w, "local-lvm", 102)
        .await
        .contains(&source_volume));
}

/// The storage answers automation reads, as pve-storage's `Status.pm` and `Content.pm` give
/// them: `content=` a list matching any, an unknown `storage=` a 400 `No such storage.` (also
/// one that the content filter left out), `used_fraction` beside a total, and each volume's
/// `content`.
#[tokio::test]
async fn storage_answers_as_pve_storage_gives_them() {
    let s = sim().await;
    let w = writer(&s, ADMIN);
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["storage"].as_str().unwrap().to_string())
            .collect()
    };
    let all = w.raw("GET", "/nodes/pve-a/storage", &[]).await.unwrap();
    assert!(names(&all).len() >= 2, "{all}");
    for e in all.as_array().unwrap() {
        let (used, total) = (e["used"].as_f64().unwrap(), e["total"].as_f64().unwrap());
        assert!(total > 0.0);
        assert_eq!(e["used_fraction"].as_f64().unwrap(), used / total);
    }
    let iso_or_images = w
        .raw(
            "GET",
            "/nodes/pve-a/storage",
            &p(&[("content", "iso,images")]),
        )
        .await
        .unwrap();
    assert_eq!(names(&iso_or_images), names(&all), "a list matches any");
    let iso = w
        .raw("GET", "/nodes/pve-a/storage", &p(&[("content", "iso")]))
        .await
        .unwrap();
    assert_eq!(names(&iso), ["local"]);
    param_error(
        w.raw("GET", "/nodes/pve-a/storage", &p(&[("storage", "nowhere")]))
            .await,
        "storage",
        "No such storage.",
    );
    param_error(
        w.raw(
            "GET",
            "/nodes/pve-a/storage",
            &p(&[("storage", "local-lvm"), ("content", "iso")]),
        )
        .await,
        "storage",
        "No such storage.",
    );
    let content = w
        .raw("GET", "/nodes/pve-a/storage/local-lvm/content", &[])
        .await
        .unwrap();
    let content = content.as_array().unwrap();
    assert!(!content.is_empty());
    assert!(content
        .iter()
        .all(|e| e["content"] == "images" || e["content"] == "rootdir"));
}

/// Guest lists in the shapes qemu-server's and pve-container's `vmstatus` give: `name` always
/// (`VM <vmid>` / `CT<vmid>` by default), the VMID an integer for both kinds, LXC `type`, and
/// QEMU's `qmpstatus`, `diskread`, `diskwrite` only with `full=1`.
#[tokio::test]
async fn guest_lists_carry_the_fields_proxmox_always_sends() {
    let s = sim().await;
    let w = writer(&s, ADMIN);
    s.with_node(|n| {
        n.st.guests.get_mut(&101).unwrap().config.remove("name");
        n.st.guests.get_mut(&102).unwrap().config.remove("hostname");
    });
    let entry = |list: &Value, vmid: u64| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["vmid"].as_u64() == Some(vmid))
            .unwrap_or_else(|| panic!("{vmid} not listed with an integer vmid: {list}"))
            .clone()
    };
    let qemu = w.raw("GET", "/nodes/pve-a/qemu", &[]).await.unwrap();
    let e = entry(&qemu, 101);
    assert_eq!(e["name"], "VM 101");
    assert!(
        e.get("qmpstatus").is_none() && e.get("diskread").is_none(),
        "{e}"
    );
    let full = w
        .raw("GET", "/nodes/pve-a/qemu", &p(&[("full", "1")]))
        .await
        .unwrap();
    let e = entry(&full, 100);
    assert_eq!(e["qmpstatus"], "running", "{e}");
    assert_eq!(e["diskread"], 0);
    let lxc = w.raw("GET", "/nodes/pve-a/lxc", &[]).await.unwrap();
    let e = entry(&lxc, 102);
    assert_eq!(
        (&e["name"], &e["type"]),
        (&serde_json::json!("CT102"), &serde_json::json!("lxc"))
    );
    // The client reads the default name as Proxmox gives it.
    let listed = w.list_guests().await.unwrap();
    let g = listed.iter().find(|g| g.vmid == v(101)).unwrap();
    assert_eq!(g.name.as_deref(), Some("VM 101"));
}

/// While a create's task runs, the guest's config holds only `lock: create` (qemu-server's and
/// pve-container's `create_and_lock_config`); the worker writes the config, without the lock,
/// as it ends. A create that fails leaves nothing behind.
#[tokio::test]
async fn a_guest_being_created_shows_only_its_lock_until_the_worker_writes_its_config() {
    let s = sim().await;
    let w = writer(&s, ADMIN);
    s.with_node(|n| n.st.hang_next = 1);
    let config: BTreeMap<String, String> = [
        ("memory".to_string(), "1024".to_string()),
        ("name".to_string(), "web".to_string()),
        ("scsi0".to_string(), "local-lvm:4".to_string()),
    ]
    .into();
    let u = w.create(GuestKind::Qemu, v(950), &config).await.unwrap();
    let during = w.config(GuestKind::Qemu, v(950)).await.unwrap();
    let keys: Vec<&str> = during.values.keys().map(String::as_str).collect();
    assert_eq!(keys, ["lock"], "{during:?}");
    assert_eq!(during.values["lock"], "create");
    s.with_node(|n| {
        n.st.tasks.last_mut().unwrap().ends_ms = Some(0);
        n.tick();
    });
    w.wait_task(&u, Duration::from_secs(5)).await.unwrap();
    let after = w.config(GuestKind::Qemu, v(950)).await.unwrap();
    assert_eq!(after.values.get("memory").map(String::as_str), Some("1024"));
    assert_eq!(after.values.get("name").map(String::as_str), Some("web"));
    assert!(
        after.values["scsi0"].starts_with("local-lvm:vm-950-disk-0"),
        "{after:?}"
    );
    assert!(!after.values.contains_key("lock"), "{after:?}");
    // A failed create removes the guest and the volume it allocated.
    s.with_node(|n| n.st.fail_next = 1);
    let u = w.create(GuestKind::Qemu, v(951), &config).await.unwrap();
    assert!(w.wait_task(&u, Duration::from_secs(5)).await.is_err());
    assert!(w.config(GuestKind::Qemu, v(951)).await.is_err());
    assert!(volumes_of(&w, 951).await.is_empty());
}
