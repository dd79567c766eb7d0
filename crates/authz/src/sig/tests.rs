//! Tests of SSHSIG parsing and verification.

use super::*;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};
use ssh_key::encoding::Encode;
use ssh_key::public::{Ed25519PublicKey, SkEd25519};
use ssh_key::{LineEnding, Signature};

const NS: &str = "op@steward";
const MSG: &[u8] = b"{\"v\":1}";

/// A security-key Ed25519 signature made the way an authenticator makes one, with the given
/// flags: the test's stand-in for hardware (ssh-keygen needs a real token to make these).
fn sk_ed25519_sig(flags: u8) -> (SshSig, KeyData) {
    let sk = SigningKey::from_bytes(&[7u8; 32]);
    let key = KeyData::SkEd25519(SkEd25519::new(
        Ed25519PublicKey(sk.verifying_key().to_bytes()),
        "ssh:",
    ));
    let signed = SshSig::signed_data(NS, HashAlg::Sha512, MSG).unwrap();
    let counter = 42u32.to_be_bytes();
    let mut authenticator_data = Sha256::digest(b"ssh:").to_vec();
    authenticator_data.push(flags);
    authenticator_data.extend(counter);
    authenticator_data.extend(Sha256::digest(&signed));
    let mut data = sk.sign(&authenticator_data).to_bytes().to_vec();
    data.push(flags);
    data.extend(counter);
    let sig = Signature::new(Algorithm::SkEd25519, data).unwrap();
    (
        SshSig::new(key.clone(), NS, HashAlg::Sha512, sig).unwrap(),
        key,
    )
}

fn armor(sig: &SshSig) -> Vec<u8> {
    sig.to_pem(LineEnding::LF).unwrap().into_bytes()
}

#[test]
fn security_key_signature_needs_user_presence() {
    let (good, key) = sk_ed25519_sig(0x01);
    let parsed = parse(&armor(&good)).unwrap();
    verify_crypto(&parsed, &key, NS, MSG, false).unwrap();

    let (no_touch, key) = sk_ed25519_sig(0x00);
    let parsed = parse(&armor(&no_touch)).unwrap();
    let r = verify_crypto(&parsed, &key, NS, MSG, false).unwrap_err();
    assert_eq!(r.reason, Reason::BadSignature);
    assert!(r.detail.contains("user presence"), "{r}");
}

#[test]
fn verify_required_demands_the_uv_flag() {
    let (present_only, key) = sk_ed25519_sig(0x01);
    let r = verify_crypto(&present_only, &key, NS, MSG, true).unwrap_err();
    assert_eq!(r.reason, Reason::BadSignature);
    let (verified, key) = sk_ed25519_sig(0x05);
    verify_crypto(&verified, &key, NS, MSG, true).unwrap();
}

#[test]
fn flags_are_covered_by_the_signature() {
    let (sig, key) = sk_ed25519_sig(0x01);
    let mut data = sig.signature().as_bytes().to_vec();
    let at = data.len() - 5;
    data[at] = 0x05;
    let forged = SshSig::new(
        key.clone(),
        NS,
        HashAlg::Sha512,
        Signature::new(Algorithm::SkEd25519, data).unwrap(),
    )
    .unwrap();
    let r = verify_crypto(&forged, &key, NS, MSG, false).unwrap_err();
    assert_eq!(r.reason, Reason::BadSignature);
}

/// Builds an SSHSIG blob field by field, so fields the crate would never write can be tested.
fn blob(key: &KeyData, ns: &str, reserved: &[u8], hash: &str, sig: &Signature) -> Vec<u8> {
    let mut out = b"SSHSIG".to_vec();
    1u32.encode(&mut out).unwrap();
    key.encode_prefixed(&mut out).unwrap();
    ns.encode(&mut out).unwrap();
    reserved.encode(&mut out).unwrap();
    hash.encode(&mut out).unwrap();
    sig.encode_prefixed(&mut out).unwrap();
    out
}

fn armor_blob(b: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(b);
    format!("-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----\n").into_bytes()
}

#[test]
fn blob_builder_round_trips_a_real_signature() {
    let (sig, key) = sk_ed25519_sig(0x01);
    let b = blob(&key, NS, &[], "sha512", sig.signature());
    let parsed = parse(&armor_blob(&b)).unwrap();
    verify_crypto(&parsed, &key, NS, MSG, false).unwrap();
}

#[test]
fn a_non_empty_reserved_field_is_malformed() {
    let (sig, key) = sk_ed25519_sig(0x01);
    let b = blob(&key, NS, b"x", "sha512", sig.signature());
    let r = parse(&armor_blob(&b)).unwrap_err();
    assert_eq!(r.reason, Reason::MalformedSignature);
    assert!(r.detail.contains("reserved"), "{r}");
}

#[test]
fn sha1_rsa_signatures_are_unsupported_whatever_the_features() {
    let kg = steward_testkit::Keygen::new().unwrap();
    let k = kg.key(steward_testkit::KeyType::Rsa(2048), "r").unwrap();
    let key = ssh_key::PublicKey::from_openssh(&k.public_line).unwrap();
    let fake = Signature::new(Algorithm::Rsa { hash: None }, vec![1u8; 256]).unwrap();
    let b = blob(key.key_data(), NS, &[], "sha512", &fake);
    let r = parse(&armor_blob(&b)).unwrap_err();
    assert_eq!(r.reason, Reason::UnsupportedAlgorithm, "{r}");
    assert!(r.detail.contains("ssh-rsa"), "{r}");
}

#[test]
fn short_rsa_keys_are_unsupported_even_when_the_signature_is_good() {
    let kg = steward_testkit::Keygen::new().unwrap();
    let k = kg.key(steward_testkit::KeyType::Rsa(1024), "weak").unwrap();
    let armored = kg.sign(&k.private, NS, MSG).unwrap();
    let sig = parse(&armored).unwrap();
    let r = verify_crypto(&sig, sig.public_key(), NS, MSG, false).unwrap_err();
    assert_eq!(r.reason, Reason::UnsupportedAlgorithm);
    assert!(r.detail.contains("1024"), "{r}");
}

#[test]
fn real_ssh_keygen_signatures_verify_and_tampering_fails() {
    let kg = steward_testkit::Keygen::new().unwrap();
    let k = kg.key(steward_testkit::KeyType::Ed25519, "e").unwrap();
    let armored = kg.sign(&k.private, NS, MSG).unwrap();
    let sig = parse(&armored).unwrap();
    verify_crypto(&sig, sig.public_key(), NS, MSG, false).unwrap();
    let r = verify_crypto(&sig, sig.public_key(), NS, b"{\"v\":2}", false).unwrap_err();
    assert_eq!(r.reason, Reason::BadSignature);
    let r = verify_crypto(&sig, sig.public_key(), "recovery@steward", MSG, false).unwrap_err();
    assert_eq!(r.reason, Reason::Namespace);
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    for g in [
        &b""[..],
        b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
        b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n",
    ] {
        assert_eq!(parse(g).unwrap_err().reason, Reason::MalformedSignature);
    }
}

#[test]
fn a_relabelled_security_key_signature_does_not_skip_the_flag_check() {
    // An sk signature without user presence, its label changed to RSA: the label is unsigned.
    let (no_touch, key) = sk_ed25519_sig(0x00);
    for label in [
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Ed25519,
    ] {
        let Ok(relabelled) =
            Signature::new(label.clone(), no_touch.signature().as_bytes().to_vec())
        else {
            continue; // the crate refuses this length for this label: nothing to relabel
        };
        let b = blob(&key, NS, &[], "sha512", &relabelled);
        let r = match parse(&armor_blob(&b)) {
            Ok(sig) => verify_crypto(&sig, &key, NS, MSG, false).unwrap_err(),
            Err(r) => r,
        };
        assert_ne!(r.reason, Reason::MalformedOp);
        assert!(
            matches!(r.reason, Reason::BadSignature | Reason::MalformedSignature),
            "{label:?}: {r}"
        );
    }
    // And the RSA relabel does reach verify_crypto (so the test exercises the new check).
    let rsa = Signature::new(
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        no_touch.signature().as_bytes().to_vec(),
    )
    .unwrap();
    let sig = parse(&armor_blob(&blob(&key, NS, &[], "sha512", &rsa))).unwrap();
    let r = verify_crypto(&sig, &key, NS, MSG, false).unwrap_err();
    assert_eq!(r.reason, Reason::BadSignature);
    assert!(r.detail.contains("cannot come from"), "{r}");
}

#[test]
fn rsa_size_counts_real_bits_not_bytes() {
    use ssh_key::public::RsaPublicKey;
    use ssh_key::Mpint;
    // A 2047-bit modulus: 256 bytes whose top bit is clear. key_size() would say 2048.
    let mut n = vec![0x7fu8];
    n.extend(vec![0xffu8; 255]);
    let key = RsaPublicKey::new(
        Mpint::from_positive_bytes(&[1, 0, 1]),
        Mpint::from_positive_bytes(&n),
    );
    let key = key.unwrap();
    assert_eq!(key.key_size(), 2048, "premise: the crate rounds to bytes");
    let r = check_key_strength(&KeyData::Rsa(key)).unwrap_err();
    assert_eq!(r.reason, Reason::UnsupportedAlgorithm);
    assert!(r.detail.contains("2047"), "{r}");
    let mut n = vec![0x80u8];
    n.extend(vec![0xffu8; 255]);
    let key = RsaPublicKey::new(
        Mpint::from_positive_bytes(&[1, 0, 1]),
        Mpint::from_positive_bytes(&n),
    )
    .unwrap();
    check_key_strength(&KeyData::Rsa(key)).unwrap();
}
