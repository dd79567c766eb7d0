//! The API token: `PVEAPIToken=user@realm!tokenid=SECRET`, read from a file only root can read.
//! The secret never appears in `Debug`, `Display`, logs or errors: only the token id does.

use std::fmt;
use std::path::Path;

/// A Proxmox API token.
#[derive(Clone)]
pub struct ApiToken {
    id: String,
    secret: String,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}=<redacted>)", self.id)
    }
}

impl ApiToken {
    /// A token `user@realm!tokenid` with `secret`.
    pub fn new(id: &str, secret: &str) -> Result<ApiToken, String> {
        let (user, token) = id
            .split_once('!')
            .ok_or_else(|| format!("token id {id:?} is not user@realm!tokenid"))?;
        if !user.contains('@')
            || token.is_empty()
            || secret.is_empty()
            || secret.contains(char::is_whitespace)
        {
            return Err(format!(
                "token id {id:?} is not user@realm!tokenid with a secret"
            ));
        }
        Ok(ApiToken {
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// Parses `user@realm!tokenid=SECRET` (the form `pveum user token add` prints), as the
    /// content of a token file (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<ApiToken, String> {
        let text = text.trim();
        let (id, secret) = text
            .split_once('=')
            .ok_or("token file must hold user@realm!tokenid=SECRET")?;
        ApiToken::new(id, secret)
    }

    /// Reads a token file; refuses one that group or others can read.
    pub fn from_file(path: &Path) -> Result<ApiToken, String> {
        let text = read_secret_file(path)?;
        ApiToken::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `user@realm!tokenid`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `Authorization` header value.
    pub(crate) fn header(&self) -> String {
        format!("PVEAPIToken={}={}", self.id, self.secret)
    }

    /// Whether `header` is this token's (for the simulator's check).
    pub fn matches_header(&self, header: &str) -> bool {
        header == self.header()
    }
}

/// Reads a file that holds a secret, refusing one that group or others could read (a token
/// left world-readable is a token already leaked) or that anyone but root and the agent's user
/// could write or replace (`files::check_secure_path`). Errors name the path, never the
/// content.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    crate::files::check_secure_path(
        path,
        crate::files::Sensitivity::Secret,
        crate::files::effective_uid(),
    )?;
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_shows() {
        let t = ApiToken::parse("root@pam!steward=0f3c1d2e-aaaa-bbbb-cccc-1234567890ab\n").unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("0f3c1d2e"), "{shown}");
        assert!(shown.contains("root@pam!steward"));
        assert!(ApiToken::parse("root@pam=secret").is_err());
        assert!(ApiToken::parse("nope").is_err());
    }
}
