//! Embedding `steward-authz` in a tool of your own: check one signed op against an
//! allowed_signers file, with a nonce store, the way an agent would.
//!
//! ```sh
//! cargo run -p steward-authz --example verify -- allowed_signers pve-a op.json op.json.sig
//! ```
//!
//! The crate does no I/O: the tool reads the files, picks the clock, and owns the nonce store.
//! Here the store is in memory; a real tool keeps it durable (Steward's agent uses its journal)
//! and consumes the nonce only after its own checks (role, binding) passed.

use std::process::ExitCode;
use steward_authz::{MemoryNonceStore, Role, TrustStore, Verifier, VerifyConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [signers, host, op, sig] = args.as_slice() else {
        eprintln!("usage: verify ALLOWED_SIGNERS HOST OP_JSON OP_JSON_SIG");
        return ExitCode::from(2);
    };
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let (text, payload, armored) = match (read(signers), read(op), read(sig)) {
        (Ok(t), Ok(p), Ok(s)) => (t, p, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // A trust store that does not load is an error naming file and line: fail closed.
    let store = match TrustStore::parse(signers, &text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let verifier = match Verifier::new(store, VerifyConfig::new(host.as_str())) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let nonces = MemoryNonceStore::new();
    let now = time::OffsetDateTime::now_utc();
    let verified = match verifier.verify(&payload, &armored, now, &nonces) {
        Ok(v) => v,
        Err(rejection) => {
            // `rejection.reason.code()` is stable (`expired`, `unknown_signer`, …).
            println!("rejected: {rejection}");
            return ExitCode::from(1);
        }
    };
    // Your own policy goes here, before the nonce is spent: Steward's gate lets recovery keys
    // rotate keys only, and binds the op to the exact action it holds.
    if verified.role != Role::Operational {
        println!(
            "rejected: a {} key may not authorize {}",
            verified.role, verified.payload.op
        );
        return ExitCode::from(1);
    }
    if let Err(rejection) = verified.consume_nonce(&nonces) {
        println!("rejected: {rejection}");
        return ExitCode::from(1);
    }
    println!(
        "verified: principal={} op={} guest={:?}",
        verified.principal, verified.payload.op, verified.payload.guest
    );
    ExitCode::SUCCESS
}
