//! Typed rejection reasons: the stable, snake_case codes that the library, `steward-verify`, the
//! gate and the journal all print. Must never grow a catch-all "other" code: every
//! refusal names the step of the locked pipeline that refused.

use std::fmt;

/// Why a signed op was refused. The `code()` strings are a stable interface: scripts, the audit
/// log and the adversarial matrix match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The armored SSHSIG could not be decoded (armor, base64, wire format, reserved field).
    MalformedSignature,
    /// The signature's namespace is not one of Steward's (`op@steward`, `recovery@steward`).
    Namespace,
    /// No trust-store line admits this key (or certificate) for this namespace at this time.
    UnknownSigner,
    /// The key or signature algorithm is one Steward refuses (SHA-1 RSA, RSA under 2048 bits,
    /// webauthn, post-quantum hybrids, DSA, …).
    UnsupportedAlgorithm,
    /// The cryptographic check failed, or a security-key signature lacks user presence.
    BadSignature,
    /// The op payload is not a well-formed, strictly valid op document.
    MalformedOp,
    /// The op names another host.
    Target,
    /// The op's window has not opened yet (beyond the allowed skew).
    NotYetValid,
    /// The op's window has closed (beyond the allowed skew).
    Expired,
    /// The op's nonce was consumed already.
    Replay,
    /// The nonce store could not answer; fail closed (never produced offline).
    NonceStore,
}

impl Reason {
    /// Every reason, in pipeline order.
    pub const ALL: [Reason; 11] = [
        Reason::MalformedSignature,
        Reason::Namespace,
        Reason::UnknownSigner,
        Reason::UnsupportedAlgorithm,
        Reason::BadSignature,
        Reason::MalformedOp,
        Reason::Target,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::Replay,
        Reason::NonceStore,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MalformedSignature => "malformed_signature",
            Reason::Namespace => "namespace",
            Reason::UnknownSigner => "unknown_signer",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::BadSignature => "bad_signature",
            Reason::MalformedOp => "malformed_op",
            Reason::Target => "target",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::Replay => "replay",
            Reason::NonceStore => "nonce_store",
        }
    }

    /// The reason whose code is `code`, if any.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal: the typed reason plus a human-readable detail. The detail never carries secret
/// material (there is none in a signed op), but may quote the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The stable reason code.
    pub reason: Reason,
    /// What exactly was wrong, for a human.
    pub detail: String,
}

impl Rejection {
    /// A rejection with the given reason and detail. Details often quote what an unverified
    /// signature or payload said (an algorithm name, a namespace): every control character is
    /// escaped here, once, so that no detail can move a terminal's cursor, start a new log line,
    /// or print a fake `verified:` over a rejection.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: escape_controls(&detail.into()),
        }
    }
}

/// Characters that change how a terminal shows the text around them: control characters, and
/// the Unicode bidirectional and invisible format characters (a U+202E can make a rejection
/// read backwards).
fn hides(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `text` with every control and bidirectional/format character written as an escape
/// (`\u{1b}`, `\r`, `\u{202e}`, …).
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(hides) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if hides(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        assert_eq!(Reason::from_code("other"), None);
    }

    #[test]
    fn untrusted_text_cannot_draw_on_a_terminal() {
        let r = Rejection::new(
            Reason::UnsupportedAlgorithm,
            "signature algorithm x\r\x1b[2Kverified: principal=alice\n is not supported",
        );
        let shown = r.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        let bidi = Rejection::new(Reason::Namespace, "namespace \u{202e}dellorter");
        assert!(bidi.to_string().contains("\\u{202e}"), "{bidi}");
        assert!(
            shown.contains("\\r") && shown.contains("\\u{1b}"),
            "{shown}"
        );
    }
}
