//! One agent per node of a cluster, with real parts: three `steward-agent` processes, each
//! talking to its own node's listener of a three-node simulated cluster, all given the same
//! document. Each converges only the guests on its node, creates a guest placed on its node
//! exactly once, and shows the others as elsewhere; a guest migrated out of band is taken over
//! by the target's agent (a change to it is made there) and left alone by the source's; a node
//! that loses quorum for 60 s gets no write attempted once its agent has seen it, shows it in
//! status while its passes go on, and converges again when quorum is back, without a restart. An HA-managed guest converges through
//! ha-manager (one `hastart`/`hastop` request each way, never repeated while HA carries it
//! out), and when its node is fenced it reappears on a survivor, whose agent takes it over.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cli, setup_token_role, until, Agent, ADMIN, EVERYDAY};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use steward_pve_sim::{Sim, SimConfig, SimToken};

const NODES: [&str; 3] = ["pve-a", "pve-b", "pve-c"];

/// The document every agent is given: 101 (on pve-a), 103 (pve-b) and 105 (pve-c) unplaced,
/// stopped, at `mem` GiB (its generation grows with every change); 900 placed on pve-b, to be created there.
fn document(mem: [u32; 3]) -> String {
    let generation: u32 = mem.iter().sum();
    let mut d = format!("version = 1\ngeneration = {generation}\n");
    for (vmid, m) in [101, 103, 105].iter().zip(mem) {
        d.push_str(&format!(
            "\n[[guests]]\nvmid = {vmid}\nkind = \"qemu\"\nstate = \"stopped\"\nmemory = \"{m} GiB\"\n"
        ));
    }
    d.push_str("\n[[guests]]\nvmid = 900\nkind = \"qemu\"\nnode = \"pve-b\"\nstate = \"running\"\nmemory = 512\ncreate = { scsi0 = \"local-lvm:1\" }\n");
    d
}

/// `dir/agent.toml` for the agent of `node`, on that node's own listener.
fn agent_config(dir: &Path, sim: &Sim, node: &str) -> PathBuf {
    let n = sim.nodes.iter().find(|n| n.name == node).unwrap();
    let provider = format!("file = \"{}/desired.toml\"\npoll_secs = 1", dir.display());
    common::config_at(dir, node, n.addr.port(), &n.fingerprint, &provider)
}

/// Where `vmid` lives and its memory (MiB), if anywhere.
fn placed(sim: &Sim, vmid: u32) -> Option<(String, String)> {
    sim.with_cluster(|c| {
        c.nodes.values().find_map(|n| {
            let g = n.st.guests.get(&vmid)?;
            Some((
                n.name().to_string(),
                g.effective().get("memory").cloned().unwrap_or_default(),
            ))
        })
    })
}

/// Calls of `call` for `vmid` that reached `node`.
fn calls_on(sim: &Sim, node: &str, vmid: u32, call: &str) -> u64 {
    sim.with_cluster(|c| c.nodes[node].st.counters.of(vmid, call))
}

/// Every mutating call that reached `node`, and every write it refused for want of quorum.
fn writes_on(sim: &Sim, node: &str) -> (u64, u64) {
    sim.with_cluster(|c| {
        (
            c.nodes[node].st.counters.calls.values().sum(),
            c.refused_no_quorum.get(node).copied().unwrap_or(0),
        )
    })
}

fn status(dir: &Path) -> String {
    cli(dir, &["status"]).1
}

/// The three-node cluster both tests run on: two guests per node, tokens as
/// `steward-agent setup-token` grants them, 100 ms tasks.
async fn cluster_sim() -> Sim {
    Sim::start(SimConfig {
        node: NODES[0].into(),
        peers: NODES[1..].iter().map(|n| n.to_string()).collect(),
        guests: 2,
        tokens: vec![
            (
                SimToken::parse(EVERYDAY).unwrap(),
                setup_token_role("StewardEveryday"),
            ),
            (
                SimToken::parse(ADMIN).unwrap(),
                setup_token_role("StewardAdmin"),
            ),
        ],
        task_time: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A directory per node's agent below `root`.
fn node_dirs(root: &Path) -> BTreeMap<&'static str, PathBuf> {
    NODES
        .iter()
        .map(|n| {
            let d = root.join(n);
            std::fs::create_dir_all(&d).unwrap();
            (*n, d)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_share_a_cluster_follow_a_migration_and_pause_without_quorum() {
    let sim = cluster_sim().await;
    let root = tempfile::tempdir().unwrap();
    let dirs = node_dirs(root.path());
    let publish = |mem: [u32; 3]| {
        for d in dirs.values() {
            let tmp = d.join("desired.toml.tmp");
            std::fs::write(&tmp, document(mem)).unwrap();
            std::fs::rename(&tmp, d.join("desired.toml")).unwrap();
        }
    };
    publish([3, 3, 3]);
    let _agents: Vec<Agent> = NODES
        .iter()
        .map(|n| {
            let log = std::fs::File::create(dirs[n].join("agent.log")).unwrap();
            common::run_agent(&agent_config(&dirs[n], &sim, n), Stdio::from(log))
        })
        .collect();

    // Each agent converges the guests on its node; 900 is created on pve-b, once.
    until("the cluster converged", Duration::from_secs(40), || {
        [101, 103, 105]
            .iter()
            .all(|v| placed(&sim, *v).is_some_and(|(_, m)| m == "3072"))
            && placed(&sim, 900).is_some_and(|(n, _)| n == "pve-b")
    })
    .await;
    for (vmid, home) in [(101, "pve-a"), (103, "pve-b"), (105, "pve-c")] {
        assert_eq!(placed(&sim, vmid).unwrap().0, home);
    }
    let creates: u64 = NODES.iter().map(|n| calls_on(&sim, n, 900, "create")).sum();
    assert_eq!(creates, 1, "900 created once, on pve-b");
    until(
        "each agent shows the others' guests",
        Duration::from_secs(10),
        || {
            let a = status(&dirs["pve-a"]);
            a.contains("elsewhere 103 on node pve-b") && a.contains("elsewhere 105 on node pve-c")
        },
    )
    .await;
    let c = status(&dirs["pve-c"]);
    assert!(c.contains("elsewhere 101 on node pve-a"), "{c}");
    assert!(!c.contains("elsewhere 105"), "{c}");

    // `qm migrate 101 pve-c` out of band: pve-c's agent takes 101 over (a change to it is made
    // on pve-c), pve-a's stops acting on it, and nothing is created.
    let task = sim
        .with_cluster(|c| {
            c.migrate(
                "pve-a",
                steward_pve_sim::Kind::Qemu,
                101,
                &[("target".to_string(), "pve-c".to_string())].into(),
                "root@pam",
            )
        })
        .unwrap();
    until("101 reached pve-c", Duration::from_secs(10), || {
        placed(&sim, 101).is_some_and(|(n, _)| n == "pve-c")
    })
    .await;
    let a_config_before = calls_on(&sim, "pve-a", 101, "config");
    publish([4, 3, 3]);
    until("pve-c's agent changed 101", Duration::from_secs(20), || {
        placed(&sim, 101).is_some_and(|(_, m)| m == "4096")
    })
    .await;
    assert!(calls_on(&sim, "pve-c", 101, "config") >= 1);
    until(
        "pve-a's agent shows 101 elsewhere",
        Duration::from_secs(10),
        || status(&dirs["pve-a"]).contains("elsewhere 101 on node pve-c"),
    )
    .await;
    assert_eq!(calls_on(&sim, "pve-a", 101, "config"), a_config_before);
    // No agent ever tried to create a guest another node holds (a create refused for a VMID
    // in use elsewhere counts as one that reached the node).
    for vmid in [101, 103, 105] {
        let creates: u64 = NODES
            .iter()
            .map(|n| calls_on(&sim, n, vmid, "create") + calls_on(&sim, n, vmid, "restore"))
            .sum();
        assert_eq!(creates, 0, "{vmid} created somewhere ({task})");
    }

    // pve-b loses quorum: once its agent has seen it, no write reaches or is tried on pve-b,
    // though the document asks a change there; quorum back, the change is made.
    sim.with_cluster(|c| c.set_quorum("pve-b", false)).unwrap();
    until(
        "pve-b's agent saw the quorum loss",
        Duration::from_secs(10),
        || status(&dirs["pve-b"]).contains("NO QUORUM"),
    )
    .await;
    let before = writes_on(&sim, "pve-b");
    publish([4, 4, 3]);
    // 60 s without quorum, as the issue asks: looked at every 5 s, no write is attempted, the
    // status keeps saying so, and the agent keeps observing (its passes go on).
    let passes = |text: &str| -> u64 {
        text.split_whitespace()
            .skip_while(|w| *w != "passes")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let first = passes(&status(&dirs["pve-b"]));
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            writes_on(&sim, "pve-b"),
            before,
            "writes attempted on pve-b without quorum"
        );
        assert!(status(&dirs["pve-b"]).contains("NO QUORUM"));
    }
    let last = passes(&status(&dirs["pve-b"]));
    assert!(
        last > first,
        "passes went on while quorum was lost: {first} → {last}"
    );
    assert_eq!(placed(&sim, 103).unwrap().1, "3072");
    sim.with_cluster(|c| c.set_quorum("pve-b", true)).unwrap();
    until(
        "103 converged after quorum came back",
        Duration::from_secs(20),
        || placed(&sim, 103).is_some_and(|(_, m)| m == "4096"),
    )
    .await;
    until("pve-b's status cleared", Duration::from_secs(10), || {
        !status(&dirs["pve-b"]).contains("NO QUORUM")
    })
    .await;
}

/// The document of the HA test: 100 at `state`, with `description`.
fn ha_document(generation: u32, state: &str, description: &str) -> String {
    format!("version = 1\ngeneration = {generation}\n\n[[guests]]\nvmid = 100\nkind = \"qemu\"\nstate = \"{state}\"\ndescription = \"{description}\"\n")
}

/// `(node, status)` of `vmid`.
fn where_and_how(sim: &Sim, vmid: u32) -> Option<(String, String)> {
    sim.with_cluster(|c| {
        c.nodes.values().find_map(|n| {
            n.st.guests
                .get(&vmid)
                .map(|g| (n.name().to_string(), g.status.clone()))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_guest_converges_through_ha_manager_and_follows_a_fence() {
    let sim = cluster_sim().await;
    // 100: a running VM on pve-a, an HA resource requested started.
    sim.with_cluster(|c| c.set_ha(100, "vm", "started"))
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let dirs = node_dirs(root.path());
    let publish = |text: String| {
        for d in dirs.values() {
            let tmp = d.join("desired.toml.tmp");
            std::fs::write(&tmp, &text).unwrap();
            std::fs::rename(&tmp, d.join("desired.toml")).unwrap();
        }
    };
    publish(ha_document(1, "stopped", "one"));
    let mut agents: BTreeMap<&str, Agent> = NODES
        .iter()
        .map(|n| {
            let cfg = agent_config(&dirs[n], &sim, n);
            (*n, common::run_agent(&cfg, Stdio::null()))
        })
        .collect();
    // Stopped through HA: one stop call (an `hastop` request), then ha-manager stops it.
    until("100 stopped by ha-manager", Duration::from_secs(20), || {
        where_and_how(&sim, 100) == Some(("pve-a".into(), "stopped".into()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stops = calls_on(&sim, "pve-a", 100, "stop") + calls_on(&sim, "pve-a", 100, "shutdown");
    assert_eq!(stops, 1, "one request, not a loop");
    let hastops = sim.with_cluster(|c| {
        c.nodes["pve-a"]
            .st
            .tasks
            .iter()
            .filter(|t| t.upid.kind == "hastop" && t.vmid == Some(100))
            .count()
    });
    assert_eq!(hastops, 1);
    assert_eq!(sim.with_cluster(|c| c.ha[&100].state.clone()), "stopped");
    // Running again: one start request.
    publish(ha_document(2, "running", "one"));
    until("100 started by ha-manager", Duration::from_secs(20), || {
        where_and_how(&sim, 100) == Some(("pve-a".into(), "running".into()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        calls_on(&sim, "pve-a", 100, "start"),
        1,
        "one request, not a loop"
    );
    // pve-a goes down (its agent with it): ha-manager recovers 100 to pve-b and starts it;
    // pve-b's agent takes it over (a change is made there), pve-c's shows it elsewhere.
    drop(agents.remove("pve-a"));
    sim.with_cluster(|c| c.fence("pve-a")).unwrap();
    until(
        "100 recovered and running on pve-b",
        Duration::from_secs(20),
        || where_and_how(&sim, 100) == Some(("pve-b".into(), "running".into())),
    )
    .await;
    publish(ha_document(3, "running", "two"));
    until("pve-b's agent changed 100", Duration::from_secs(20), || {
        sim.with_cluster(|c| {
            c.nodes["pve-b"]
                .st
                .guests
                .get(&100)
                .and_then(|g| g.config.get("description").cloned())
        }) == Some("two".into())
    })
    .await;
    until(
        "pve-c's agent shows 100 on pve-b",
        Duration::from_secs(10),
        || status(&dirs["pve-c"]).contains("elsewhere 100 on node pve-b"),
    )
    .await;
    let creates: u64 = NODES.iter().map(|n| calls_on(&sim, n, 100, "create")).sum();
    assert_eq!(creates, 0);
    // No power call after the recovery: HA started it, the agent saw it running.
    assert_eq!(calls_on(&sim, "pve-b", 100, "start"), 0);
}
