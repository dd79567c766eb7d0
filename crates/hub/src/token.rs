//! The agent's bearer token for the hub: read from a file only its owner can read, kept out of
//! every `Debug` and error.
//! The token must never reach a log, an error or a report.

use std::path::Path;

/// A bearer token.
#[derive(Clone)]
pub struct HubToken(String);

impl std::fmt::Debug for HubToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubToken(redacted)")
    }
}

impl HubToken {
    /// Reads `path` (one line; surrounding whitespace ignored). Refused when group or others
    /// may read it, or when it is empty or not a header-safe token.
    pub fn from_file(path: &Path) -> Result<HubToken, String> {
        let text = steward_proxmox_client::read_secret_file(path)?;
        HubToken::new(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A token from its text (visible ASCII, no spaces).
    pub fn new(text: &str) -> Result<HubToken, String> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the hub token must be one word of visible ASCII".into());
        }
        Ok(HubToken(text.to_string()))
    }

    /// The `Authorization` header value, marked sensitive (HTTP/2 encoders and debug output
    /// leave it out).
    pub(crate) fn header_value(&self) -> Result<hyper::header::HeaderValue, String> {
        let mut v = hyper::header::HeaderValue::from_str(&format!("Bearer {}", self.0))
            .map_err(|_| "the hub token is not a valid header value".to_string())?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// Whether `header` carries this token (for the hub stub).
    pub fn matches_header(&self, header: &str) -> bool {
        header
            .strip_prefix("Bearer ")
            .is_some_and(|t| constant_time_eq(t.as_bytes(), self.0.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_and_a_loose_file_is_refused() {
        let t = HubToken::new("s3cret-value").unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(t.matches_header("Bearer s3cret-value"));
        assert!(!t.matches_header("Bearer s3cret-valuE"));
        assert!(HubToken::new("two words").is_err());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hub-token");
        std::fs::write(&p, "s3cret-value\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = HubToken::from_file(&p).unwrap_err();
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(HubToken::from_file(&p).is_ok());
    }
}
