//! Builds the configured provider: a file, or a hub (token and trust loaded here, so a bad
//! token file stops the start with its path).
//! It must never start polling: the feed does, after recovery.

use crate::config::Config;
use anyhow::{Context, Result};
use std::time::Duration;
use steward_hub::{HubConfig, HubProvider};
use steward_providers::{FileProvider, Provider};
use steward_proxmox_client::{tls, Trust};

/// How long one request to the hub may take.
const HUB_TIMEOUT: Duration = Duration::from_secs(30);

/// The provider `cfg` names (`check-config` made sure it names exactly one).
pub fn from_config(cfg: &Config) -> Result<Box<dyn Provider>> {
    let p = &cfg.provider;
    if let Some(file) = &p.file {
        return Ok(Box::new(FileProvider::new(file)));
    }
    let url = p.hub.clone().context("[provider]: no file and no hub")?;
    let token = crate::preflight::hub_token(cfg)
        .context("[provider]: a hub needs hub_token_file")?
        .map_err(anyhow::Error::msg)?;
    let trust = match (&p.hub_fingerprint, &p.hub_ca_file) {
        (Some(f), _) => Trust::Fingerprint(tls::parse_fingerprint(f).map_err(anyhow::Error::msg)?),
        (None, Some(ca)) => Trust::CaFile(ca.clone()),
        (None, None) => anyhow::bail!("[provider]: a hub needs hub_fingerprint or hub_ca_file"),
    };
    let hub = HubProvider::new(HubConfig {
        url,
        node: cfg.node.clone(),
        token,
        trust,
        timeout: HUB_TIMEOUT,
    })
    .map_err(anyhow::Error::msg)?;
    Ok(Box::new(hub))
}
