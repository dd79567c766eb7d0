//! `cargo xtask fuzz`: coverage-guided fuzzing with libFuzzer through cargo-fuzz, on the
//! machine's stable toolchain. cargo-fuzz needs nightly-only flags (`-Zsanitizer=address`,
//! sancov); `RUSTC_BOOTSTRAP=1` lets the stable compiler accept them, which is the documented
//! way to use unstable flags on a stable toolchain and changes nothing else about the build.
//! Each target runs a fixed number of executions over a working copy of its corpus; with
//! `--merge`, the corpus in the repository is replaced by a minimal set that covers what it and
//! the new inputs cover (libFuzzer's `-merge=1`), which CI replays on stable
//! (`crates/fuzz-targets/tests/corpus.rs`). Automation
//! only: it never edits anything but `crates/fuzz-targets/corpus` (with `--merge`) and
//! `target/`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The targets (as in `steward_fuzz_targets::TARGETS` and `fuzz/Cargo.toml`).
const TARGETS: &[&str] = &[
    "sshsig",
    "allowed_signers",
    "op_payload",
    "desired_state",
    "hub_jobs",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter(|e| e.is_ok()).count())
}

/// The value of libFuzzer's `-print_final_stats` line `stat::NAME:`.
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `only` (or every target) for `runs` executions each.
pub fn run(runs: u64, only: Option<String>, merge: bool) -> Result<bool> {
    let targets: Vec<&str> = match &only {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("no fuzz target {t:?} (targets: {})", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let version = cargo().args(["fuzz", "--version"]).output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!("cargo-fuzz is not installed: `cargo install cargo-fuzz --locked` (crates.io)");
    }
    let root = root();
    let fuzz_dir = root.join("crates/fuzz-targets/fuzz");
    let target_dir = root.join("target/fuzz");
    println!(
        "building the fuzz targets (libFuzzer + AddressSanitizer, release, RUSTC_BOOTSTRAP=1)"
    );
    let built = cargo()
        .args(["fuzz", "build", "-O", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(&root)
        .status()?;
    if !built.success() {
        bail!("cargo fuzz build failed");
    }
    let triple = std::env::consts::ARCH.to_string() + "-unknown-linux-gnu";
    let bins = target_dir.join(triple).join("release");
    let mut rows = Vec::new();
    let mut all_ok = true;
    for t in targets {
        let corpus = root.join("crates/fuzz-targets/corpus").join(t);
        let work = root.join("target/fuzz-work").join(t);
        let artifacts = root.join("target/fuzz-artifacts").join(t);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        std::fs::create_dir_all(&artifacts)?;
        let before = files_in(&corpus);
        let started = Instant::now();
        // New inputs go to the working copy (the first directory); the repository's corpus is
        // read only here.
        let out = Command::new(bins.join(t))
            .arg(&work)
            .arg(&corpus)
            .arg(format!("-runs={runs}"))
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .output()
            .with_context(|| format!("running {}", bins.join(t).display()))?;
        let secs = started.elapsed().as_secs_f64();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        std::fs::write(root.join("target/fuzz-work").join(format!("{t}.log")), &log)?;
        let executed = stat(&log, "number_of_executed_units").unwrap_or(0);
        let crashed = !out.status.success();
        let mut after = before;
        if merge && !crashed {
            // A minimal set covering everything the corpus and the new inputs cover, written
            // fresh, then put in the corpus's place.
            let min = root.join("target/fuzz-work").join(format!("{t}.min"));
            let _ = std::fs::remove_dir_all(&min);
            std::fs::create_dir_all(&min)?;
            let m = Command::new(bins.join(t))
                .arg("-merge=1")
                .arg(&min)
                .arg(&corpus)
                .arg(&work)
                .output()?;
            if !m.status.success() || files_in(&min) == 0 {
                bail!("{t}: merge failed: {}", String::from_utf8_lossy(&m.stderr));
            }
            std::fs::remove_dir_all(&corpus)?;
            std::fs::rename(&min, &corpus)?;
            after = files_in(&corpus);
        }
        if crashed {
            all_ok = false;
            let found: Vec<String> = std::fs::read_dir(&artifacts)?
                .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
                .collect();
            println!(
                "{t}: CRASH (exit {:?}); inputs: {}",
                out.status.code(),
                found.join(" ")
            );
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            for l in tail.into_iter().rev() {
                println!("  {l}");
            }
        }
        rows.push(vec![
            t.to_string(),
            executed.to_string(),
            format!("{secs:.0}"),
            format!("{:.0}", executed as f64 / secs.max(0.001)),
            format!("{before} -> {after}"),
            if crashed { "CRASH" } else { "none" }.to_string(),
        ]);
    }
    println!(
        "{}",
        crate::table::render(
            &[
                "target",
                "executions",
                "seconds",
                "exec/s",
                "corpus (repo)",
                "crashes"
            ],
            &rows
        )
    );
    if !merge {
        println!("(corpus unchanged; --merge keeps a minimal corpus covering the new inputs too)");
    }
    Ok(all_ok)
}
