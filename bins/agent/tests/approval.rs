//! m-of-n as an administrator and two operators use it: the real agent with
//! `[approval] guest.destroy = 2` holds a destroy; the first operator's signature is kept as an
//! approval (the CLI shows "needs 2 signatures, has 1"), survives a restart of the agent, and the
//! second operator's signature after the restart runs the destroy exactly once.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{calls, cli, first_held_id, sim, until, Agent};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use steward_testkit::{KeyType, Keygen};

fn start(cfg: &Path) -> Agent {
    common::run_agent(cfg, Stdio::null())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_release_a_destroy_across_a_restart_and_it_runs_once() {
    let sim = sim(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = common::file_config(d, &sim);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[approval]\nguest.destroy = 2\nkeys.rotate = 2\nrecovery = 2\n");
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(
        d.join("desired.toml"),
        "version = 1\ngeneration = 1\n\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"absent\"\n",
    )
    .unwrap();
    let kg = Keygen::new().unwrap();
    let alice = kg.key(KeyType::Ed25519, "alice").unwrap();
    let bob = kg.key(KeyType::Ed25519, "bob").unwrap();
    std::fs::write(
        d.join("allowed_signers"),
        format!(
            "alice@steward.test namespaces=\"op@steward\" {}\nbob@steward.test namespaces=\"op@steward\" {}\n",
            alice.public_line, bob.public_line
        ),
    )
    .unwrap();

    // A volume of 103 that no config references: the destroy (with
    // destroy-unreferenced-disks) removes it, so its summary must name it, though the everyday
    // token (no VM.Config.Disk) is not shown it.
    let orphan = sim.with_node(|n| {
        n.st.volumes
            .allocate("local-lvm", 103, 4 << 30, steward_pve_sim::Kind::Qemu, 0)
            .unwrap()
    });

    let agent = start(&cfg);
    until("103 held", Duration::from_secs(30), || {
        cli(d, &["pending"]).1.contains("guest.destroy 103")
    })
    .await;
    // The summary's volumes are read on the pass after the op is held.
    let named = format!("{orphan} (4G, referenced by no config)");
    until("the orphan named", Duration::from_secs(30), || {
        cli(d, &["pending"]).1.contains(&named)
    })
    .await;
    let (_, listed) = cli(d, &["pending"]);
    assert!(listed.contains("needs 2 signatures, has 0"), "{listed}");
    let id = first_held_id(&listed);
    let (_, template) = cli(d, &["pending", "show", &id, "--template"]);
    let op_file = d.join("op.json");
    std::fs::write(&op_file, &template).unwrap();
    let sign = |key: &steward_testkit::Key, name: &str| {
        let p = d.join(name);
        std::fs::write(
            &p,
            kg.sign(&key.private, "op@steward", template.as_bytes())
                .unwrap(),
        )
        .unwrap();
        p
    };
    let a = sign(&alice, "alice.sig");
    let submit = |sigs: &[&Path]| {
        let mut args = vec!["submit".to_string(), op_file.display().to_string()];
        args.extend(sigs.iter().map(|p| p.display().to_string()));
        cli(d, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // Alice's signature twice in one submission: one key, one approval.
    let (code, said) = submit(&[&a, &a]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.starts_with("partly_approved") && said.contains("needs 2 signatures, has 1"),
        "{said}"
    );
    assert!(said.contains("already_counted"), "{said}");
    let (_, listed) = cli(d, &["pending"]);
    assert!(
        listed.contains("needs 2 signatures, has 1: alice@steward.test"),
        "{listed}"
    );
    let (_, status) = cli(d, &["status"]);
    assert!(status.contains("guest.destroy 2"), "{status}");
    assert_eq!(calls(&sim, 103, "destroy"), 0);

    // A restart: the approval is in the journal, not in memory.
    agent.sigterm();
    drop(agent);
    let _agent = start(&cfg);
    until("the agent answers again", Duration::from_secs(30), || {
        cli(d, &["pending"]).1.contains("has 1: alice@steward.test")
    })
    .await;
    let b = sign(&bob, "bob.sig");
    let (code, said) = submit(&[&b]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.starts_with("executed"), "{said}");
    until("103 destroyed", Duration::from_secs(20), || {
        !sim.with_node(|n| n.st.guests.contains_key(&103))
    })
    .await;
    let (_, again) = submit(&[&a, &b]);
    assert!(again.starts_with("replay"), "{again}");
    assert_eq!(calls(&sim, 103, "destroy"), 1, "the destroy ran twice");
    let (_, op) = cli(d, &["op", &id]);
    let op: serde_json::Value = serde_json::from_str(&op).unwrap();
    assert_eq!(op["approvals"].as_array().map(Vec::len), Some(2), "{op}");

    // The audit chain proves it offline with both signatures, alice's from before the restart.
    let (_, export) = cli(d, &["audit", "export"]);
    let signers = std::fs::read(d.join("allowed_signers")).unwrap();
    let r = steward_audit::check(
        &export,
        &[steward_authz::TrustStore::parse("allowed_signers", &signers).unwrap()],
        None,
    );
    assert!(r.proven(), "{:?} {:?}", r.problems, r.rows);
    let destroy = r.rows.iter().find(|x| x.op == "guest.destroy").unwrap();
    assert_eq!(destroy.signers.len(), 2, "{:?}", destroy.signers);
    assert!(destroy.signers[0].starts_with("alice@steward.test"));
    assert!(destroy.signers[1].starts_with("bob@steward.test"));
}
