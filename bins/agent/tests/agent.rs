//! `steward-agent` as an administrator runs it: the real binary against the simulator over
//! TLS. It converges a desired-state file, keeps the last good document when the file turns to
//! garbage, holds a destroy when it has no trust store, stops cleanly on SIGTERM, and refuses a
//! bad configuration with file and line. The child is always killed.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{calls, scrape, sim, Agent};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `GET /metrics` at `url` (`http://127.0.0.1:PORT/metrics`): the body.
/// The value of the sample line starting with `series ` (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_converges_keeps_the_last_good_state_holds_destroys_and_stops_on_sigterm() {
    let sim = sim(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::file_config(dir.path(), &sim);
    // No allowed_signers file: the agent must run, and hold every destructive action.
    std::fs::write(
        dir.path().join("desired.toml"),
        "version = 1\ngeneration = 1\n\n[[guests]]\nvmid = 101\nkind = \"qemu\"\nstate = \"stopped\"\nmemory = \"3 GiB\"\n\n[[guests]]\nvmid = 900\nkind = \"qemu\"\nstate = \"running\"\nmemory = 512\ncreate = { scsi0 = \"local-lvm:1\" }\n\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"absent\"\n",
    )
    .unwrap();
    // systemd's side of Type=notify: a datagram socket the agent reports readiness to.
    let notify = std::os::unix::net::UnixDatagram::bind(dir.path().join("notify.sock")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let heard = |what: &str| {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(msg.lines().any(|l| l == what), "{what} not in {msg:?}");
    };
    let child = Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", dir.path().join("notify.sock"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = Agent(child);
    heard("READY=1");
    let memory = |vmid: u32| {
        sim.with_node(|n| {
            n.st.guests
                .get(&vmid)
                .and_then(|g| g.config.get("memory").cloned())
        })
    };
    until(
        "101 has 3 GiB and 900 runs",
        Duration::from_secs(30),
        || {
            memory(101).as_deref() == Some("3072")
                && sim.with_node(|n| n.st.guests.get(&900).is_some_and(|g| g.status == "running"))
        },
    );
    // Without a trust store the destroy of 103 is held, never run: the CLI shows it held with
    // what it would destroy, and a real operator signature is refused (no signer admitted).
    let cli = |args: &[&str]| common::cli(dir.path(), args);
    until("103 held", Duration::from_secs(20), || {
        cli(&["pending"]).1.contains("guest.destroy 103")
    });
    let (_, listed) = cli(&["pending"]);
    assert!(listed.contains("local-lvm:vm-103-disk-0 (32G)"), "{listed}");
    let id = common::first_held_id(&listed);
    let (code, template) = cli(&["pending", "show", &id, "--template"]);
    assert_eq!(code, Some(0));
    let op_file = dir.path().join("op.json");
    std::fs::write(&op_file, &template).unwrap();
    let kg = steward_testkit::Keygen::new().unwrap();
    let key = kg.key(steward_testkit::KeyType::Ed25519, "alice").unwrap();
    let sig = kg
        .sign(&key.private, "op@steward", template.as_bytes())
        .unwrap();
    let sig_file = dir.path().join("op.json.sig");
    std::fs::write(&sig_file, sig).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .arg("submit")
        .arg(&op_file)
        .arg(&sig_file)
        .arg("--socket")
        .arg(dir.path().join("agent.sock"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("refused:unknown_signer"), "{said}");
    assert!(sim.with_node(|n| n.st.guests.contains_key(&103)));
    let (code, status) = cli(&["status"]);
    assert_eq!(code, Some(0));
    assert!(
        status.contains("held 1") && status.contains("recovered true"),
        "{status}"
    );
    // The held op, by id, from the journal through the local API.
    let (code, op_json) = cli(&["op", &id]);
    assert_eq!(code, Some(0), "{op_json}");
    let op: serde_json::Value = serde_json::from_str(&op_json).unwrap();
    assert_eq!(op["state"], "pending_signature", "{op_json}");
    assert_eq!(op["guest"], 103, "{op_json}");
    // Metrics, scraped as Prometheus would: what happened so far is counted.
    assert!(status.contains("node pve-a"), "{status}");
    let url = status
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap();
    let m = scrape(url);
    assert!(sample(&m, "steward_passes_total") >= 1.0, "{m}");
    assert_eq!(sample(&m, "steward_held_ops"), 1.0, "{m}");
    assert!(
        sample(
            &m,
            "steward_actions_total{kind=\"guest.config\",outcome=\"succeeded\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "steward_actions_total{kind=\"guest.destroy\",outcome=\"pending_signature\"}"
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "steward_gate_decisions_total{reason=\"refused:unknown_signer\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "steward_api_requests_total{method=\"GET\",endpoint=\"list\",outcome=\"ok\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        sample(&m, "steward_journal_barrier_seconds_count") >= 1.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "steward_task_duration_seconds_count{task_type=\"qmcreate\"}"
        ) >= 1.0,
        "{m}"
    );
    // Garbage in the file: refused, and the last good state stays in force (101 keeps 3 GiB).
    std::fs::write(
        dir.path().join("desired.toml"),
        "version = 1\n[[guests]]\nvmid = = 101\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    sim.with_node(|n| {
        n.edit(
            101,
            &[("memory".to_string(), "1024".to_string())].into(),
            &[],
        )
        .unwrap()
    });
    until(
        "drift healed under the last good state",
        Duration::from_secs(20),
        || memory(101).as_deref() == Some("3072"),
    );
    // SIGTERM: a clean stop, exit 0.
    agent.sigterm();
    heard("STOPPING=1");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    use std::io::Read;
    agent
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("NO TRUST STORE"), "{log}");
    assert!(
        log.contains("desired state refused") && log.contains("desired.toml:3"),
        "{log}"
    );
}

#[test]
fn a_bad_configuration_exits_two_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "node = \"pve-a\"\n[proxmox]\ntoken_file = \"t\"\nadmin_token_file = \"a\"\nfingerprint = \"AB\"\ncolour = 1\n[provider]\nfile = \"d\"\n").unwrap();
    for sub in ["check-config", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_steward-agent"))
            .args([sub, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sub}: {err}");
        assert!(
            err.contains("agent.toml:6") && err.contains("colour"),
            "{sub}: {err}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .arg("setup-token")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("pveum user token add steward@pve agent --privsep 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_agent_restarts_follows_its_task_and_runs_nothing_twice() {
    let sim = sim(Duration::from_millis(2000)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::file_config(dir.path(), &sim);
    // 101 is a stopped VM: starting it is one task that takes 2 s on this node.
    std::fs::write(
        dir.path().join("desired.toml"),
        "version = 1\ngeneration = 1\n\n[[guests]]\nvmid = 101\nkind = \"qemu\"\nstate = \"running\"\n",
    )
    .unwrap();
    let start = || common::run_agent(&cfg, Stdio::null());
    let mut agent = start();
    until(
        "the start of 101 reached the node",
        Duration::from_secs(30),
        || calls(&sim, 101, "start") == 1,
    );
    assert!(
        sim.with_node(|n| n.st.guests[&101].status != "running"),
        "killed too late"
    );
    // SIGKILL: no drain, no clean close of the journal.
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let _agent = start();
    until("101 running", Duration::from_secs(30), || {
        sim.with_node(|n| n.st.guests[&101].status == "running")
    });
    // Passes after recovery find 101 converged: nothing is started again.
    let socket = dir.path().join("agent.sock");
    until(
        "two passes after the restart",
        Duration::from_secs(20),
        || {
            let out = Command::new(env!("CARGO_BIN_EXE_steward-agent"))
                .args(["status", "--socket"])
                .arg(&socket)
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.contains("converged 1") && !s.contains("passes 0 ") && !s.contains("passes 1 ")
        },
    );
    assert_eq!(calls(&sim, 101, "start"), 1, "the start ran twice");
}
