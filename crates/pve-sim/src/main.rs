//! `steward-pve-sim`: run the simulator standalone. Thin: arguments in, `Sim::start`, wait.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use steward_pve_sim::SimToken;
use steward_pve_sim::{Faults, Privileges, Sim, SimConfig};

/// A simulated Proxmox VE node (HTTPS, self-signed; its fingerprint is printed).
#[derive(Parser)]
#[command(name = "steward-pve-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8006")]
    listen: std::net::SocketAddr,
    /// Guests at start.
    #[arg(long, default_value_t = 50)]
    guests: usize,
    /// File holding the accepted token, `user@realm!tokenid=SECRET`.
    #[arg(long)]
    token_file: PathBuf,
    /// Node name.
    #[arg(long, default_value = "pve-a")]
    node: String,
    /// Task duration, milliseconds.
    #[arg(long, default_value_t = 200)]
    task_ms: u64,
    /// Seed for fault injection.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults: latency=MS,errors=RATE,resets=RATE,task-fail=RATE,task-hang=RATE
    #[arg(long, default_value = "")]
    faults: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let text = std::fs::read_to_string(&a.token_file)
        .with_context(|| a.token_file.display().to_string())?;
    let token = SimToken::parse(&text).map_err(anyhow::Error::msg)?;
    let sim = Sim::start(SimConfig {
        listen: a.listen,
        node: a.node,
        guests: a.guests,
        tokens: vec![(token, Privileges::all())],
        task_time: Duration::from_millis(a.task_ms),
        faults: Faults::parse(&a.faults).map_err(anyhow::Error::msg)?,
        seed: a.seed,
    })
    .await
    .map_err(anyhow::Error::msg)?;
    println!("listening on https://{}/api2/json", sim.addr);
    println!("fingerprint {}", sim.fingerprint);
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
