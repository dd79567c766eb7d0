//! The options field of an allowed_signers line, read as OpenSSH's `sshsigopt_parse` reads it:
//! comma-separated, case-insensitive keywords, values in double quotes with `\"` escapes, no
//! repeats, no trailing comma. Any deviation is an error here: Steward refuses the whole file
//! where OpenSSH would skip the line. Must never accept an option it does not understand.

use super::timestamp;

/// The options Steward understands on an allowed_signers line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineOptions {
    /// `cert-authority`: the key is a CA; only certificates it signed match.
    pub cert_authority: bool,
    /// `namespaces="…"`: the pattern-list of admitted namespaces (None: every namespace).
    pub namespaces: Option<String>,
    /// `valid-after="…"`, Unix seconds.
    pub valid_after: Option<i64>,
    /// `valid-before="…"`, Unix seconds.
    pub valid_before: Option<i64>,
}

/// Parses one options token (no unquoted white space in it).
pub fn parse(token: &str) -> Result<LineOptions, String> {
    let mut out = LineOptions::default();
    let mut rest = token;
    loop {
        if let Some(r) = keyword(rest, "cert-authority") {
            out.cert_authority = true;
            rest = r;
        } else if let Some(r) = valued(rest, "namespaces") {
            let (v, r) = dequote(r, "namespaces")?;
            if out.namespaces.replace(v).is_some() {
                return Err("multiple namespaces clauses".into());
            }
            rest = r;
        } else if let Some(r) = valued(rest, "valid-after") {
            let (v, r) = dequote(r, "valid-after")?;
            let t = timestamp::parse(&v).map_err(|e| format!("valid-after: {e}"))?;
            if out.valid_after.replace(t).is_some() {
                return Err("multiple valid-after clauses".into());
            }
            rest = r;
        } else if let Some(r) = valued(rest, "valid-before") {
            let (v, r) = dequote(r, "valid-before")?;
            let t = timestamp::parse(&v).map_err(|e| format!("valid-before: {e}"))?;
            if out.valid_before.replace(t).is_some() {
                return Err("multiple valid-before clauses".into());
            }
            rest = r;
        } else {
            let name: String = rest.chars().take_while(|&c| c != ',' && c != '=').collect();
            return Err(format!("unknown option {name:?}"));
        }
        match rest.strip_prefix(',') {
            None if rest.is_empty() => break,
            None => return Err(format!("unexpected text {rest:?} after an option")),
            Some("") => return Err("unexpected end of options after ','".into()),
            Some(r) => rest = r,
        }
    }
    if let (Some(a), Some(b)) = (out.valid_after, out.valid_before) {
        if b <= a {
            return Err("valid-before is not after valid-after".into());
        }
    }
    Ok(out)
}

/// A bare keyword, matched case-insensitively and ending at `,` or the end of the token.
fn keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    let rest = &s[kw.len()..];
    (head.eq_ignore_ascii_case(kw) && (rest.is_empty() || rest.starts_with(','))).then_some(rest)
}

/// `keyword=` matched case-insensitively; returns what follows the `=`.
fn valued<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    let rest = s[kw.len()..].strip_prefix('=')?;
    head.eq_ignore_ascii_case(kw).then_some(rest)
}

/// A double-quoted value, read as OpenSSH's `opt_dequote`: `\"` is the only escape (it yields
/// `"`); every other backslash is literal, so in `\\"` the quote is escaped.
fn dequote<'a>(s: &'a str, what: &str) -> Result<(String, &'a str), String> {
    let body = s
        .strip_prefix('"')
        .ok_or_else(|| format!("{what}: value must be in double quotes"))?;
    let mut out = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some((_, '"'))) => {
                chars.next();
                out.push('"');
            }
            '"' => return Ok((out, &body[i + 1..])),
            _ => out.push(c),
        }
    }
    Err(format!("{what}: missing closing quote"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_option() {
        let o = parse(r#"CERT-AUTHORITY,Namespaces="op@steward",valid-after="20200101Z",valid-before="20300101Z""#)
            .unwrap();
        assert!(o.cert_authority);
        assert_eq!(o.namespaces.as_deref(), Some("op@steward"));
        assert_eq!(o.valid_after, Some(1_577_836_800));
        assert!(o.valid_before.is_some());
        let o = parse(r#"namespaces="a\"b,c d""#).unwrap();
        assert_eq!(o.namespaces.as_deref(), Some("a\"b,c d"));
        // Only \" escapes; other backslashes are literal (opt_dequote).
        let o = parse(r#"namespaces="a\b""#).unwrap();
        assert_eq!(o.namespaces.as_deref(), Some(r"a\b"));
    }

    #[test]
    fn refuses_what_openssh_refuses() {
        for (bad, why) in [
            ("octopus", "unknown option"),
            ("cert-authorityX", "unknown option"),
            ("namespaces=op@steward", "double quotes"),
            (r#"namespaces="op@steward","#, "end of options"),
            (r#"namespaces="a",namespaces="b""#, "multiple"),
            (
                r#"valid-after="20200101Z",valid-after="20200102Z""#,
                "multiple",
            ),
            (
                r#"valid-after="20300101Z",valid-before="20200101Z""#,
                "not after",
            ),
            (r#"valid-after="20200101""#, "local time"),
            (r#"namespaces="op@steward"x"#, "unexpected text"),
            (r#"namespaces="op@steward"#, "closing quote"),
            // `\\"`: the backslash before the quote escapes it, so the value never closes.
            (r#"namespaces="op@steward,x\\""#, "closing quote"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
