//! Rendering a fleet directory: per-node and multi-node documents split by node, signed ops
//! by their payload's host, refusals with file and line, byte-identical output for unchanged
//! input (and no rewrite), nothing written when anything is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use steward_testkit::{KeyType, Keygen, OpDoc};

fn fleet() -> (tempfile::TempDir, Keygen, steward_testkit::Key) {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("nodes")).unwrap();
    std::fs::create_dir_all(d.path().join("ops/2026-12")).unwrap();
    std::fs::write(
        d.path().join("nodes/pve-a.toml"),
        "version = 1\ngeneration = 3\n\n[[guests]]\nvmid = 101\nkind = \"qemu\"\nstate = \"running\"\nmemory = \"2 GiB\"\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("desired.json"),
        r#"{"version": 1, "generation": 9, "guests": [
            {"vmid": 201, "kind": "lxc", "state": "stopped", "node": "pve-b"},
            {"vmid": 301, "kind": "qemu", "state": "running", "node": "pve-c"}]}"#,
    )
    .unwrap();
    let kg = Keygen::new().unwrap();
    let alice = kg.key(KeyType::Ed25519, "alice").unwrap();
    (d, kg, alice)
}

fn sign_op(d: &Path, kg: &Keygen, key: &steward_testkit::Key, name: &str, host: &str) {
    let payload =
        OpDoc::destroy(host, 101, "2026-12-04T00:00:00Z", "2026-12-04T12:00:00Z").to_bytes();
    let path = d.join("ops/2026-12").join(name);
    std::fs::write(&path, &payload).unwrap();
    std::fs::write(
        d.join("ops/2026-12").join(format!("{name}.sig")),
        kg.sign(&key.private, "op@steward", &payload).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_fleet_renders_per_node_canonically_and_rewrites_only_what_changed() {
    let (d, kg, alice) = fleet();
    sign_op(d.path(), &kg, &alice, "destroy-101.json", "pve-a");
    let r = render(d.path()).unwrap();
    assert_eq!(r.keys().collect::<Vec<_>>(), ["pve-a", "pve-b", "pve-c"]);
    let a: Value = serde_json::from_slice(r["pve-a"].desired.as_ref().unwrap()).unwrap();
    assert_eq!(a["generation"], 3);
    assert_eq!(a["guests"][0]["memory"], "2 GiB");
    let b: Value = serde_json::from_slice(r["pve-b"].desired.as_ref().unwrap()).unwrap();
    assert_eq!(b["guests"].as_array().unwrap().len(), 1);
    assert_eq!(b["guests"][0]["vmid"], 201);
    // What the agent reads back: the agent's own parsers take every node's files.
    for files in r.values() {
        parse_json(
            "rendered",
            std::str::from_utf8(files.desired.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        protocol::parse_jobs(&files.jobs).unwrap();
    }
    let jobs = protocol::parse_jobs(&r["pve-a"].jobs).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, "2026-12/destroy-101.json");
    assert!(protocol::parse_jobs(&r["pve-b"].jobs).unwrap().is_empty());

    let out = tempfile::tempdir().unwrap();
    let first = write(out.path(), &r).unwrap();
    assert!(first.iter().all(|w| matches!(w, Written::Changed(_))));
    let before = std::fs::metadata(out.path().join("v1/nodes/pve-a/desired"))
        .unwrap()
        .modified()
        .unwrap();
    // The same input again: the same bytes, nothing rewritten.
    let again = render(d.path()).unwrap();
    assert_eq!(again, r);
    let second = write(out.path(), &again).unwrap();
    assert!(
        second.iter().all(|w| matches!(w, Written::Unchanged(_))),
        "{second:?}"
    );
    let after = std::fs::metadata(out.path().join("v1/nodes/pve-a/desired"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn what_the_agent_would_refuse_is_refused_with_its_file_and_nothing_is_written() {
    let (d, kg, alice) = fleet();
    std::fs::write(
        d.path().join("nodes/pve-b.toml"),
        "version = 1\ngeneration = 1\n\n[[guests]]\nvmid = 105\nkind = \"qemu\"\nstate = \"running\"\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("nodes/pve-f.toml"),
        "version = 1\ngeneration = 1\n\n[[guests]]\nvmid = 5\nkind = \"qemu\"\nstate = \"running\"\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("nodes/pve-g.toml"),
        "version = 1\ngeneration = \n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("nodes/pve-d.json"),
        r#"{"version": 1, "generation": 1, "guests": [{"vmid": 401, "kind": "qemu", "state": "running", "node": "pve-e"}]}"#,
    )
    .unwrap();
    sign_op(d.path(), &kg, &alice, "good.json", "pve-a");
    std::fs::write(d.path().join("ops/2026-12/unsigned.json"), b"{}").unwrap();
    std::fs::write(
        d.path().join("ops/2026-12/bad-sig.json"),
        OpDoc::destroy("pve-a", 101, "2026-12-04T00:00:00Z", "2026-12-04T01:00:00Z").to_bytes(),
    )
    .unwrap();
    std::fs::write(
        d.path().join("ops/2026-12/bad-sig.json.sig"),
        b"not a signature",
    )
    .unwrap();
    let errors = render(d.path()).unwrap_err();
    let all = errors.join("\n");
    assert!(
        all.contains("pve-f.toml: guests[0].vmid: 5 is not a VMID"),
        "{all}"
    );
    assert!(all.contains("pve-g.toml:2: not valid TOML"), "{all}");
    assert!(all.contains("node pve-b is given twice"), "{all}");
    assert!(
        all.contains("pve-d.json") && all.contains("names node \"pve-e\""),
        "{all}"
    );
    assert!(all.contains("unsigned.json"), "{all}");
    assert!(all.contains("bad-sig.json.sig"), "{all}");
    assert!(!all.contains("good.json"), "{all}");
}
