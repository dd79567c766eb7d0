//! `steward-fleet`: the hub without a server. `render` checks a fleet directory with the
//! agent's own parsers and writes the files protocol version 1 serves; a web server does the
//! rest. Thin: the work is `steward_hub::fleet`. It must never write when anything was refused.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use steward_hub::fleet::{render, write, Written};

/// Serve a Steward fleet from any web server: render desired state and signed ops into files.
///
/// The fleet directory (keep it in git): `nodes/<node>.toml` (or `.json`) for one node's
/// desired state, or `desired.toml` naming a `node` for every guest; `ops/**/NAME.json` with
/// `NAME.json.sig` (and `NAME.json.<signer>.sig` for more signers), as `ssh-keygen -Y sign -n
/// op@steward` writes them. `render` writes `OUT/v1/nodes/<node>/desired` and `…/jobs`, only
/// the files whose bytes changed, so a server's ETag moves only when the content does. Point
/// nginx (or an object store) at OUT and the agents' `[provider] url` at it. Exit 0: rendered;
/// 1: something was refused (every problem printed, with its file; nothing written); 2: usage.
#[derive(Parser, Debug)]
#[command(name = "steward-fleet", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the fleet directory and write what each node is served.
    Render {
        /// The fleet directory.
        #[arg(long, default_value = ".")]
        fleet: PathBuf,
        /// Where the served files go (the web server's root for the hub's base URL).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Render { fleet, out } => match render(&fleet) {
            Err(problems) => {
                for p in problems {
                    eprintln!("refused: {p}");
                }
                eprintln!("nothing written");
                ExitCode::from(1)
            }
            Ok(rendered) => match write(&out, &rendered) {
                Ok(files) => {
                    let changed = files
                        .iter()
                        .filter(|w| matches!(w, Written::Changed(_)))
                        .count();
                    for w in &files {
                        match w {
                            Written::Changed(p) => println!("written   {}", p.display()),
                            Written::Unchanged(p) => println!("unchanged {}", p.display()),
                        }
                    }
                    println!(
                        "{} nodes, {changed} of {} files changed",
                        rendered.len(),
                        files.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            },
        },
    }
}
