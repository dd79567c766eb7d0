//! `steward-fuzz-targets`: one function per fuzz target, each feeding untrusted bytes to a parser
//! that faces them in production. The functions are shared by two runners: cargo-fuzz
//! (`fuzz/fuzz_targets/*.rs`, libFuzzer, coverage-guided; `cargo xtask fuzz`) and the corpus
//! replay test (`tests/corpus.rs`, stable, run by CI). A target fails only by panicking (or by
//! breaking an invariant it asserts); it must never do I/O, so an input replays the same
//! everywhere.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::OnceLock;
use steward_authz::{OpPayload, TrustStore, Verifier, VerifyConfig, DEFAULT_MAX_TTL_SECS};
use time::OffsetDateTime;

/// A fuzz target: untrusted bytes in, a panic on failure.
pub type Target = fn(&[u8]);

/// The targets by name, as cargo-fuzz and the corpus directories name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("sshsig", sshsig),
    ("allowed_signers", allowed_signers),
    ("op_payload", op_payload),
    ("desired_state", desired_state),
    ("hub_jobs", hub_jobs),
];

/// A fixed instant, so a replay judges time windows as the fuzzer did.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn verifier() -> &'static Option<Verifier> {
    static V: OnceLock<Option<Verifier>> = OnceLock::new();
    V.get_or_init(|| {
        let store = TrustStore::parse("fuzz", b"").ok()?;
        Verifier::new(store, VerifyConfig::new("pve-a")).ok()
    })
}

/// SSHSIG armor and blob: the whole offline pipeline over an armored signature (armor, wire
/// decoding, the algorithm peek, namespace, admission), with a fixed payload.
pub fn sshsig(data: &[u8]) {
    let parsed = steward_authz::sig::parse(data);
    if let Some(v) = verifier() {
        let verdict = v.verify_offline(b"{}", data, now());
        // Nothing is admitted by an empty trust store: a signature that parses must still be
        // refused, and one that does not parse is refused for that.
        assert!(
            verdict.is_err(),
            "an empty trust store admitted a signature"
        );
        if parsed.is_err() {
            assert!(verdict.is_err());
        }
    }
}

/// An `allowed_signers` file: the trust store's loader, then each admitted line's fingerprint.
pub fn allowed_signers(data: &[u8]) {
    if let Ok(store) = TrustStore::parse("fuzz", data) {
        let lines = data.split(|b| *b == b'\n').count();
        assert!(
            store.entries().len() <= lines,
            "more entries than lines in the file"
        );
        for e in store.entries() {
            let _ = e.fingerprint();
        }
    }
}

/// An op payload (the bytes an operator signs): strict JSON, duplicate keys, windows, nonce.
pub fn op_payload(data: &[u8]) {
    if let Ok(p) = OpPayload::parse(data, DEFAULT_MAX_TTL_SECS) {
        assert!(data.len() <= steward_authz::MAX_PAYLOAD_BYTES);
        assert!(
            p.not_after > p.not_before,
            "a payload with an empty or inverted window parsed"
        );
        assert!(
            p.not_after - p.not_before <= time::Duration::seconds(DEFAULT_MAX_TTL_SECS),
            "a window longer than the maximum parsed"
        );
    }
}

/// A desired-state document, as JSON (the hub's form) and as TOML (the file provider's).
pub fn desired_state(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = steward_planner::document::parse_json("fuzz.json", text);
        let _ = steward_planner::document::parse_toml("fuzz.toml", text);
    }
}

/// A hub's answer to `GET …/jobs`: every job kept has an id the agent takes and at most
/// `MAX_SIGNATURES` signatures.
pub fn hub_jobs(data: &[u8]) {
    if let Ok(jobs) = steward_hub::protocol::parse_jobs(data) {
        for j in jobs {
            assert!(steward_hub::protocol::valid_job_id(&j.id));
            assert!(j.signatures.len() <= steward_hub::protocol::MAX_SIGNATURES);
        }
    }
}
