//! The fleet without a Steward server, with real parts: a fleet directory rendered by
//! `steward_hub::fleet` (what `steward-fleet render` runs) and served by a real nginx on
//! 127.0.0.1 (TLS, client certificates checked with `ssl_verify_client`, a bearer-token check,
//! `etag on`), always reaped. The agent converges from
//! nginx's files; unchanged polls are 304s; a re-render with a change is picked up within a
//! poll or two; nginx's 404 to the report is taken as "no report endpoint", said once, not asked
//! again; a signed op dropped into the fleet and re-rendered runs once, and after a restart of
//! the agent it is a replay.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{calls, cli, first_held_id, sim, until};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use steward_testkit::nginx::{Nginx, NginxOptions};
use steward_testkit::{KeyType, Keygen};

const TOKEN: &str = "fleet-token-5f1e3c2a-0000-4000-8000-0000000f1ee7";

/// A CA and a client certificate it signed for node `pve-a`: `ca.pem` for nginx's
/// `ssl_client_certificate`, `client.pem` and `client.key` (mode 0600) for the agent.
fn client_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose subject is its issuer's reads as self-signed.
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "steward fleet test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["pve-a".to_string()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "pve-a");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("client.pem"), cert.pem()).unwrap();
    common::secret_file(&dir.join("client.key"), &key.serialize_pem());
}

/// Lines of nginx's access log for `method path` answered `status`.
fn served(n: &Nginx, method: &str, path: &str, status: u16) -> usize {
    n.served(method, path, status)
}

fn render(fleet: &Path, out: &Path) {
    let rendered = steward_hub::fleet::render(fleet).unwrap();
    steward_hub::fleet::write(out, &rendered).unwrap();
}

fn memory(sim: &steward_pve_sim::Sim, vmid: u32) -> Option<String> {
    sim.with_node(|n| {
        n.st.guests
            .get(&vmid)
            .and_then(|g| g.effective().get("memory").cloned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_served_by_nginx_converges_polls_304_and_runs_a_signed_op_once() {
    let sim = sim(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fleet = d.join("fleet");
    let www = d.join("www");
    std::fs::create_dir_all(fleet.join("nodes")).unwrap();
    std::fs::create_dir_all(fleet.join("ops")).unwrap();
    let doc = |memory: u32, absent: bool| {
        format!(
            "version = 1\ngeneration = 1\n\n[[guests]]\nvmid = 101\nkind = \"qemu\"\nstate = \"stopped\"\nmemory = {memory}\n{}",
            if absent {
                "\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"absent\"\n"
            } else {
                ""
            }
        )
    };
    std::fs::write(fleet.join("nodes/pve-a.toml"), doc(3072, false)).unwrap();
    render(&fleet, &www);
    client_pki(d);
    let nginx = Nginx::start(
        d,
        &www,
        &NginxOptions {
            token: TOKEN.into(),
            client_ca: Some(d.join("ca.pem")),
            workers: 1,
            access_log: true,
        },
    )
    .unwrap();
    let (port, fingerprint) = (
        nginx.port,
        steward_proxmox_client::tls::fingerprint_of(&nginx.cert_der),
    );

    let kg = Keygen::new().unwrap();
    let alice = kg.key(KeyType::Ed25519, "alice").unwrap();
    common::trust(d, &alice.public_line);
    common::secret_file(&d.join("hub-token"), TOKEN);
    let cfg = common::config(
        d,
        &sim,
        &format!(
            "hub = \"https://localhost:{port}\"\nhub_token_file = \"{d}/hub-token\"\nhub_fingerprint = \"{fingerprint}\"\nclient_cert = \"{d}/client.pem\"\nclient_key = \"{d}/client.key\"\npoll_secs = 1\nreport_secs = 1",
            d = d.display()
        ),
    );
    // Without the client certificate, nginx turns the agent's client away.
    let mut stranger = steward_hub::HubProvider::new(steward_hub::HubConfig {
        url: format!("https://localhost:{port}"),
        node: "pve-a".into(),
        token: steward_hub::HubToken::new(TOKEN).unwrap(),
        trust: steward_proxmox_client::Trust::Fingerprint(
            steward_proxmox_client::tls::parse_fingerprint(&fingerprint).unwrap(),
        ),
        identity: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    use steward_providers::Provider;
    assert!(
        matches!(
            stranger.poll().await,
            steward_providers::Update::Unavailable(_)
        ),
        "nginx served an agent without a client certificate"
    );
    let agent = common::run_agent(&cfg, Stdio::null());
    until(
        "converged from nginx's files",
        Duration::from_secs(30),
        || memory(&sim, 101).as_deref() == Some("3072"),
    )
    .await;
    until(
        "unchanged polls answered 304",
        Duration::from_secs(20),
        || {
            served(&nginx, "GET", "/v1/nodes/pve-a/desired", 304) >= 2
                && served(&nginx, "GET", "/v1/nodes/pve-a/jobs", 304) >= 2
        },
    )
    .await;
    assert_eq!(served(&nginx, "GET", "/v1/nodes/pve-a/desired", 401), 0);

    // A change, re-rendered: picked up within a poll or two.
    std::fs::write(fleet.join("nodes/pve-a.toml"), doc(4096, true)).unwrap();
    render(&fleet, &www);
    until("the change converged", Duration::from_secs(10), || {
        memory(&sim, 101).as_deref() == Some("4096")
    })
    .await;

    // The destroy is held; alice signs its template; the op goes into the fleet directory.
    until("103 held", Duration::from_secs(20), || {
        cli(d, &["pending"]).1.contains("guest.destroy 103")
    })
    .await;
    let id = first_held_id(&cli(d, &["pending"]).1);
    // With no hub to hear reports, the held op is in the metrics, op and guest named.
    let (_, status) = cli(d, &["status"]);
    let url = status
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/metrics"))
        .unwrap()
        .to_string();
    let wanted = format!("steward_held_op{{op=\"{id}\",guest=\"103\",kind=\"guest.destroy\"}} 1");
    until(
        "the held op in the metrics",
        Duration::from_secs(10),
        || common::scrape(&url).contains(&wanted),
    )
    .await;
    let (_, template) = cli(d, &["pending", "show", &id, "--template"]);
    std::fs::write(fleet.join("ops/destroy-103.json"), &template).unwrap();
    std::fs::write(
        fleet.join("ops/destroy-103.json.sig"),
        kg.sign(&alice.private, "op@steward", template.as_bytes())
            .unwrap(),
    )
    .unwrap();
    render(&fleet, &www);
    until("103 destroyed", Duration::from_secs(20), || {
        !sim.with_node(|n| n.st.guests.contains_key(&103))
    })
    .await;
    assert_eq!(calls(&sim, 103, "destroy"), 1);

    // The report: nginx has no such endpoint; the agent asked once and stopped.
    let reports = served(&nginx, "POST", "/v1/nodes/pve-a/report", 404);
    assert_eq!(reports, 1, "the agent asked for a report endpoint once");
    let (_, metrics) = cli(d, &["status"]);
    assert!(metrics.contains("held 0"), "{metrics}");

    // After a restart the job is presented again: a replay, nothing runs twice.
    agent.sigterm();
    drop(agent);
    let _agent = common::run_agent(&cfg, Stdio::null());
    until(
        "the job presented again after the restart",
        Duration::from_secs(30),
        || {
            let (_, export) = cli(d, &["audit", "export"]);
            export.contains("\"decision\":\"replay\"")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls(&sim, 103, "destroy"), 1, "the destroy ran twice");
}
