//! m-of-n approval: how many distinct operator keys a signed op needs (the policy), and how a
//! presentation's signatures are counted against it (the tally).
//!
//! Counting follows TUF's threshold rule: a signature counts only if it passed the whole
//! pipeline over the op's exact bytes with a key whose role may authorize the op, and each
//! distinct key counts once, whatever carried it (a plain trust-store line or any number of
//! certificates for that key). Steward is stricter in one way: two signers that share a
//! principal name are one approver too (`steward_authz::same_approver`), because a certificate
//! authority vouches for names, and one operator can have many keys certified. A bad signature
//! is reported and counts for nothing; it never spoils the good ones beside it. This module
//! must never count one key, or one name, twice.

use crate::decision::GateReason;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use steward_authz::Role;
use steward_journal::Signer;

/// The largest threshold a policy may set: more signatures than a job may carry
/// (`steward_hub::protocol` allows 8 per job) could never be met in one presentation, and a
/// held op collecting them would stay held for good.
pub const MAX_THRESHOLD: u8 = 8;

/// The op kinds a policy may name: every signed guest op and `keys.rotate`.
pub const OP_KINDS: &[&str] = &[
    "guest.create",
    "guest.start",
    "guest.stop",
    "guest.shutdown",
    "guest.reboot",
    "guest.config",
    "guest.destroy",
    "guest.rollback",
    "guest.restore",
    "keys.rotate",
];

/// A policy that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// An op kind the gate does not know (a typo would otherwise leave the intended op at 1).
    UnknownOp(String),
    /// A threshold outside `1..=MAX_THRESHOLD`.
    OutOfRange {
        /// What it was set for.
        what: String,
        /// The value given.
        value: u64,
    },
    /// A way to change the trust store (`keys.rotate` by operational keys, or by recovery
    /// keys) needs fewer keys than some op: that many keys could rotate in keys of their own
    /// and then meet the op's threshold alone, so the higher threshold would mean nothing.
    WeakRotation {
        /// `keys.rotate` or `recovery`.
        what: String,
        /// Its threshold.
        value: u8,
        /// The op kind with the highest threshold.
        op: String,
        /// That threshold.
        needs: u8,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::UnknownOp(op) => write!(
                f,
                "{op:?} is not an op kind (known: {})",
                OP_KINDS.join(", ")
            ),
            PolicyError::OutOfRange { what, value } => write!(
                f,
                "{what}: threshold {value} is outside 1..={MAX_THRESHOLD}"
            ),
            PolicyError::WeakRotation {
                what,
                value,
                op,
                needs,
            } => write!(
                f,
                "{what} = {value} is below {op} = {needs}: {value} key(s) could rotate in keys of their own and meet {op} alone; set {what} to at least {needs}"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

/// How many distinct keys each signed op needs. Operational keys are counted per op kind
/// (default for kinds not named); recovery keys may only rotate keys, with their own threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalPolicy {
    default: u8,
    recovery: u8,
    ops: BTreeMap<String, u8>,
}

impl Default for ApprovalPolicy {
    /// One signature for everything: Steward's behaviour before thresholds existed.
    fn default() -> Self {
        ApprovalPolicy {
            default: 1,
            recovery: 1,
            ops: BTreeMap::new(),
        }
    }
}

fn checked(what: &str, value: u64) -> Result<u8, PolicyError> {
    u8::try_from(value)
        .ok()
        .filter(|v| (1..=MAX_THRESHOLD).contains(v))
        .ok_or_else(|| PolicyError::OutOfRange {
            what: what.to_string(),
            value,
        })
}

impl ApprovalPolicy {
    /// A policy: `default` for operational signatures on kinds `ops` does not name, `recovery`
    /// for `keys.rotate` signed with recovery keys, and a threshold per named op kind.
    pub fn new(
        default: u64,
        recovery: u64,
        ops: impl IntoIterator<Item = (String, u64)>,
    ) -> Result<Self, PolicyError> {
        let mut map = BTreeMap::new();
        for (op, n) in ops {
            if !OP_KINDS.contains(&op.as_str()) {
                return Err(PolicyError::UnknownOp(op));
            }
            map.insert(op.clone(), checked(&op, n)?);
        }
        let policy = ApprovalPolicy {
            default: checked("default", default)?,
            recovery: checked("recovery", recovery)?,
            ops: map,
        };
        // The weakest way to rewrite the trust store bounds every threshold.
        let (op, needs) = OP_KINDS
            .iter()
            .filter(|k| **k != "keys.rotate")
            .map(|k| (*k, policy.threshold(k, Role::Operational)))
            .max_by_key(|(_, n)| *n)
            .unwrap_or(("default", policy.default));
        for (what, value) in [
            (
                "keys.rotate",
                policy.threshold("keys.rotate", Role::Operational),
            ),
            ("recovery", policy.recovery),
        ] {
            if value < needs {
                return Err(PolicyError::WeakRotation {
                    what: what.into(),
                    value,
                    op: op.into(),
                    needs,
                });
            }
        }
        Ok(policy)
    }

    /// The distinct keys of `role` that `op` needs.
    pub fn threshold(&self, op: &str, role: Role) -> u8 {
        match role {
            Role::Recovery => self.recovery,
            Role::Operational => self.ops.get(op).copied().unwrap_or(self.default),
        }
    }

    /// The policy as `status` shows it: the default, the recovery threshold, and each op kind
    /// set apart from the default.
    pub fn describe(&self) -> BTreeMap<String, u8> {
        let mut out = BTreeMap::new();
        out.insert("default".to_string(), self.default);
        out.insert("recovery keys.rotate".to_string(), self.recovery);
        for (op, n) in &self.ops {
            out.insert(op.clone(), *n);
        }
        out
    }
}

/// Lower-case hex SHA-256 of `payload`: what an approval is over.
pub fn payload_digest(payload: &[u8]) -> String {
    Sha256::digest(payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What became of one signature of a presentation, in the order presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigVerdict {
    /// It passed and its key counts towards the threshold.
    Counted(Signer),
    /// It passed, but its key was counted already (in this presentation, or by an approval
    /// collected before): one key, one approval.
    AlreadyCounted(Signer),
    /// It did not pass; it counts for nothing.
    Refused {
        /// Why.
        reason: GateReason,
        /// Detail for a human (untrusted text escaped).
        detail: String,
    },
}

impl SigVerdict {
    /// `counted`, `already_counted` or `refused:<code>`.
    pub fn label(&self) -> String {
        match self {
            SigVerdict::Counted(_) => "counted".into(),
            SigVerdict::AlreadyCounted(_) => "already_counted".into(),
            SigVerdict::Refused { reason, .. } => format!("refused:{reason}"),
        }
    }
}

/// A tally: the distinct approvers counted so far (by key and by name, see
/// `steward_authz::same_approver`), in the order first seen.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    keys: Vec<Signer>,
}

impl Tally {
    /// Counts `signer`, unless the same approver (its key, or a name it shares) was counted
    /// already; true if it was new.
    pub fn add(&mut self, signer: &Signer) -> bool {
        if self.keys.iter().any(|k| {
            steward_authz::same_approver(
                &k.key_fingerprint,
                &k.principal,
                &signer.key_fingerprint,
                &signer.principal,
            )
        }) {
            return false;
        }
        self.keys.push(signer.clone());
        true
    }

    /// Distinct approvers counted.
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// The signers counted, first seen first.
    pub fn signers(&self) -> &[Signer] {
        &self.keys
    }

    /// `alice@example.org, bob@example.org`, for summaries.
    pub fn names(&self) -> String {
        names(&self.keys)
    }
}

/// The principals of `signers`, comma-separated (escaped: a principal is trust-store text).
pub fn names(signers: &[Signer]) -> String {
    signers
        .iter()
        .map(|s| steward_authz::escape_controls(&s.principal))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signer(key: &str, name: &str) -> Signer {
        Signer {
            principal: name.into(),
            key_fingerprint: format!("SHA256:{key}"),
            role: Role::Operational,
        }
    }

    #[test]
    fn a_policy_names_known_op_kinds_with_thresholds_in_range() {
        let p = ApprovalPolicy::new(
            1,
            2,
            [("guest.destroy".to_string(), 2), ("keys.rotate".into(), 3)],
        )
        .unwrap();
        // One key must not be able to rotate in a second and then destroy alone.
        assert!(matches!(
            ApprovalPolicy::new(1, 2, [("guest.destroy".to_string(), 2)]),
            Err(PolicyError::WeakRotation { what, needs: 2, .. }) if what == "keys.rotate"
        ));
        assert!(matches!(
            ApprovalPolicy::new(
                1,
                1,
                [("guest.destroy".to_string(), 2), ("keys.rotate".into(), 2)]
            ),
            Err(PolicyError::WeakRotation { what, .. }) if what == "recovery"
        ));
        assert!(matches!(
            ApprovalPolicy::new(3, 2, [("keys.rotate".to_string(), 3)]),
            Err(PolicyError::WeakRotation { what, needs: 3, .. }) if what == "recovery"
        ));
        assert_eq!(p.threshold("guest.destroy", Role::Operational), 2);
        assert_eq!(p.threshold("guest.rollback", Role::Operational), 1);
        assert_eq!(p.threshold("keys.rotate", Role::Operational), 3);
        assert_eq!(p.threshold("keys.rotate", Role::Recovery), 2);
        assert_eq!(
            ApprovalPolicy::new(1, 1, [("guest.destory".to_string(), 2)]),
            Err(PolicyError::UnknownOp("guest.destory".into()))
        );
        for bad in [0, 9, 256, u64::MAX] {
            assert!(matches!(
                ApprovalPolicy::new(8, 8, [("guest.destroy".to_string(), bad)]),
                Err(PolicyError::OutOfRange { value, .. }) if value == bad
            ));
            assert!(ApprovalPolicy::new(bad, 1, []).is_err());
            assert!(ApprovalPolicy::new(1, bad, []).is_err());
        }
        assert_eq!(
            ApprovalPolicy::default().threshold("guest.destroy", Role::Operational),
            1
        );
    }

    #[test]
    fn one_key_or_one_name_counts_once() {
        let mut t = Tally::default();
        assert!(t.add(&signer("k1", "alice")));
        // The same key through a certificate naming someone else: still one approval.
        assert!(!t.add(&signer("k1", "mallory-cert")));
        // Another key certified with the same name: the same operator.
        assert!(!t.add(&signer("k2", "alice")));
        assert!(t.add(&signer("k3", "bob")));
        assert_eq!(t.count(), 2);
        assert_eq!(t.names(), "alice, bob");
    }

    #[test]
    fn the_payload_digest_is_sha256_hex() {
        assert_eq!(
            payload_digest(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    proptest! {
        /// The count is the number of distinct keys, however they repeat and in whatever order.
        #[test]
        fn the_count_is_the_number_of_distinct_keys(keys in proptest::collection::vec(0u8..6, 0..20)) {
            let mut t = Tally::default();
            for k in &keys {
                t.add(&signer(&k.to_string(), &format!("operator-{k}")));
            }
            let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
            prop_assert_eq!(t.count(), distinct.len());
        }
    }
}
