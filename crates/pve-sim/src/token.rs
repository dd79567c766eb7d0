//! The tokens the simulated node accepts, written from Proxmox's side of the exchange rather than
//! borrowed from the client: pve-access-control reads `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`
//! (`PVE::APIServer` splits the header at `=` after the token id), so a client that formats the
//! header wrongly is refused here exactly as a node would refuse it. It must never print a secret.

use std::fmt;

/// A token the node knows: `user@realm!tokenid` and its secret.
#[derive(Clone)]
pub struct SimToken {
    id: String,
    secret: String,
}

impl fmt::Debug for SimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimToken({}=<redacted>)", self.id)
    }
}

impl SimToken {
    /// Parses `user@realm!tokenid=SECRET`, the line `pveum user token add` prints and the form a
    /// token file holds (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<SimToken, String> {
        let text = text.trim();
        let (id, secret) = text
            .split_once('=')
            .ok_or("a token is user@realm!tokenid=SECRET")?;
        let (user, tokenid) = id
            .split_once('!')
            .ok_or_else(|| format!("token id {id:?} is not user@realm!tokenid"))?;
        if !user.contains('@') || tokenid.is_empty() || secret.is_empty() {
            return Err(format!("token id {id:?} is not user@realm!tokenid"));
        }
        Ok(SimToken {
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// `user@realm!tokenid`, as Proxmox names the token in task UPIDs and ACLs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether an `Authorization` header value presents this token.
    pub fn presented_by(&self, header: &str) -> bool {
        let Some(rest) = header.strip_prefix("PVEAPIToken=") else {
            return false;
        };
        match rest.split_once('=') {
            Some((id, secret)) => id == self.id && secret == self.secret,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_presented_only_in_proxmox_header_form() {
        let t = SimToken::parse("steward@pve!agent=0f3c1d2e-aaaa\n").unwrap();
        assert!(t.presented_by("PVEAPIToken=steward@pve!agent=0f3c1d2e-aaaa"));
        assert!(!t.presented_by("PVEAPIToken=steward@pve!agent=0f3c1d2e-aaab"));
        assert!(!t.presented_by("PVEAPIToken steward@pve!agent=0f3c1d2e-aaaa"));
        assert!(!t.presented_by("Bearer 0f3c1d2e-aaaa"));
        assert!(!format!("{t:?}").contains("0f3c1d2e"));
        assert!(SimToken::parse("root@pam=secret").is_err());
    }
}
