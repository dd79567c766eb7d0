//! OpenSSH pattern-lists (`ssh_config(5)` PATTERNS, `match.c`): comma-separated globs with `*`
//! and `?`, where a matching `!`-negated pattern makes the whole list fail. Case-sensitive, as
//! allowed_signers uses them. Must never allocate per character or recurse without bound.

/// How a pattern-list judged a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMatch {
    /// A positive pattern matched and no negated one did.
    Yes,
    /// No positive pattern matched.
    No,
    /// A negated pattern matched: refused whatever else matches.
    Negated,
}

/// The longest sub-pattern OpenSSH's `match_pattern_list` will match (it gives up on longer ones).
pub const MAX_PATTERN_LEN: usize = 1023;

/// Refuses lists OpenSSH would treat differently: sub-patterns it cannot hold.
pub fn check_list(list: &str) -> Result<(), String> {
    match list.split(',').find(|p| p.len() >= MAX_PATTERN_LEN) {
        Some(p) => Err(format!(
            "a pattern of {} bytes (OpenSSH matches at most {})",
            p.len(),
            MAX_PATTERN_LEN - 1
        )),
        None => Ok(()),
    }
}

/// Matches `s` against the comma-separated pattern-list `list`.
pub fn match_list(s: &str, list: &str) -> ListMatch {
    let mut positive = false;
    for pat in list.split(',') {
        let (negated, pat) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat),
        };
        if glob(s.as_bytes(), pat.as_bytes()) {
            if negated {
                return ListMatch::Negated;
            }
            positive = true;
        }
    }
    if positive {
        ListMatch::Yes
    } else {
        ListMatch::No
    }
}

/// `*` matches any run (also empty), `?` exactly one byte. Iterative with one backtrack point,
/// so it is linear-ish and cannot blow the stack on hostile input.
fn glob(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs_as_openssh() {
        assert!(glob(b"alice@steward.test", b"*@steward.test"));
        assert!(glob(b"op-ed25519@x", b"op-ed?5519@x"));
        assert!(!glob(b"op-ed5519@x", b"op-ed?5519@x"));
        assert!(glob(b"", b"*"));
        assert!(!glob(b"a", b""));
        assert!(glob(b"abcabc", b"*abc"));
        assert!(glob(b"aXbXc", b"a*b*c"));
        assert!(!glob(b"Alice", b"alice"));
    }

    #[test]
    fn lists_with_negation() {
        assert_eq!(match_list("op@steward", "op@steward"), ListMatch::Yes);
        assert_eq!(match_list("op@steward", "file,op@steward"), ListMatch::Yes);
        assert_eq!(match_list("op@steward", "file, op@steward"), ListMatch::No);
        assert_eq!(match_list("x@d", "!x@d,*@d"), ListMatch::Negated);
        assert_eq!(match_list("y@d", "!x@d,*@d"), ListMatch::Yes);
        assert_eq!(match_list("op@steward", ""), ListMatch::No);
        assert_eq!(
            match_list("recovery@steward", "*@steward,!op@*"),
            ListMatch::Yes
        );
        assert_eq!(
            match_list("op@steward", "*@steward,!op@*"),
            ListMatch::Negated
        );
    }

    proptest! {
        #[test]
        fn literal_pattern_matches_only_itself(a in "[a-z@.]{0,12}", b in "[a-z@.]{0,12}") {
            prop_assert_eq!(glob(a.as_bytes(), a.as_bytes()), true);
            prop_assert_eq!(glob(a.as_bytes(), b.as_bytes()), a == b);
        }

        #[test]
        fn star_prefix_matches_any_suffix(pre in "[a-z]{0,8}", suf in "[a-z]{0,8}") {
            let s = format!("{pre}{suf}");
            let p = format!("*{suf}");
            prop_assert!(glob(s.as_bytes(), p.as_bytes()));
        }
    }
}
