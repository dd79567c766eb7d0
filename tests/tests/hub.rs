//! The hub provider against the hub stub, in process: what a hostile or overloaded hub can and
//! cannot make the agent take in one poll. Jobs beyond the per-poll limit come with the next
//! poll (the ETag of a truncated answer is not kept, so no 304 strands them); jobs with ids the
//! protocol does not allow are skipped; a job is taken once while the hub lists it; a wrong
//! token gets nothing.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use steward_hub::protocol::{Job, MAX_JOBS};
use steward_hub::{HubConfig, HubProvider, HubToken};
use steward_hub_stub::HubStub;
use steward_providers::{Provider, Update};
use steward_proxmox_client::{tls, Trust};

fn job(id: &str) -> Job {
    Job {
        id: id.into(),
        payload: "{}".into(),
        signatures: vec!["sig".into(); 12],
    }
}

fn provider(hub: &HubStub, token: &str) -> HubProvider {
    HubProvider::new(HubConfig {
        url: format!("https://localhost:{}/", hub.addr.port()),
        node: "pve-a".into(),
        token: HubToken::new(token).unwrap(),
        trust: Trust::Fingerprint(tls::parse_fingerprint(&hub.fingerprint).unwrap()),
        identity: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test]
async fn jobs_beyond_the_limit_come_next_poll_and_bad_ids_are_skipped() {
    let hub = HubStub::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        HubToken::new("t0k3n").unwrap(),
    )
    .await
    .unwrap();
    let total = MAX_JOBS + 7;
    for i in 0..total {
        hub.add_job("pve-a", job(&format!("job-{i:03}")));
    }
    hub.add_job("pve-a", job("has space"));
    hub.add_job("pve-a", job(&"x".repeat(129)));
    hub.add_job("pve-a", job("line\nbreak"));
    let mut p = provider(&hub, "t0k3n");
    let first = p.jobs().await.unwrap();
    assert_eq!(first.len(), MAX_JOBS);
    assert!(first.iter().all(|j| j.signatures.len() == 8));
    let second = p.jobs().await.unwrap();
    assert_eq!(second.len(), 7, "{second:?}");
    assert!(second.iter().all(|j| j.id.starts_with("job-")));
    // Everything taken: now the answer is a 304, and nothing is taken twice.
    assert!(p.jobs().await.unwrap().is_empty());
    assert!(hub.counts().jobs_not_modified >= 1, "{:?}", hub.counts());
    // A job the hub adds later is taken once.
    hub.add_job("pve-a", job("job-late"));
    let late = p.jobs().await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].id, "job-late");
    assert!(p.jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_token_gets_nothing_and_the_desired_state_is_unavailable() {
    let hub = HubStub::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        HubToken::new("right").unwrap(),
    )
    .await
    .unwrap();
    hub.set_desired("pve-a", r#"{"version": 1, "generation": 1, "guests": []}"#);
    hub.add_job("pve-a", job("job-1"));
    let mut p = provider(&hub, "wrong");
    match p.poll().await {
        Update::Unavailable(why) => assert!(why.contains("refused our token"), "{why}"),
        other => panic!("{other:?}"),
    }
    let e = p.jobs().await.unwrap_err();
    assert!(
        e.contains("refused our token") && !e.contains("wrong"),
        "{e}"
    );
    assert_eq!(hub.counts().unauthorized, 2);
    let mut p = provider(&hub, "right");
    assert!(matches!(p.poll().await, Update::New(_)));
    assert!(matches!(p.poll().await, Update::Unchanged));
    assert_eq!(p.jobs().await.unwrap().len(), 1);
}

#[test]
fn credentials_in_the_hub_url_are_refused() {
    let e = HubProvider::new(HubConfig {
        url: "https://user:pw@hub.example.org".into(),
        node: "pve-a".into(),
        token: HubToken::new("t").unwrap(),
        trust: Trust::Fingerprint([0; 32]),
        identity: None,
        timeout: Duration::from_secs(1),
    })
    .unwrap_err();
    assert!(e.contains("credentials") && !e.contains("pw"), "{e}");
}
