//! `cargo xtask`: project automation. `matrix` runs the adversarial matrix against the real
//! verifier; `bench` measures against baselines taken in the same run. Automation only: nothing
//! here is shipped, and no check here replaces a test.

mod bench;
mod matrix;
mod table;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mint every adversarial case with ssh-keygen and run it through the real verifier.
    Matrix,
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Matrix => matrix::run(),
        Command::Bench {
            which,
            round_secs,
            rounds,
        } => bench::run(which, round_secs, rounds),
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
