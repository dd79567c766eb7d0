//! The locked pipeline: namespace → allow-list → crypto → payload parse → target → time window →
//! nonce, in this order and no other, each step with its own reason code. The order is the
//! security argument: nothing about the payload is believed before the signature over its exact
//! bytes verified with an admitted key. It must never consume a nonce (see
//! [`VerifiedOp::consume_nonce`]) and never do I/O of its own.

use crate::nonce::{Consumed, NonceStore};
use crate::op::OpPayload;
use crate::reason::{Reason, Rejection};
use crate::role::Role;
use crate::sig;
use crate::signers::TrustStore;
use ssh_key::HashAlg;
use time::OffsetDateTime;

/// Default allowed clock skew, seconds.
pub const DEFAULT_SKEW_SECS: i64 = 120;
/// Default longest validity window, seconds (24 h).
pub const DEFAULT_MAX_TTL_SECS: i64 = 24 * 3600;
/// The largest skew a configuration may set (one hour): skew is for clocks, not for policy.
pub const MAX_SKEW_SECS: i64 = 3600;
/// The longest window a configuration may allow (30 days).
pub const MAX_TTL_LIMIT_SECS: i64 = 30 * 24 * 3600;

/// A verifier configuration out of bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the pipeline checks against.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// This node's name: an op for another host is `target`.
    pub host: String,
    /// Clock skew tolerated at both ends of the window, seconds.
    pub skew_secs: i64,
    /// Longest `not_after - not_before` accepted, seconds.
    pub max_ttl_secs: i64,
}

impl VerifyConfig {
    /// Checks the bounds: skew in `0..=MAX_SKEW_SECS`, window in `1..=MAX_TTL_LIMIT_SECS`, a
    /// non-empty host.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(0..=MAX_SKEW_SECS).contains(&self.skew_secs) {
            return Err(ConfigError(format!(
                "skew {} s is outside 0..={MAX_SKEW_SECS} s",
                self.skew_secs
            )));
        }
        if !(1..=MAX_TTL_LIMIT_SECS).contains(&self.max_ttl_secs) {
            return Err(ConfigError(format!(
                "max ttl {} s is outside 1..={MAX_TTL_LIMIT_SECS} s",
                self.max_ttl_secs
            )));
        }
        if self.host.is_empty() {
            return Err(ConfigError("host is empty".into()));
        }
        Ok(())
    }

    /// Defaults (120 s skew, 24 h window) for `host`.
    pub fn new(host: impl Into<String>) -> Self {
        VerifyConfig {
            host: host.into(),
            skew_secs: DEFAULT_SKEW_SECS,
            max_ttl_secs: DEFAULT_MAX_TTL_SECS,
        }
    }
}

/// An op that passed every step. Its nonce is *not* consumed yet.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedOp {
    /// Who signed: the trust-store principals (plain key) or the certificate principal.
    pub principal: String,
    /// The role the admitting line confers.
    pub role: Role,
    /// `SHA256:…` fingerprint of the key that made the signature.
    pub key_fingerprint: String,
    /// The trust-store line that admitted the signer.
    pub trust_line: usize,
    /// `SHA256:…` of that line's key: the signing key itself, or for a certificate the
    /// certificate authority's key. What identifies the admission across a reloaded store.
    pub admitted_by: String,
    /// The payload that passed, parsed from the exact signed bytes: op, host (equal to the
    /// configured host), guest, params as signed, nonce and window.
    pub payload: OpPayload,
    /// For a signature made through a certificate: the certificate's `valid_before` (Unix
    /// seconds); None for a plain key. An approval kept for later counts only until then.
    pub certificate_valid_before: Option<i64>,
    /// Until when the nonce must be remembered (Unix seconds, inclusive): past the last instant
    /// at which any verifier (any skew up to [`MAX_SKEW_SECS`]) still admits the op.
    pub nonce_keep_until: i64,
}

impl VerifiedOp {
    /// Consumes the nonce: call only once role scoping and binding passed too. `replay` if
    /// another presentation won the race, `nonce_store` if the store failed.
    pub fn consume_nonce(&self, store: &dyn NonceStore) -> Result<(), Rejection> {
        match store.consume(&self.payload.nonce, self.nonce_keep_until) {
            Ok(Consumed::Fresh) => Ok(()),
            Ok(Consumed::AlreadyConsumed) => Err(Rejection::new(
                Reason::Replay,
                format!("nonce {} was consumed already", self.payload.nonce),
            )),
            Err(e) => Err(Rejection::new(Reason::NonceStore, e.to_string())),
        }
    }
}

/// The verifier: a trust store and a configuration.
#[derive(Clone, Debug)]
pub struct Verifier {
    store: TrustStore,
    config: VerifyConfig,
}

impl Verifier {
    /// A verifier over `store` with `config`, refused if the configuration is out of bounds.
    pub fn new(store: TrustStore, config: VerifyConfig) -> Result<Self, ConfigError> {
        config.check()?;
        Ok(Verifier { store, config })
    }

    /// The trust store in use.
    pub fn trust_store(&self) -> &TrustStore {
        &self.store
    }

    /// The configuration in use.
    pub fn config(&self) -> &VerifyConfig {
        &self.config
    }

    /// Runs the whole pipeline, the nonce step asking `nonces` whether it was consumed.
    pub fn verify(
        &self,
        payload: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
        nonces: &dyn NonceStore,
    ) -> Result<VerifiedOp, Rejection> {
        let op = self.verify_offline(payload, armored_sig, now)?;
        match nonces.is_consumed(&op.payload.nonce) {
            Ok(false) => Ok(op),
            Ok(true) => Err(Rejection::new(
                Reason::Replay,
                format!("nonce {} was consumed already", op.payload.nonce),
            )),
            Err(e) => Err(Rejection::new(Reason::NonceStore, e.to_string())),
        }
    }

    /// Every step but the nonce step: for offline checking, where no store exists. An agent
    /// must use [`Verifier::verify`].
    pub fn verify_offline(
        &self,
        payload: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
    ) -> Result<VerifiedOp, Rejection> {
        let sig = sig::parse(armored_sig)?;
        // 1. namespace
        let namespace = sig.namespace();
        if Role::for_namespace(namespace).is_none() {
            return Err(Rejection::new(
                Reason::Namespace,
                format!("namespace {namespace:?} is not op@steward or recovery@steward"),
            ));
        }
        // 2. allow-list
        let now_unix = now.unix_timestamp();
        let admission = self.store.admit(sig.public_key(), namespace, now_unix)?;
        // 3. crypto, over the exact payload bytes. A payload over the size limit is refused
        // before it is hashed: its size is all that needs knowing, and hashing it is work an
        // attacker chooses.
        if payload.len() > crate::op::MAX_PAYLOAD_BYTES {
            return Err(Rejection::new(
                Reason::MalformedOp,
                format!(
                    "payload is {} bytes, at most {} allowed",
                    payload.len(),
                    crate::op::MAX_PAYLOAD_BYTES
                ),
            ));
        }
        sig::verify_crypto(
            &sig,
            admission.subject,
            namespace,
            payload,
            admission.require_user_verified,
        )?;
        // 4. payload
        let p = OpPayload::parse(payload, self.config.max_ttl_secs)?;
        // 5. target
        if p.host != self.config.host {
            return Err(Rejection::new(
                Reason::Target,
                format!(
                    "op is for host {:?}, this is {:?}",
                    p.host, self.config.host
                ),
            ));
        }
        // 6. time window. A bound outside the representable range fails closed.
        let skew = time::Duration::seconds(self.config.skew_secs);
        let out_of_range = || Rejection::new(Reason::MalformedOp, "op window is out of range");
        let start = p.not_before.checked_sub(skew).ok_or_else(out_of_range)?;
        let end = p.not_after.checked_add(skew).ok_or_else(out_of_range)?;
        if now < start {
            return Err(Rejection::new(
                Reason::NotYetValid,
                format!("op is valid from {}", fmt_time(p.not_before)),
            ));
        }
        if now > end {
            return Err(Rejection::new(
                Reason::Expired,
                format!("op expired at {}", fmt_time(p.not_after)),
            ));
        }
        // Kept until no verifier could still admit the op, whatever skew it is configured
        // with: `not_after` plus the largest skew a configuration may set, rounded up, plus a
        // second. A skew raised later (or another node's larger one) cannot revive the nonce.
        let nonce_keep_until = p
            .not_after
            .unix_timestamp()
            .saturating_add(i64::from(p.not_after.nanosecond() > 0))
            .saturating_add(MAX_SKEW_SECS)
            .saturating_add(1);
        Ok(VerifiedOp {
            principal: admission.principal,
            role: admission.role,
            key_fingerprint: admission.subject.fingerprint(HashAlg::Sha256).to_string(),
            trust_line: admission.entry.line,
            admitted_by: admission.entry.fingerprint(),
            certificate_valid_before: admission.certificate_valid_before,
            nonce_keep_until,
            payload: p,
        })
    }
}

/// RFC 3339, as in payloads.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
