//! `steward-agent` with a hub provider: the real binary against the simulator and the hub stub,
//! both over TLS with pinned fingerprints. The hub's desired state converges the node; unchanged
//! polls cost a bodiless 304; the destroy the hub asks for is held and reported to the hub with
//! its template; a job carrying a stranger's signature and an operator's releases it exactly
//! once (the stranger's is refused and does not spoil the other); the same job again is a
//! replay; a broken document from the hub keeps the last good one. The child is always killed.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{calls, config, sim, until, Agent};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use steward_hub::protocol::Job;
use steward_hub_stub::HubStub;
use steward_testkit::{KeyType, Keygen};

const HUB_TOKEN: &str = "hub-token-for-pve-a-7c1f";

/// The job results the hub has received, as (job id, decision label).
fn results(hub: &HubStub) -> Vec<(String, String)> {
    hub.reports("pve-a")
        .iter()
        .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["job"].as_str().unwrap_or("").to_string(),
                r["decision"]["decision"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

const DESIRED: &str = r#"{"version": 1, "generation": 1, "guests": [
  {"vmid": 101, "kind": "qemu", "state": "stopped", "memory": "3 GiB"},
  {"vmid": 103, "kind": "qemu", "state": "absent"}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_converges_the_node_and_its_signed_job_releases_a_held_destroy_once() {
    let sim = sim(Duration::from_millis(20)).await;
    let hub = common::hub(HUB_TOKEN).await;
    hub.set_desired("pve-a", DESIRED);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kg = Keygen::new().unwrap();
    let alice = kg.key(KeyType::Ed25519, "alice").unwrap();
    let stranger = kg.key(KeyType::Ed25519, "stranger").unwrap();
    common::trust(d, &alice.public_line);
    let cfg = config(d, &sim, &common::hub_provider(d, &hub, HUB_TOKEN));
    let child = Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = Agent(child);
    let memory = |vmid: u32| {
        sim.with_node(|n| {
            n.st.guests
                .get(&vmid)
                .and_then(|g| g.config.get("memory").cloned())
        })
    };
    until("101 has 3 GiB", Duration::from_secs(30), || {
        memory(101).as_deref() == Some("3072")
    })
    .await;
    // The destroy of 103 is held, and the hub hears of it with the exact template to sign.
    let mut held = Value::Null;
    until(
        "the hub hears of the held destroy",
        Duration::from_secs(20),
        || {
            held = hub
                .reports("pve-a")
                .last()
                .map(|r| r["held"].clone())
                .unwrap_or(Value::Null);
            held.as_array()
                .is_some_and(|h| h.iter().any(|o| o["guest"] == 103))
        },
    )
    .await;
    assert!(sim.with_node(|n| n.st.guests.contains_key(&103)));
    // Unchanged polls are bodiless 304s: one full answer, then only 304s.
    until("two unchanged polls", Duration::from_secs(10), || {
        hub.counts().desired_not_modified >= 2
    })
    .await;
    let c = hub.counts();
    assert_eq!(c.desired_full, 1, "{c:?}");
    assert_eq!(c.unauthorized, 0, "{c:?}");
    // An operator signs the template the hub was shown; the job also carries a stranger's
    // signature, presented first.
    let op = held
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["guest"] == 103)
        .unwrap();
    let payload = serde_json::to_string(&op["template"]).unwrap();
    let sign = |key: &Path| {
        String::from_utf8(kg.sign(key, "op@steward", payload.as_bytes()).unwrap()).unwrap()
    };
    hub.add_job(
        "pve-a",
        Job {
            id: "j-1".into(),
            payload: payload.clone(),
            signatures: vec![sign(&stranger.private), sign(&alice.private)],
        },
    );
    until("103 destroyed", Duration::from_secs(20), || {
        sim.with_node(|n| !n.st.guests.contains_key(&103))
    })
    .await;
    until("j-1 reported executed", Duration::from_secs(20), || {
        results(&hub).contains(&("j-1".into(), "executed".into()))
    })
    .await;
    // The same signed op again, as another job: a replay; nothing runs twice.
    hub.add_job(
        "pve-a",
        Job {
            id: "j-2".into(),
            payload: payload.clone(),
            signatures: vec![sign(&alice.private)],
        },
    );
    until("j-2 reported as a replay", Duration::from_secs(20), || {
        results(&hub).contains(&("j-2".into(), "replay".into()))
    })
    .await;
    let destroys = calls(&sim, 103, "destroy");
    assert_eq!(destroys, 1);
    // A broken document from the hub: refused with where, and the last good one stays.
    hub.set_desired("pve-a", "{\"version\": 1, \"guests\": [ {\"vmid\": }");
    tokio::time::sleep(Duration::from_millis(2500)).await;
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
    )
    .await;
    agent.sigterm();
    let status = agent.0.wait().unwrap();
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
    assert!(
        log.contains("desired state refused") && log.contains("/v1/nodes/pve-a/desired:1"),
        "{log}"
    );
    assert!(log.contains("refused:unknown_signer"), "{log}");
    assert!(!log.contains(HUB_TOKEN), "the hub token reached the log");
}
