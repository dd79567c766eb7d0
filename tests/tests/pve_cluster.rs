//! The simulator as a cluster behaves as a Proxmox VE cluster does where the agent depends on
//! it: one VMID namespace (pve-cluster's `check_vmid_unused` text), `/cluster/resources`,
//! `/nodes`, `/cluster/status` and `/cluster/nextid` answering for every node through any
//! node's listener, migration with qemu-server's and pve-container's refusals (before the
//! worker and in it), `lock: migrate` while it runs and the guest with its volumes on the target
//! after, out-of-band migration, quorum loss (every write refused, reads answered), and a state
//! directory and config-file view laid out per node. Real TLS on 127.0.0.1, real client.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use steward_proxmox_client::{
    tls, ApiError, ApiToken, Endpoint, GuestRead, PveWriter, Trust, Upid,
};
use steward_pve_sim::{Privileges, Sim, SimConfig, SimToken, NO_QUORUM};

const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";

async fn cluster_with(extra: SimConfig) -> Sim {
    Sim::start(SimConfig {
        node: "pve-a".into(),
        peers: vec!["pve-b".into(), "pve-c".into()],
        guests: 3,
        tokens: vec![(SimToken::parse(ADMIN).unwrap(), Privileges::all())],
        task_time: Duration::from_millis(150),
        control: Some("127.0.0.1:0".parse().unwrap()),
        ..extra
    })
    .await
    .unwrap()
}

/// A writer talking to `node`'s own listener about `node`'s guests.
fn on(s: &Sim, node: &str) -> PveWriter {
    on_as(s, node, ADMIN)
}

/// The same, with `token`.
fn on_as(s: &Sim, node: &str, token: &str) -> PveWriter {
    let n = s.nodes.iter().find(|n| n.name == node).unwrap();
    let e = Endpoint {
        addr: n.addr.to_string(),
        server_name: "localhost".into(),
        trust: Trust::Fingerprint(tls::parse_fingerprint(&n.fingerprint).unwrap()),
        timeout: Duration::from_secs(5),
        keep_alive: true,
    };
    PveWriter::new(e, ApiToken::parse(token).unwrap(), node).unwrap()
}

fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn refused(r: Result<Value, ApiError>, status: u16, text: &str) {
    match r {
        Err(ApiError::Api {
            status: s,
            message,
            errors,
            ..
        }) if s == status => {
            let all = format!("{message} {}", errors.unwrap_or(Value::Null));
            assert!(all.contains(text), "{all}");
        }
        Err(e) if status == 500 && e.to_string().contains(text) => {}
        other => panic!("expected {status} {text:?}, got {other:?}"),
    }
}

async fn control(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    steward_lab::control(addr, method, path, body)
        .await
        .unwrap()
}

/// `vmid → node` from `/cluster/resources?type=vm`, as `w` sees it.
async fn placement(w: &PveWriter) -> Vec<(u64, String, String)> {
    let r = w
        .raw("GET", "/cluster/resources", &p(&[("type", "vm")]))
        .await
        .unwrap();
    r.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["vmid"].as_u64().unwrap(),
                e["node"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn migrate(
    w: &PveWriter,
    kind: &str,
    node: &str,
    vmid: u32,
    params: &[(&str, &str)],
) -> Result<Value, ApiError> {
    w.raw(
        "POST",
        &format!("/nodes/{node}/{kind}/{vmid}/migrate"),
        &p(params),
    )
    .await
}

fn upid(v: &Value) -> Upid {
    v.as_str().unwrap().parse::<Upid>().unwrap()
}

#[tokio::test]
async fn one_vmid_namespace_answered_by_every_node() {
    let s = cluster_with(SimConfig::default()).await;
    assert_eq!(s.nodes.len(), 3);
    let (a, b) = (on(&s, "pve-a"), on(&s, "pve-b"));
    // Three guests per node, numbered one block after another; every node lists them all.
    let seen = placement(&b).await;
    assert_eq!(seen, placement(&a).await);
    let mut expect = Vec::new();
    for (i, n) in ["pve-a", "pve-b", "pve-c"].iter().enumerate() {
        for j in 0..3u64 {
            expect.push((100 + 3 * i as u64 + j, n.to_string()));
        }
    }
    let got: Vec<(u64, String)> = seen.iter().map(|(v, n, _)| (*v, n.clone())).collect();
    assert_eq!(got, expect);
    // /nodes lists every node with its own certificate's fingerprint.
    let nodes = b.raw("GET", "/nodes", &[]).await.unwrap();
    let fps: Vec<(String, String)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().into(),
                n["ssl_fingerprint"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = s
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.fingerprint.clone()))
        .collect();
    assert_eq!(fps, want);
    assert_ne!(s.nodes[0].fingerprint, s.nodes[1].fingerprint);
    // /cluster/status: a quorate cluster of three, the asking node marked local.
    let st = b.raw("GET", "/cluster/status", &[]).await.unwrap();
    let st = st.as_array().unwrap();
    assert_eq!(st[0]["type"], "cluster");
    assert_eq!(st[0]["quorate"], 1);
    assert_eq!(st[0]["nodes"], 3);
    let local: Vec<&str> = st[1..]
        .iter()
        .filter(|n| n["local"] == 1)
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(local, ["pve-b"]);
    // nextid is cluster-wide, and a VMID another node holds is taken.
    assert_eq!(
        b.raw("GET", "/cluster/nextid", &[]).await.unwrap(),
        json!(109)
    );
    refused(
        b.raw("GET", "/cluster/nextid", &p(&[("vmid", "100")]))
            .await,
        400,
        "VM 100 already exists",
    );
    refused(
        b.raw(
            "POST",
            "/nodes/pve-b/qemu",
            &p(&[("vmid", "100"), ("memory", "512")]),
        )
        .await,
        500,
        "unable to create VM 100 - VM 100 already exists on node 'pve-a'",
    );
    refused(
        b.raw(
            "POST",
            "/nodes/pve-b/lxc",
            &p(&[
                ("vmid", "105"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                ),
                ("unprivileged", "1"),
            ]),
        )
        .await,
        500,
        "unable to create CT 105 - CT 105 already exists on node 'pve-b'",
    );
    // A node answers for its own guests and proxies a path naming another node; a guest is
    // not found under a node that does not hold it.
    let cfg = b
        .raw("GET", "/nodes/pve-a/qemu/100/config", &[])
        .await
        .unwrap();
    assert_eq!(cfg["name"], "guest-100");
    refused(
        b.raw("GET", "/nodes/pve-b/qemu/100/config", &[]).await,
        500,
        "Configuration file 'nodes/pve-b/qemu-server/100.conf' does not exist",
    );
}

#[tokio::test]
async fn a_migration_refuses_as_proxmox_does_then_moves_the_guest_and_its_volumes() {
    let s = cluster_with(SimConfig::default()).await;
    let a = on(&s, "pve-a");
    // 100: a running VM with a local disk; 101: a stopped VM; 102: a running container.
    refused(
        migrate(&a, "qemu", "pve-a", 100, &[("target", "pve-a")]).await,
        400,
        "target is local node.",
    );
    refused(
        migrate(&a, "qemu", "pve-a", 100, &[("target", "pve-x")]).await,
        500,
        "no such cluster node 'pve-x'",
    );
    refused(
        migrate(&a, "qemu", "pve-a", 100, &[("target", "pve-b")]).await,
        500,
        "can't migrate running VM without --online",
    );
    refused(
        migrate(&a, "qemu", "pve-a", 104, &[("target", "pve-b")]).await,
        500,
        "Configuration file 'nodes/pve-a/qemu-server/104.conf' does not exist",
    );
    // Online with a local disk but without with-local-disks: the worker refuses.
    let u = upid(
        &migrate(
            &a,
            "qemu",
            "pve-a",
            100,
            &[("target", "pve-b"), ("online", "1")],
        )
        .await
        .unwrap(),
    );
    let e = a.wait_task(&u, Duration::from_secs(5)).await.unwrap_err();
    assert!(
        e.to_string().contains("can't migrate VM - check log"),
        "{e}"
    );
    assert_eq!(u.kind.as_str(), "qmigrate");
    // Now as it should be: locked `migrate` while it runs, then on pve-b, running, unlocked,
    // with its volume listed by pve-b's storage and no longer by pve-a's.
    let disk = a
        .raw("GET", "/nodes/pve-a/qemu/100/config", &[])
        .await
        .unwrap()["scsi0"]
        .as_str()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let u = upid(
        &migrate(
            &a,
            "qemu",
            "pve-a",
            100,
            &[
                ("target", "pve-b"),
                ("online", "1"),
                ("with-local-disks", "1"),
            ],
        )
        .await
        .unwrap(),
    );
    let locked = a
        .raw("GET", "/nodes/pve-a/qemu/100/config", &[])
        .await
        .unwrap();
    assert_eq!(locked["lock"], "migrate");
    // A stop meanwhile: qemu-server checks the lock in its worker.
    let stop = upid(
        &a.raw("POST", "/nodes/pve-a/qemu/100/status/stop", &[])
            .await
            .unwrap(),
    );
    let e = a
        .wait_task(&stop, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("VM is locked (migrate)"), "{e}");
    a.wait_task(&u, Duration::from_secs(5)).await.unwrap();
    let b = on(&s, "pve-b");
    assert!(placement(&a)
        .await
        .contains(&(100, "pve-b".into(), "running".into())));
    let cfg = b
        .raw("GET", "/nodes/pve-b/qemu/100/config", &[])
        .await
        .unwrap();
    assert!(cfg.get("lock").is_none(), "{cfg}");
    refused(
        a.raw("GET", "/nodes/pve-a/qemu/100/config", &[]).await,
        500,
        "nodes/pve-a/qemu-server/100.conf' does not exist",
    );
    let content = |node: &'static str, w: PveWriter| async move {
        w.raw(
            "GET",
            &format!("/nodes/{node}/storage/local-lvm/content"),
            &p(&[("vmid", "100")]),
        )
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["volid"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
    };
    assert_eq!(content("pve-b", on(&s, "pve-b")).await, vec![disk.clone()]);
    assert!(content("pve-a", on(&s, "pve-a")).await.is_empty());
    // A stopped VM migrates offline.
    let u = upid(
        &migrate(&a, "qemu", "pve-a", 101, &[("target", "pve-c")])
            .await
            .unwrap(),
    );
    a.wait_task(&u, Duration::from_secs(5)).await.unwrap();
    assert!(placement(&a)
        .await
        .contains(&(101, "pve-c".into(), "stopped".into())));
    // A running container: refused without online or restart, fails live, moves in restart
    // mode and runs on the target.
    refused(
        migrate(&a, "lxc", "pve-a", 102, &[("target", "pve-c")]).await,
        500,
        "can't migrate running container without --online or --restart",
    );
    let u = upid(
        &migrate(
            &a,
            "lxc",
            "pve-a",
            102,
            &[("target", "pve-c"), ("online", "1")],
        )
        .await
        .unwrap(),
    );
    assert_eq!(u.kind.as_str(), "vzmigrate");
    let e = a.wait_task(&u, Duration::from_secs(5)).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("lxc live migration is currently not implemented"),
        "{e}"
    );
    let u = upid(
        &migrate(
            &a,
            "lxc",
            "pve-a",
            102,
            &[("target", "pve-c"), ("restart", "1")],
        )
        .await
        .unwrap(),
    );
    a.wait_task(&u, Duration::from_secs(5)).await.unwrap();
    assert!(placement(&a)
        .await
        .contains(&(102, "pve-c".into(), "running".into())));
    // A VMID that moved is still taken cluster-wide.
    refused(
        a.raw(
            "POST",
            "/nodes/pve-a/qemu",
            &p(&[("vmid", "101"), ("memory", "512")]),
        )
        .await,
        500,
        "VM 101 already exists on node 'pve-c'",
    );
}

#[tokio::test]
async fn without_quorum_every_write_is_refused_and_reads_still_answer() {
    let s = cluster_with(SimConfig::default()).await;
    let c = s.control_addr.unwrap();
    let (a, b) = (on(&s, "pve-a"), on(&s, "pve-b"));
    let (st, _) = control(c, "POST", "/nodes/pve-b/quorum", r#"{"quorate":false}"#).await;
    assert_eq!(st, 200);
    for (method, path, params) in [
        ("PUT", "/nodes/pve-b/qemu/103/config", p(&[("cores", "4")])),
        ("POST", "/nodes/pve-b/qemu/103/status/start", p(&[])),
        (
            "POST",
            "/nodes/pve-b/qemu",
            p(&[("vmid", "900"), ("memory", "512")]),
        ),
        (
            "POST",
            "/nodes/pve-b/qemu/103/migrate",
            p(&[("target", "pve-a"), ("online", "1")]),
        ),
    ] {
        refused(b.raw(method, path, &params).await, 500, NO_QUORUM);
    }
    // Reads answer; the node says it is not quorate, the others that they are.
    assert_eq!(placement(&b).await.len(), 9);
    let cfg = b
        .raw("GET", "/nodes/pve-b/qemu/103/config", &[])
        .await
        .unwrap();
    assert_eq!(cfg["cores"], 2);
    let quorate = |w: PveWriter| async move {
        w.raw("GET", "/cluster/status", &[]).await.unwrap()[0]["quorate"].clone()
    };
    assert_eq!(quorate(on(&s, "pve-b")).await, 0);
    assert_eq!(quorate(on(&s, "pve-a")).await, 1);
    // pve-a still writes its own guests.
    a.raw("PUT", "/nodes/pve-a/qemu/100/config", &p(&[("cores", "4")]))
        .await
        .unwrap();
    // Quorum back: writes go through again.
    control(c, "POST", "/nodes/pve-b/quorum", r#"{"quorate":true}"#).await;
    b.raw("PUT", "/nodes/pve-b/qemu/103/config", &p(&[("cores", "4")]))
        .await
        .unwrap();
}

#[tokio::test]
async fn out_of_band_migration_state_dir_and_per_node_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || SimConfig {
        state_dir: Some(dir.path().join("state")),
        conf_dir: Some(dir.path().join("etc-pve")),
        ..SimConfig::default()
    };
    let s = cluster_with(cfg()).await;
    let c = s.control_addr.unwrap();
    let conf = |node: &str, vmid: u32| {
        dir.path()
            .join(format!("etc-pve/nodes/{node}/qemu-server/{vmid}.conf"))
    };
    assert!(conf("pve-a", 101).exists());
    assert!(conf("pve-b", 103).exists());
    // `qm migrate 101 pve-b` in a root shell: a task by root@pam, the guest locked meanwhile.
    let (st, answer) = control(c, "POST", "/guests/101/migrate", r#"{"target":"pve-b"}"#).await;
    assert_eq!(st, 200, "{answer}");
    let u = answer["upid"].as_str().unwrap().parse::<Upid>().unwrap();
    assert!(u.to_string().contains(":qmigrate:101:root@pam:"), "{u}");
    let (_, guests) = control(c, "GET", "/guests", "").await;
    assert_eq!(guests["101"]["lock"], "migrate");
    assert_eq!(guests["101"]["node"], "pve-a");
    let a = on(&s, "pve-a");
    a.wait_task(&u, Duration::from_secs(5)).await.unwrap();
    let (_, guests) = control(c, "GET", "/guests", "").await;
    assert_eq!(guests["101"]["node"], "pve-b");
    assert!(guests["101"]["lock"].is_null());
    assert!(!conf("pve-a", 101).exists());
    assert!(conf("pve-b", 101).exists());
    // Refusals come back as the API gives them.
    let (st, e) = control(c, "POST", "/guests/100/migrate", r#"{"target":"pve-b"}"#).await;
    assert_eq!(st, 400);
    assert!(
        e["error"].as_str().unwrap().contains("without --online"),
        "{e}"
    );
    // The cluster survives a restart of the simulator, guests where they were, quorum as it was.
    control(c, "POST", "/nodes/pve-c/quorum", r#"{"quorate":false}"#).await;
    s.shutdown();
    drop(s);
    let again = cluster_with(cfg()).await;
    let a2 = on(&again, "pve-a");
    assert!(placement(&a2)
        .await
        .iter()
        .any(|(v, n, _)| *v == 101 && n == "pve-b"));
    refused(
        on(&again, "pve-c")
            .raw("POST", "/nodes/pve-c/qemu/106/status/start", &[])
            .await,
        500,
        NO_QUORUM,
    );
}

/// `(node, status, hastate)` of `vmid` in `/cluster/resources`.
async fn resource(w: &PveWriter, vmid: u64) -> (String, String, Option<String>) {
    let r = w
        .raw("GET", "/cluster/resources", &p(&[("type", "vm")]))
        .await
        .unwrap();
    let e = r
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["vmid"] == vmid)
        .cloned()
        .unwrap();
    (
        e["node"].as_str().unwrap().into(),
        e["status"].as_str().unwrap().into(),
        e["hastate"].as_str().map(str::to_string),
    )
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn ha_requests_are_carried_out_later_and_a_fenced_nodes_guests_are_recovered() {
    let s = cluster_with(SimConfig::default()).await;
    let (a, b) = (on(&s, "pve-a"), on(&s, "pve-b"));
    // 101 (a stopped VM on pve-a) becomes an HA resource requested started: the manager
    // starts it a little later, not at once.
    a.raw(
        "POST",
        "/cluster/ha/resources",
        &p(&[("sid", "vm:101"), ("state", "started")]),
    )
    .await
    .unwrap();
    refused(
        a.raw("POST", "/cluster/ha/resources", &p(&[("sid", "vm:101")]))
            .await,
        500,
        "resource ID 'vm:101' already defined",
    );
    assert_eq!(
        resource(&a, 101).await,
        ("pve-a".into(), "stopped".into(), Some("starting".into()))
    );
    eventually("the manager started 101", || async {
        resource(&b, 101).await == ("pve-a".into(), "running".into(), Some("started".into()))
    })
    .await;
    let st = a
        .raw("GET", "/nodes/pve-a/qemu/101/status/current", &[])
        .await
        .unwrap();
    assert_eq!(st["ha"], json!({"managed": 1, "state": "started"}));
    // A stop through the API is a request: an `hastop` task that ends OK while the guest
    // still runs; the manager stops it later.
    let u = upid(
        &a.raw("POST", "/nodes/pve-a/qemu/101/status/stop", &[])
            .await
            .unwrap(),
    );
    assert_eq!(u.kind, "hastop");
    a.wait_task(&u, Duration::from_secs(5)).await.unwrap();
    let log = a.task_log(&u, 50).await.unwrap();
    assert!(
        log.iter().any(|l| l == "Requesting HA stop for VM 101"),
        "{log:?}"
    );
    eventually("the manager stopped 101", || async {
        resource(&a, 101).await.1 == "stopped"
    })
    .await;
    let ha = a.raw("GET", "/cluster/ha/resources", &[]).await.unwrap();
    assert_eq!(ha[0]["sid"], "vm:101");
    assert_eq!(ha[0]["state"], "stopped");
    // Requested started again, then pve-a goes down: its listener answers nothing, its
    // guests' state is unknown, and 101 is recovered to pve-b and started there.
    a.raw(
        "PUT",
        "/cluster/ha/resources/vm:101",
        &p(&[("state", "started")]),
    )
    .await
    .unwrap();
    eventually("101 running again", || async {
        resource(&b, 101).await.1 == "running"
    })
    .await;
    let (st, _) = control(s.control_addr.unwrap(), "POST", "/nodes/pve-a/fence", "").await;
    assert_eq!(st, 200);
    assert_eq!(resource(&b, 101).await.2.as_deref(), Some("fence"));
    assert_eq!(resource(&b, 100).await.1, "unknown");
    assert!(a.raw("GET", "/version", &[]).await.is_err());
    eventually("101 recovered to pve-b and started", || async {
        resource(&b, 101).await == ("pve-b".into(), "running".into(), Some("started".into()))
    })
    .await;
    // The non-HA guests stay with the node that is down.
    assert_eq!(resource(&b, 100).await.0, "pve-a");
}

/// One request over TLS to `node`'s listener with a raw body and content type: the status line
/// and the JSON answer.
async fn raw_request(
    s: &Sim,
    node: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = s.nodes.iter().find(|n| n.name == node).unwrap();
    let trust = Trust::Fingerprint(tls::parse_fingerprint(&n.fingerprint).unwrap());
    let cfg = tls::client_config(&trust).unwrap();
    let tcp = tokio::net::TcpStream::connect(n.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut io = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let secret = ADMIN.split_once('=').unwrap();
    let req = format!(
        "{method} /api2/json{path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: PVEAPIToken={}={}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        secret.0,
        secret.1,
        body.len()
    );
    io.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = io.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out.lines().next().unwrap_or_default().to_string();
    let json = out.split("\r\n\r\n").nth(1).unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[tokio::test]
async fn json_bodies_the_cluster_task_list_and_stopping_a_task() {
    let s = cluster_with(SimConfig::default()).await;
    // A JSON body is taken as pve-http-server takes it: numbers and booleans as their text.
    let (status, _) = raw_request(
        &s,
        "pve-a",
        "PUT",
        "/nodes/pve-a/qemu/101/config",
        "application/json",
        r#"{"cores": 4, "onboot": true, "description": "from JSON"}"#,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let a = on(&s, "pve-a");
    let cfg = a
        .raw("GET", "/nodes/pve-a/qemu/101/config", &[])
        .await
        .unwrap();
    assert_eq!(
        (cfg["cores"].clone(), cfg["onboot"].clone()),
        (json!(4), json!(1))
    );
    assert_eq!(cfg["description"], "from JSON");
    let (status, _) = raw_request(
        &s,
        "pve-a",
        "PUT",
        "/nodes/pve-a/qemu/101/config",
        "application/json",
        "{nope",
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    // The cluster's task list holds every node's tasks, newest first.
    let b = on(&s, "pve-b");
    let ua = upid(
        &a.raw("POST", "/nodes/pve-a/qemu/101/status/start", &[])
            .await
            .unwrap(),
    );
    let ub = upid(
        &b.raw("POST", "/nodes/pve-b/qemu/104/status/start", &[])
            .await
            .unwrap(),
    );
    let tasks = b.raw("GET", "/cluster/tasks", &[]).await.unwrap();
    let listed: Vec<String> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["upid"].as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&ua.to_string()) && listed.contains(&ub.to_string()),
        "{listed:?}"
    );
    // Each names user and token apart, as pve-manager's `Cluster.pm` splits them.
    for t in tasks.as_array().unwrap() {
        assert_eq!(
            (&t["user"], &t["tokenid"]),
            (&json!("steward@pve"), &json!("admin")),
            "{t}"
        );
    }
    // Stopping a running task: it ends `interrupted by signal`, its effect never applies.
    let encoded = ub.to_string().replace(':', "%3A").replace('!', "%21");
    b.raw("DELETE", &format!("/nodes/pve-b/tasks/{encoded}"), &[])
        .await
        .unwrap();
    let e = b.wait_task(&ub, Duration::from_secs(5)).await.unwrap_err();
    assert!(e.to_string().contains("interrupted by signal"), "{e}");
    a.wait_task(&ua, Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = b
        .raw("GET", "/nodes/pve-b/qemu/104/status/current", &[])
        .await
        .unwrap();
    assert_eq!(st["status"], "stopped");
}

/// `/cluster/tasks` compares the split user with the caller's id: a token without `Sys.Audit`
/// on `/` sees none of its own tasks there (it reads them from `/nodes/{node}/tasks`).
#[tokio::test]
async fn a_token_without_sys_audit_sees_none_of_its_tasks_in_the_cluster_list() {
    const MINE: &str = "ops@pve!mine=5f1e3c2a-0000-4000-8000-0000000000aa";
    let s = Sim::start(SimConfig {
        node: "pve-a".into(),
        peers: vec!["pve-b".into()],
        guests: 2,
        tokens: vec![
            (SimToken::parse(ADMIN).unwrap(), Privileges::all()),
            (
                SimToken::parse(MINE).unwrap(),
                Privileges::role_on("PVEVMAdmin", "/vms").unwrap(),
            ),
        ],
        task_time: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mine = on_as(&s, "pve-a", MINE);
    let u = upid(
        &mine
            .raw("POST", "/nodes/pve-a/qemu/101/status/start", &[])
            .await
            .unwrap(),
    );
    mine.wait_task(&u, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        mine.raw("GET", "/cluster/tasks", &[]).await.unwrap(),
        json!([])
    );
    let on_node = mine
        .raw("GET", "/nodes/pve-a/tasks", &p(&[("vmid", "101")]))
        .await
        .unwrap();
    assert_eq!(on_node[0]["upid"], u.to_string(), "{on_node}");
    let all = on(&s, "pve-a")
        .raw("GET", "/cluster/tasks", &[])
        .await
        .unwrap();
    assert_eq!(all[0]["tokenid"], "mine", "{all}");
}
