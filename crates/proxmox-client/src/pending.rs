//! A guest's config from its pending list: what `GET …/config` answers (pending values
//! applied, pending deletions gone, the digest apart) rebuilt from `GET …/pending`, so one read
//! tells both. It follows qemu-server's `GET …/config` without `current`: a pending value
//! replaces the current one, and a key pending deletion is left out. It must never invent a
//! digest: without one in the answer there is no config.

use crate::api::{GuestConfig, PendingEntry};
use std::collections::BTreeMap;

/// The config with pending values applied, or None when the list carries no digest.
pub(crate) fn applied(entries: &[PendingEntry]) -> Option<GuestConfig> {
    let mut values = BTreeMap::new();
    let mut digest = None;
    for e in entries {
        if e.key == "digest" {
            digest = e.value.clone();
            continue;
        }
        // qemu-server drops a key pending deletion with `delete $conf->{$opt} if $conf->{$opt}`:
        // a current value Perl calls false ("0", "") stays.
        if e.delete && !matches!(e.value.as_deref(), Some("0" | "")) {
            continue;
        }
        if let Some(v) = e.pending.as_ref().or(e.value.as_ref()) {
            values.insert(e.key.clone(), v.clone());
        }
    }
    Some(GuestConfig {
        values,
        digest: digest?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: Option<&str>, pending: Option<&str>, delete: bool) -> PendingEntry {
        PendingEntry {
            key: key.into(),
            value: value.map(str::to_string),
            pending: pending.map(str::to_string),
            delete,
        }
    }

    #[test]
    fn pending_values_win_deletions_go_and_the_digest_is_apart() {
        let list = [
            entry("memory", Some("2048"), Some("4096"), false),
            entry("cores", Some("2"), None, false),
            entry("tags", Some("web"), None, true),
            entry("onboot", None, Some("1"), false),
            entry("digest", Some("abc123"), None, false),
        ];
        let cfg = applied(&list).unwrap();
        assert_eq!(cfg.digest, "abc123");
        let want: BTreeMap<String, String> = [("memory", "4096"), ("cores", "2"), ("onboot", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(cfg.values, want);
        // `balloon: 0` pending deletion: GET …/config still shows it (Perl truthiness).
        let zero = [
            entry("balloon", Some("0"), None, true),
            entry("digest", Some("d"), None, false),
        ];
        assert_eq!(
            applied(&zero)
                .unwrap()
                .values
                .get("balloon")
                .map(String::as_str),
            Some("0")
        );
    }

    #[test]
    fn no_digest_no_config() {
        assert!(applied(&[entry("memory", Some("2048"), None, false)]).is_none());
    }
}
