//! `steward-agent export` and `plan` as an administrator adopting a node runs them, against the
//! simulator with the tokens `setup-token` grants: the export of every seeded guest (both
//! kinds) plans as "No changes" (exit 0); an edit plans as a change with the node's and the
//! document's values (exit 2), a dropped disk under `disks = "exact"` as held with its volume;
//! a document with an error exits 1 naming it; and none of it writes to the node.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::sim;
use std::path::Path;
use std::time::Duration;

/// `steward-agent ARGS`: exit code, stdout, stderr.
fn run(args: &[&str], cfg: &Path) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_plans_as_no_change_and_a_plan_says_what_would_change_and_never_writes() {
    let sim = sim(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = common::file_config(d, &sim);
    common::trust(
        d,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDhQ5WSMz0Y3dzv0u7ewd0f3BgR2Y9t4X0hLZ5uXn3Ux",
    );
    let writes = || sim.with_node(|n| n.st.counters.calls.values().sum::<u64>());
    let before = writes();

    let (code, toml_doc, err) = run(&["export"], &cfg);
    assert_eq!(code, Some(0), "{err}");
    let guests = toml_doc.matches("[[guests]]").count();
    assert_eq!(guests, 6, "every seeded guest: {toml_doc}");
    assert!(toml_doc.contains("kind = \"lxc\"") && toml_doc.contains("kind = \"qemu\""));
    assert!(!toml_doc.contains("BC:24:11"), "no MAC is exported");
    std::fs::write(d.join("desired.toml"), &toml_doc).unwrap();
    let (code, out, err) = run(&["plan"], &cfg);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("No changes"), "{out}");

    // JSON too, for one guest.
    let (code, json_doc, err) = run(&["export", "--format", "json", "--guest", "102"], &cfg);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&json_doc).unwrap();
    assert_eq!(v["guests"].as_array().unwrap().len(), 1);
    assert_eq!(v["guests"][0]["kind"], "lxc");
    assert!(v["guests"][0]["rootfs"]["size"].is_string(), "{v}");

    // An edit: more memory for 100, and 101's disk list made exact without its data disk.
    let edited = toml_doc
        .replacen("memory = 2048", "memory = 4096", 1)
        .replacen("vmid = 101\n", "vmid = 101\ndisks = \"exact\"\n", 1);
    // 101 has one disk (scsi0): drop it from the document, so exact mode would detach it.
    let start = edited
        .find("[guests.scsi0]")
        .or_else(|| edited.find("scsi0 ="));
    assert!(start.is_some(), "{edited}");
    let mut doc: toml::Table = toml::from_str(&edited).unwrap();
    let list = doc["guests"].as_array_mut().unwrap();
    let g101 = list
        .iter_mut()
        .find(|g| g["vmid"].as_integer() == Some(101))
        .unwrap();
    let scsi0 = g101.as_table_mut().unwrap().remove("scsi0").unwrap();
    assert!(scsi0["storage"].as_str().is_some());
    std::fs::write(d.join("desired.toml"), toml::to_string(&doc).unwrap()).unwrap();
    let (code, out, err) = run(&["plan"], &cfg);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("memory: 2048 -> 4096"), "{out}");
    assert!(out.contains("HELD for a signature"), "{out}");
    assert!(out.contains("removes local-lvm:vm-101-disk-"), "{out}");
    let (code, out, _) = run(&["plan", "--json"], &cfg);
    assert_eq!(code, Some(2));
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    let held: Vec<&serde_json::Value> = view["guests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["actions"].as_array().unwrap())
        .filter(|a| a["destructive"] == true)
        .collect();
    assert_eq!(held.len(), 1, "{view}");

    // A document with an error: exit 1, the error named; the node untouched throughout.
    std::fs::write(
        d.join("bad.toml"),
        "version = 1\ngeneration = 1\n[[guests]]\nvmid = 100\nkind = \"qemu\"\nstate = \"running\"\nnet0 = { model = \"virtio\", colour = \"red\" }\n",
    )
    .unwrap();
    let bad = d.join("bad.toml");
    let (code, _, err) = run(&["plan", "--desired", bad.to_str().unwrap()], &cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("net0") && err.contains("colour"), "{err}");
    assert_eq!(writes(), before, "plan and export never write");
}

/// An agent fed by a hub plans the hub's document for its node, fetched once as it polls it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_fed_agent_plans_the_hubs_document() {
    let sim = sim(Duration::from_millis(20)).await;
    let hub = common::hub("plan-hub-token-3c9").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let provider = common::hub_provider(d, &hub, "plan-hub-token-3c9");
    let cfg = common::config(d, &sim, &provider);
    common::trust(
        d,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDhQ5WSMz0Y3dzv0u7ewd0f3BgR2Y9t4X0hLZ5uXn3Ux",
    );
    hub.set_desired(
        "pve-a",
        r#"{"version": 1, "generation": 3, "guests": [
            {"vmid": 100, "kind": "qemu", "state": "running", "cores": 4}]}"#,
    );
    let (code, out, err) = run(&["plan"], &cfg);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("cores: 2 -> 4"), "{out}");
    assert!(out.contains("qemu 100:"), "{out}");
    hub.set_desired(
        "pve-a",
        r#"{"version": 1, "generation": 4, "guests": [
            {"vmid": 100, "kind": "qemu", "state": "running", "cores": 2}]}"#,
    );
    let (code, out, err) = run(&["plan"], &cfg);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("No changes: the node is as the hub's document"),
        "{out}"
    );
}
