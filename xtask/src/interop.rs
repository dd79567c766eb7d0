//! `cargo xtask interop`: a widely used third-party Proxmox client (proxmoxer, installed from
//! PyPI into a virtual environment under `target/`) runs `xtask/interop/proxmoxer_smoke.py`, a
//! script of ordinary calls, against the real `steward-pve-sim` binary on 127.0.0.1. What works
//! against the simulator must work for a client written against real Proxmox. The simulator is
//! always killed, whatever happens.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The pinned client version: the script is written against its API.
const PROXMOXER: &str = "proxmoxer==2.3.0";
const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";
const AUDIT: &str = "audit@pve!ro=5f1e3c2a-0000-4000-8000-0000000a0d17";

/// Kills the child on every way out.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn venv(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/interop-venv");
    let python = dir.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import proxmoxer, requests"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .context("python3 -m venv")?
            .success();
        if !ok {
            bail!(
                "python3 -m venv {} failed (apt-get install python3-venv)",
                dir.display()
            );
        }
        let ok = Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", PROXMOXER, "requests"])
            .status()
            .context("pip install proxmoxer")?
            .success();
        if !ok {
            bail!("pip install {PROXMOXER} requests failed");
        }
    }
    Ok(python)
}

/// Builds the simulator binary (release).
pub fn build_sim() -> Result<()> {
    let ok = Command::new(cargo())
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "steward-pve-sim",
            "--bin",
            "steward-pve-sim",
        ])
        .current_dir(root())
        .status()?
        .success();
    if !ok {
        bail!("building steward-pve-sim failed");
    }
    Ok(())
}

/// Starts the simulator binary on an ephemeral loopback port; returns it (killed on drop),
/// its `host:port` and its certificate fingerprint.
pub fn spawn_sim(tokens: &Path, guests: usize) -> Result<(Reaped, String, String)> {
    let child = Command::new(root().join("target/release/steward-pve-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--task-ms",
            "50",
            "--node",
            "pve-a",
        ])
        .args(["--guests", &guests.to_string()])
        .arg("--token-file")
        .arg(tokens)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting steward-pve-sim")?;
    let mut sim = Reaped(child);
    let stdout = sim.0.stdout.take().context("simulator stdout")?;
    let mut out = BufReader::new(stdout);
    let (mut line, mut fp) = (String::new(), String::new());
    out.read_line(&mut line)?;
    out.read_line(&mut fp)?;
    // Keep draining: a closed pipe would kill the simulator at its next line.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let addr = line
        .trim()
        .strip_prefix("listening on https://")
        .and_then(|r| r.split('/').next())
        .with_context(|| format!("unexpected first line from the simulator: {line:?}"))?
        .to_string();
    let fingerprint = fp
        .trim()
        .strip_prefix("fingerprint ")
        .with_context(|| format!("unexpected second line from the simulator: {fp:?}"))?
        .to_string();
    Ok((sim, addr, fingerprint))
}

/// Runs the interop script; Ok(true) when it passed.
pub fn run() -> Result<bool> {
    let root = root();
    build_sim()?;
    let python = venv(&root)?;
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    let mut f = std::fs::File::create(&tokens)?;
    writeln!(f, "{ADMIN}")?;
    writeln!(f, "{AUDIT} PVEAuditor@/")?;
    drop(f);
    let (_sim, addr, _) = spawn_sim(&tokens, 8)?;
    let port = addr
        .rsplit(':')
        .next()
        .context("simulator address")?
        .to_string();
    let status = Command::new(python)
        .arg(root.join("xtask/interop/proxmoxer_smoke.py"))
        .env("PORT", &port)
        .env("NODE", "pve-a")
        .env("ADMIN_TOKEN", ADMIN)
        .env("AUDIT_TOKEN", AUDIT)
        .env("PYTHONWARNINGS", "ignore:Unverified HTTPS request")
        .status()?;
    Ok(status.success())
}
