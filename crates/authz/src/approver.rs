//! Who counts as one approver when several signatures approve one op (m-of-n): the rule the
//! gate's tally and the offline verifier share, so that they can never count differently. Pure
//! and verify-only; it must never widen what a single signature authorizes.

/// Whether two admitted signers are the same approver: the same key (`SHA256:…`
/// fingerprints equal; a certificate counts as the key it certifies), or a principal name in
/// common. Names matter because a certificate authority vouches for names, not keys: an
/// operator who gets two fresh keys certified as `alice` is still one approver. Principals are
/// compared as the comma-separated names the trust store or certificate gave (negated entries,
/// `!name`, are no one's name); this can only merge approvers, never split one.
pub fn same_approver(a_key: &str, a_principal: &str, b_key: &str, b_principal: &str) -> bool {
    if a_key == b_key {
        return true;
    }
    let names = |p: &'_ str| -> Vec<String> {
        p.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty() && !n.starts_with('!'))
            .map(str::to_string)
            .collect()
    };
    let b = names(b_principal);
    names(a_principal).iter().any(|n| b.contains(n))
}

#[cfg(test)]
mod tests {
    use super::same_approver;

    #[test]
    fn one_key_or_one_name_is_one_approver() {
        assert!(same_approver("SHA256:k", "alice", "SHA256:k", "carol"));
        assert!(same_approver(
            "SHA256:k1",
            "alice@x",
            "SHA256:k2",
            "alice@x"
        ));
        assert!(same_approver(
            "SHA256:k1",
            "alice@x,bob@x",
            "SHA256:k2",
            "bob@x"
        ));
        assert!(!same_approver("SHA256:k1", "alice@x", "SHA256:k2", "bob@x"));
        assert!(!same_approver(
            "SHA256:k1",
            "alice@x,!bob@x",
            "SHA256:k2",
            "!bob@x"
        ));
        assert!(!same_approver("SHA256:k1", "", "SHA256:k2", ""));
    }
}
