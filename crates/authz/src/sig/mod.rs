//! The signature half of the pipeline: decode armored SSHSIG (step 0), and the crypto step with
//! the policy checks `ssh-key` leaves to its caller (SHA-1 RSA, short RSA keys, the reserved field,
//! security-key user presence, certificate `verify-required`). It must never sign, and never
//! re-implement a primitive: all cryptography is `ssh-key`'s.

mod armor;
mod peek;

pub use armor::{normalize, ArmorError};

use crate::reason::{Reason, Rejection};
use ssh_key::{public::KeyData, Algorithm, EcdsaCurve, HashAlg, PublicKey, SshSig};

/// The smallest RSA modulus Steward accepts, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// Security-key flag: the user touched the authenticator.
const SK_USER_PRESENT: u8 = 0x01;
/// Security-key flag: the authenticator verified the user (PIN or biometric).
const SK_USER_VERIFIED: u8 = 0x04;

/// Decodes an armored signature, refusing what Steward cannot or will not verify.
///
/// Reasons: `malformed_signature` (armor, wire format, non-empty reserved field) and
/// `unsupported_algorithm` (a key or signature type outside Steward's list).
pub fn parse(armored: &[u8]) -> Result<SshSig, Rejection> {
    let canonical = normalize(armored)
        .map_err(|e| Rejection::new(Reason::MalformedSignature, e.to_string()))?;
    let sig = match SshSig::from_pem(&canonical) {
        Ok(sig) => sig,
        Err(e) => {
            // The crate cannot decode some types at all (webauthn fails as trailing data):
            // name the type when we can find it, so the operator learns why.
            if let Some(name) = peek::unsupported_algorithm(&canonical) {
                return Err(Rejection::new(
                    Reason::UnsupportedAlgorithm,
                    format!("signature algorithm {name} is not supported"),
                ));
            }
            return Err(Rejection::new(
                Reason::MalformedSignature,
                format!("cannot decode SSHSIG: {e}"),
            ));
        }
    };
    // ssh-key rebuilds the signed data with the signature's own reserved field, OpenSSH with an
    // empty one; refusing any non-empty field removes that disagreement on the accept side.
    if !sig.reserved().is_empty() {
        return Err(Rejection::new(
            Reason::MalformedSignature,
            "the SSHSIG reserved field is not empty",
        ));
    }
    let key = signer_subject_key(sig.public_key());
    if !key_algorithm_supported(key) {
        return Err(Rejection::new(
            Reason::UnsupportedAlgorithm,
            format!("key type {} is not supported", key.algorithm()),
        ));
    }
    if !signature_algorithm_supported(&sig.algorithm()) {
        return Err(Rejection::new(
            Reason::UnsupportedAlgorithm,
            format!("signature algorithm {} is not supported", sig.algorithm()),
        ));
    }
    Ok(sig)
}

/// The key that made the signature: the key itself, or a certificate's subject key.
pub fn signer_subject_key(key: &KeyData) -> &KeyData {
    match key.certificate() {
        Some(cert) => cert.public_key(),
        None => key,
    }
}

/// Whether Steward accepts keys of this type (before the RSA size check).
pub fn key_algorithm_supported(key: &KeyData) -> bool {
    matches!(
        key.algorithm(),
        Algorithm::Ed25519
            | Algorithm::Ecdsa { .. }
            | Algorithm::Rsa { .. }
            | Algorithm::SkEd25519
            | Algorithm::SkEcdsaSha2NistP256
    )
}

/// Whether Steward accepts signatures with this algorithm label.
pub fn signature_algorithm_supported(alg: &Algorithm) -> bool {
    match alg {
        Algorithm::Ed25519 | Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => true,
        Algorithm::Ecdsa { curve } => matches!(
            curve,
            EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521
        ),
        // `ssh-rsa` is SHA-1: refused whatever the crate's features say.
        Algorithm::Rsa { hash } => matches!(hash, Some(HashAlg::Sha256 | HashAlg::Sha512)),
        _ => false,
    }
}

/// Refuses RSA keys under [`MIN_RSA_BITS`]; other keys pass.
pub fn check_key_strength(key: &KeyData) -> Result<(), Rejection> {
    if let Some(rsa) = key.rsa() {
        let bits = rsa_modulus_bits(rsa);
        if bits < MIN_RSA_BITS {
            return Err(Rejection::new(
                Reason::UnsupportedAlgorithm,
                format!("RSA key of {bits} bits (at least {MIN_RSA_BITS} required)"),
            ));
        }
    }
    Ok(())
}

/// The modulus's real bit length. `RsaPublicKey::key_size()` is the byte length times 8, which
/// would let a 2041-bit modulus pass as 2048.
fn rsa_modulus_bits(rsa: &ssh_key::public::RsaPublicKey) -> u32 {
    let bytes = rsa.n().as_positive_bytes().unwrap_or(&[]);
    match bytes.first() {
        None => 0,
        Some(first) => {
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX / 8);
            len.saturating_mul(8).saturating_sub(first.leading_zeros())
        }
    }
}

/// Whether a signature labelled `sig` can have been made by a key of `key`'s type. The label is
/// not covered by the signature and `ssh-key` does not compare it with the key: without this an
/// sk signature relabelled `rsa-sha2-512` would skip the user-presence check.
fn label_matches_key(sig: &Algorithm, key: &KeyData) -> bool {
    match (key.algorithm(), sig) {
        (Algorithm::Ed25519, Algorithm::Ed25519)
        | (Algorithm::SkEd25519, Algorithm::SkEd25519)
        | (Algorithm::SkEcdsaSha2NistP256, Algorithm::SkEcdsaSha2NistP256) => true,
        (Algorithm::Ecdsa { curve: k }, Algorithm::Ecdsa { curve: s }) => k == *s,
        (Algorithm::Rsa { .. }, Algorithm::Rsa { hash }) => hash.is_some(),
        _ => false,
    }
}

/// The crypto step: `msg` under `sig`, made by `subject` (the plain key, or the certificate's
/// subject key when the signer is a certificate), in namespace `namespace`.
///
/// `require_user_verified` is set for certificates carrying `verify-required`.
pub fn verify_crypto(
    sig: &SshSig,
    subject: &KeyData,
    namespace: &str,
    msg: &[u8],
    require_user_verified: bool,
) -> Result<(), Rejection> {
    check_key_strength(subject)?;
    if !signature_algorithm_supported(&sig.algorithm()) {
        return Err(Rejection::new(
            Reason::UnsupportedAlgorithm,
            format!("signature algorithm {} is not supported", sig.algorithm()),
        ));
    }
    if !label_matches_key(&sig.algorithm(), subject) {
        return Err(Rejection::new(
            Reason::BadSignature,
            format!(
                "signature algorithm {} cannot come from a {} key",
                sig.algorithm(),
                subject.algorithm()
            ),
        ));
    }
    let public = PublicKey::new(subject.clone(), "");
    let result = if sig.public_key().is_certificate() {
        // `PublicKey::verify` refuses a certificate as the key; re-wrap the signature around
        // the subject key (the certificate's own checks are the trust store's job).
        let inner = SshSig::new(
            subject.clone(),
            sig.namespace(),
            sig.hash_alg(),
            sig.signature().clone(),
        )
        .map_err(|e| Rejection::new(Reason::MalformedSignature, e.to_string()))?;
        public.verify(namespace, msg, &inner)
    } else {
        public.verify(namespace, msg, sig)
    };
    match result {
        Ok(()) => {}
        Err(ssh_key::Error::Namespace) => {
            return Err(Rejection::new(
                Reason::Namespace,
                format!(
                    "signature namespace {:?} is not {namespace:?}",
                    sig.namespace()
                ),
            ))
        }
        Err(ssh_key::Error::AlgorithmUnsupported { algorithm }) => {
            return Err(Rejection::new(
                Reason::UnsupportedAlgorithm,
                format!("algorithm {algorithm} is not supported"),
            ))
        }
        Err(e) => {
            return Err(Rejection::new(
                Reason::BadSignature,
                format!("signature does not verify: {e}"),
            ))
        }
    }
    // Decided by the key, not by the (unsigned) label.
    if matches!(
        subject.algorithm(),
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256
    ) {
        check_sk_flags(sig.signature_bytes(), require_user_verified)?;
    }
    Ok(())
}

/// Security-key signatures end with `flags (1 byte) || counter (u32)`; the flags are covered
/// by the signature, but neither `ssh-key` nor `ssh-keygen -Y verify` checks them.
fn check_sk_flags(sig_bytes: &[u8], require_user_verified: bool) -> Result<(), Rejection> {
    let flags = sig_bytes
        .len()
        .checked_sub(5)
        .and_then(|i| sig_bytes.get(i))
        .copied()
        .ok_or_else(|| {
            Rejection::new(
                Reason::MalformedSignature,
                "security-key signature without flags",
            )
        })?;
    if flags & SK_USER_PRESENT == 0 {
        return Err(Rejection::new(
            Reason::BadSignature,
            format!("security-key signature without user presence (flags {flags:#04x})"),
        ));
    }
    if require_user_verified && flags & SK_USER_VERIFIED == 0 {
        return Err(Rejection::new(
            Reason::BadSignature,
            format!("certificate requires user verification, flags are {flags:#04x}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
