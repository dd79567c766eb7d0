//! `steward-verify`: offline check of a signed op against an allowed_signers file. Thin: it reads
//! the files, calls `steward-authz`, and prints. It has no nonce store, so it cannot see replays,
//! and it must never be mistaken for the agent's gate.

mod output;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use steward_authz::{TrustStore, Verifier, VerifyConfig, DEFAULT_MAX_TTL_SECS, DEFAULT_SKEW_SECS};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Verify a Steward signed op offline (every pipeline step but the nonce).
#[derive(Parser, Debug)]
#[command(name = "steward-verify", version)]
struct Args {
    /// OpenSSH allowed_signers file (the trust store).
    #[arg(long, value_name = "FILE")]
    signers: PathBuf,
    /// The node the op must be for.
    #[arg(long)]
    host: String,
    /// Check at this time instead of now (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Clock skew allowed at both ends of the op's window, seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_SKEW_SECS)]
    skew: i64,
    /// Longest validity window accepted, seconds.
    #[arg(long = "max-ttl", value_name = "SECS", default_value_t = DEFAULT_MAX_TTL_SECS)]
    max_ttl: i64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The op payload, exactly as signed.
    op_file: PathBuf,
    /// The armored signature (`ssh-keygen -Y sign` output).
    sig_file: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let now = match &args.at {
        Some(s) => OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("--at {s:?}: {e}"))?,
        None => OffsetDateTime::now_utc(),
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let signers = read(&args.signers)?;
    let store = TrustStore::parse(&args.signers.display().to_string(), &signers)
        .map_err(|e| e.to_string())?;
    let payload = read(&args.op_file)?;
    let sig = read(&args.sig_file)?;
    let config = VerifyConfig {
        host: args.host.clone(),
        skew_secs: args.skew,
        max_ttl_secs: args.max_ttl,
    };
    let verifier = Verifier::new(store, config).map_err(|e| format!("--skew/--max-ttl: {e}"))?;
    let verdict = verifier.verify_offline(&payload, &sig, now);
    let ok = verdict.is_ok();
    // A closed or broken stdout is a usage error (exit 2), not a panic (exit 101): the exit
    // code is the contract, and nothing else may be mistaken for a verdict.
    use std::io::Write as _;
    writeln!(
        std::io::stdout().lock(),
        "{}",
        output::render(&verdict, args.json)
    )
    .map_err(|e| format!("writing the verdict to stdout: {e}"))?;
    Ok(ExitCode::from(if ok { 0 } else { 1 }))
}
