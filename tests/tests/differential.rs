//! Differential test: for a few hundred random cases (key type, certificate or plain key,
//! namespace, tampering, trust-store lines with options and windows), the library's
//! accept/reject agrees with `ssh-keygen -Y verify` on the same files at the same instant.
//!
//! Only trust stores Steward loads are generated: where Steward deliberately refuses a whole file
//! that OpenSSH reads line by line (a line admitting both or neither Steward namespace, a
//! zone-less time, an unknown option, one key in two roles), or refuses a certificate with a
//! critical option, the two are meant to differ; those divergences are tested beside the parser.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::OnceLock;
use steward_authz::{TrustStore, Verifier, VerifyConfig};
use steward_testkit::{CertSpec, Key, KeyType, Keygen, OpDoc};
use time::macros::datetime;
use time::OffsetDateTime;

const HOST: &str = "pve-a";
const NOW: OffsetDateTime = datetime!(2026-11-22 15:10:00 UTC);
const NOW_OPENSSH: &str = "20261122151000Z";

const KEY_TYPES: [KeyType; 6] = [
    KeyType::Ed25519,
    KeyType::EcdsaP256,
    KeyType::EcdsaP384,
    KeyType::EcdsaP521,
    KeyType::Rsa(2048),
    KeyType::Rsa(3072),
];

struct Fixture {
    kg: Keygen,
    keys: Vec<Key>,
    subjects: Vec<Key>,
    ca: Key,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let kg = Keygen::new().unwrap();
        let keys = KEY_TYPES
            .iter()
            .map(|t| kg.key(*t, &t.label()).unwrap())
            .collect();
        let subjects = KEY_TYPES
            .iter()
            .map(|t| kg.key(*t, "subject").unwrap())
            .collect();
        let ca = kg.key(KeyType::Ed25519, "ca").unwrap();
        Fixture {
            kg,
            keys,
            subjects,
            ca,
        }
    })
}

/// Namespace options Steward loads, with the role they confer.
const NS_OPTIONS: [(&str, bool); 6] = [
    ("op@steward", true),
    ("recovery@steward", false),
    ("file,op@steward", true),
    ("*@steward,!recovery@steward", true),
    ("recovery@*", false),
    ("git,recovery@steward,file", false),
];

/// Offsets from NOW for valid-after / valid-before, edges included.
const OFFSETS: [i64; 5] = [-7200, -1, 0, 1, 7200];

#[derive(Clone, Debug)]
struct Window {
    after: Option<i64>,
    before: Option<i64>,
}

#[derive(Clone, Debug)]
struct LineSpec {
    key: usize,
    ns: usize,
    window: Window,
}

#[derive(Clone, Debug)]
enum Tamper {
    None,
    Payload(usize, u8),
    Signature(usize, u8),
}

#[derive(Clone, Debug)]
struct CertCase {
    validity: (i64, i64),
    host: bool,
    principal_matches: bool,
}

#[derive(Clone, Debug)]
struct Case {
    signer: usize,
    cert: Option<CertCase>,
    sign_ns: usize,
    tamper: Tamper,
    signer_ns: usize,
    signer_windows: Vec<Window>,
    ca_ns: usize,
    ca_window: Window,
    decoys: Vec<LineSpec>,
}

fn window() -> impl Strategy<Value = Window> {
    (
        prop::option::weighted(0.4, prop::sample::select(OFFSETS.to_vec())),
        prop::option::weighted(0.4, prop::sample::select(OFFSETS.to_vec())),
    )
        .prop_map(|(after, before)| match (after, before) {
            // OpenSSH and Steward both refuse valid-before <= valid-after; keep files loadable.
            (Some(a), Some(b)) if b <= a => Window {
                after: Some(a),
                before: None,
            },
            _ => Window { after, before },
        })
}

fn case() -> impl Strategy<Value = Case> {
    let cert = prop::option::of(
        (
            prop::sample::select(vec![
                (-3600i64, 3600i64),
                (-7200, -60),
                (60, 7200),
                (-3600, 0),
            ]),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.8),
        )
            .prop_map(|(validity, host, principal_matches)| CertCase {
                validity,
                host,
                principal_matches,
            }),
    );
    let tamper = prop_oneof![
        6 => Just(Tamper::None),
        1 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Tamper::Payload(i, x)),
        1 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Tamper::Signature(i, x)),
    ];
    let decoy = (0..KEY_TYPES.len(), 0..NS_OPTIONS.len(), window())
        .prop_map(|(key, ns, window)| LineSpec { key, ns, window });
    (
        0..KEY_TYPES.len(),
        cert,
        prop::sample::select(vec![0usize, 0, 0, 0, 0, 0, 1, 1, 1, 2]),
        tamper,
        0..NS_OPTIONS.len(),
        prop::collection::vec(window(), 1..=2),
        0..NS_OPTIONS.len(),
        window(),
        prop::collection::vec(decoy, 0..3),
    )
        .prop_map(
            |(
                signer,
                cert,
                sign_ns,
                tamper,
                signer_ns,
                signer_windows,
                ca_ns,
                ca_window,
                decoys,
            )| {
                let decoys_keys: Vec<usize> = decoys.iter().map(|d| d.key).collect();
                Case {
                    signer,
                    cert,
                    sign_ns,
                    tamper,
                    signer_ns,
                    signer_windows,
                    ca_ns,
                    ca_window,
                    // No key on two decoy lines, and no decoy re-listing the signer: one key in two
                    // roles is a Steward load error.
                    decoys: decoys
                        .into_iter()
                        .enumerate()
                        .filter(|(i, d)| d.key != signer && !ds_before(&decoys_keys, *i, d.key))
                        .map(|(_, d)| d)
                        .collect(),
                }
            },
        )
}

fn ds_before(keys: &[usize], i: usize, key: usize) -> bool {
    keys[..i].contains(&key)
}

fn stamp(offset: i64) -> String {
    steward_testkit::openssh_time(NOW + time::Duration::seconds(offset))
}

fn options(ns: usize, w: &Window, ca: bool) -> String {
    let mut o = Vec::new();
    if ca {
        o.push("cert-authority".to_string());
    }
    o.push(format!("namespaces=\"{}\"", NS_OPTIONS[ns].0));
    if let Some(a) = w.after {
        o.push(format!("valid-after=\"{}\"", stamp(a)));
    }
    if let Some(b) = w.before {
        o.push(format!("valid-before=\"{}\"", stamp(b)));
    }
    o.join(",")
}

fn run_case(c: &Case) -> Result<bool, TestCaseError> {
    let f = fixture();
    let kg = &f.kg;
    let signer = &f.keys[c.signer];
    let sign_ns = ["op@steward", "recovery@steward", "file"][c.sign_ns];

    let mut lines = vec![format!("# case {c:?}")];
    for d in &c.decoys {
        lines.push(format!(
            "decoy{}@steward.test {} {}",
            d.key,
            options(d.ns, &d.window, false),
            f.keys[d.key].public_type_and_blob()
        ));
    }
    let principal;
    let signing_file;
    match &c.cert {
        None => {
            principal = format!("signer{}@steward.test", c.signer);
            for w in &c.signer_windows {
                lines.push(format!(
                    "{principal} {} {}",
                    options(c.signer_ns, w, false),
                    signer.public_type_and_blob()
                ));
            }
            signing_file = signer.private.clone();
        }
        Some(cert) => {
            principal = if cert.principal_matches {
                "bob@steward.test".to_string()
            } else {
                "bob@elsewhere.test".to_string()
            };
            lines.push(format!(
                "*@steward.test {} {}",
                options(c.ca_ns, &c.ca_window, true),
                f.ca.public_type_and_blob()
            ));
            // Re-certified per case; the -cert.pub sits beside its private key.
            let subject = &f.subjects[c.signer];
            let validity = format!("{}:{}", stamp(cert.validity.0), stamp(cert.validity.1));
            signing_file = kg
                .certify(
                    &f.ca,
                    subject,
                    &CertSpec {
                        identity: "bob",
                        principals: &[principal.as_str()],
                        validity: &validity,
                        host: cert.host,
                        options: &[],
                    },
                )
                .unwrap();
        }
    }
    let signers_text = lines.join("\n") + "\n";
    let signers_path = kg.path("allowed_signers");
    std::fs::write(&signers_path, &signers_text).unwrap();

    let doc = OpDoc::destroy(HOST, 104, "2026-11-22T15:00:00Z", "2026-11-22T15:30:00Z");
    let signed_payload = doc.to_bytes();
    let mut sig = kg.sign(&signing_file, sign_ns, &signed_payload).unwrap();
    let mut payload = signed_payload.clone();
    match c.tamper {
        Tamper::None => {}
        Tamper::Payload(i, x) => {
            let at = i % payload.len();
            payload[at] ^= x;
        }
        Tamper::Signature(i, x) => sig = flip_blob_byte(&sig, i, x),
    }

    // Steward: a load failure refuses everything.
    let store = TrustStore::parse("allowed_signers", signers_text.as_bytes())
        .map_err(|e| TestCaseError::fail(format!("generated file must load: {e}")))?;
    let ours = Verifier::new(store, VerifyConfig::new(HOST))
        .unwrap()
        .verify_offline(&payload, &sig, NOW);

    // OpenSSH: ask for the signature's own namespace when it is a Steward one (the role is
    // chosen by the namespace); otherwise for op@steward, which is what the agent expects.
    let expect_ns = if sign_ns == "file" {
        "op@steward"
    } else {
        sign_ns
    };
    let theirs = kg
        .verify(
            &signers_path,
            &principal,
            expect_ns,
            &sig,
            &payload,
            NOW_OPENSSH,
        )
        .unwrap();
    prop_assert_eq!(
        ours.is_ok(),
        theirs,
        "steward: {:?}\nssh-keygen accepted: {}\nallowed_signers:\n{}",
        ours.as_ref().map(|v| &v.principal),
        theirs,
        signers_text
    );
    Ok(theirs)
}

fn flip_blob_byte(armored: &[u8], i: usize, x: u8) -> Vec<u8> {
    let mut blob = steward_testkit::decode_armor(armored).unwrap();
    let at = i % blob.len();
    blob[at] ^= x;
    steward_testkit::encode_armor(&blob, 70, "\n")
}

#[test]
fn library_agrees_with_ssh_keygen() {
    let cases: u32 = std::env::var("STEWARD_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    use std::sync::atomic::{AtomicU32, Ordering};
    let (accepted, rejected) = (AtomicU32::new(0), AtomicU32::new(0));
    runner
        .run(&case(), |c| {
            let counter = if run_case(&c)? { &accepted } else { &rejected };
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let (a, r) = (accepted.into_inner(), rejected.into_inner());
    println!(
        "{} cases: {a} accepted by both, {r} rejected by both",
        a + r
    );
    // The generator must exercise both verdicts, or agreement would prove nothing.
    assert!(
        a >= cases / 10 && r >= cases / 10,
        "{a} accepted, {r} rejected"
    );
}
