//! OpenSSH's own SSHSIG unit-test vectors (`tests/data/openssh-sshsig`, see its README):
//! each expected-valid signature verifies through authz's signature step for the manifest's
//! message and namespace and carries the key of its `.pub`; webauthn and the post-quantum hybrid
//! are `unsupported_algorithm`; the derived negatives fail.

// Test scaffolding: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ssh_key::PublicKey;
use std::path::PathBuf;
use steward_authz::{sig, Reason};

fn dir() -> PathBuf {
    steward_testkit::sshsig_vectors_dir()
}

fn read(name: &str) -> Vec<u8> {
    let p = dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn public(name: &str) -> PublicKey {
    PublicKey::from_openssh(
        std::str::from_utf8(&read(&format!("{name}.pub")))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

fn namespace() -> String {
    String::from_utf8(read("namespace")).unwrap()
}

const VALID: [&str; 5] = ["rsa", "ecdsa", "ed25519", "ecdsa_sk", "ed25519_sk"];

#[test]
fn manifest_facts_hold() {
    assert_eq!(read("signed-data"), b"This is a test, this is only a test");
    assert_eq!(namespace(), "unittest");
}

#[test]
fn expected_valid_vectors_verify_with_their_own_key() {
    let msg = read("signed-data");
    let ns = namespace();
    for name in VALID {
        let parsed =
            sig::parse(&read(&format!("{name}.sig"))).unwrap_or_else(|r| panic!("{name}: {r}"));
        let key = public(name);
        assert_eq!(
            parsed.public_key(),
            key.key_data(),
            "{name}: embedded key differs from {name}.pub"
        );
        sig::verify_crypto(&parsed, key.key_data(), &ns, &msg, false)
            .unwrap_or_else(|r| panic!("{name}: {r}"));
    }
}

#[test]
fn derived_negatives_fail() {
    let msg = read("signed-data");
    for name in VALID {
        let parsed = sig::parse(&read(&format!("{name}.sig"))).unwrap();
        let key = public(name);
        let r = sig::verify_crypto(&parsed, key.key_data(), "Unittest", &msg, false).unwrap_err();
        assert_eq!(r.reason, Reason::Namespace, "{name}");
        let r = sig::verify_crypto(
            &parsed,
            key.key_data(),
            &namespace(),
            b"another message",
            false,
        )
        .unwrap_err();
        assert_eq!(r.reason, Reason::BadSignature, "{name}");
        let other = public(if name == "ed25519" {
            "ecdsa"
        } else {
            "ed25519"
        });
        assert!(
            sig::verify_crypto(&parsed, other.key_data(), &namespace(), &msg, false).is_err(),
            "{name}"
        );
    }
}

#[test]
fn webauthn_and_post_quantum_are_unsupported() {
    for name in ["ecdsa_sk_webauthn", "mldsa44-ed25519"] {
        let r = sig::parse(&read(&format!("{name}.sig"))).unwrap_err();
        assert_eq!(r.reason, Reason::UnsupportedAlgorithm, "{name}: {r}");
    }
}
