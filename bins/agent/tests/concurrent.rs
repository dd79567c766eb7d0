//! Concurrent presentations of one signed op: 64 clients submit the same signature for a held
//! destroy through the agent's local API at once, while the hub sends it as a signed job. Exactly
//! one presentation executes; every other is a replay that carries the first one's outcome; the
//! simulator sees one destroy. The agent is the real binary; the child is always killed.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{calls, config, sim, until};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use steward_control::Client;
use steward_hub::protocol::Job;
use steward_testkit::{KeyType, Keygen};

const CLIENTS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_and_the_hub_present_one_signature_and_it_runs_once() {
    let sim = sim(Duration::from_millis(200)).await;
    let hub = common::hub("hub-token-concurrent").await;
    hub.set_desired(
        "pve-a",
        r#"{"version": 1, "generation": 1, "guests": [{"vmid": 103, "kind": "qemu", "state": "absent"}]}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kg = Keygen::new().unwrap();
    let alice = kg.key(KeyType::Ed25519, "alice").unwrap();
    common::trust(d, &alice.public_line);
    let cfg = config(
        d,
        &sim,
        &common::hub_provider(d, &hub, "hub-token-concurrent"),
    );
    let _agent = common::run_agent(&cfg, Stdio::null());
    let client = Client::new(d.join("agent.sock"));
    let mut template = Value::Null;
    until("103 held", Duration::from_secs(30), || {
        template = hub
            .reports("pve-a")
            .last()
            .and_then(|r| {
                r["held"]
                    .as_array()?
                    .iter()
                    .find(|o| o["guest"] == 103)
                    .map(|o| o["template"].clone())
            })
            .unwrap_or(Value::Null);
        !template.is_null()
    })
    .await;
    let payload = serde_json::to_string(&template).unwrap();
    let sig = String::from_utf8(
        kg.sign(&alice.private, "op@steward", payload.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let body = json!({"payload": payload, "signature": sig}).to_string();
    // All at once: the hub's job and 64 local clients.
    hub.add_job(
        "pve-a",
        Job {
            id: "j-race".into(),
            payload: payload.clone(),
            signatures: vec![sig.clone()],
        },
    );
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, body) = (client.clone(), body.clone());
        set.spawn(async move {
            client
                .call("POST", "/submit", body.into_bytes())
                .await
                .unwrap()
        });
    }
    let mut answers: Vec<Value> = Vec::new();
    while let Some(r) = set.join_next().await {
        let (status, body) = r.unwrap();
        assert_eq!(status, 200);
        answers.push(serde_json::from_slice(&body).unwrap());
    }
    let mut hub_decision = String::new();
    until(
        "the hub hears j-race's decision",
        Duration::from_secs(20),
        || {
            hub_decision = hub
                .reports("pve-a")
                .iter()
                .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
                .find(|r| r["job"] == "j-race")
                .map(|r| r["decision"]["decision"].as_str().unwrap_or("").to_string())
                .unwrap_or_default();
            !hub_decision.is_empty()
        },
    )
    .await;
    let executed: Vec<&Value> = answers
        .iter()
        .filter(|a| a["decision"] == "executed")
        .collect();
    let replays = answers.iter().filter(|a| a["decision"] == "replay").count();
    let hub_executed = usize::from(hub_decision == "executed");
    assert_eq!(
        executed.len() + hub_executed,
        1,
        "exactly one execution: {answers:?} hub={hub_decision}"
    );
    assert_eq!(replays + executed.len(), CLIENTS, "{answers:?}");
    assert!(hub_decision == "executed" || hub_decision == "replay");
    // Every replay carries the first presentation's outcome: the op, and that it succeeded.
    for a in answers.iter().filter(|a| a["decision"] == "replay") {
        let detail = a["detail"].as_str().unwrap_or("");
        assert!(detail.ends_with("is succeeded"), "{a}");
    }
    if let Some(first) = executed.first() {
        assert_eq!(first["outcome"], "succeeded", "{first}");
        for a in answers.iter().filter(|a| a["decision"] == "replay") {
            assert_eq!(a["op"], first["op"], "{a}");
        }
    }
    assert_eq!(calls(&sim, 103, "destroy"), 1);
}
