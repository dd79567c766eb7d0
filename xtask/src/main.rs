//! `cargo xtask`: project automation. `demo` runs the product's story end to end; `matrix` the
//! adversarial matrix against the real binaries' libraries; `layers` checks the crate layering
//! and `tidy` the house rules; `bench` measures against baselines taken in the same run;
//! `crash`, `soak`, `fuzz`, `diff`, `interop` and `dist` are the long harnesses and the package.
//! Automation only: nothing here is shipped, and no check here replaces a test.

mod bench;
mod crash;
mod crash_agent;
mod demo;
mod demo_cluster;
mod demo_fleet;
mod diff;
mod dist;
mod fuzz;
mod interop;
mod layers;
mod matrix;
mod matrix_engine;
mod matrix_gate;
mod matrix_mofn;
mod procs;
mod soak;
mod table;
mod tidy;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CrashTarget {
    /// The sled journal.
    Journal,
    /// The agent, as a process, against the simulator binary.
    Agent,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Story {
    /// The fleet without a Steward server: git, `steward-fleet render`, nginx, the agent.
    Fleet,
    /// One agent per node of a three-node cluster: a migration and a quorum loss.
    Cluster,
}

#[derive(Subcommand)]
enum Command {
    /// Mint every adversarial case with ssh-keygen and run it through the real verifier.
    Matrix {
        /// Rewrite docs/matrix.md from the cases instead of checking it.
        #[arg(long)]
        write_docs: bool,
    },
    /// The whole story on a simulated node, with real processes, each step checked
    /// (`demo fleet`: a fleet in git, rendered and served by nginx, instead; `demo cluster`:
    /// one agent per node of a three-node cluster, a migration and a quorum loss).
    Demo {
        /// Which story (the node's by default).
        #[arg(value_enum)]
        story: Option<Story>,
    },
    /// Build the .deb (binaries, hardened systemd unit, man pages, completions) and check the
    /// unit's exposure with systemd-analyze.
    Dist,
    /// Check the crate layering in docs/ARCHITECTURE.md against `cargo metadata`.
    Layers,
    /// A third-party Proxmox client (proxmoxer, from PyPI) against the simulator binary.
    Interop,
    /// The house rules: opening comments, no promises in docs, invariants that say what
    /// enforces them.
    Tidy,
    /// Benchmarks, each a ratio against a baseline measured in the same run.
    Bench {
        /// Which benchmark.
        #[arg(value_enum)]
        which: bench::Which,
        /// Seconds per measured round.
        #[arg(long, default_value_t = 0.4)]
        round_secs: f64,
        /// Rounds per contender (the median is reported).
        #[arg(long, default_value_t = 9)]
        rounds: usize,
        /// journal: also time opening a journal with this many op records (0: skip).
        #[arg(long, default_value_t = 0)]
        open_records: u64,
        /// agent: the numbers of guests to run at.
        #[arg(long, value_delimiter = ',', default_value = "10,100,200,1000")]
        guests: Vec<usize>,
        /// cluster: guests to create on each of the three nodes.
        #[arg(long, default_value_t = 300)]
        per_node: usize,
        /// fleet: simulated agents (nodes).
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// fleet: seconds between one agent's polls.
        #[arg(long, default_value_t = 2.0)]
        poll_secs: f64,
        /// fleet: seconds measured in the steady state.
        #[arg(long, default_value_t = 20.0)]
        window_secs: f64,
    },
    /// The library against `ssh-keygen -Y verify` on N random cases.
    Diff {
        /// How many cases.
        #[arg(long, default_value_t = 10_000)]
        cases: u32,
    },
    /// Coverage-guided fuzzing (libFuzzer via cargo-fuzz, on stable with RUSTC_BOOTSTRAP=1).
    Fuzz {
        /// Executions per target.
        #[arg(long, default_value_t = 10_000_000)]
        runs: u64,
        /// One target (sshsig, allowed_signers, op_payload, desired_state, hub_jobs).
        #[arg(long)]
        target: Option<String>,
        /// Replace crates/fuzz-targets/corpus with a minimal corpus covering the new inputs too.
        #[arg(long)]
        merge: bool,
    },
    /// The agent against the simulator with faults on, then time to converge once they stop.
    Soak {
        /// Minutes of faults.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Seed for the script of changes.
        #[arg(long, default_value_t = 0x50ac)]
        seed: u64,
    },
    /// Crash-safety proofs by SIGKILL.
    Crash {
        /// What to crash.
        #[arg(value_enum)]
        what: CrashTarget,
        /// How many kills.
        #[arg(long, default_value_t = 200)]
        iterations: u32,
        /// Seed for kill times and child streams.
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
    },
    /// (internal) the process `crash journal` kills.
    #[command(hide = true)]
    CrashChild {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Matrix { write_docs } => matrix::run(write_docs),
        Command::Demo { story: None } => demo::run(),
        Command::Demo {
            story: Some(Story::Fleet),
        } => demo_fleet::run_story(),
        Command::Demo {
            story: Some(Story::Cluster),
        } => demo_cluster::run_story(),
        Command::Dist => dist::run_dist(),
        Command::Soak { minutes, seed } => soak::run(minutes, seed),
        Command::Diff { cases } => diff::run(cases),
        Command::Fuzz {
            runs,
            target,
            merge,
        } => fuzz::run(runs, target, merge),
        Command::Layers => layers::run(),
        Command::Interop => interop::run(),
        Command::Tidy => tidy::run(),
        Command::Bench {
            which,
            round_secs,
            rounds,
            open_records,
            guests,
            per_node,
            nodes,
            poll_secs,
            window_secs,
        } => bench::run(
            which,
            round_secs,
            rounds,
            open_records,
            &guests,
            (nodes, poll_secs, window_secs),
            per_node,
        ),
        Command::Crash {
            what: CrashTarget::Journal,
            iterations,
            seed,
        } => crash::run(iterations, seed),
        Command::Crash {
            what: CrashTarget::Agent,
            iterations,
            seed,
        } => crash_agent::run(iterations, seed),
        Command::CrashChild { dir, seed } => crash::child(&dir, seed).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
