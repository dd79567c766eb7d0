//! The adversarial matrix: every case minted with the real `ssh-keygen` (fresh keys in a
//! temporary directory each run) and run through the real `steward-authz` pipeline. Prints case,
//! expected, got; returns false on any case that is not as expected. Must never decide a
//! verdict itself: "got" is whatever the library said.

use crate::table;
use anyhow::{Context, Result};
use std::path::PathBuf;
use steward_authz::{
    sig, MemoryNonceStore, Reason, TrustStore, Verifier, VerifyConfig, OP_NAMESPACE,
    RECOVERY_NAMESPACE,
};
use steward_testkit::{
    decode_armor as decode, encode_armor as encode, openssh_time, CertSpec, Key, KeyType, Keygen,
    OpDoc,
};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

const HOST: &str = "pve-a";

/// What a case should come to.
#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Accepted,
    Rejected(Reason),
    LoadError,
    /// A gate decision label.
    Gate(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accepted => f.write_str("accepted"),
            Verdict::Rejected(r) => f.write_str(r.code()),
            Verdict::LoadError => f.write_str("load_error"),
            Verdict::Gate(label) => f.write_str(label),
        }
    }
}

struct Row {
    group: &'static str,
    case: String,
    expected: Verdict,
    got: Verdict,
    detail: String,
}

struct Lab {
    kg: Keygen,
    now: OffsetDateTime,
    keys: Vec<(KeyType, Key)>,
    recovery: Key,
    retired: Key,
    stranger: Key,
    ca: Key,
    signers_text: String,
    verifier: Verifier,
    rows: Vec<Row>,
    /// The conformance group the next cases belong to.
    group: &'static str,
}

fn rfc3339(t: OffsetDateTime) -> Result<String> {
    Ok(t.format(&Rfc3339)?)
}

impl Lab {
    fn new() -> Result<Lab> {
        let kg = Keygen::new()?;
        // Whole seconds, so RFC 3339 and OpenSSH stamps agree.
        let now = OffsetDateTime::now_utc().replace_nanosecond(0)?;
        let mut keys = Vec::new();
        for t in [
            KeyType::Ed25519,
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::EcdsaP521,
            KeyType::Rsa(2048),
            KeyType::Rsa(3072),
        ] {
            keys.push((t, kg.key(t, &t.label())?));
        }
        let recovery = kg.key(KeyType::Ed25519, "vault")?;
        let retired = kg.key(KeyType::Ed25519, "retired")?;
        let stranger = kg.key(KeyType::Ed25519, "mallory")?;
        let ca = kg.key(KeyType::Ed25519, "user-ca")?;
        let mut lines = vec!["# adversarial matrix trust store".to_string()];
        for (t, k) in &keys {
            lines.push(format!(
                "{}@steward.test namespaces=\"{OP_NAMESPACE}\" {}",
                t.label(),
                k.public_line
            ));
        }
        lines.push(format!(
            "vault@steward.test namespaces=\"{RECOVERY_NAMESPACE}\" {}",
            recovery.public_line
        ));
        lines.push(format!(
            "retired@steward.test namespaces=\"{OP_NAMESPACE}\",valid-before=\"{}\" {}",
            openssh_time(now - Duration::days(1)),
            retired.public_line
        ));
        lines.push(format!(
            "*@steward.test,!eve@steward.test cert-authority,namespaces=\"{OP_NAMESPACE}\" {}",
            ca.public_line
        ));
        let signers_text = lines.join("\n") + "\n";
        let store = TrustStore::parse("matrix/allowed_signers", signers_text.as_bytes())?;
        Ok(Lab {
            kg,
            now,
            keys,
            recovery,
            retired,
            stranger,
            ca,
            signers_text,
            verifier: Verifier::new(store, VerifyConfig::new(HOST))?,
            rows: Vec::new(),
            group: "",
        })
    }

    fn doc(&self) -> Result<OpDoc> {
        Ok(OpDoc::destroy(
            HOST,
            104,
            &rfc3339(self.now - Duration::minutes(5))?,
            &rfc3339(self.now + Duration::minutes(25))?,
        ))
    }

    fn sign(&self, key: &std::path::Path, ns: &str, payload: &[u8]) -> Result<Vec<u8>> {
        Ok(self.kg.sign(key, ns, payload)?)
    }

    fn ed25519(&self) -> &Key {
        &self.keys[0].1
    }

    fn record(
        &mut self,
        case: impl Into<String>,
        expected: Verdict,
        got: Result<(Verdict, String)>,
    ) {
        let (got, detail) =
            got.unwrap_or_else(|e| (Verdict::LoadError, format!("harness error: {e:#}")));
        self.rows.push(Row {
            group: self.group,
            case: case.into(),
            expected,
            got,
            detail,
        });
    }

    /// Runs the pipeline (with a fresh nonce store unless one is given).
    fn verdict(
        &self,
        payload: &[u8],
        sig: &[u8],
        store: Option<&MemoryNonceStore>,
    ) -> (Verdict, String) {
        let fresh = MemoryNonceStore::new();
        let store = store.unwrap_or(&fresh);
        match self.verifier.verify(payload, sig, self.now, store) {
            Ok(v) => (
                Verdict::Accepted,
                format!("principal={} role={}", v.principal, v.role),
            ),
            Err(r) => (Verdict::Rejected(r.reason), r.detail),
        }
    }

    /// Signs `doc` with `key` in `ns` and runs it.
    fn signed_case(&mut self, case: &str, expected: Verdict, key: PathBuf, ns: &str, doc: &OpDoc) {
        let got = (|| {
            let p = doc.to_bytes();
            let s = self.sign(&key, ns, &p)?;
            Ok(self.verdict(&p, &s, None))
        })();
        self.record(case, expected, got);
    }

    /// Rows judged by the gate or the engine (expected and got are decision labels).
    fn gate_group(&mut self, group: &'static str, rows: Vec<crate::matrix_gate::GateRow>) {
        self.group = group;
        for (case, expected, got, detail) in rows {
            self.rows.push(Row {
                group,
                case,
                expected: Verdict::Gate(expected),
                got: Verdict::Gate(got),
                detail,
            });
        }
    }

    fn load_case(&mut self, case: &str, text: String) {
        let got = match TrustStore::parse("matrix/case_signers", text.as_bytes()) {
            Ok(_) => (Verdict::Accepted, "file loaded".to_string()),
            Err(e) => (Verdict::LoadError, e.to_string()),
        };
        self.record(case, Verdict::LoadError, Ok(got));
    }

    fn cert_case(
        &mut self,
        case: &str,
        expected: Verdict,
        principals: &[&str],
        validity: &str,
        host: bool,
        options: &[&str],
    ) {
        let got = (|| {
            let subject = self.kg.key(KeyType::Ed25519, "cert-subject")?;
            let cert = self.kg.certify(
                &self.ca,
                &subject,
                &CertSpec {
                    identity: "bob",
                    principals,
                    validity,
                    host,
                    options,
                },
            )?;
            let p = self.doc()?.to_bytes();
            let s = self.sign(&cert, OP_NAMESPACE, &p)?;
            Ok(self.verdict(&p, &s, None))
        })();
        self.record(case, expected, got);
    }
}

fn rejected(r: Reason) -> Verdict {
    Verdict::Rejected(r)
}

/// The conformance table in `docs/matrix.md`: every case and its expected decision, generated
/// from the cases themselves so it cannot drift from what runs.
fn docs_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "# The adversarial matrix\n\nGenerated by `cargo xtask matrix --write-docs` from the cases in `xtask/src/matrix.rs`,\n`matrix_gate.rs`, `matrix_engine.rs` and `matrix_mofn.rs`; `cargo xtask matrix` (run by CI)\nfails when this file is stale. Every case is minted fresh with real `ssh-keygen` each run and\njudged by the real verifier (for the gate's cases, the real gate over a journal; for the\nengine's, the real engine against the simulator); the case names the input, the second column\nthe decision it must get (`accepted`, a rejection reason code, `load_error` for a trust store\nrefused whole, or the gate's decision label, with what the simulator counted).\n",
    );
    let mut group = "";
    for (i, r) in rows.iter().enumerate() {
        if r.group != group {
            group = r.group;
            out.push_str(&format!(
                "\n## {group}\n\n| # | case (input) | expected decision |\n|---|---|---|\n"
            ));
        }
        out.push_str(&format!(
            "| {} | {} | `{}` |\n",
            i + 1,
            r.case.replace('|', "\\|"),
            r.expected
        ));
    }
    out
}

/// Runs the matrix; true when every case came out as expected (and `docs/matrix.md` lists
/// exactly these cases). `write_docs` rewrites that file instead of checking it.
pub fn run(write_docs: bool) -> Result<bool> {
    let mut lab = Lab::new().context("setting up the matrix (is ssh-keygen installed?)")?;
    let doc = lab.doc()?;
    use Reason::*;

    // Each key type accepted.
    lab.group = "Key types: every supported key verifies";
    for i in 0..lab.keys.len() {
        let (t, k) = (lab.keys[i].0, lab.keys[i].1.private.clone());
        let d = lab.doc()?;
        lab.signed_case(
            &format!("{} key accepted", t.label()),
            Verdict::Accepted,
            k,
            OP_NAMESPACE,
            &d,
        );
    }
    let vault = lab.recovery.private.clone();
    let mut rotate = lab.doc()?;
    rotate.op = "keys.rotate".into();
    rotate.guest = None;
    rotate.params = "{}".into();
    lab.signed_case(
        "recovery key in recovery namespace",
        Verdict::Accepted,
        vault.clone(),
        RECOVERY_NAMESPACE,
        &rotate,
    );

    // Signature and armor.
    lab.group = "Signature, armor, namespace and signer admission";
    let alice = lab.ed25519().private.clone();
    let got = (|| {
        let p = doc.to_bytes();
        let s = lab.sign(&alice, OP_NAMESPACE, &p)?;
        let mut t = p.clone();
        let at = t.iter().position(|&b| b == b'4').unwrap_or(0);
        t[at] = b'5'; // guest 104 -> 105
        Ok(lab.verdict(&t, &s, None))
    })();
    lab.record(
        "tampered payload (guest 104 -> 105)",
        rejected(BadSignature),
        got,
    );
    let got = (|| {
        let p = doc.to_bytes();
        let s = lab.sign(&alice, OP_NAMESPACE, &p)?;
        Ok(lab.verdict(&p, &flip_signature_byte(&s)?, None))
    })();
    lab.record(
        "tampered signature (last signature byte)",
        rejected(BadSignature),
        got,
    );
    let got = (|| {
        let p = doc.to_bytes();
        let s = lab.sign(&alice, OP_NAMESPACE, &p)?;
        let cut = s.len() / 2;
        Ok(lab.verdict(&p, &s[..cut], None))
    })();
    lab.record("truncated armor", rejected(MalformedSignature), got);
    let got = (|| {
        let p = doc.to_bytes();
        let s = lab.sign(&alice, OP_NAMESPACE, &p)?;
        Ok(lab.verdict(&p, &rewrap(&s, 64, "\r\n")?, None))
    })();
    lab.record(
        "armor re-wrapped at 64 columns with CRLF",
        Verdict::Accepted,
        got,
    );
    lab.signed_case(
        "wrong namespace (file)",
        rejected(Namespace),
        alice.clone(),
        "file",
        &doc,
    );
    let mallory = lab.stranger.private.clone();
    lab.signed_case(
        "unknown signer",
        rejected(UnknownSigner),
        mallory,
        OP_NAMESPACE,
        &doc,
    );
    lab.signed_case(
        "recovery key in the op namespace",
        rejected(UnknownSigner),
        vault,
        OP_NAMESPACE,
        &doc,
    );
    let retired = lab.retired.private.clone();
    lab.signed_case(
        "trust line expired (valid-before in the past)",
        rejected(UnknownSigner),
        retired,
        OP_NAMESPACE,
        &doc,
    );

    // Op payload and window.
    lab.group = "Op payload, target and time window";
    let now = lab.now;
    let mut d = lab.doc()?;
    d.not_before = rfc3339(now - Duration::hours(2))?;
    d.not_after = rfc3339(now - Duration::hours(1))?;
    lab.signed_case(
        "expired op",
        rejected(Expired),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.not_before = rfc3339(now + Duration::hours(1))?;
    d.not_after = rfc3339(now + Duration::hours(2))?;
    lab.signed_case(
        "not-yet-valid op",
        rejected(NotYetValid),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.host = "pve-b".into();
    lab.signed_case(
        "wrong host",
        rejected(Target),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.extra = r#","comment":"trust me""#.into();
    lab.signed_case(
        "unknown field",
        rejected(MalformedOp),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.extra = r#","host":"pve-b""#.into();
    lab.signed_case(
        "duplicate key (top level)",
        rejected(MalformedOp),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.params = r#"{"purge":false,"purge":true}"#.into();
    lab.signed_case(
        "duplicate key (inside params)",
        rejected(MalformedOp),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.nonce = "AAAAAAAAAAAAAAAAAAAA".into(); // 120 bits
    lab.signed_case(
        "short nonce (120 bits)",
        rejected(MalformedOp),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.not_before = rfc3339(now - Duration::minutes(5))?;
    d.not_after = rfc3339(now + Duration::hours(25))?;
    lab.signed_case(
        "over-long window (25 h)",
        rejected(MalformedOp),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.params = format!(r#"{{"pad":"{}"}}"#, "x".repeat(65 * 1024));
    lab.signed_case(
        "oversized payload (65 KiB)",
        rejected(MalformedOp),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );
    let mut d = lab.doc()?;
    d.not_after = d.not_after.replace('Z', "+00:30");
    lab.signed_case(
        "window not in UTC",
        rejected(MalformedOp),
        alice.clone(),
        OP_NAMESPACE,
        &d,
    );

    // Replay: the first presentation is verified and its nonce consumed, the second is refused.
    lab.group = "Nonces and replay";
    let got = (|| {
        let p = doc.to_bytes();
        let s = lab.sign(&alice, OP_NAMESPACE, &p)?;
        let store = MemoryNonceStore::new();
        let first = lab.verifier.verify(&p, &s, lab.now, &store)?;
        first.consume_nonce(&store)?;
        Ok(lab.verdict(&p, &s, Some(&store)))
    })();
    lab.record("replayed nonce", rejected(Replay), got);

    // Certificates.
    lab.group = "Certificates";
    let valid = format!(
        "{}:{}",
        openssh_time(now - Duration::minutes(5)),
        openssh_time(now + Duration::hours(1))
    );
    let expired = format!(
        "{}:{}",
        openssh_time(now - Duration::hours(2)),
        openssh_time(now - Duration::hours(1))
    );
    lab.cert_case(
        "certificate from a listed CA",
        Verdict::Accepted,
        &["bob@steward.test"],
        &valid,
        false,
        &[],
    );
    lab.cert_case(
        "certificate expired",
        rejected(UnknownSigner),
        &["bob@steward.test"],
        &expired,
        false,
        &[],
    );
    lab.cert_case(
        "host certificate instead of user",
        rejected(UnknownSigner),
        &["bob@steward.test"],
        &valid,
        true,
        &[],
    );
    lab.cert_case(
        "certificate principal not admitted by the line",
        rejected(UnknownSigner),
        &["bob@elsewhere.test"],
        &valid,
        false,
        &[],
    );
    lab.cert_case(
        "certificate principal negated by the line",
        rejected(UnknownSigner),
        &["eve@steward.test"],
        &valid,
        false,
        &[],
    );
    lab.cert_case(
        "certificate with no principals",
        rejected(UnknownSigner),
        &[],
        &valid,
        false,
        &[],
    );
    lab.cert_case(
        "certificate with unknown critical option",
        rejected(UnknownSigner),
        &["bob@steward.test"],
        &valid,
        false,
        &["force-command=/bin/true"],
    );

    // Trust-store load refusals (fail closed, naming the line).
    lab.group = "Trust store: refused whole at load";
    let k = lab.ed25519().public_line.clone();
    lab.load_case("trust line admitting both namespaces", format!("x {k}\n"));
    lab.load_case(
        "trust line admitting no Steward namespace",
        format!("x namespaces=\"file\" {k}\n"),
    );
    lab.load_case(
        "trust line with an unknown option",
        format!("x namespaces=\"op@steward\",octopus {k}\n"),
    );
    lab.load_case(
        "one key in two roles",
        format!("x namespaces=\"op@steward\" {k}\ny namespaces=\"recovery@steward\" {k}\n"),
    );
    let weak = lab.kg.key(KeyType::Rsa(1024), "weak")?;
    lab.load_case(
        "RSA-1024 key in the trust store",
        format!("x namespaces=\"op@steward\" {}\n", weak.public_line),
    );

    // OpenSSH's own vectors, through the signature step (namespace `unittest`).
    lab.group = "OpenSSH's own vectors";
    vectors(&mut lab);

    // The gate: classification, role scoping, binding, nonces across restarts, rotation.
    lab.gate_group(
        "Gate: classification, roles, binding, replay across restarts, rotation",
        crate::matrix_gate::run()?,
    );

    lab.gate_group(
        "Engine: held ops superseded, a delta and a job, replay across a restart",
        crate::matrix_engine::run()?,
    );

    lab.gate_group(
        "m-of-n: distinct keys, counted as TUF counts them",
        crate::matrix_mofn::run()?,
    );

    let total = lab.rows.len();
    let failed = lab.rows.iter().filter(|r| r.expected != r.got).count();
    let rows: Vec<Vec<String>> = lab
        .rows
        .iter()
        .map(|r| {
            vec![
                r.case.clone(),
                r.expected.to_string(),
                r.got.to_string(),
                if r.expected == r.got {
                    "ok"
                } else {
                    "SURPRISE"
                }
                .to_string(),
                r.detail.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        table::render(&["case", "expected", "got", "", "detail"], &rows)
    );
    println!();
    println!(
        "matrix: {total} cases, {} as expected, {failed} surprises (trust store: {} lines)",
        total - failed,
        lab.signers_text.lines().count()
    );
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/matrix.md");
    let table = docs_table(&lab.rows);
    let docs_current = if write_docs {
        std::fs::write(&docs, &table)?;
        println!("wrote {}", docs.display());
        true
    } else if std::fs::read_to_string(&docs).ok().as_deref() == Some(table.as_str()) {
        true
    } else {
        println!("docs/matrix.md does not list these cases: run `cargo xtask matrix --write-docs`");
        false
    };
    Ok(failed == 0 && docs_current)
}

fn vectors(lab: &mut Lab) {
    let dir = steward_testkit::sshsig_vectors_dir();
    let cases = [
        ("ed25519_sk", Verdict::Accepted),
        ("ecdsa_sk", Verdict::Accepted),
        ("rsa", Verdict::Accepted),
        (
            "ecdsa_sk_webauthn",
            Verdict::Rejected(Reason::UnsupportedAlgorithm),
        ),
        (
            "mldsa44-ed25519",
            Verdict::Rejected(Reason::UnsupportedAlgorithm),
        ),
    ];
    for (name, expected) in cases {
        let got = (|| {
            let msg = std::fs::read(dir.join("signed-data"))?;
            let ns = std::fs::read_to_string(dir.join("namespace"))?;
            let armored = std::fs::read(dir.join(format!("{name}.sig")))?;
            let parsed = match sig::parse(&armored) {
                Ok(p) => p,
                Err(r) => return Ok((Verdict::Rejected(r.reason), r.detail)),
            };
            let key_data = parsed.public_key().clone();
            Ok(
                match sig::verify_crypto(&parsed, &key_data, &ns, &msg, false) {
                    Ok(()) => (
                        Verdict::Accepted,
                        format!("{} signature", parsed.algorithm()),
                    ),
                    Err(r) => (Verdict::Rejected(r.reason), r.detail),
                },
            )
        })();
        lab.record(
            format!("OpenSSH vector {name}.sig (signature step)"),
            expected,
            got,
        );
    }
}

/// Flips the last byte of the inner signature (the end of the SSHSIG blob).
fn flip_signature_byte(armored: &[u8]) -> Result<Vec<u8>> {
    let mut blob = decode(armored)?;
    let last = blob.len() - 1;
    blob[last] ^= 0x01;
    Ok(encode(&blob, 70, "\n"))
}

fn rewrap(armored: &[u8], width: usize, eol: &str) -> Result<Vec<u8>> {
    Ok(encode(&decode(armored)?, width, eol))
}
