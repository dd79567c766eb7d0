//! What `run` refuses before it starts, checked by the same code for `check-config`, so that
//! `check-config` says exactly what `run` would refuse: the API tokens and the hub token (mode,
//! owner and every directory above them: `steward_proxmox_client::files`), the CA files the
//! node and the hub are trusted by and the desired-state file (whoever writes a CA file can
//! read the tokens off the wire; whoever writes the desired state can stop every guest), and
//! the trust store (the same checks, then parsed whole). A refused trust store does not stop the agent: it runs
//! with nothing destructive allowed, and says so. It must never print a token's content.

use crate::config::{Settings, Source};
use steward_authz::TrustStore;
use steward_hub::HubToken;
use steward_proxmox_client::files::{check_secure_path, effective_uid, Sensitivity};
use steward_proxmox_client::ApiToken;

/// The everyday and the admin token, or why `run` refuses them.
pub fn tokens(cfg: &Settings) -> Result<(ApiToken, ApiToken), Vec<String>> {
    let everyday = ApiToken::from_file(&cfg.proxmox.token_file);
    let admin = ApiToken::from_file(&cfg.proxmox.admin_token_file);
    match (everyday, admin) {
        (Ok(e), Ok(a)) => Ok((e, a)),
        (e, a) => Err([e.err(), a.err()].into_iter().flatten().collect()),
    }
}

/// The hub's bearer token, when the provider is a hub.
pub fn hub_token(cfg: &Settings) -> Option<Result<HubToken, String>> {
    match &cfg.provider.source {
        Source::Hub { token_file, .. } => Some(HubToken::from_file(token_file)),
        Source::File(_) => None,
    }
}

/// The CA files and the desired-state file the configuration names, each checked like the
/// configuration itself; every problem, each naming its file and mode.
pub fn trusted_files(cfg: &Settings) -> Vec<String> {
    // A desired-state file may come later (the provider waits for it); a CA file may not.
    let desired = match &cfg.provider.source {
        Source::File(p) => Some(p).filter(|p| p.exists()),
        Source::Hub { .. } => None,
    };
    [
        cfg.proxmox.ca_file.as_ref(),
        cfg.provider.hub_ca_file.as_ref(),
        desired,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| check_secure_path(p, Sensitivity::Public, effective_uid()).err())
    .collect()
}

/// The hub client key, if one is configured: a secret, checked as a token file is (only its
/// owner may read it).
pub fn client_key(cfg: &Settings) -> Option<Result<(), String>> {
    match &cfg.provider.source {
        Source::Hub {
            identity: Some(id), ..
        } => Some(check_secure_path(
            &id.key_file,
            Sensitivity::Secret,
            effective_uid(),
        )),
        _ => None,
    }
}

/// The trust store, loaded only from a file nobody but root and the agent's user can write:
/// a store anyone could add a key to is no trust store.
pub fn trust_store(cfg: &Settings) -> Result<TrustStore, String> {
    let path = &cfg.trust_file;
    check_secure_path(path, Sensitivity::Public, effective_uid())?;
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    TrustStore::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())
}

/// Everything `run` would refuse, for `check-config`: fatal problems first, then a trust store
/// that would be refused (the agent would run with nothing destructive allowed).
pub fn problems(cfg: &Settings) -> Vec<String> {
    let mut out = tokens(cfg).err().unwrap_or_default();
    out.extend(trusted_files(cfg));
    if let Some(Err(e)) = hub_token(cfg) {
        out.push(e);
    }
    if let Some(Err(e)) = client_key(cfg) {
        out.push(e);
    }
    if let Err(e) = trust_store(cfg) {
        out.push(format!(
            "{e} (the trust store would be refused: the agent would run, but nothing destructive could execute)"
        ));
    }
    out
}
