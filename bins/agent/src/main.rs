//! `steward-agent`: parses the command line, sets up logging, dispatches, and maps the result
//! to an exit code (0 done, 2 configuration or start-up error). It holds no logic: the
//! configuration is `config.rs`, the daemon's wiring `run.rs`, and everything it does lives in
//! the library crates.
//! It must never decide anything a library crate decides.

mod cli;
mod config;
mod dry;
mod generate;
mod preflight;
mod providers;
mod run;
mod setup_token;
mod systemd;
mod talk;

use clap::Parser;
use cli::{AuditCmd, Cli, Command, LogFormat, PendingShow};
use std::process::ExitCode;

/// A runtime for one command on this thread.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

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

/// A writer for text log lines (stderr, in the agent): a field can carry text a node or a hub
/// chose (a guest name, a task's error), so every control character in a line is escaped
/// (`\u{1b}`) and only the newline that ends each event stays: no value can forge a line or
/// move a terminal's cursor. (JSON lines need none of this: serde_json escapes control
/// characters itself.)
struct Escaped<W>(W);

impl<W: std::io::Write> std::io::Write for Escaped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let line = steward_authz::escape_controls(body) + end;
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn logging(cli: &Cli) {
    let builder = tracing_subscriber::fmt().with_max_level(cli.log_level);
    match cli.log_format {
        // Plain text everywhere (no colour codes), so that any escape sequence in a log line
        // came from data, and is escaped.
        LogFormat::Text => builder
            .with_ansi(false)
            .with_writer(|| Escaped(std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .json()
            .init(),
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
        Command::Audit {
            what:
                AuditCmd::Export {
                    since,
                    journal,
                    socket,
                },
        } => talk(talk::audit_export(&socket, journal.as_deref(), since)),
        Command::Op { id, socket } => talk(talk::op(&socket, id)),
        Command::Plan {
            config,
            desired,
            json,
        } => match runtime().map(|rt| rt.block_on(dry::plan(&config, desired, json))) {
            Ok(Ok(false)) => ExitCode::SUCCESS,
            Ok(Ok(true)) => ExitCode::from(2),
            Ok(Err(e)) | Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Export {
            config,
            guests,
            format,
        } => match runtime().map(|rt| rt.block_on(dry::export(&config, &guests, format))) {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) | Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
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
            // Two workers and at most eight blocking threads whatever the node's core count:
            // the agent waits on Proxmox and on the journal's fdatasync, and every thread
            // costs memory (a Proxmox node has dozens of cores).
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(8)
                .enable_all()
                .build()
            {
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

#[cfg(test)]
mod tests {
    use super::Escaped;
    use std::io::Write;

    #[test]
    fn a_log_line_keeps_its_end_and_escapes_every_other_control() {
        let mut out = Escaped(Vec::new());
        out.write_all(b"2026-12-04 WARN name=evil\x1b[2K\nop 999 forged\r\n")
            .unwrap();
        let line = String::from_utf8(out.0).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        assert!(line.ends_with('\n') && !line.contains('\x1b') && !line.contains('\r'));
        assert!(line.contains("evil\\u{1b}[2K\\nop 999"), "{line:?}");
    }
}
