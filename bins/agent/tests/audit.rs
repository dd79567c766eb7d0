//! An audit anyone can check offline, as an auditor meets it: the real agent holds a destroy,
//! alice signs it with `ssh-keygen`, it runs; `steward-agent audit export` writes the chain and
//! the offline check (`steward_audit::check`, what `steward-verify audit` runs) proves it and
//! names alice's key. Then the export is tampered with as an attacker on the node would: a line
//! deleted, a byte altered, two entries swapped, the signature dropped from the proof; an old
//! entry rewritten and the rest re-hashed; the tail truncated. Each fails, naming the entry,
//! or, where the chain was re-hashed to look whole, against the head `status` showed before.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{calls, cli, first_held_id, sim, until};
use std::process::Stdio;
use std::time::Duration;
use steward_audit::{check, AuditEntry, Head, Report};
use steward_authz::TrustStore;
use steward_testkit::{KeyType, Keygen};

fn verdict(export: &str, signers: &str, head: Option<&Head>) -> Report {
    check(
        export,
        &[TrustStore::parse("allowed_signers", signers.as_bytes()).unwrap()],
        head,
    )
}

/// Every failure the report names, rows and chain alike.
fn failures(r: &Report) -> String {
    r.rows
        .iter()
        .filter_map(|x| x.verdict.as_ref().err().cloned())
        .chain(r.problems.iter().cloned())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The export's entries with `f` applied to the list, every hash after the first one touched
/// recomputed: a chain that looks whole.
fn rehashed(export: &str, f: impl FnOnce(&mut Vec<AuditEntry>)) -> String {
    let mut entries: Vec<AuditEntry> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    f(&mut entries);
    let mut prev = entries[0].prev.clone();
    let mut out = String::new();
    for (i, e) in entries.iter().enumerate() {
        let e = AuditEntry::new(entries[0].seq + i as u64, e.at_ms, &prev, e.event.clone());
        prev = e.hash.clone();
        out.push_str(&serde_json::to_string(&e).unwrap());
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_destroy_is_proven_offline_and_every_tampering_is_named() {
    let sim = sim(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = common::file_config(d, &sim);
    std::fs::write(
        d.join("desired.toml"),
        "version = 1\ngeneration = 1\n\n[[guests]]\nvmid = 103\nkind = \"qemu\"\nstate = \"absent\"\n",
    )
    .unwrap();
    let kg = Keygen::new().unwrap();
    let alice = kg.key(KeyType::Ed25519, "alice").unwrap();
    let mallory = kg.key(KeyType::Ed25519, "mallory").unwrap();
    let signers = format!(
        "alice@steward.test namespaces=\"op@steward\" {}\n",
        alice.public_line
    );
    std::fs::write(d.join("allowed_signers"), &signers).unwrap();

    let agent = common::run_agent(&cfg, Stdio::null());
    until("103 held", Duration::from_secs(30), || {
        cli(d, &["pending"]).1.contains("guest.destroy 103")
    })
    .await;
    let id = first_held_id(&cli(d, &["pending"]).1);
    let (_, template) = cli(d, &["pending", "show", &id, "--template"]);
    std::fs::write(d.join("op.json"), &template).unwrap();
    std::fs::write(
        d.join("op.json.sig"),
        kg.sign(&alice.private, "op@steward", template.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let op = d.join("op.json").display().to_string();
    let sig = d.join("op.json.sig").display().to_string();
    let (code, said) = cli(d, &["submit", &op, &sig]);
    assert_eq!(code, Some(0), "{said}");
    until("103 destroyed", Duration::from_secs(20), || {
        !sim.with_node(|n| n.st.guests.contains_key(&103))
    })
    .await;
    assert_eq!(calls(&sim, 103, "destroy"), 1);

    // The head, as `status` shows it after a pass: what a witness keeps.
    let mut witnessed: Option<Head> = None;
    until(
        "status shows the audit head",
        Duration::from_secs(20),
        || {
            let (_, status) = cli(d, &["status"]);
            witnessed = status
                .lines()
                .find_map(|l| l.strip_prefix("audit head "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|h| h.parse().ok());
            witnessed.is_some()
        },
    )
    .await;
    let witnessed = witnessed.unwrap();

    // Exported through the running agent, and from its journal once it stopped: the same.
    let (code, export) = cli(d, &["audit", "export"]);
    assert_eq!(code, Some(0));
    agent.sigterm();
    drop(agent);
    let journal = d.join("journal").display().to_string();
    let stopped = std::process::Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .args(["audit", "export", "--journal", &journal])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    let from_disk = String::from_utf8(stopped.stdout).unwrap();
    assert!(
        from_disk.starts_with(&export),
        "the running agent's export is a prefix"
    );

    let r = verdict(&export, &signers, Some(&witnessed));
    assert!(r.proven(), "{}", failures(&r));
    let destroy = r
        .rows
        .iter()
        .find(|x| x.op == "guest.destroy" && x.guest == Some(103))
        .expect("the destroy is listed");
    assert!(destroy.what.contains("guest 103"), "{}", destroy.what);
    assert_eq!(destroy.signers.len(), 1);
    assert!(
        destroy.signers[0].contains("alice@steward.test")
            && destroy.signers[0].contains("(SHA256:"),
        "{:?}",
        destroy.signers
    );
    let seq = destroy.seq;

    // The same export checked against another trust store: the signature proves nothing.
    let other = format!(
        "mallory@steward.test namespaces=\"op@steward\" {}\n",
        mallory.public_line
    );
    assert!(!verdict(&export, &other, None).proven());

    let lines: Vec<&str> = export.lines().collect();
    let at = |n: usize| format!("entry {n}");
    // A line deleted.
    let mut cut = lines.clone();
    cut.remove(1);
    let r = verdict(&cut.join("\n"), &signers, None);
    assert!(
        !r.proven() && failures(&r).contains(&at(3)),
        "{}",
        failures(&r)
    );
    // A byte altered (in the destroy's entry).
    let altered = export.replacen("\"guest\":103", "\"guest\":104", 1);
    assert_ne!(altered, export);
    let r = verdict(&altered, &signers, None);
    assert!(!r.proven(), "{}", failures(&r));
    // Two entries swapped.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let r = verdict(&swapped.join("\n"), &signers, None);
    assert!(
        !r.proven() && failures(&r).contains(&at(4)),
        "{}",
        failures(&r)
    );
    // The signature dropped from the destroy's proof, and the chain re-hashed to look whole.
    let unsigned = rehashed(&export, |es| {
        let e = es.iter_mut().find(|e| e.seq == seq).unwrap();
        e.event["proof"]["signatures"] = serde_json::json!([]);
    });
    let r = verdict(&unsigned, &signers, None);
    assert!(
        !r.proven() && failures(&r).contains(&at(seq as usize)),
        "{}",
        failures(&r)
    );
    // ... which the witnessed head also exposes.
    let r = verdict(&unsigned, &signers, Some(&witnessed));
    assert!(failures(&r).contains("witnessed head"), "{}", failures(&r));
    // An old entry rewritten and the rest re-hashed: intact on its own, not against the head.
    let rewritten = rehashed(&export, |es| {
        es[0].event["detail"] = serde_json::json!("nothing happened here");
    });
    assert!(verdict(&rewritten, &signers, None).proven());
    let r = verdict(&rewritten, &signers, Some(&witnessed));
    assert!(
        !r.proven() && failures(&r).contains("witnessed head"),
        "{}",
        failures(&r)
    );
    // The tail truncated (the destroy's entries gone) and re-hashed.
    let truncated = rehashed(&export, |es| es.truncate(seq as usize - 1));
    assert!(verdict(&truncated, &signers, None).proven());
    let r = verdict(&truncated, &signers, Some(&witnessed));
    assert!(
        !r.proven() && failures(&r).contains("witnessed head"),
        "{}",
        failures(&r)
    );
}
