//! Differential test: for a few hundred random cases (key type, certificate or plain key,
//! namespace, tampering, armor layout, trust-store lines with options and windows around the
//! verification instant), the library's accept/reject is compared with `ssh-keygen -Y verify`
//! on the same files at the same instant.
//!
//! Most cases must agree exactly. A case may also carry one *deviation*: an input where Steward
//! is stricter than OpenSSH on purpose (the list, with the reasons, is in
//! `crates/authz/README.md`): a trust-store line OpenSSH skips or reads loosely (an unknown
//! option, a zone-less time, a line admitting both Steward namespaces or no namespace option),
//! which makes Steward refuse the whole file; an RSA key under 2048 bits; a certificate with a
//! critical option Steward does not know. For those, "Steward rejects, OpenSSH accepts" is
//! counted under its reason; "Steward accepts, OpenSSH rejects" is still a failure, always.

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

/// The places Steward is stricter than OpenSSH on purpose, as the generator can produce them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deviation {
    /// A decoy line with an option OpenSSH does not know (it skips the line; Steward refuses
    /// the file: a typo in a trust store must not silently drop a restriction).
    UnknownOption,
    /// A decoy line with a `valid-after` without a zone (OpenSSH reads local time; Steward
    /// refuses: the agent's time zone must not move a window).
    ZonelessTime,
    /// A decoy line admitting both Steward namespaces (a key's role must be one).
    BothNamespaces,
    /// A decoy line with no `namespaces=` (OpenSSH: every namespace, so both roles).
    NoNamespaces,
    /// The signer is an RSA key of 1024 bits (Steward refuses RSA under 2048 bits).
    WeakRsa,
    /// The certificate carries `force-command` as a critical option (Steward refuses critical
    /// options it does not understand, as `sshd` would for a login).
    CriticalOption,
}

impl Deviation {
    const ALL: [Deviation; 6] = [
        Deviation::UnknownOption,
        Deviation::ZonelessTime,
        Deviation::BothNamespaces,
        Deviation::NoNamespaces,
        Deviation::WeakRsa,
        Deviation::CriticalOption,
    ];
}

/// How the armored signature is laid out (OpenSSH writes 70 columns and LF).
#[derive(Clone, Debug)]
struct Armor {
    width: usize,
    crlf: bool,
}

struct Fixture {
    kg: Keygen,
    keys: Vec<Key>,
    subjects: Vec<Key>,
    ca: Key,
    weak_rsa: Key,
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
        let weak_rsa = kg.key(KeyType::Rsa(1024), "weak").unwrap();
        Fixture {
            kg,
            keys,
            subjects,
            ca,
            weak_rsa,
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
    armor: Armor,
    deviation: Option<Deviation>,
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
    let armor = (
        prop::sample::select(vec![70usize, 70, 64, 76, 1, 4096]),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(width, crlf)| Armor { width, crlf });
    let deviation = prop::option::weighted(0.15, prop::sample::select(Deviation::ALL.to_vec()));
    (
        (armor, deviation),
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
                (armor, deviation),
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
                    armor,
                    deviation,
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

/// What a case came to: both accepted, both rejected, or Steward stricter for a documented
/// reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Accepted,
    Rejected,
    Stricter(Deviation),
    /// CRLF armor: OpenSSH reads it since 9.5 (commit 1ee0a16e), as Steward does; an older
    /// `ssh-keygen` refuses it. Counted only when the same blob with LF armor is accepted.
    CrlfBeforeOpenSsh95,
}

fn run_case(c: &Case) -> Result<Outcome, TestCaseError> {
    let f = fixture();
    let kg = &f.kg;
    // A weak RSA signer only as a plain key (certifying it is a different question).
    let weak = c.deviation == Some(Deviation::WeakRsa) && c.cert.is_none();
    let signer = if weak { &f.weak_rsa } else { &f.keys[c.signer] };
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
    // A deviating decoy line, on a key no other line names (the CA's key is only ever a CA).
    let decoy_key = f.subjects[(c.signer + 1) % KEY_TYPES.len()].public_type_and_blob();
    match c.deviation {
        Some(Deviation::UnknownOption) => lines.push(format!(
            "odd@steward.test namespaces=\"op@steward\",frobnicate {decoy_key}"
        )),
        Some(Deviation::ZonelessTime) => lines.push(format!(
            "odd@steward.test namespaces=\"op@steward\",valid-after=\"20260101\" {decoy_key}"
        )),
        Some(Deviation::BothNamespaces) => lines.push(format!(
            "odd@steward.test namespaces=\"op@steward,recovery@steward\" {decoy_key}"
        )),
        Some(Deviation::NoNamespaces) => {
            lines.push(format!("odd@steward.test {decoy_key}"));
        }
        _ => {}
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
                        options: if c.deviation == Some(Deviation::CriticalOption) {
                            &["force-command=/bin/true"]
                        } else {
                            &[]
                        },
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
    if c.armor.width != 70 || c.armor.crlf {
        let blob = steward_testkit::decode_armor(&sig).unwrap();
        let eol = if c.armor.crlf { "\r\n" } else { "\n" };
        sig = steward_testkit::encode_armor(&blob, c.armor.width, eol);
    }

    // Steward: a load failure refuses everything (only a deviating line may cause one).
    let ours = match TrustStore::parse("allowed_signers", signers_text.as_bytes()) {
        Ok(store) => Verifier::new(store, VerifyConfig::new(HOST))
            .unwrap()
            .verify_offline(&payload, &sig, NOW)
            .map(|v| v.principal),
        Err(e) if c.deviation.is_some() => Err(steward_authz::Rejection::new(
            steward_authz::Reason::UnknownSigner,
            e.to_string(),
        )),
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "generated file must load: {e}"
            )))
        }
    };

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
    let report = || {
        format!(
            "steward: {ours:?}\nssh-keygen accepted: {theirs}\nallowed_signers:\n{signers_text}"
        )
    };
    match (ours.is_ok(), theirs) {
        (true, true) => Ok(Outcome::Accepted),
        (false, false) => Ok(Outcome::Rejected),
        // Steward stricter: only where the case carries a documented deviation.
        (false, true) => match c.deviation {
            Some(d) if d != Deviation::WeakRsa || weak => Ok(Outcome::Stricter(d)),
            Some(Deviation::CriticalOption) if c.cert.is_some() => {
                Ok(Outcome::Stricter(Deviation::CriticalOption))
            }
            _ => Err(TestCaseError::fail(format!(
                "Steward rejected, OpenSSH accepted\n{}",
                report()
            ))),
        },
        // Steward looser: never acceptable, but for the armor newer OpenSSH reads too.
        (true, false) if c.armor.crlf => {
            let blob = steward_testkit::decode_armor(&sig).unwrap();
            let lf = steward_testkit::encode_armor(&blob, c.armor.width, "\n");
            let lf_ok = kg
                .verify(
                    &signers_path,
                    &principal,
                    expect_ns,
                    &lf,
                    &payload,
                    NOW_OPENSSH,
                )
                .unwrap();
            if lf_ok {
                Ok(Outcome::CrlfBeforeOpenSsh95)
            } else {
                Err(TestCaseError::fail(format!(
                    "Steward accepted what OpenSSH rejected (with LF armor too)\n{}",
                    report()
                )))
            }
        }
        (true, false) => Err(TestCaseError::fail(format!(
            "Steward accepted what OpenSSH rejected\n{}",
            report()
        ))),
    }
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
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    let counts: Mutex<BTreeMap<Outcome, u32>> = Mutex::new(BTreeMap::new());
    runner
        .run(&case(), |c| {
            let o = run_case(&c)?;
            *counts.lock().unwrap().entry(o).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let counts = counts.into_inner().unwrap();
    let a = counts.get(&Outcome::Accepted).copied().unwrap_or(0);
    let r = counts.get(&Outcome::Rejected).copied().unwrap_or(0);
    let stricter: Vec<String> = counts
        .iter()
        .filter_map(|(o, n)| match o {
            Outcome::Stricter(d) => Some(format!("{d:?} {n}")),
            _ => None,
        })
        .collect();
    let crlf = counts
        .get(&Outcome::CrlfBeforeOpenSsh95)
        .copied()
        .unwrap_or(0);
    println!(
        "{} cases: {a} accepted by both, {r} rejected by both, 0 disagreements outside the documented ones; Steward stricter on purpose: {}; CRLF armor accepted by Steward and OpenSSH >= 9.5, refused by this older ssh-keygen: {crlf}",
        counts.values().sum::<u32>(),
        if stricter.is_empty() {
            "none".to_string()
        } else {
            stricter.join(", ")
        }
    );
    // The generator must exercise both verdicts, or agreement would prove nothing.
    assert!(
        a >= cases / 20 && r >= cases / 10,
        "{a} accepted, {r} rejected"
    );
}
