//! `steward-verify` as an operator runs it: real ssh-keygen signatures, exit codes 0/1/2, the
//! first-line contract and the JSON form.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use steward_testkit::{KeyType, Keygen, OpDoc};

struct Setup {
    kg: Keygen,
    key: steward_testkit::Key,
    signers: PathBuf,
    op: PathBuf,
    sig: PathBuf,
}

fn setup() -> Setup {
    let kg = Keygen::new().unwrap();
    let key = kg.key(KeyType::Ed25519, "alice").unwrap();
    let signers = kg.dir().join("allowed_signers");
    std::fs::write(
        &signers,
        format!(
            "alice@steward.test namespaces=\"op@steward\" {}\n",
            key.public_line
        ),
    )
    .unwrap();
    let payload =
        OpDoc::destroy("pve-a", 104, "2026-11-22T15:00:00Z", "2026-11-22T15:30:00Z").to_bytes();
    let op = kg.dir().join("op.json");
    std::fs::write(&op, &payload).unwrap();
    let sig = kg.dir().join("op.json.sig");
    std::fs::write(&sig, kg.sign(&key.private, "op@steward", &payload).unwrap()).unwrap();
    Setup {
        kg,
        key,
        signers,
        op,
        sig,
    }
}

fn verify(
    signers: &Path,
    host: &str,
    at: &str,
    extra: &[&str],
    op: &Path,
    sig: &Path,
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_steward-verify"))
        .arg("--signers")
        .arg(signers)
        .args(["--host", host, "--at", at])
        .args(extra)
        .arg(op)
        .arg(sig)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const AT: &str = "2026-11-22T15:10:00Z";

#[test]
fn verified_exits_zero_with_the_contract_line() {
    let s = setup();
    let (code, out, _) = verify(&s.signers, "pve-a", AT, &[], &s.op, &s.sig);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().next().unwrap(),
        "verified: principal=alice@steward.test role=operational op=guest.destroy host=pve-a guest=104"
    );
}

#[test]
fn rejected_exits_one_with_the_reason() {
    let s = setup();
    let (code, out, _) = verify(&s.signers, "pve-b", AT, &[], &s.op, &s.sig);
    assert_eq!(code, 1);
    assert!(out.starts_with("rejected: target: "), "{out}");
    let (code, out, _) = verify(
        &s.signers,
        "pve-a",
        "2026-11-23T00:00:00Z",
        &[],
        &s.op,
        &s.sig,
    );
    assert_eq!(code, 1);
    assert!(out.starts_with("rejected: expired: "), "{out}");
    let (code, out, _) = verify(
        &s.signers,
        "pve-a",
        AT,
        &["--max-ttl", "600"],
        &s.op,
        &s.sig,
    );
    assert_eq!(code, 1);
    assert!(out.starts_with("rejected: malformed_op: "), "{out}");
}

#[test]
fn json_carries_the_same_facts() {
    let s = setup();
    let (code, out, _) = verify(&s.signers, "pve-a", AT, &["--json"], &s.op, &s.sig);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"], "verified");
    assert_eq!(v["principal"], "alice@steward.test");
    assert_eq!(v["role"], "operational");
    assert_eq!(v["guest"], 104);
    assert_eq!(v["params"]["purge"], true);
    let (code, out, _) = verify(
        &s.signers,
        "pve-a",
        AT,
        &["--json", "--skew", "0"],
        &s.op,
        &s.op,
    );
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["reason"], "malformed_signature");
}

#[test]
fn usage_and_file_errors_exit_two_naming_the_place() {
    let s = setup();
    let bad = s.kg.dir().join("bad_signers");
    std::fs::write(
        &bad,
        "# header\nalice namespaces=\"op@steward\",octopus ssh-ed25519 AAAA\n",
    )
    .unwrap();
    let (code, out, err) = verify(&bad, "pve-a", AT, &[], &s.op, &s.sig);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.starts_with(&format!("error: {}:2: ", bad.display())),
        "{err}"
    );
    assert!(err.contains("octopus"), "{err}");
    let missing = s.kg.dir().join("nope");
    let (code, _, err) = verify(&missing, "pve-a", AT, &[], &s.op, &s.sig);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = verify(&s.signers, "pve-a", "yesterday", &[], &s.op, &s.sig);
    assert_eq!(code, 2);
    assert!(err.contains("--at"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_steward-verify"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_closed_stdout_exits_two_not_with_a_panic() {
    let s = setup();
    // A pipe whose reading end is closed before the verifier writes: writing fails (EPIPE).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_steward-verify"))
        .arg("--signers")
        .arg(&s.signers)
        .args(["--host", "pve-a", "--at", AT])
        .arg(&s.op)
        .arg(&s.sig)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let _ = &s.kg;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("writing the verdict"));
}

#[test]
fn several_signatures_are_judged_each_and_distinct_keys_counted_against_the_threshold() {
    let s = setup();
    let payload = std::fs::read(&s.op).unwrap();
    let bob = s.kg.key(KeyType::Ed25519, "bob").unwrap();
    let mallory = s.kg.key(KeyType::Ed25519, "mallory").unwrap();
    let mut signers = std::fs::read_to_string(&s.signers).unwrap();
    signers.push_str(&format!(
        "bob@steward.test namespaces=\"op@steward\" {}\n",
        bob.public_line
    ));
    std::fs::write(&s.signers, signers).unwrap();
    let write_sig = |name: &str, key: &Path| {
        let p = s.kg.dir().join(name);
        std::fs::write(&p, s.kg.sign(key, "op@steward", &payload).unwrap()).unwrap();
        p
    };
    let b = write_sig("bob.sig", &bob.private);
    let m = write_sig("mallory.sig", &mallory.private);
    let run = |sigs: &[&Path], extra: &[&str]| {
        let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        for p in sigs {
            args.push("--sig".into());
            args.push(p.display().to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_steward-verify"))
            .arg("--signers")
            .arg(&s.signers)
            .args(["--host", "pve-a", "--at", AT])
            .args(&refs)
            .arg(&s.op)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
        )
    };
    // Alice and Bob: two distinct keys meet a threshold of two.
    let (code, out) = run(&[&s.sig, &b], &["--threshold", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("approved: 2 distinct operational key(s), threshold 2"),
        "{out}"
    );
    // Alice twice and a stranger: one key, the stranger rejected and named.
    let (code, out) = run(&[&s.sig, &s.sig, &m], &["--threshold", "2"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("rejected: threshold_not_met: 1 distinct operational key(s), threshold 2"),
        "{out}"
    );
    assert!(
        out.contains("signature 2 (") && out.contains("same approver (key or name) as signature 1"),
        "{out}"
    );
    assert!(
        out.contains("signature 3 (") && out.contains("rejected: unknown_signer"),
        "{out}"
    );
    let (code, out) = run(&[&s.sig, &b], &["--threshold", "2", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["distinct_keys"], 2);
    assert_eq!(v["signatures"].as_array().unwrap().len(), 2);
    // A threshold out of range, or several signatures without one, is a usage error.
    let (code, _) = run(&[&s.sig], &["--threshold", "0"]);
    assert_eq!(code, 2);
    let (code, _) = run(&[&s.sig, &b], &[]);
    assert_eq!(code, 2);
}

/// `steward-verify audit` on a chain holding one signed destroy: exit 0 with the table naming
/// alice; the chain with a byte changed, exit 1 naming the entry; a witnessed head it no longer
/// holds, exit 1; no such file, exit 2.
#[test]
fn audit_proves_a_chain_names_the_signer_and_exits_one_on_tampering() {
    use steward_audit::{AuditEntry, Proof, GENESIS};
    use steward_authz::TrustStore;
    let s = setup();
    let action = steward_model::Action::Destroy {
        vmid: steward_model::Vmid::new(104).unwrap(),
        kind: steward_model::GuestKind::Qemu,
        purge: true,
        destroy_unreferenced_disks: false,
    };
    let b = steward_classifier::binding::binding_of(&action, None);
    let mut doc = OpDoc::destroy("pve-a", 104, "2026-11-22T15:00:00Z", "2026-11-22T15:30:00Z");
    doc.params = serde_json::Value::Object(b.params).to_string();
    let payload = doc.to_bytes();
    let sig = s.kg.sign(&s.key.private, "op@steward", &payload).unwrap();
    let store = TrustStore::parse("s", &std::fs::read(&s.signers).unwrap()).unwrap();
    let proof = Proof {
        payload: String::from_utf8(payload).unwrap(),
        signatures: vec![String::from_utf8(sig.to_vec()).unwrap()],
        trust_store: store.digest().into(),
        host: "pve-a".into(),
        action: Some(action),
        identity: None,
    };
    let at = 1_795_360_200_000; // 2026-11-22T15:10:00Z, inside the op's window
    let first = AuditEntry::new(
        1,
        at,
        GENESIS,
        serde_json::json!({"type": "transition", "op": 1, "guest": 104, "action": "guest.destroy",
            "class": "destructive", "to": {"state": "intent"}, "proof": proof}),
    );
    let second = AuditEntry::new(
        2,
        at + 5,
        &first.hash,
        serde_json::json!({"type": "transition", "op": 1, "guest": 104, "action": "guest.destroy",
            "class": "destructive", "to": {"state": "succeeded"}}),
    );
    let text = format!(
        "{}\n{}\n",
        serde_json::to_string(&first).unwrap(),
        serde_json::to_string(&second).unwrap()
    );
    let export = s.kg.dir().join("audit.jsonl");
    std::fs::write(&export, &text).unwrap();
    let audit = |file: &Path, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_steward-verify"))
            .arg("audit")
            .arg("--signers")
            .arg(&s.signers)
            .args(extra)
            .arg(file)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let head = format!("2:{}", second.hash);
    let (code, out) = audit(&export, &["--head", &head]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("proven: 2 entries"), "{out}");
    assert!(
        out.contains("guest.destroy") && out.contains("signed by alice@steward.test (SHA256:"),
        "{out}"
    );

    let bad = s.kg.dir().join("bad.jsonl");
    std::fs::write(&bad, text.replacen("\"purge\":true", "\"purge\":false", 1)).unwrap();
    let (code, out) = audit(&bad, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("UNPROVEN") && out.contains("entry 1"),
        "{out}"
    );

    let first_only = s.kg.dir().join("first.jsonl");
    std::fs::write(&first_only, text.lines().next().unwrap()).unwrap();
    let (code, out) = audit(&first_only, &["--head", &head]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("witnessed head"), "{out}");

    let (code, _) = audit(&s.kg.dir().join("missing.jsonl"), &[]);
    assert_eq!(code, 2);
}
