//! Benchmarks. Each one measures a contender and its baseline in the same process, in
//! interleaved rounds, and reports the median rates and their ratio: machines here are noisy, so
//! an absolute figure means little and a timed assertion in a test would mean less.

mod agent;
mod cluster;
mod engine;
mod fleet;
mod gate;
mod journal;
mod measure;
mod plan;
mod pve;
mod verify;

use anyhow::Result;

/// The benchmarks there are.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Which {
    /// The authz pipeline against raw signature verification (ed25519, ecdsa-p256).
    Verify,
    /// Planning time at 100, 1 000 and 10 000 guests.
    Plan,
    /// Durable journal transitions per second against file append + fdatasync.
    Journal,
    /// Gate decisions per second against the authz-only rate.
    Gate,
    /// Client requests per second against the simulator, keep-alive vs fresh connections.
    Pve,
    /// The engine against the simulator: convergence, idle cost, memory, drift detection.
    Engine,
    /// The agent and simulator as processes at 10, 100, 200 and 1 000 guests: converge time
    /// against the ideal, requests per guest by class, CPU, memory, idle cost, pending heal.
    Agent,
    /// One agent per node of a three-node simulated cluster against one node and one agent,
    /// in the same run: converge ratio, requests per guest, list requests per idle pass.
    Cluster,
    /// N agents' hub clients polling a rendered fleet served by nginx, and the hub stub, in
    /// the same run: 304 share, requests/s, server CPU per 1 000 polls, p99, client cost.
    Fleet,
}

/// Runs one benchmark; false when a stated target is missed.
pub fn run(
    which: Which,
    round_secs: f64,
    rounds: usize,
    open_records: u64,
    guests: &[usize],
    fleet: (usize, f64, f64),
    per_node: usize,
) -> Result<bool> {
    if cfg!(debug_assertions) {
        eprintln!("warning: xtask built without optimizations; figures are not meaningful");
    }
    let opts = measure::Opts { round_secs, rounds };
    match which {
        Which::Verify => verify::run(&opts),
        Which::Plan => plan::run(&opts),
        Which::Journal => journal::run(round_secs.max(0.5), rounds, open_records),
        Which::Gate => gate::run(300),
        Which::Pve => pve::run(round_secs, rounds),
        Which::Engine => engine::run(),
        Which::Agent => agent::run(guests),
        Which::Cluster => cluster::run(per_node),
        Which::Fleet => fleet::run(fleet.0, fleet.1, fleet.2),
    }
}
