//! `cargo xtask bench verify`: the full authz pipeline (armor, SSHSIG decode, trust-store lookup,
//! crypto, strict payload parse, target, window, nonce lookup) against a raw verification of the
//! same signature over the same bytes with the underlying crypto crate (ed25519-dalek, p256), in
//! one process. Also `ssh-keygen -Y verify` as a process, for scale. Target: pipeline ≤ 1.3× the
//! raw ed25519 cost.

use super::measure::{rates, Opts};
use anyhow::{bail, Context, Result};
use ssh_key::SshSig;
use std::hint::black_box;
use steward_authz::{MemoryNonceStore, TrustStore, Verifier, VerifyConfig, OP_NAMESPACE};
use steward_testkit::{KeyType, Keygen, OpDoc};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

const TARGET_ED25519: f64 = 1.3;

struct Signed {
    payload: Vec<u8>,
    armored: Vec<u8>,
}

pub fn run(opts: &Opts) -> Result<bool> {
    let kg = Keygen::new()?;
    let ed = kg.key(KeyType::Ed25519, "bench-ed25519")?;
    let ec = kg.key(KeyType::EcdsaP256, "bench-p256")?;
    let signers = format!(
        "ed@bench namespaces=\"{OP_NAMESPACE}\" {}\nec@bench namespaces=\"{OP_NAMESPACE}\" {}\n",
        ed.public_line, ec.public_line
    );
    let signers_path = kg.path("allowed_signers");
    std::fs::write(&signers_path, &signers)?;
    let store = TrustStore::parse("bench", signers.as_bytes())?;
    let verifier = Verifier::new(store, VerifyConfig::new("pve-a"))?;
    let now = OffsetDateTime::now_utc();
    let doc = OpDoc::destroy(
        "pve-a",
        104,
        &(now - Duration::minutes(5)).format(&Rfc3339)?,
        &(now + Duration::minutes(25)).format(&Rfc3339)?,
    );
    let payload = doc.to_bytes();
    let nonces = MemoryNonceStore::new();

    let mut report = Vec::new();
    let mut met = true;
    for (label, key) in [("ed25519", &ed), ("ecdsa-p256", &ec)] {
        let s = Signed {
            armored: kg.sign(&key.private, OP_NAMESPACE, &payload)?,
            payload: payload.clone(),
        };
        // The pipeline must accept it, or we would be timing a rejection.
        verifier
            .verify(&s.payload, &s.armored, now, &nonces)
            .context("bench signature must verify")?;
        let mut raw = raw_verifier(&s, true)?;
        raw().context("raw verification must succeed")?;
        let mut prepared = raw_verifier(&s, false)?;
        prepared().context("raw verification must succeed")?;
        let mut pipeline = || {
            let _ = black_box(verifier.verify(
                black_box(&s.payload),
                black_box(&s.armored),
                now,
                &nonces,
            ));
        };
        let mut raw_loop = || {
            black_box(raw()).ok();
        };
        let mut prepared_loop = || {
            black_box(prepared()).ok();
        };
        let r = rates(
            opts,
            &mut [&mut pipeline, &mut raw_loop, &mut prepared_loop],
        );
        let ratio = r[1] / r[0];
        if label == "ed25519" && ratio > TARGET_ED25519 {
            met = false;
        }
        report.push((label, r[0], r[1], ratio, r[2], r[2] / r[0]));
    }

    // ssh-keygen as a process, same payload and trust store, fewer iterations: it is slow.
    let sig = kg.sign(&ed.private, OP_NAMESPACE, &payload)?;
    let n = 40;
    let start = std::time::Instant::now();
    for _ in 0..n {
        if !kg.verify(
            &signers_path,
            "ed@bench",
            OP_NAMESPACE,
            &sig,
            &payload,
            &steward_testkit::openssh_time(now),
        )? {
            bail!("ssh-keygen -Y verify refused the bench signature");
        }
    }
    let keygen_rate = f64::from(n) / start.elapsed().as_secs_f64();

    println!(
        "verify bench ({} rounds of {:.2} s, median)",
        opts.rounds, opts.round_secs
    );
    for (label, pipe, raw, ratio, prepared, pratio) in &report {
        println!(
            "  {label:<11} pipeline {pipe:>8.0}/s   raw from key bytes {raw:>8.0}/s ({ratio:.3}x)   raw with pre-decoded key {prepared:>8.0}/s ({pratio:.3}x)"
        );
    }
    println!("  ssh-keygen -Y verify (process per check, ed25519): {keygen_rate:.0}/s");
    println!(
        "  target: ed25519 pipeline <= {TARGET_ED25519}x raw from key bytes: {}",
        if met { "met" } else { "MISSED" }
    );
    Ok(met)
}

/// Raw verification of `s` with the crypto crate: the SSHSIG signed-data blob (message hash
/// included, as the pipeline must hash too) and one primitive verify. With `from_bytes`, the
/// verifying key is decoded from its bytes on every call (the pipeline starts from bytes too:
/// ssh-key decodes the point per verification); without, it is decoded once, outside the timed
/// closure (the best case for the baseline).
fn raw_verifier(s: &Signed, from_bytes: bool) -> Result<Box<dyn FnMut() -> Result<()> + '_>> {
    let sig = SshSig::from_pem(&s.armored)?;
    let hash = sig.hash_alg();
    let ns = sig.namespace().to_string();
    if let Some(k) = sig.public_key().ed25519() {
        use ed25519_dalek::Verifier as _;
        let key_bytes = k.0;
        let prepared = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes)?;
        let es = ed25519_dalek::Signature::from_slice(sig.signature_bytes())?;
        return Ok(Box::new(move || {
            let data = SshSig::signed_data(&ns, hash, black_box(&s.payload))?;
            let vk = if from_bytes {
                ed25519_dalek::VerifyingKey::from_bytes(black_box(&key_bytes))?
            } else {
                prepared
            };
            // The same call ssh-key makes (`Verifier::verify`), so only our overhead differs.
            Ok(vk.verify(&data, &es)?)
        }));
    }
    if let Some(k) = sig.public_key().ecdsa() {
        use p256::ecdsa::signature::Verifier as _;
        let point = k.as_sec1_bytes().to_vec();
        let prepared = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)?;
        let es = p256_signature(sig.signature_bytes())?;
        return Ok(Box::new(move || {
            let data = SshSig::signed_data(&ns, hash, black_box(&s.payload))?;
            let vk = if from_bytes {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(black_box(&point))?
            } else {
                prepared
            };
            Ok(vk.verify(&data, &es)?)
        }));
    }
    bail!("unsupported bench key")
}

/// An SSH ECDSA signature body is `mpint r, mpint s`.
fn p256_signature(body: &[u8]) -> Result<p256::ecdsa::Signature> {
    use ssh_key::encoding::{Decode, Mpint};
    let mut r = body;
    let sr = Mpint::decode(&mut r)?;
    let ss = Mpint::decode(&mut r)?;
    let fixed = |m: &Mpint| -> Result<[u8; 32]> {
        let b = m.as_positive_bytes().context("negative mpint")?;
        let mut out = [0u8; 32];
        if b.len() > 32 {
            bail!("mpint too long");
        }
        out[32 - b.len()..].copy_from_slice(b);
        Ok(out)
    };
    Ok(p256::ecdsa::Signature::from_scalars(
        fixed(&sr)?,
        fixed(&ss)?,
    )?)
}
