//! Loading the allowed_signers text into entries, and deciding admission. Must never admit a key
//! by anything but an exact key match (or a CA match plus the certificate checks below).

use super::options::{self, LineOptions};
use super::pattern::{self, match_list, ListMatch};
use crate::reason::{Reason, Rejection};
use crate::role::{Role, OP_NAMESPACE, RECOVERY_NAMESPACE};
use crate::sig;
use ssh_key::{certificate::CertType, public::KeyData, Certificate, HashAlg, PublicKey};
use std::collections::HashMap;
use std::fmt;

/// Certificate critical options Steward understands. `verify-required` is enforced (the
/// security key must have verified the user); anything else, including OpenSSH's
/// `force-command` and `source-address`, which mean nothing for a signature, is refused rather
/// than silently ignored as `ssh-keygen -Y verify` does.
const KNOWN_CRITICAL_OPTIONS: &[&str] = &["verify-required"];

/// A trust-store load failure: which file, which line, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// The name the caller gave the text (normally its path).
    pub source: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.message)
    }
}

impl std::error::Error for LoadError {}

/// One admitted line of the trust store.
#[derive(Clone, Debug)]
pub struct TrustEntry {
    /// 1-based line number in the source.
    pub line: usize,
    /// The principals pattern-list, as written (quotes removed).
    pub principals: String,
    /// The line's options.
    pub options: LineOptions,
    /// The role its namespaces confer.
    pub role: Role,
    /// The key (a CA key when `options.cert_authority`).
    pub key: PublicKey,
}

impl TrustEntry {
    /// `SHA256:…` of the line's key.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Whether the line's principals pattern-list admits `principal` (as for a certificate's
    /// principal): matched, and not negated.
    pub fn admits_principal(&self, principal: &str) -> bool {
        match_list(principal, &self.principals) == ListMatch::Yes
    }

    fn admits_namespace(&self, ns: &str) -> bool {
        match &self.options.namespaces {
            None => true,
            Some(list) => match_list(ns, list) == ListMatch::Yes,
        }
    }

    fn window_holds(&self, now: i64) -> bool {
        self.options.valid_after.is_none_or(|a| now >= a)
            && self.options.valid_before.is_none_or(|b| now <= b)
    }
}

/// What the allow-list step found: who signed, in which role, with which key.
#[derive(Clone, Debug)]
pub struct Admission<'a> {
    /// The line that admitted the signer.
    pub entry: &'a TrustEntry,
    /// The principal: the line's principals for a plain key, the matching certificate
    /// principal for a certificate.
    pub principal: String,
    /// The role of the line.
    pub role: Role,
    /// The key that must have made the signature (a certificate's subject key).
    pub subject: &'a KeyData,
    /// Whether a certificate demands user verification (`verify-required`).
    pub require_user_verified: bool,
    /// For a certificate: the end of its validity (`valid_before`, Unix seconds); None for a
    /// plain key.
    pub certificate_valid_before: Option<i64>,
}

/// A loaded allowed_signers file.
#[derive(Clone, Debug)]
pub struct TrustStore {
    source: String,
    entries: Vec<TrustEntry>,
    digest: String,
}

/// Lower-case hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TrustStore {
    /// A store that admits no signer (`source` names why, e.g. "(no trust store)"): what an
    /// agent runs with when its allowed_signers file is missing or refused, so nothing
    /// destructive can execute.
    pub fn empty(source: &str) -> TrustStore {
        TrustStore {
            source: source.to_string(),
            entries: Vec::new(),
            digest: sha256_hex(b""),
        }
    }

    /// Parses allowed_signers text. `source` names it in errors (normally the path).
    ///
    /// Fails on the first line that OpenSSH would not accept, or that admits a key to both
    /// Steward namespaces or to neither, or that gives a key another role than an earlier line.
    pub fn parse(source: &str, text: &[u8]) -> Result<TrustStore, LoadError> {
        let mut entries = Vec::new();
        let mut roles: HashMap<KeyData, (Role, usize)> = HashMap::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let err = |message: String| LoadError {
                source: source.to_string(),
                line,
                message,
            };
            let raw = std::str::from_utf8(raw).map_err(|_| err("line is not UTF-8".into()))?;
            let Some(entry) = parse_line(raw, line).map_err(err)? else {
                continue;
            };
            if let Some((role, first)) = roles.get(entry.key.key_data()) {
                if *role != entry.role {
                    return Err(err(format!(
                        "key {} is {} here but {} on line {first}",
                        entry.key.fingerprint(HashAlg::Sha256),
                        entry.role,
                        role
                    )));
                }
            } else {
                roles.insert(entry.key.key_data().clone(), (entry.role, line));
            }
            entries.push(entry);
        }
        Ok(TrustStore {
            source: source.to_string(),
            entries,
            digest: sha256_hex(text),
        })
    }

    /// Lower-case hex SHA-256 of the exact text it was parsed from (of nothing for an empty
    /// store): which trust store was in force, as the audit chain records it.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The name given at load.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The admitted lines, in file order.
    pub fn entries(&self) -> &[TrustEntry] {
        &self.entries
    }

    /// The allow-list step: the first line that names this signer (or its certificate's CA),
    /// admits `namespace`, and whose window holds at `now` (Unix seconds). Otherwise
    /// `unknown_signer`, saying the closest miss.
    pub fn admit<'a>(
        &'a self,
        signer: &'a KeyData,
        namespace: &str,
        now: i64,
    ) -> Result<Admission<'a>, Rejection> {
        match signer.certificate() {
            Some(cert) => self.admit_certificate(cert, namespace, now),
            None => self.admit_key(signer, namespace, now),
        }
    }

    fn admit_key<'a>(
        &'a self,
        key: &'a KeyData,
        namespace: &str,
        now: i64,
    ) -> Result<Admission<'a>, Rejection> {
        // The closest miss, described only if nothing admits (the fingerprint costs a hash).
        let mut miss: Option<(usize, &str)> = None;
        for e in self.entries.iter() {
            if e.options.cert_authority || e.key.key_data() != key {
                continue;
            }
            if !e.admits_namespace(namespace) {
                miss = Some((e.line, "is not admitted to namespace"));
                continue;
            }
            if !e.window_holds(now) {
                miss = Some((e.line, "is outside its valid-after/valid-before window at"));
                continue;
            }
            return Ok(Admission {
                entry: e,
                principal: e.principals.clone(),
                role: e.role,
                subject: key,
                require_user_verified: false,
                certificate_valid_before: None,
            });
        }
        let fp = key.fingerprint(HashAlg::Sha256);
        let detail = match miss {
            None => format!("key {fp} is not in {}", self.source),
            Some((line, why)) if why.ends_with("namespace") => {
                format!("key {fp} (line {line}) {why} {namespace}")
            }
            Some((line, why)) => {
                let at = time::OffsetDateTime::from_unix_timestamp(now)
                    .map(crate::pipeline::fmt_time)
                    .unwrap_or_else(|_| now.to_string());
                format!("key {fp} (line {line}) {why} {at}")
            }
        };
        Err(Rejection::new(Reason::UnknownSigner, detail))
    }

    fn admit_certificate<'a>(
        &'a self,
        cert: &'a Certificate,
        namespace: &str,
        now: i64,
    ) -> Result<Admission<'a>, Rejection> {
        let ca_fp = cert.signature_key().fingerprint(HashAlg::Sha256);
        let mut miss = format!(
            "certificate CA {ca_fp} is not a cert-authority in {}",
            self.source
        );
        for e in self.entries.iter() {
            if !e.options.cert_authority || e.key.key_data() != cert.signature_key() {
                continue;
            }
            if !e.admits_namespace(namespace) {
                miss = format!(
                    "CA {ca_fp} (line {}) is not admitted to namespace {namespace}",
                    e.line
                );
                continue;
            }
            if !e.window_holds(now) {
                miss = format!(
                    "CA {ca_fp} (line {}) is outside its valid-after/valid-before window",
                    e.line
                );
                continue;
            }
            if let Err(why) = check_certificate(cert, &ca_fp, now) {
                miss = why;
                continue;
            }
            let Some(principal) = cert
                .valid_principals()
                .iter()
                .find(|p| match_list(p, &e.principals) == ListMatch::Yes)
            else {
                miss = format!(
                    "no principal of the certificate ({}) matches line {} ({})",
                    cert.valid_principals().join(","),
                    e.line,
                    e.principals
                );
                continue;
            };
            return Ok(Admission {
                entry: e,
                principal: principal.clone(),
                role: e.role,
                subject: cert.public_key(),
                require_user_verified: cert.critical_options().contains_key("verify-required"),
                certificate_valid_before: Some(
                    i64::try_from(cert.valid_before()).unwrap_or(i64::MAX),
                ),
            });
        }
        Err(Rejection::new(Reason::UnknownSigner, miss))
    }
}

/// The checks `Certificate::validate_at` leaves to its caller, and that call itself.
fn check_certificate(
    cert: &Certificate,
    ca_fp: &ssh_key::Fingerprint,
    now: i64,
) -> Result<(), String> {
    if cert.cert_type() != CertType::User {
        return Err("certificate is a host certificate, not a user certificate".into());
    }
    if cert.valid_principals().is_empty() {
        return Err("certificate lists no principal".into());
    }
    if let Some(opt) = cert
        .critical_options()
        .keys()
        .find(|k| !KNOWN_CRITICAL_OPTIONS.contains(&k.as_str()))
    {
        return Err(format!(
            "certificate carries critical option {opt:?} that Steward does not understand"
        ));
    }
    if !sig::key_algorithm_supported(cert.signature_key()) {
        return Err(format!(
            "CA key type {} is not supported",
            cert.signature_key().algorithm()
        ));
    }
    let now = u64::try_from(now).map_err(|_| "time before 1970".to_string())?;
    cert.validate_at(now, [ca_fp]).map_err(|_| {
        if now < cert.valid_after() || now >= cert.valid_before() {
            "certificate is outside its validity period".to_string()
        } else {
            "certificate signature by its CA does not verify".to_string()
        }
    })
}

/// One line → an entry, `None` for blank and comment lines.
fn parse_line(raw: &str, line: usize) -> Result<Option<TrustEntry>, String> {
    let text = raw.strip_suffix('\r').unwrap_or(raw);
    let text = text.trim_start_matches([' ', '\t']);
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = take_principals(text)?;
    if principals.is_empty() {
        return Err("empty principals field".into());
    }
    check_principals(&principals)?;
    let rest = rest.trim_start_matches(FIELD_SEPARATORS);
    let (options, key) = match PublicKey::from_openssh(&key_text(rest)) {
        Ok(key) => (LineOptions::default(), key),
        Err(key_err) => {
            let (token, after) = split_options_token(rest);
            let options = options::parse(token);
            if after.is_empty() {
                // Either a bad key with no options, or options that swallowed the line (an
                // unclosed quote): say which.
                return Err(match options {
                    Err(e) => e,
                    Ok(_) => format!("cannot parse key: {key_err}"),
                });
            }
            let options = options?;
            if let Some(ns) = &options.namespaces {
                pattern::check_list(ns).map_err(|e| format!("namespaces: {e}"))?;
            }
            let key = PublicKey::from_openssh(&key_text(after.trim_start_matches([' ', '\t'])))
                .map_err(|e| format!("cannot parse key: {e}"))?;
            (options, key)
        }
    };
    if key.key_data().is_certificate() {
        return Err(
            "a certificate where a key is expected (use cert-authority with the CA key)".into(),
        );
    }
    if !sig::key_algorithm_supported(key.key_data()) {
        return Err(format!("key type {} is not supported", key.algorithm()));
    }
    sig::check_key_strength(key.key_data()).map_err(|r| r.detail)?;
    let role = role_of(&options)?;
    Ok(Some(TrustEntry {
        line,
        principals,
        options,
        role,
        key,
    }))
}

/// `type blob [comment]` with the run of spaces and tabs between type and blob (and between
/// blob and comment) made one space, as OpenSSH's `sshkey_read` skips any whitespace there;
/// the comment itself is kept as written.
fn key_text(s: &str) -> String {
    let mut parts = s.splitn(2, [' ', '\t']);
    let ty = parts.next().unwrap_or("");
    let rest = parts.next().unwrap_or("").trim_start_matches([' ', '\t']);
    let mut parts = rest.splitn(2, [' ', '\t']);
    let blob = parts.next().unwrap_or("");
    let comment = parts.next().unwrap_or("").trim_start_matches([' ', '\t']);
    match (blob.is_empty(), comment.is_empty()) {
        (true, _) => ty.to_string(),
        (false, true) => format!("{ty} {blob}"),
        (false, false) => format!("{ty} {blob} {comment}"),
    }
}

/// Separators between fields, as OpenSSH's `strdelim` splits them.
const FIELD_SEPARATORS: [char; 3] = [' ', '\t', '\r'];

/// The principals field: quoted (may hold spaces) or up to the first separator. A quote inside
/// an unquoted field would start a quoted section for OpenSSH: refused rather than guessed at.
fn take_principals(text: &str) -> Result<(String, &str), String> {
    if let Some(q) = text.strip_prefix('"') {
        let end = q.find('"').ok_or("principals: missing closing quote")?;
        let rest = &q[end + 1..];
        if !(rest.is_empty() || rest.starts_with(FIELD_SEPARATORS)) {
            return Err("principals: text right after the closing quote".into());
        }
        return Ok((q[..end].to_string(), rest));
    }
    let end = text.find(FIELD_SEPARATORS).unwrap_or(text.len());
    let field = &text[..end];
    if field.contains('"') {
        return Err(format!(
            "principals {field:?}: a quote inside an unquoted field"
        ));
    }
    Ok((field.to_string(), &text[end..]))
}

/// The options token runs to the first space or tab outside double quotes; `\"` is skipped as
/// a pair and never toggles quoting (`sshkey_advance_past_options`).
fn split_options_token(s: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some((_, '"'))) => {
                chars.next();
            }
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return (&s[..i], &s[i..]),
            _ => {}
        }
    }
    (s, "")
}

/// Refuses a principals list that cannot admit anybody: OpenSSH would never match it, so a
/// line Steward admits by key alone must not carry one.
fn check_principals(list: &str) -> Result<(), String> {
    // OpenSSH's line reader stops at a NUL and its matching never sees control characters in
    // a name a certificate could carry: such a line cannot mean what it says.
    if list.chars().any(char::is_control) {
        return Err(format!(
            "principals {:?}: a control character",
            crate::reason::escape_controls(list)
        ));
    }
    pattern::check_list(list).map_err(|e| format!("principals: {e}"))?;
    let positives: Vec<&str> = list.split(',').filter(|p| !p.starts_with('!')).collect();
    if positives.is_empty() {
        return Err(format!("principals {list:?} has no positive pattern"));
    }
    // A list whose negations cover every positive pattern admits nobody (`*,!*`, `x*,!x*`):
    // refused, as a line that can never match is a mistake. Each positive pattern is tried
    // with witnesses (its wildcards filled a few ways); a list none of them passes is dead.
    if !positives
        .iter()
        .flat_map(|p| witnesses(p))
        .any(|w| match_list(&w, list) == ListMatch::Yes)
    {
        return Err(format!(
            "principals {list:?}: every name is negated (its negations cover every name it admits)"
        ));
    }
    Ok(())
}

/// Strings a glob matches, for the dead-list check: `*` as nothing or a few strings, `?` as a
/// few characters (letters, digits, punctuation, non-ASCII), so that a live list is not
/// mistaken for a dead one because its negations happen to cover one filling.
fn witnesses(pattern: &str) -> Vec<String> {
    ["", "z", "~9", "Q.0", "\u{e9}"]
        .iter()
        .flat_map(|star| {
            ["z", "~", "Q", "0", "\u{e9}"].iter().map(move |q| {
                pattern
                    .chars()
                    .map(|c| match c {
                        '*' => star.to_string(),
                        '?' => q.to_string(),
                        c => c.to_string(),
                    })
                    .collect::<String>()
            })
        })
        .collect()
}

fn role_of(options: &LineOptions) -> Result<Role, String> {
    let admits = |ns: &str| match &options.namespaces {
        None => true,
        Some(list) => match_list(ns, list) == ListMatch::Yes,
    };
    match (admits(OP_NAMESPACE), admits(RECOVERY_NAMESPACE)) {
        (true, false) => Ok(Role::Operational),
        (false, true) => Ok(Role::Recovery),
        (true, true) => Err(format!(
            "line admits the key to both {OP_NAMESPACE} and {RECOVERY_NAMESPACE}: give it exactly one (namespaces=\"{OP_NAMESPACE}\" or namespaces=\"{RECOVERY_NAMESPACE}\")"
        )),
        (false, false) => Err(format!(
            "line admits the key to no Steward namespace ({OP_NAMESPACE} or {RECOVERY_NAMESPACE})"
        )),
    }
}

#[cfg(test)]
mod tests;
