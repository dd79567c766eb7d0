//! `steward-agent plan` and `steward-agent export`: the node read once with the everyday
//! (read) token, straight from Proxmox — whether or not the agent runs — and either the dry
//! run of a document (a file, or the hub's, fetched once as the agent polls it) against it or
//! the document that describes it. Printing only: the
//! reading, planning and exporting are the library's (`steward_engine::dry_run`,
//! `steward_planner::export`). It must never build a writer or touch the journal.

use crate::config::{self, Settings, Source};
use anyhow::{anyhow, bail, Context as _};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use steward_engine::dry_run;
use steward_model::{DesiredState, Vmid};
use steward_providers::{FileProvider, Provider, Update};
use steward_proxmox_client::{ApiToken, PveClient};

/// How `export` writes the document.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// TOML, as a file provider reads it.
    Toml,
    /// JSON, as a hub serves it.
    Json,
}

fn settings(path: &Path) -> anyhow::Result<Settings> {
    config::load(path).map_err(|errs| {
        anyhow!(
            "{} is not a good configuration:\n  {}",
            path.display(),
            errs.join("\n  ")
        )
    })
}

/// A read-only client: the everyday token, and no writer is ever made from it.
fn reader(cfg: &Settings) -> anyhow::Result<PveClient> {
    let token = ApiToken::from_file(&cfg.proxmox.token_file)
        .map_err(|e| anyhow!("the everyday token: {e}"))?;
    PveClient::new(cfg.proxmox.endpoint.clone(), token, &cfg.node).map_err(anyhow::Error::msg)
}

/// The document to plan: `--desired FILE`, else what the configured source serves now (the
/// file, or the hub's document for this node, fetched once as the agent would poll it).
async fn document(
    cfg: &Settings,
    desired: Option<PathBuf>,
) -> anyhow::Result<(DesiredState, String)> {
    let (mut provider, from): (Box<dyn Provider>, String) = match desired {
        Some(p) => (Box::new(FileProvider::new(&p)), p.display().to_string()),
        None => (
            crate::providers::from_config(cfg)?,
            match &cfg.provider.source {
                Source::File(p) => p.display().to_string(),
                Source::Hub { url, .. } => format!("the hub's document ({url})"),
            },
        ),
    };
    match provider.poll().await {
        // As the agent takes it: the guests placed on this node, or on none.
        Update::New(d) => Ok((d.for_node(&cfg.node), from)),
        Update::Refused(e) | Update::Unavailable(e) => bail!("{from}: {e}"),
        Update::Unchanged => bail!("{from}: not read"),
    }
}

/// `plan`: exit 0 when nothing would change, 2 when something would, 1 on error (as
/// Terraform's `-detailed-exitcode`).
pub async fn plan(config: &Path, desired: Option<PathBuf>, json: bool) -> anyhow::Result<bool> {
    let cfg = settings(config)?;
    let (d, from) = document(&cfg, desired).await?;
    let only: BTreeSet<Vmid> = d.guests.iter().map(|g| g.vmid).collect();
    let node = dry_run::read_node(&reader(&cfg)?, Some(&only))
        .await
        .context("reading the node")?;
    let view = dry_run::explain(&d, &node);
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(view.changes());
    }
    let esc = |s: &str| steward_authz::escape_controls(s);
    let (mut actions, mut held) = (0, 0);
    for g in &view.guests {
        println!("{} {}:", g.kind, g.vmid);
        for a in &g.actions {
            actions += 1;
            if a.destructive {
                held += 1;
                println!("  ! {}  HELD for a signature: {}", a.op, esc(&a.reason));
            } else {
                println!("  ~ {}  ({})", a.op, esc(&a.reason));
            }
            for f in &a.fields {
                println!(
                    "      {}: {} -> {}",
                    esc(&f.field),
                    f.observed.as_deref().map_or("(absent)".into(), esc),
                    f.desired.as_deref().map_or("(deleted)".into(), esc)
                );
            }
            for v in &a.removes {
                println!("      removes {}", esc(v));
            }
        }
        for n in &g.notes {
            println!("  note: {}", esc(n));
        }
    }
    if actions == 0 {
        println!("No changes: the node is as {from} says.");
    } else {
        println!(
            "Plan: {actions} action{} ({held} held for a signature) on {} guest{}.",
            if actions == 1 { "" } else { "s" },
            view.guests.iter().filter(|g| !g.actions.is_empty()).count(),
            if view.guests.len() == 1 { "" } else { "s" }
        );
    }
    Ok(view.changes())
}

/// `export`: the document that describes the node (or `guests`) as it is, on stdout; what it
/// could not say, on stderr.
pub async fn export(config: &Path, guests: &[u32], format: Format) -> anyhow::Result<()> {
    let cfg = settings(config)?;
    let only: Vec<Vmid> = guests
        .iter()
        .map(|g| Vmid::new(u64::from(*g)).map_err(|e| anyhow!("--guest {g}: {e}")))
        .collect::<anyhow::Result<_>>()?;
    let filter: BTreeSet<Vmid> = only.iter().copied().collect();
    let node = dry_run::read_node(&reader(&cfg)?, (!filter.is_empty()).then_some(&filter))
        .await
        .context("reading the node")?;
    if let Some(missing) = only.iter().find(|v| !node.contains_key(v)) {
        bail!("guest {missing} is not on node {}", cfg.node);
    }
    let (doc, left_out) = steward_planner::export::document(&node, &only);
    for l in &left_out {
        eprintln!("warning: {}", steward_authz::escape_controls(l));
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
        Format::Toml => print!("{}", toml::to_string(&doc).context("writing TOML")?),
    }
    Ok(())
}
