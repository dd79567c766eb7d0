//! `steward-agent`: parses the command line, sets up logging, dispatches, and maps the result
//! to an exit code (0 done, 2 configuration or start-up error). It holds no logic: the
//! configuration is `config.rs`, the daemon's wiring `run.rs`, and everything it does lives in
//! the library crates.

mod cli;
mod config;
mod generate;
mod preflight;
mod providers;
mod run;
mod setup_token;
mod systemd;
mod talk;

use clap::Parser;
use cli::{Cli, Command, LogFormat, PendingShow};
use std::process::ExitCode;

/// Runs a subcommand that talks to the agent: exit 0 done, 1 refused, 2 could not ask.
fn talk<F: std::future::Future<Output = anyhow::Result<bool>>>(f: F) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(f) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn logging(cli: &Cli) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(cli.log_level)
        // Colour only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging(&cli);
    match cli.command {
        Command::Status { socket } => talk(talk::status(&socket)),
        Command::Pending { socket, show } => {
            let show = show.map(|PendingShow::Show { id, template }| (id, template));
            talk(talk::pending(&socket, show))
        }
        Command::Submit { op, sig, socket } => talk(talk::submit(&socket, &op, &sig)),
        Command::Reconcile { socket } => talk(talk::reconcile(&socket)),
        Command::Op { id, socket } => talk(talk::op(&socket, id)),
        Command::SetupToken { user } => {
            print!("{}", setup_token::commands(&user));
            ExitCode::SUCCESS
        }
        Command::Generate { dir } => match generate::all(&dir) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(cfg) => {
                // The files the config names, checked by the code `run` uses.
                let problems = preflight::problems(&cfg);
                if problems.is_empty() {
                    println!("{}: ok", config.display());
                    return ExitCode::SUCCESS;
                }
                for e in problems {
                    eprintln!("{e}");
                }
                ExitCode::from(2)
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match rt.block_on(run::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
