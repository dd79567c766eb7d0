//! `steward-verify`: offline check of a signed op against an allowed_signers file. Thin: it reads
//! the files, calls `steward-authz`, and prints. It has no nonce store, so it cannot see replays,
//! and it must never be mistaken for the agent's gate. With several signatures (`--sig` more than
//! once) or `--threshold`, it judges each and counts the distinct approving keys as the agent's
//! m-of-n policy does (`threshold.rs`). `steward-verify audit` checks an exported audit chain
//! (`audit.rs`).

mod audit;
mod output;
mod threshold;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use steward_authz::{TrustStore, Verifier, VerifyConfig, DEFAULT_MAX_TTL_SECS, DEFAULT_SKEW_SECS};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Verify a Steward signed op offline (every pipeline step but the nonce).
///
/// One signature: `steward-verify --signers allowed_signers --host pve-a op.json op.json.sig`.
/// Several (m-of-n): `--sig alice.sig --sig bob.sig --threshold 2` judges each signature and
/// counts the distinct keys that approve the op (a key counts once, whatever certificate
/// carries it, and so does a principal name; recovery keys count only for keys.rotate, against
/// --recovery-threshold). Exit 0: verified (and the threshold met); 1: rejected or too few
/// approvers; 2: a usage or file error.
///
/// An agent's audit chain: `steward-verify audit --signers allowed_signers audit.jsonl` (see
/// `steward-verify audit --help`).
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
    /// Another armored signature over the same op (repeatable; counted with SIG_FILE).
    #[arg(long = "sig", value_name = "FILE")]
    sigs: Vec<PathBuf>,
    /// Distinct approvers needed (m-of-n); reports each signature's verdict and the count.
    /// Required with several signatures.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    threshold: Option<u8>,
    /// For keys.rotate: distinct recovery approvers needed (the agent's `recovery`); default:
    /// the same as --threshold.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8), requires = "threshold")]
    recovery_threshold: Option<u8>,
    /// The op payload, exactly as signed.
    op_file: PathBuf,
    /// The armored signature (`ssh-keygen -Y sign` output); optional when `--sig` is given.
    sig_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    // `audit` is a mode of its own; without it the command line is the single-op check's, as
    // it always was.
    let result = if std::env::args_os().nth(1).is_some_and(|a| a == "audit") {
        audit::main(&audit::AuditArgs::parse_from(std::env::args_os().skip(1)))
    } else {
        run(&Args::parse())
    };
    match result {
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
    let files: Vec<&PathBuf> = args.sig_file.iter().chain(&args.sigs).collect();
    if files.is_empty() {
        return Err("give the signature: SIG_FILE or --sig FILE".into());
    }
    if files.len() > 1 && args.threshold.is_none() {
        return Err(
            "several signatures: give --threshold N (the distinct approvers needed)".into(),
        );
    }
    let sigs = files
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let config = VerifyConfig {
        host: args.host.clone(),
        skew_secs: args.skew,
        max_ttl_secs: args.max_ttl,
    };
    let verifier = Verifier::new(store, config).map_err(|e| format!("--skew/--max-ttl: {e}"))?;
    let (text, ok) = if sigs.len() == 1 && args.threshold.is_none() {
        let verdict = verifier.verify_offline(&payload, &sigs[0], now);
        (output::render(&verdict, args.json), verdict.is_ok())
    } else {
        let verdicts: Vec<_> = sigs
            .iter()
            .map(|s| verifier.verify_offline(&payload, s, now))
            .collect();
        let op = args.threshold.unwrap_or(1);
        let count = threshold::count(&verdicts, op, args.recovery_threshold.unwrap_or(op));
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        (
            threshold::render(&verdicts, &names, &count, args.json),
            count.met(),
        )
    };
    // A closed or broken stdout is a usage error (exit 2), not a panic (exit 101): the exit
    // code is the contract, and nothing else may be mistaken for a verdict.
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{text}")
        .map_err(|e| format!("writing the verdict to stdout: {e}"))?;
    Ok(ExitCode::from(if ok { 0 } else { 1 }))
}
