//! The `steward-pve-sim` binary started as a cluster (`--nodes`), as the demo, the benchmarks
//! and an administrator start it: the lines it prints (one per node, with its address and its
//! certificate's fingerprint) are enough to reach every node over TLS with the real client;
//! every node answers for the whole cluster; a migration made through one node shows through
//! the others; SIGTERM ends it cleanly, and a second start from the same `--state-dir` finds the
//! guest where the migration left it. The process is always reaped, a failed test included.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use steward_proxmox_client::{tls, ApiToken, Endpoint, GuestRead, PveWriter, Trust, Upid};

const ADMIN: &str = "root@pam!ops=5f1e3c2a-0000-4000-8000-00000000ad01";
const NODES: [&str; 3] = ["pve-a", "pve-b", "pve-c"];

/// The running binary; killed and reaped when dropped (a failed assertion included).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node as the binary printed it.
struct Printed {
    name: String,
    addr: String,
    fingerprint: String,
}

/// Starts the binary on ephemeral ports and reads what it prints until every node is named.
fn start(dir: &Path) -> (Proc, Vec<Printed>) {
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{ADMIN}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward-pve-sim"))
        .args(["--nodes", &NODES.join(","), "--listen", "127.0.0.1:0"])
        .args(["--guests", "2", "--task-ms", "50"])
        .arg("--token-file")
        .arg(&tokens)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut nodes = Vec::new();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        // `node NAME on https://ADDR/api2/json fingerprint FP`
        let w: Vec<&str> = line.split_whitespace().collect();
        if let ["node", name, "on", url, "fingerprint", fp] = w[..] {
            let addr = url
                .trim_start_matches("https://")
                .trim_end_matches("/api2/json");
            nodes.push(Printed {
                name: name.to_string(),
                addr: addr.to_string(),
                fingerprint: fp.to_string(),
            });
            if nodes.len() == NODES.len() {
                break;
            }
        }
    }
    assert_eq!(nodes.len(), NODES.len(), "the binary named every node");
    (proc, nodes)
}

fn writer(n: &Printed) -> PveWriter {
    let e = Endpoint {
        addr: n.addr.clone(),
        server_name: "localhost".into(),
        trust: Trust::Fingerprint(tls::parse_fingerprint(&n.fingerprint).unwrap()),
        timeout: Duration::from_secs(5),
        keep_alive: false,
    };
    PveWriter::new(e, ApiToken::parse(ADMIN).unwrap(), &n.name).unwrap()
}

/// `(vmid, node)` of every guest, as `w` sees `/cluster/resources?type=vm`.
async fn placement(w: &PveWriter) -> Vec<(u64, String)> {
    let r = w
        .raw(
            "GET",
            "/cluster/resources",
            &[("type".to_string(), "vm".to_string())],
        )
        .await
        .unwrap();
    let mut out: Vec<(u64, String)> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["vmid"].as_u64().unwrap(),
                e["node"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_as_a_cluster_every_node_over_tls_a_migration_sigterm_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, nodes) = start(dir.path());
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, NODES);
    let mut ports: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3, "one listener per node");
    let w: Vec<PveWriter> = nodes.iter().map(writer).collect();

    // Every node, reached with its own printed fingerprint, answers for the whole cluster.
    let first = placement(&w[0]).await;
    assert_eq!(first.len(), 6, "{first:?}");
    for (i, n) in NODES.iter().enumerate() {
        assert_eq!(placement(&w[i]).await, first);
        assert_eq!(
            first.iter().filter(|(_, at)| at == n).count(),
            2,
            "two guests on {n}"
        );
        let listed = w[i].raw("GET", "/nodes", &[]).await.unwrap();
        let fp: Vec<(&str, &str)> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["node"].as_str().unwrap(),
                    e["ssl_fingerprint"].as_str().unwrap(),
                )
            })
            .collect();
        let want: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.fingerprint.as_str()))
            .collect();
        assert_eq!(fp, want, "/nodes through {n}");
        let view = w[i].cluster_view().await.unwrap();
        assert!(view.quorate);
        assert_eq!(view.here.len(), 2);
        assert_eq!(view.elsewhere.len(), 4);
    }
    // A node's certificate is its own: pve-b's fingerprint does not open pve-a's listener.
    let wrong = Printed {
        name: "pve-a".into(),
        addr: nodes[0].addr.clone(),
        fingerprint: nodes[1].fingerprint.clone(),
    };
    assert!(writer(&wrong).cluster_view().await.is_err());

    // A stopped VM of pve-a migrates to pve-c through pve-a's API; pve-b sees it there.
    let stopped = w[0]
        .cluster_view()
        .await
        .unwrap()
        .here
        .into_iter()
        .find(|g| g.status == "stopped" && g.kind.to_string() == "qemu")
        .expect("a stopped VM on pve-a");
    let vmid = u64::from(stopped.vmid.get());
    let u: Value = w[0]
        .raw(
            "POST",
            &format!("/nodes/pve-a/qemu/{vmid}/migrate"),
            &[("target".to_string(), "pve-c".to_string())],
        )
        .await
        .unwrap();
    let u: Upid = u.as_str().unwrap().parse().unwrap();
    assert_eq!(u.kind, "qmigrate");
    w[0].wait_task(&u, Duration::from_secs(10)).await.unwrap();
    assert!(placement(&w[1]).await.contains(&(vmid, "pve-c".into())));

    // SIGTERM: a clean exit, soon.
    let pid = proc.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "no exit 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");

    // Started again from the same state directory: the guest is where the migration left it
    // (new ports and certificates, so read what it prints again).
    let (_again, nodes) = start(dir.path());
    let w: Vec<PveWriter> = nodes.iter().map(writer).collect();
    let after = placement(&w[2]).await;
    assert!(after.contains(&(vmid, "pve-c".into())), "{after:?}");
    assert_eq!(after.len(), 6);
}
