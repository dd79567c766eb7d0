//! The locked pipeline end to end, with keys, certificates and signatures minted by the real
//! `ssh-keygen`: every reason code, the order of the steps, and the nonce discipline.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use std::sync::OnceLock;
use steward_authz::{
    MemoryNonceStore, Reason, Role, TrustStore, Verifier, VerifyConfig, OP_NAMESPACE,
    RECOVERY_NAMESPACE,
};
use steward_testkit::{CertSpec, Key, KeyType, Keygen, OpDoc};
use time::macros::datetime;
use time::OffsetDateTime;

const HOST: &str = "pve-a";
const NB: &str = "2026-11-22T15:00:00Z";
const NA: &str = "2026-11-22T15:30:00Z";
const NOW: OffsetDateTime = datetime!(2026-11-22 15:10:00 UTC);

struct World {
    kg: Keygen,
    op: Key,
    recovery: Key,
    stranger: Key,
    ca: Key,
    verifier: Verifier,
}

fn world() -> World {
    let kg = Keygen::new().unwrap();
    let op = kg.key(KeyType::Ed25519, "alice").unwrap();
    let recovery = kg.key(KeyType::EcdsaP256, "vault").unwrap();
    let stranger = kg.key(KeyType::Ed25519, "mallory").unwrap();
    let ca = kg.key(KeyType::Ed25519, "ca").unwrap();
    let text = format!(
        "# test trust store\n\
         alice@steward.test namespaces=\"{OP_NAMESPACE}\" {}\n\
         vault@steward.test namespaces=\"{RECOVERY_NAMESPACE}\" {}\n\
         *@steward.test,!eve@steward.test cert-authority,namespaces=\"{OP_NAMESPACE}\" {}\n",
        op.public_line, recovery.public_line, ca.public_line
    );
    let store = TrustStore::parse("allowed_signers", text.as_bytes()).unwrap();
    World {
        kg,
        op,
        recovery,
        stranger,
        ca,
        verifier: Verifier::new(store, VerifyConfig::new(HOST)).unwrap(),
    }
}

fn doc() -> OpDoc {
    OpDoc::destroy(HOST, 104, NB, NA)
}

impl World {
    fn sign(&self, key: &Key, ns: &str, payload: &[u8]) -> Vec<u8> {
        self.kg.sign(&key.private, ns, payload).unwrap()
    }

    fn reason(&self, payload: &[u8], sig: &[u8], now: OffsetDateTime) -> Reason {
        let store = MemoryNonceStore::new();
        self.verifier
            .verify(payload, sig, now, &store)
            .expect_err("should be rejected")
            .reason
    }
}

#[test]
fn a_good_op_verifies_with_its_facts() {
    let w = world();
    let payload = doc().to_bytes();
    let sig = w.sign(&w.op, OP_NAMESPACE, &payload);
    let store = MemoryNonceStore::new();
    let v = w.verifier.verify(&payload, &sig, NOW, &store).unwrap();
    assert_eq!(v.principal, "alice@steward.test");
    assert_eq!(v.role, Role::Operational);
    assert_eq!(
        (
            v.payload.op.as_str(),
            v.payload.host.as_str(),
            v.payload.guest
        ),
        ("guest.destroy", HOST, Some(104))
    );
    assert_eq!(v.trust_line, 2);
    assert!(v.key_fingerprint.starts_with("SHA256:"));
    // Consumed only on request, once.
    v.consume_nonce(&store).unwrap();
    assert_eq!(v.consume_nonce(&store).unwrap_err().reason, Reason::Replay);
    assert_eq!(
        w.verifier
            .verify(&payload, &sig, NOW, &store)
            .unwrap_err()
            .reason,
        Reason::Replay
    );
}

#[test]
fn each_step_has_its_reason() {
    let w = world();
    let payload = doc().to_bytes();
    let good = w.sign(&w.op, OP_NAMESPACE, &payload);

    assert_eq!(
        w.reason(&payload, b"not a signature", NOW),
        Reason::MalformedSignature
    );
    let file_ns = w.sign(&w.op, "file", &payload);
    assert_eq!(w.reason(&payload, &file_ns, NOW), Reason::Namespace);
    let stranger = w.sign(&w.stranger, OP_NAMESPACE, &payload);
    assert_eq!(w.reason(&payload, &stranger, NOW), Reason::UnknownSigner);
    // A recovery key is listed only for recovery@steward.
    let rec_in_op = w.sign(&w.recovery, OP_NAMESPACE, &payload);
    assert_eq!(w.reason(&payload, &rec_in_op, NOW), Reason::UnknownSigner);
    let mut tampered = payload.clone();
    tampered[10] ^= 0x01;
    assert_eq!(w.reason(&tampered, &good, NOW), Reason::BadSignature);

    let mut unknown = doc();
    unknown.extra = r#","why":"because""#.into();
    let p = unknown.to_bytes();
    assert_eq!(
        w.reason(&p, &w.sign(&w.op, OP_NAMESPACE, &p), NOW),
        Reason::MalformedOp
    );

    let mut other_host = doc();
    other_host.host = "pve-b".into();
    let p = other_host.to_bytes();
    assert_eq!(
        w.reason(&p, &w.sign(&w.op, OP_NAMESPACE, &p), NOW),
        Reason::Target
    );

    assert_eq!(
        w.reason(&payload, &good, datetime!(2026-11-22 14:57:59 UTC)),
        Reason::NotYetValid
    );
    assert_eq!(
        w.reason(&payload, &good, datetime!(2026-11-22 15:32:01 UTC)),
        Reason::Expired
    );
}

#[test]
fn skew_is_honoured_at_both_ends() {
    let w = world();
    let payload = doc().to_bytes();
    let sig = w.sign(&w.op, OP_NAMESPACE, &payload);
    for ok in [
        datetime!(2026-11-22 14:58:00 UTC),
        datetime!(2026-11-22 15:32:00 UTC),
    ] {
        w.verifier.verify_offline(&payload, &sig, ok).unwrap();
    }
}

#[test]
fn steps_run_in_the_locked_order() {
    let w = world();
    // Wrong host and expired, signed by a stranger: the allow-list speaks first.
    let mut bad = doc();
    bad.host = "pve-b".into();
    let p = bad.to_bytes();
    let late = datetime!(2027-01-01 00:00:00 UTC);
    assert_eq!(
        w.reason(&p, &w.sign(&w.stranger, OP_NAMESPACE, &p), late),
        Reason::UnknownSigner
    );
    // Listed key, but tampered bytes: crypto before anything the payload says.
    let sig = w.sign(&w.op, OP_NAMESPACE, &p);
    let mut t = p.clone();
    t.push(b' ');
    assert_eq!(w.reason(&t, &sig, late), Reason::BadSignature);
    // Intact: target before time.
    assert_eq!(w.reason(&p, &sig, late), Reason::Target);
    // Wrong namespace before unknown signer.
    assert_eq!(
        w.reason(&p, &w.sign(&w.stranger, "git", &p), late),
        Reason::Namespace
    );
}

#[test]
fn recovery_keys_verify_in_their_own_namespace() {
    let w = world();
    let mut d = doc();
    d.op = "keys.rotate".into();
    d.guest = None;
    d.params = "{}".into();
    let p = d.to_bytes();
    let sig = w.sign(&w.recovery, RECOVERY_NAMESPACE, &p);
    let v = w.verifier.verify_offline(&p, &sig, NOW).unwrap();
    assert_eq!(
        (v.role, v.principal.as_str()),
        (Role::Recovery, "vault@steward.test")
    );
}

fn cert(w: &World, principals: &[&str], validity: &str, host: bool, options: &[&str]) -> Vec<u8> {
    let subject = w.kg.key(KeyType::Ed25519, "bob").unwrap();
    let cert =
        w.kg.certify(
            &w.ca,
            &subject,
            &CertSpec {
                identity: "bob",
                principals,
                validity,
                host,
                options,
            },
        )
        .unwrap();
    w.kg.sign(&cert, OP_NAMESPACE, &doc_bytes()).unwrap()
}

fn doc_bytes() -> Vec<u8> {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| doc().to_bytes()).clone()
}

const CERT_VALID: &str = "20261122000000:20261123000000";

#[test]
fn certificates_from_a_listed_ca() {
    let w = world();
    let p = doc_bytes();
    let good = cert(&w, &["bob@steward.test"], CERT_VALID, false, &[]);
    let v = w.verifier.verify_offline(&p, &good, NOW).unwrap();
    assert_eq!(
        (v.principal.as_str(), v.role, v.trust_line),
        ("bob@steward.test", Role::Operational, 4)
    );

    let cases: [(&str, Vec<u8>); 5] = [
        (
            "expired",
            cert(&w, &["bob@steward.test"], "20200101:20200102", false, &[]),
        ),
        (
            "host certificate",
            cert(&w, &["bob@steward.test"], CERT_VALID, true, &[]),
        ),
        (
            "principal not admitted",
            cert(&w, &["bob@elsewhere"], CERT_VALID, false, &[]),
        ),
        (
            "negated principal",
            cert(&w, &["eve@steward.test"], CERT_VALID, false, &[]),
        ),
        (
            "unknown critical option",
            cert(
                &w,
                &["bob@steward.test"],
                CERT_VALID,
                false,
                &["force-command=/bin/true"],
            ),
        ),
    ];
    for (what, sig) in cases {
        let r = w.verifier.verify_offline(&p, &sig, NOW).unwrap_err();
        assert_eq!(r.reason, Reason::UnknownSigner, "{what}: {r}");
    }
    let no_principals = cert(&w, &[], CERT_VALID, false, &[]);
    let r = w
        .verifier
        .verify_offline(&p, &no_principals, NOW)
        .unwrap_err();
    assert_eq!(r.reason, Reason::UnknownSigner);
    assert!(r.detail.contains("no principal"), "{r}");
}

#[test]
fn a_certificate_never_matches_a_plain_line_for_its_own_key() {
    let w = world();
    // Certify alice's own op key with an unlisted CA: the plain line for that key must not admit.
    let other_ca = w.kg.key(KeyType::Ed25519, "rogue-ca").unwrap();
    let c =
        w.kg.certify(
            &other_ca,
            &w.op,
            &CertSpec {
                identity: "alice",
                principals: &["alice@steward.test"],
                validity: CERT_VALID,
                host: false,
                options: &[],
            },
        )
        .unwrap();
    let p = doc_bytes();
    let sig = w.kg.sign(&c, OP_NAMESPACE, &p).unwrap();
    let r = w.verifier.verify_offline(&p, &sig, NOW).unwrap_err();
    assert_eq!(r.reason, Reason::UnknownSigner);
}

struct Signed {
    w: World,
    payload: Vec<u8>,
    blob: Vec<u8>,
}

fn signed() -> &'static Signed {
    static S: OnceLock<Signed> = OnceLock::new();
    S.get_or_init(|| {
        let w = world();
        let payload = doc().to_bytes();
        let armored = w.sign(&w.op, OP_NAMESPACE, &payload);
        let blob = decode_armor(&armored);
        Signed { w, payload, blob }
    })
}

fn decode_armor(armored: &[u8]) -> Vec<u8> {
    steward_testkit::decode_armor(armored).unwrap()
}

fn encode_armor(blob: &[u8]) -> Vec<u8> {
    steward_testkit::encode_armor(blob, 70, "\n")
}

#[test]
fn the_unchanged_fixture_verifies() {
    let s = signed();
    s.w.verifier
        .verify_offline(&s.payload, &encode_armor(&s.blob), NOW)
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_single_byte_change_of_the_payload_never_verifies(i in any::<prop::sample::Index>(), x in 1u8..=255) {
        let s = signed();
        let mut p = s.payload.clone();
        let at = i.index(p.len());
        p[at] ^= x;
        prop_assert!(s.w.verifier.verify_offline(&p, &encode_armor(&s.blob), NOW).is_err());
    }

    #[test]
    fn any_single_byte_change_of_the_signature_never_verifies(i in any::<prop::sample::Index>(), x in 1u8..=255) {
        let s = signed();
        let mut b = s.blob.clone();
        let at = i.index(b.len());
        b[at] ^= x;
        prop_assert!(s.w.verifier.verify_offline(&s.payload, &encode_armor(&b), NOW).is_err());
    }
}

#[test]
fn configuration_out_of_bounds_is_refused() {
    let store = world().verifier.trust_store().clone();
    for (skew, ttl) in [
        (-1, 3600),
        (3601, 3600),
        (120, 0),
        (120, 31 * 86400),
        (i64::MAX, i64::MAX),
    ] {
        let c = VerifyConfig {
            host: HOST.into(),
            skew_secs: skew,
            max_ttl_secs: ttl,
        };
        assert!(
            Verifier::new(store.clone(), c).is_err(),
            "skew {skew} ttl {ttl}"
        );
    }
}

#[test]
fn windows_at_the_edge_of_time_fail_closed_without_panicking() {
    let w = world();
    let mut d = doc();
    d.not_before = "9999-12-31T23:00:00Z".into();
    d.not_after = "9999-12-31T23:59:59Z".into();
    let p = d.to_bytes();
    let sig = w.sign(&w.op, OP_NAMESPACE, &p);
    let r = w
        .verifier
        .verify_offline(&p, &sig, datetime!(9999-12-31 23:30:00 UTC))
        .unwrap_err();
    assert_eq!(r.reason, Reason::MalformedOp, "{r}");
}

#[test]
fn the_nonce_is_kept_past_the_last_admitting_instant() {
    let w = world();
    let mut d = doc();
    d.not_after = "2026-11-22T15:30:00.5Z".into();
    let p = d.to_bytes();
    let sig = w.sign(&w.op, OP_NAMESPACE, &p);
    let v = w.verifier.verify_offline(&p, &sig, NOW).unwrap();
    let last = datetime!(2026-11-22 15:32:00.5 UTC).unix_timestamp();
    assert!(
        v.nonce_keep_until > last,
        "{} <= {last}",
        v.nonce_keep_until
    );
}

#[test]
fn the_nonce_outlives_every_skew_a_verifier_may_be_configured_with() {
    let w = world();
    // A verifier configured with no skew at all still keeps the nonce for the largest skew any
    // configuration may set: a skew raised later must not revive it.
    let strict = Verifier::new(
        w.verifier.trust_store().clone(),
        VerifyConfig {
            skew_secs: 0,
            ..w.verifier.config().clone()
        },
    )
    .unwrap();
    let p = doc().to_bytes();
    let sig = w.sign(&w.op, OP_NAMESPACE, &p);
    let v = strict.verify_offline(&p, &sig, NOW).unwrap();
    let not_after = v.payload.not_after.unix_timestamp();
    assert!(
        v.nonce_keep_until > not_after + steward_authz::MAX_SKEW_SECS,
        "{} <= {} + {}",
        v.nonce_keep_until,
        not_after,
        steward_authz::MAX_SKEW_SECS
    );
}

#[test]
fn an_oversized_payload_is_refused_before_it_is_hashed() {
    let w = world();
    // Signed bytes over the limit, with a signature over *other* bytes: if the size were checked
    // only after the crypto step, this would be `bad_signature`.
    let big = vec![b' '; steward_authz::MAX_PAYLOAD_BYTES + 1];
    let sig = w.sign(&w.op, OP_NAMESPACE, b"something else");
    assert_eq!(
        w.reason(&big, &sig, NOW),
        steward_authz::Reason::MalformedOp
    );
}
