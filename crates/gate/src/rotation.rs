//! `keys.rotate`: replacing the trust store by a signed op. Recovery keys may change any line;
//! operational keys may add or retire operational keys only; no rotation may leave the store
//! without a recovery key. The new file is written atomically (write, fsync, rename, fsync the
//! directory). Must never write a file that does not load, and never widen an operational
//! signer's powers.

use crate::approval::SigVerdict;
use crate::decision::{Decision, GateReason};
use crate::gate::refused;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use steward_authz::TrustEntry;
use steward_authz::{Consumed, Reason, Role, TrustStore, VerifiedOp, Verifier};
use time::OffsetDateTime;

/// Why a rotation is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationError {
    /// The new text does not load.
    Invalid(String),
    /// An operational signer touched a recovery line.
    RoleDenied(String),
    /// The new store would have no recovery key.
    NoRecoveryKey,
}

impl std::fmt::Display for RotationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RotationError::Invalid(e) => write!(f, "new trust store does not load: {e}"),
            RotationError::RoleDenied(e) => f.write_str(e),
            RotationError::NoRecoveryKey => {
                f.write_str("the rotation would leave no recovery key valid now")
            }
        }
    }
}

/// A line's meaning, without its position or comment.
fn identity(e: &TrustEntry) -> String {
    format!(
        "{}|{}|{}|{}|{:?}|{:?}|{:?}",
        e.role,
        e.options.cert_authority,
        e.fingerprint(),
        e.principals,
        e.options.namespaces,
        e.options.valid_after,
        e.options.valid_before
    )
}

fn census(store: &TrustStore) -> BTreeMap<String, (Role, usize)> {
    let mut m: BTreeMap<String, (Role, usize)> = BTreeMap::new();
    for e in store.entries() {
        m.entry(identity(e)).or_insert((e.role, 0)).1 += 1;
    }
    m
}

/// Whether a line's valid-after/valid-before window holds at `now` (Unix seconds; inclusive, as
/// OpenSSH).
/// Whether a trust line's `valid-after`/`valid-before` window holds at `now` (Unix seconds).
pub(crate) fn valid_at(e: &TrustEntry, now: i64) -> bool {
    e.options.valid_after.is_none_or(|a| now >= a)
        && e.options.valid_before.is_none_or(|b| now <= b)
}

/// Checks a rotation to `new_text` signed with `role` at `now` (Unix seconds); returns the
/// loaded new store. At least one recovery line must be valid now: an expired one signs nothing.
pub fn check(
    old: &TrustStore,
    new_text: &str,
    role: Role,
    now: i64,
) -> Result<TrustStore, RotationError> {
    let new = TrustStore::parse("rotated allowed_signers", new_text.as_bytes())
        .map_err(|e| RotationError::Invalid(e.to_string()))?;
    // Role first: an operational signer touching a recovery line is denied as such, whatever
    // else is wrong with the rotation.
    if role == Role::Operational {
        let (before, after) = (census(old), census(&new));
        let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for k in keys {
            let (b, a) = (before.get(k), after.get(k));
            let count = |x: Option<&(Role, usize)>| x.map_or(0, |(_, n)| *n);
            if count(b) != count(a) {
                let r = b.or(a).map(|(r, _)| *r);
                if r != Some(Role::Operational) {
                    return Err(RotationError::RoleDenied(
                        "operational keys may add or retire operational keys only".into(),
                    ));
                }
            }
        }
    }
    if !new
        .entries()
        .iter()
        .any(|e| e.role == Role::Recovery && valid_at(e, now))
    {
        return Err(RotationError::NoRecoveryKey);
    }
    Ok(new)
}

/// Replaces `path` with `text` atomically and durably: a temporary file of its own (created
/// exclusively, never shared with another writer), fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut salt = [0u8; 8];
    getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{}.{}.steward-new",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("allowed_signers"),
        u64::from_le_bytes(salt)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A rotation as a gate flow: the signatures' role and threshold, the durable nonce, the
/// atomic write and the swap of the verifier's store.
impl crate::gate::Core {
    /// `keys.rotate` by the signatures that passed: the role whose distinct keys meet its
    /// threshold rotates (recovery first: its rules are the wider), under the role rules, at
    /// least one recovery key, durable nonce, atomic write, swap.
    pub(crate) fn rotate(
        &self,
        payload: &[u8],
        sigs: &[Vec<u8>],
        passed: &[crate::signed::Passed],
        mut verdicts: Vec<SigVerdict>,
        now: OffsetDateTime,
    ) -> (Decision, Vec<SigVerdict>) {
        // Held from the check to the swap: the check sees the store the rotation replaces, and
        // a rotation verified against an older store (say, by a key another rotation just
        // retired) is re-checked against the current one below.
        let Ok(_rotating) = self.rotating.lock() else {
            return (
                refused(None, GateReason::Journal, "rotation lock poisoned"),
                verdicts,
            );
        };
        let mut counts = Vec::new();
        let mut chosen = None;
        for role in [Role::Recovery, Role::Operational] {
            // The line that admitted each signer (its key, or for a certificate its CA's key)
            // must still be in the current store, with the same role, and valid now.
            let mut tally = crate::approval::Tally::default();
            for (i, v) in passed.iter().filter(|(_, v)| v.role == role) {
                let signer = crate::signed::signer_of(v);
                verdicts[*i] = if !self.still_admits(&v.admitted_by, role, now) {
                    SigVerdict::Refused {
                        reason: GateReason::Authz(Reason::UnknownSigner),
                        detail: "the line that admitted the signer left the trust store or is no longer valid".into(),
                    }
                } else if tally.add(&signer) {
                    SigVerdict::Counted(signer)
                } else {
                    SigVerdict::AlreadyCounted(signer)
                };
            }
            let needs = self.config.approval.threshold("keys.rotate", role);
            counts.push(format!("{} of {needs} {role}", tally.count()));
            if tally.count() >= usize::from(needs) && chosen.is_none() {
                chosen = Some(role);
            }
        }
        let Some(role) = chosen else {
            let any_admitted = passed
                .iter()
                .any(|(_, v)| self.still_admits(&v.admitted_by, v.role, now));
            let d = if !any_admitted {
                refused(
                    None,
                    GateReason::Authz(Reason::UnknownSigner),
                    "the line that admitted the signer left the trust store or is no longer valid",
                )
            } else {
                refused(
                    None,
                    GateReason::Threshold,
                    format!(
                        "keys.rotate needs more distinct keys of one role: has {}",
                        counts.join(", ")
                    ),
                )
            };
            return (d, verdicts);
        };
        let Some((_, v)) = passed.iter().find(|(_, v)| v.role == role) else {
            return (
                refused(
                    None,
                    GateReason::Journal,
                    "internal: no signer of the chosen role",
                ),
                verdicts,
            );
        };
        // What the audit chain keeps: every signature of the rotating role that counted.
        let counted: Vec<String> = passed
            .iter()
            .filter(|(i, _)| matches!(verdicts[*i], SigVerdict::Counted(_)))
            .filter(|(_, v)| v.role == role)
            .filter_map(|(i, _)| std::str::from_utf8(&sigs[*i]).ok().map(str::to_string))
            .collect();
        let proof = steward_audit::Proof {
            payload: String::from_utf8_lossy(payload).into_owned(),
            signatures: counted,
            trust_store: String::new(),
            host: String::new(),
            action: None,
            identity: None,
        };
        (self.rotate_with(v, role, now, proof), verdicts)
    }

    /// The rotation itself, once enough keys of `role` signed `v`'s payload.
    fn rotate_with(
        &self,
        v: &VerifiedOp,
        role: Role,
        now: OffsetDateTime,
        mut proof: steward_audit::Proof,
    ) -> Decision {
        let text = match (
            v.payload.params.len(),
            v.payload
                .params
                .get("allowed_signers")
                .and_then(|t| t.as_str()),
        ) {
            (1, Some(t)) => t.to_string(),
            _ => {
                return refused(
                    None,
                    GateReason::BindingMismatch,
                    "keys.rotate takes exactly params.allowed_signers",
                )
            }
        };
        if v.payload.guest.is_some() {
            return refused(
                None,
                GateReason::BindingMismatch,
                "keys.rotate names no guest",
            );
        }
        let Some(path) = self.config.trust_store_path.clone() else {
            return refused(
                None,
                GateReason::RotationRefused,
                "no trust store path configured",
            );
        };
        let old = match self.verifier.read() {
            Ok(g) => {
                proof.host = g.config().host.clone();
                g.trust_store().clone()
            }
            Err(_) => return refused(None, GateReason::Journal, "verifier lock poisoned"),
        };
        proof.trust_store = old.digest().to_string();
        let new = match check(&old, &text, role, now.unix_timestamp()) {
            Ok(s) => s,
            Err(RotationError::RoleDenied(e)) => return refused(None, GateReason::RoleDenied, e),
            Err(e) => return refused(None, GateReason::RotationRefused, e.to_string()),
        };
        // The rotation and its proof go on the audit chain in the step that spends the nonce,
        // before the file is written: a crash between the two leaves the old file, which the
        // agent records as the store it loaded when it starts again (`trust_store_loaded`).
        let event = serde_json::json!({
            "type": steward_audit::ROTATION_EVENT,
            "role": role,
            "entries": new.entries().len(),
            "new_trust_store": new.digest(),
            "proof": proof,
        });
        match self
            .journal
            .consume_nonce_recording(&v.payload.nonce, v.nonce_keep_until, event)
        {
            Ok(Consumed::Fresh) => {}
            Ok(Consumed::AlreadyConsumed) => return Decision::Replay { first: None },
            Err(e) => return refused(None, GateReason::Journal, e.to_string()),
        }
        if let Err(e) = write_atomically(&path, &text) {
            return refused(
                None,
                GateReason::Journal,
                format!("{}: {e}", path.display()),
            );
        }
        let entries = new.entries().len();
        match self.verifier.write() {
            Ok(mut g) => {
                let config = g.config().clone();
                match Verifier::new(new, config) {
                    Ok(nv) => {
                        *g = nv;
                        self.generation
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(e) => return refused(None, GateReason::RotationRefused, e.to_string()),
                }
            }
            Err(_) => return refused(None, GateReason::Journal, "verifier lock poisoned"),
        }
        Decision::Rotated { entries }
    }
}
