//! A read-only look at the algorithm names inside an SSHSIG blob that `ssh-key` failed to decode,
//! so that a webauthn or post-quantum signature is reported as `unsupported_algorithm` rather
//! than as garbage. It decodes with the crate's own SSH wire decoder and must never be used to
//! accept anything: it only chooses between two rejection reasons.

use base64::Engine as _;
use ssh_key::encoding::Decode;

/// Names Steward can verify, as they appear on the wire (key or signature algorithm).
const KNOWN: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

/// The first key or signature algorithm name in the blob that Steward does not know, if the
/// blob is readable that far.
pub fn unsupported_algorithm(canonical_armor: &str) -> Option<String> {
    let body: String = canonical_armor
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let mut r: &[u8] = blob.strip_prefix(b"SSHSIG")?;
    let _version = u32::decode(&mut r).ok()?;
    let key = Vec::<u8>::decode(&mut r).ok()?;
    let _namespace = Vec::<u8>::decode(&mut r).ok()?;
    let _reserved = Vec::<u8>::decode(&mut r).ok()?;
    let _hash = Vec::<u8>::decode(&mut r).ok()?;
    let signature = Vec::<u8>::decode(&mut r).ok()?;
    for field in [key, signature] {
        let mut f: &[u8] = &field;
        let name = String::decode(&mut f).ok()?;
        if !KNOWN.contains(&name.as_str()) {
            return Some(name);
        }
    }
    None
}
