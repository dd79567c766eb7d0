//! Builds the configured provider: a file, or a hub (token and trust loaded here, so a bad
//! token file stops the start with its path).
//! It must never start polling: the feed does, after recovery.

use crate::config::{Settings, Source};
use anyhow::Result;
use std::time::Duration;
use steward_hub::{HubConfig, HubProvider};
use steward_providers::{FileProvider, Provider};

/// How long one request to the hub may take.
const HUB_TIMEOUT: Duration = Duration::from_secs(30);

/// The provider `cfg` names.
pub fn from_config(cfg: &Settings) -> Result<Box<dyn Provider>> {
    match &cfg.provider.source {
        Source::File(file) => Ok(Box::new(FileProvider::new(file))),
        Source::Hub {
            url,
            trust,
            identity,
            ..
        } => {
            let token = match crate::preflight::hub_token(cfg) {
                Some(t) => t.map_err(anyhow::Error::msg)?,
                None => anyhow::bail!("[provider]: a hub needs hub_token_file"),
            };
            let hub = HubProvider::new(HubConfig {
                url: url.clone(),
                node: cfg.node.clone(),
                token,
                trust: trust.clone(),
                identity: identity.clone(),
                timeout: HUB_TIMEOUT,
            })
            .map_err(anyhow::Error::msg)?;
            Ok(Box::new(hub))
        }
    }
}
