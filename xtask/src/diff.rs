//! `cargo xtask diff --cases N`: the differential test (`tests/tests/differential.rs`) at scale:
//! N random cases (key types, plain keys and certificates, namespaces, tampered blobs, trust-store
//! lines with options and validity windows around the verification instant), each judged by the
//! library and by `ssh-keygen -Y verify` on the same files. It fails on the first disagreement
//! (proptest then shrinks it to a minimal case) and reports the counts. CI runs the test's own
//! 300 cases.

use anyhow::Result;
use std::process::Command;

/// Runs it; true when the two agreed on every case.
pub fn run(cases: u32) -> Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "test",
            "--quiet",
            "-p",
            "steward-tests",
            "--test",
            "differential",
            "--",
            "--nocapture",
            "library_agrees_with_ssh_keygen",
        ])
        .env("STEWARD_DIFF_CASES", cases.to_string())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()?;
    Ok(status.success())
}
