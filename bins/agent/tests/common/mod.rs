//! What the agent's process tests share: the simulator's two tokens, a child that is always
//! killed, secret files, waiting with a limit, the job results a hub stub received.

// Each test binary uses a different part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use steward_hub::HubToken;
use steward_hub_stub::HubStub;
use steward_pve_sim::{Privileges, Sim, SimConfig, SimToken};

/// The agent's everyday token.
pub const EVERYDAY: &str = "steward@pve!agent=5f1e3c2a-0000-4000-8000-00000000e7e1";
/// The agent's admin token.
pub const ADMIN: &str = "steward@pve!admin=5f1e3c2a-0000-4000-8000-00000000ad01";

/// Kills the agent on every way out.
pub struct Agent(pub Child);

impl Agent {
    /// Sends SIGTERM (the clean stop systemd asks for); the caller waits, or drops.
    pub fn sigterm(&self) {
        let pid = self.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
    }
}

/// `steward-agent ARGS --socket DIR/agent.sock`: exit code and stdout.
pub fn cli(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .args(args)
        .arg("--socket")
        .arg(dir.join("agent.sock"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `steward-agent run --config CFG`, its stderr as given; killed on every way out.
pub fn run_agent(cfg: &Path, stderr: std::process::Stdio) -> Agent {
    Agent(
        std::process::Command::new(env!("CARGO_BIN_EXE_steward-agent"))
            .args(["run", "--config"])
            .arg(cfg)
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

/// Waits (at most `limit`) for `child` to exit, its stderr piped: exit code and stderr. A
/// child still running at `limit` fails the test (and is killed on the way out).
pub fn exit_and_stderr(mut child: Agent, limit: Duration, what: &str) -> (Option<i32>, String) {
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < limit, "{what} did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

/// The id of the first op `steward-agent pending` lists (`op ID  expires …`).
pub fn first_held_id(listed: &str) -> String {
    listed
        .strip_prefix("op ")
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes `text` to `path`, mode 0600.
pub fn secret_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Waits until `f` holds, failing the test after `limit`.
pub async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The privileges `steward-agent setup-token` gives `role` (`StewardEveryday`,
/// `StewardAdmin`), read from the commands it prints, granted on `/` as it grants them.
pub fn setup_token_role(role: &str) -> Privileges {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steward-agent"))
        .arg("setup-token")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("pveum role add {role} ")))
        .unwrap_or_else(|| panic!("setup-token adds no role {role}:\n{text}"));
    let privs = line
        .split_once("--privs '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(p, _)| p)
        .unwrap();
    assert!(
        text.contains(&format!("--roles {role}")) && text.contains("pveum acl modify / "),
        "{text}"
    );
    Privileges::default().and("/", &privs.split(' ').collect::<Vec<_>>())
}

/// A simulator whose two tokens have exactly what `steward-agent setup-token` grants them:
/// every process test then shows that each path the agent takes needs no more (and the
/// everyday token has no VM.Allocate, disk, snapshot or backup privileges).
pub async fn sim(task_time: Duration) -> Sim {
    Sim::start(SimConfig {
        tokens: vec![
            (
                SimToken::parse(EVERYDAY).unwrap(),
                setup_token_role("StewardEveryday"),
            ),
            (
                SimToken::parse(ADMIN).unwrap(),
                setup_token_role("StewardAdmin"),
            ),
        ],
        task_time,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Mutating calls of `call` the simulator saw for `vmid`, from any token.
pub fn calls(sim: &Sim, vmid: u32, call: &str) -> u64 {
    sim.with_node(|n| n.st.counters.of(vmid, call))
}

/// Writes the agent's token files and `agent.toml` in `dir`, with `provider` as the body of
/// its `[provider]` section; returns the configuration's path.
pub fn config(dir: &Path, sim: &Sim, provider: &str) -> std::path::PathBuf {
    config_at(dir, "pve-a", sim.addr.port(), &sim.fingerprint, provider)
}

/// [`config`] for the agent of `node`, whose API listens on `port` with certificate `fp`.
pub fn config_at(
    dir: &Path,
    node: &str,
    port: u16,
    fp: &str,
    provider: &str,
) -> std::path::PathBuf {
    secret_file(&dir.join("token"), EVERYDAY);
    secret_file(&dir.join("admin-token"), ADMIN);
    let cfg = format!(
        "node = \"{node}\"\n[proxmox]\nurl = \"https://localhost:{port}\"\ntoken_file = \"{d}/token\"\nadmin_token_file = \"{d}/admin-token\"\nfingerprint = \"{fp}\"\n[trust]\nallowed_signers = \"{d}/allowed_signers\"\n[journal]\ndir = \"{d}/journal\"\n[provider]\n{provider}\n[engine]\ninterval_secs = 1\nsweep_secs = 5\n[api]\nsocket = \"{d}/agent.sock\"\nmetrics = \"127.0.0.1:0\"\n",
        d = dir.display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// [`config`] with a file provider: `dir/desired.toml`, polled every second.
pub fn file_config(dir: &Path, sim: &Sim) -> std::path::PathBuf {
    config(
        dir,
        sim,
        &format!("file = \"{}/desired.toml\"\npoll_secs = 1", dir.display()),
    )
}

/// A hub stub on loopback accepting `token`.
pub async fn hub(token: &str) -> HubStub {
    HubStub::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        HubToken::new(token).unwrap(),
    )
    .await
    .unwrap()
}

/// Writes `dir/hub-token` and returns the `[provider]` body that points the agent at `hub`
/// (polled and reported every second).
pub fn hub_provider(dir: &Path, hub: &HubStub, token: &str) -> String {
    secret_file(&dir.join("hub-token"), token);
    format!(
        "hub = \"https://localhost:{}\"\nhub_token_file = \"{}/hub-token\"\nhub_fingerprint = \"{}\"\npoll_secs = 1\nreport_secs = 1",
        hub.addr.port(),
        dir.display(),
        hub.fingerprint
    )
}

/// Writes `dir/allowed_signers` admitting `public_line` as alice@steward.test for op@steward.
pub fn trust(dir: &Path, public_line: &str) {
    std::fs::write(
        dir.join("allowed_signers"),
        format!("alice@steward.test namespaces=\"op@steward\" {public_line}\n"),
    )
    .unwrap();
}

/// `GET /metrics` at `url` (as `status` prints it): the whole answer, checked to be 200
/// OpenMetrics text.
pub fn scrape(url: &str) -> String {
    use std::io::{Read, Write};
    let addr = url
        .strip_prefix("http://")
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("application/openmetrics-text"), "{out}");
    out
}
