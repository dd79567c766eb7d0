//! The real processes the demo and the agent crash harness run: building them, the simulator
//! binary started with its control listener, secret files, plain-HTTP calls to the loopback
//! control listeners, and a child handle that is always reaped. Automation only.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The agent's everyday token (what `steward-agent setup-token` grants it).
pub const EVERYDAY: &str = "steward@pve!agent=5f1e3c2a-0000-4000-8000-00000000e7e1";
/// The agent's admin token.
pub const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";

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

/// A release binary of this workspace.
pub fn bin(name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("release")
        .join(name)
}

/// `cargo build --release` of `packages`; true when it worked.
pub fn build(packages: &[&str]) -> Result<bool> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet", "--release"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    Ok(cmd.current_dir(root()).status()?.success())
}

/// Waits (checking every 200 ms) until `f` holds; an error naming `what` after `limit`.
pub fn until(what: &str, limit: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let t = std::time::Instant::now();
    while !f().unwrap_or(false) {
        ensure!(t.elapsed() < limit, "{what}: not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Writes `text` to `path`, mode 0600.
pub fn secret(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A plain-HTTP request to a loopback control listener (the simulator's or the hub stub's).
pub fn control(addr: &str, method: &str, path: &str, body: &str) -> Result<Value> {
    let mut tcp = std::net::TcpStream::connect(addr)?;
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    tcp.read_to_string(&mut out)?;
    let json = out.split("\r\n\r\n").nth(1).unwrap_or("null");
    Ok(serde_json::from_str(json).unwrap_or(Value::Null))
}

/// The `steward-hub-stub` binary, accepting the bearer token in `token_file`: its URL,
/// certificate fingerprint and control listener, from the first line it prints.
pub struct HubStubProc {
    /// `https://localhost:PORT`.
    pub url: String,
    /// Its certificate's SHA-256, as `hub_fingerprint` wants it.
    pub fingerprint: String,
    /// Its control listener (`127.0.0.1:PORT`).
    pub control: String,
    /// The process, reaped on drop.
    pub child: Reaped,
}

impl HubStubProc {
    /// Starts it.
    pub fn start(token_file: &Path) -> Result<HubStubProc> {
        use std::io::BufRead;
        let child = std::process::Command::new(bin("steward-hub-stub"))
            .arg("--token-file")
            .arg(token_file)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting steward-hub-stub")?;
        let mut child = Reaped(child);
        let mut line = String::new();
        std::io::BufReader::new(child.0.stdout.take().context("hub stub stdout")?)
            .read_line(&mut line)?;
        let info: Value = serde_json::from_str(&line).context("the hub stub's first line")?;
        let (Some(url), Some(fingerprint), Some(control)) = (
            info["hub"].as_str(),
            info["fingerprint"].as_str(),
            info["control"].as_str(),
        ) else {
            anyhow::bail!("the hub stub said {line}");
        };
        Ok(HubStubProc {
            url: url.into(),
            fingerprint: fingerprint.into(),
            control: control.into(),
            child,
        })
    }
}

/// The `steward-pve-sim` binary: node pve-a, its state kept in `dir/sim-state` (so it survives
/// anything done to the agent), the everyday token limited as `setup-token` limits it.
pub struct SimProc {
    /// Its API port on 127.0.0.1.
    pub port: u16,
    /// Its certificate's fingerprint.
    pub fingerprint: String,
    /// Its control listener (`127.0.0.1:PORT`).
    pub control: String,
    /// A cluster's nodes (`--nodes`): name, API port, fingerprint; empty for one node.
    pub nodes: Vec<(String, u16, String)>,
    _child: Reaped,
}

impl SimProc {
    /// Starts it with `guests` guests and tasks of `task_ms`.
    pub fn start(dir: &Path, guests: usize, task_ms: u64) -> Result<SimProc> {
        SimProc::start_with(dir, guests, task_ms, &[])
    }

    /// [`SimProc::start`] with more arguments (`--conf-dir DIR`).
    pub fn start_with(dir: &Path, guests: usize, task_ms: u64, more: &[&str]) -> Result<SimProc> {
        std::fs::write(
            dir.join("sim-tokens"),
            format!("{EVERYDAY} VM.Audit+VM.PowerMgmt+VM.Config.Memory+VM.Config.CPU+VM.Config.Options@/vms PVEAuditor@/\n{ADMIN}\n"),
        )?;
        let child = Command::new(bin("steward-pve-sim"))
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(["--guests", &guests.to_string()])
            .args(["--task-ms", &task_ms.to_string()])
            .arg("--token-file")
            .arg(dir.join("sim-tokens"))
            .arg("--state-dir")
            .arg(dir.join("sim-state"))
            .args(more)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting steward-pve-sim")?;
        let mut child = Reaped(child);
        let mut out = BufReader::new(child.0.stdout.take().context("sim stdout")?);
        let mut lines = Vec::new();
        // The first node's three lines, then one line per node.
        let nodes = more
            .iter()
            .position(|a| *a == "--nodes")
            .and_then(|i| more.get(i + 1))
            .map_or(1, |list| list.split(',').count());
        for _ in 0..3 + nodes {
            let mut l = String::new();
            out.read_line(&mut l)?;
            lines.push(l.trim().to_string());
        }
        let mut cluster = Vec::new();
        if nodes > 1 {
            for l in &lines[3..] {
                // `node NAME on https://ADDR/api2/json fingerprint FP`
                let w: Vec<&str> = l.split_whitespace().collect();
                let (Some(name), Some(url), Some(fp)) = (w.get(1), w.get(3), w.get(5)) else {
                    anyhow::bail!("sim node line {l:?}");
                };
                let port = url
                    .trim_start_matches("https://")
                    .split('/')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .context("sim node port")?;
                cluster.push((name.to_string(), port, fp.to_string()));
            }
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let api = lines[0]
            .strip_prefix("listening on https://")
            .and_then(|r| r.split('/').next())
            .context("sim address")?;
        let port = api
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("sim port")?;
        let fingerprint = lines[1]
            .strip_prefix("fingerprint ")
            .context("sim fingerprint")?
            .to_string();
        let control = lines[2]
            .strip_prefix("control on http://")
            .map(|r| r.trim_end_matches('/').to_string())
            .context("sim control")?;
        ensure!(fingerprint.len() > 23, "sim fingerprint {fingerprint:?}");
        Ok(SimProc {
            port,
            fingerprint,
            control,
            nodes: cluster,
            _child: child,
        })
    }
}

/// Writes the agent's token files and `dir/agent.toml` for node pve-a on `sim` (trust store
/// `dir/allowed_signers`, journal `dir/journal`, socket `dir/agent.sock`), with the bodies of
/// its `[provider]` and `[engine]` sections, `timeout_secs` for the API, and `metrics` as the
/// metrics address (`off` for none).
pub fn agent_config(
    dir: &Path,
    sim: &SimProc,
    provider: &str,
    engine: &str,
    timeout_secs: u64,
    metrics: &str,
) -> Result<()> {
    let node = ("pve-a", sim.port, sim.fingerprint.as_str());
    node_agent_config(dir, node, provider, engine, timeout_secs, metrics)
}

/// [`agent_config`] for the agent of node `(name, API port, fingerprint)` of a cluster.
pub fn node_agent_config(
    dir: &Path,
    (name, port, fp): (&str, u16, &str),
    provider: &str,
    engine: &str,
    timeout_secs: u64,
    metrics: &str,
) -> Result<()> {
    secret(&dir.join("token"), EVERYDAY)?;
    secret(&dir.join("admin-token"), ADMIN)?;
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "node = \"{name}\"\n[proxmox]\nurl = \"https://localhost:{port}\"\ntoken_file = \"{d}/token\"\nadmin_token_file = \"{d}/admin-token\"\nfingerprint = \"{fp}\"\ntimeout_secs = {timeout_secs}\n[trust]\nallowed_signers = \"{d}/allowed_signers\"\n[journal]\ndir = \"{d}/journal\"\n[provider]\n{provider}\n[engine]\n{engine}\n[api]\nsocket = \"{d}/agent.sock\"\nmetrics = \"{metrics}\"\n",
            d = dir.display()
        ),
    )?;
    Ok(())
}

/// Writes `dir/allowed_signers` admitting `public_line` as alice@example.org for op@steward.
pub fn trust_alice(dir: &Path, public_line: &str) -> Result<()> {
    std::fs::write(
        dir.join("allowed_signers"),
        format!("alice@example.org namespaces=\"op@steward\" {public_line}\n"),
    )?;
    Ok(())
}

/// Mutating calls of `call` for `vmid` the simulator at `control_addr` counted, from any token.
pub fn counter(control_addr: &str, vmid: u32, call: &str) -> Result<u64> {
    let c = control(control_addr, "GET", "/counters", "")?;
    Ok(c.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["vmid"] == vmid && e["call"] == call)
        .filter_map(|e| e["count"].as_u64())
        .sum())
}

/// `steward-agent ARGS --socket dir/agent.sock`: what it printed (empty when it could not run).
pub fn agent_cli(dir: &Path, args: &[&str]) -> String {
    Command::new(bin("steward-agent"))
        .args(args)
        .arg("--socket")
        .arg(dir.join("agent.sock"))
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `GET url` (`http://127.0.0.1:PORT/metrics`, as `steward-agent status` prints it): the
/// whole answer, which must be a 200.
pub fn scrape(url: &str) -> Result<String> {
    let addr = url
        .strip_prefix("http://")
        .and_then(|r| r.strip_suffix("/metrics"))
        .context("metrics URL")?;
    let mut tcp = std::net::TcpStream::connect(addr)?;
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    tcp.read_to_string(&mut out)?;
    ensure!(out.starts_with("HTTP/1.1 200"), "metrics: {out}");
    Ok(out)
}

/// `steward-agent run --config dir/agent.toml`, its log in `dir/LOG`, with the environment the
/// packaged unit gives it.
pub fn start_agent(dir: &Path, log: &str) -> Result<Reaped> {
    let log = std::fs::File::create(dir.join(log))?;
    Ok(Reaped(
        Command::new(bin("steward-agent"))
            .args(["run", "--config"])
            .arg(dir.join("agent.toml"))
            // As the packaged unit sets them (packaging/steward-agent.service).
            .env("MALLOC_ARENA_MAX", "2")
            .env("MALLOC_MMAP_THRESHOLD_", "131072")
            .env("MALLOC_TRIM_THRESHOLD_", "131072")
            .stderr(log)
            .spawn()
            .context("starting steward-agent")?,
    ))
}
