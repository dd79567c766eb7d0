//! `keys.rotate`: replacing the trust store by a signed op. Recovery keys may change any line;
//! operational keys may add or retire operational keys only; no rotation may leave the store
//! without a recovery key. The new file is written atomically (write, fsync, rename, fsync the
//! directory). Must never write a file that does not load, and never widen an operational
//! signer's powers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use steward_authz::TrustEntry;
use steward_authz::{Role, TrustStore};

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
