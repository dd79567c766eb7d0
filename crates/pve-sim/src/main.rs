//! `steward-pve-sim`: run the simulator standalone. Thin: arguments and the token file in,
//! `Sim::start`, wait for Ctrl-C or SIGTERM.
//! It must never listen beyond the addresses it is given.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use steward_pve_sim::{Faults, Privileges, Sim, SimConfig, SimToken};

/// A simulated Proxmox VE node or cluster (HTTPS with a self-signed certificate whose fingerprint is
/// printed), for tests, demos and benchmarks. It speaks the PVE 9.1 API for guests, tasks,
/// snapshots, storage and permissions, checks every request against Proxmox's own API schema,
/// and enforces token privileges as pve-access-control does.
///
/// The token file holds one token per line, `user@realm!tokenid=SECRET`, optionally followed by
/// its grants: `ROLE@PATH` (a built-in role such as PVEVMAdmin, PVEAuditor, PVEVMUser,
/// PVEDatastoreUser, Administrator) or `Priv.A+Priv.B@PATH`; a trailing `!` on the path stops
/// propagation. A token without grants gets Administrator on `/`. Lines starting with `#` are
/// comments. Example:
///
///   steward@pve!agent=5f1e3c2a-...  PVEVMUser@/vms  VM.Config.Memory+VM.Config.CPU+VM.Config.Options@/vms  PVEAuditor@/
///   steward@pve!admin=0b7d...       PVEVMAdmin@/vms  PVEDatastoreUser@/storage  Sys.Audit@/nodes
#[derive(Parser)]
#[command(name = "steward-pve-sim", version, verbatim_doc_comment)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8006")]
    listen: std::net::SocketAddr,
    /// Guests at start, per node (ignored when --state-dir holds a saved node).
    #[arg(long, default_value_t = 50)]
    guests: usize,
    /// File holding the accepted tokens and their grants (see above).
    #[arg(long)]
    token_file: PathBuf,
    /// Node name.
    #[arg(long, default_value = "pve-a")]
    node: String,
    /// Simulate a cluster of these nodes instead (comma-separated, e.g. pve-a,pve-b,pve-c): one
    /// configuration namespace (VMIDs unique cluster-wide, /cluster/resources listing every
    /// guest with its node), one API listener and certificate per node on consecutive ports
    /// (any free ports with port 0), --guests guests on each, and --conf-dir laid out as
    /// /etc/pve/nodes/<node>/.
    #[arg(long, value_delimiter = ',', conflicts_with = "node")]
    nodes: Vec<String>,
    /// Task duration, milliseconds.
    #[arg(long, default_value_t = 200)]
    task_ms: u64,
    /// Seed for fault injection and generated MACs/UUIDs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults: latency=MS,errors=RATE,resets=RATE,task-fail=RATE,task-hang=RATE
    #[arg(long, default_value = "")]
    faults: String,
    /// Serve the out-of-band control interface (plain HTTP, not the PVE API) on this address.
    #[arg(long)]
    control: Option<std::net::SocketAddr>,
    /// Keep the node in this directory, and start from it when it holds one.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Keep each guest's config as a file here, as /etc/pve/nodes/<node>/ does.
    #[arg(long)]
    conf_dir: Option<PathBuf>,
}

fn tokens(path: &PathBuf) -> Result<Vec<(SimToken, Privileges)>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let mut words = line.split_whitespace();
        let token = SimToken::parse(words.next().unwrap_or_default())
            .map_err(anyhow::Error::msg)
            .with_context(at)?;
        let mut grants = Vec::new();
        for w in words {
            grants.push(
                Privileges::parse_grant(w)
                    .map_err(anyhow::Error::msg)
                    .with_context(at)?,
            );
        }
        let privileges = if grants.is_empty() {
            Privileges::all()
        } else {
            Privileges(grants)
        };
        out.push((token, privileges));
    }
    if out.is_empty() {
        bail!("{}: no tokens", path.display());
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let (node, peers) = match a.nodes.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (a.node, Vec::new()),
    };
    let sim = Sim::start(SimConfig {
        listen: a.listen,
        node,
        peers,
        guests: a.guests,
        tokens: tokens(&a.token_file)?,
        task_time: Duration::from_millis(a.task_ms),
        faults: Faults::parse(&a.faults).map_err(anyhow::Error::msg)?,
        seed: a.seed,
        control: a.control,
        state_dir: a.state_dir,
        conf_dir: a.conf_dir,
    })
    .await
    .map_err(anyhow::Error::msg)?;
    println!("listening on https://{}/api2/json", sim.addr);
    println!("fingerprint {}", sim.fingerprint);
    if let Some(c) = sim.control_addr {
        println!("control on http://{c}/");
    }
    for n in &sim.nodes {
        println!(
            "node {} on https://{}/api2/json fingerprint {}",
            n.name, n.addr, n.fingerprint
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    sim.shutdown();
    Ok(())
}
