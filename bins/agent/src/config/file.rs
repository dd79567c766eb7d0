//! The configuration file's shape, as serde reads it: sections, keys and their defaults, each
//! written once here. Unknown keys are errors. Nothing here is used by `run`: `config::load`
//! checks this and resolves it into `Settings`. It must never be read for a setting anywhere
//! but `config::load`.

use serde::Deserialize;
use std::path::PathBuf;

fn default_url() -> String {
    "https://127.0.0.1:8006".into()
}
fn default_signers() -> PathBuf {
    "/etc/steward/allowed_signers".into()
}
fn default_journal() -> PathBuf {
    "/var/lib/steward".into()
}
fn default_timeout() -> u64 {
    30
}
fn default_poll() -> u64 {
    2
}
fn default_interval() -> u64 {
    30
}
fn default_concurrency() -> usize {
    4
}
fn default_sweep() -> u64 {
    1200
}
fn default_deadline() -> u64 {
    600
}
/// Where the local API listens unless the configuration says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/steward/agent.sock";
fn default_socket() -> PathBuf {
    DEFAULT_SOCKET.into()
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// This node's name, as Proxmox and signed ops name it.
    pub node: String,
    /// How to reach the node's API.
    pub proxmox: Proxmox,
    /// The operators' keys.
    #[serde(default)]
    pub trust: Trust,
    /// The journal.
    #[serde(default)]
    pub journal: JournalSection,
    /// Where the desired state comes from.
    pub provider: Provider,
    /// The reconcile loop.
    #[serde(default)]
    pub engine: EngineSection,
    /// The local API.
    #[serde(default)]
    pub api: Api,
    /// m-of-n: distinct operator keys per signed op kind (see [`File::approval_policy`]).
    #[serde(default)]
    pub approval: toml::Table,
}

impl File {
    /// The `[approval]` table as a policy: `default` (op kinds not named), `recovery`
    /// (`keys.rotate` signed with recovery keys), and a threshold per op kind, written dotted
    /// (`guest.destroy = 2`) or quoted (`"guest.destroy" = 2`). `Err`: (key, what is wrong).
    pub fn approval_policy(&self) -> Result<steward_gate::ApprovalPolicy, (String, String)> {
        let mut default = 1;
        let mut recovery = 1;
        let mut ops = Vec::new();
        let mut flat = Vec::new();
        flatten("", &self.approval, &mut flat);
        // `guest.destroy = 2` and `"guest.destroy" = 1` are two TOML keys naming one op kind:
        // which one wins must not depend on the file's order, so neither does.
        let mut names = std::collections::BTreeSet::new();
        if let Some((key, _)) = flat.iter().find(|(k, _)| !names.insert(k.clone())) {
            return Err((key.clone(), format!("{key} is set twice")));
        }
        for (key, value) in flat {
            let Some(n) = value.as_integer() else {
                return Err((key, format!("{value} is not a whole number")));
            };
            let n = u64::try_from(n).unwrap_or(0);
            match key.as_str() {
                "default" => default = n,
                "recovery" => recovery = n,
                _ => ops.push((key, n)),
            }
        }
        steward_gate::ApprovalPolicy::new(default, recovery, ops).map_err(|e| {
            let key = match &e {
                steward_gate::PolicyError::UnknownOp(k) => k.clone(),
                steward_gate::PolicyError::OutOfRange { what, .. }
                | steward_gate::PolicyError::WeakRotation { what, .. } => what.clone(),
            };
            (key, e.to_string())
        })
    }
}

/// `guest = { destroy = 2 }` → `("guest.destroy", 2)`: dotted keys are nested tables in TOML.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// Where `/metrics` is served unless the configuration says otherwise.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9184";
fn default_metrics() -> String {
    DEFAULT_METRICS.into()
}

/// `[api]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// The Unix socket (mode 0660) the CLI talks to.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The group that owns the socket (its members may use the CLI); the agent's own group
    /// when absent.
    pub socket_group: Option<String>,
    /// `host:port` on loopback for `/metrics` (Prometheus text), or `off`.
    #[serde(default = "default_metrics")]
    pub metrics: String,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            socket: default_socket(),
            socket_group: None,
            metrics: default_metrics(),
        }
    }
}

/// `[proxmox]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxmox {
    /// The API (default `https://127.0.0.1:8006`).
    #[serde(default = "default_url")]
    pub url: String,
    /// The everyday token's file (`user@realm!agent=SECRET`, mode 0600).
    pub token_file: PathBuf,
    /// The admin token's file (mode 0600).
    pub admin_token_file: PathBuf,
    /// The node certificate's SHA-256 as `pvenode cert info` prints it.
    pub fingerprint: Option<String>,
    /// Or a CA certificate file to trust instead.
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// `[trust]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// The allowed_signers file.
    #[serde(default = "default_signers")]
    pub allowed_signers: PathBuf,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            allowed_signers: default_signers(),
        }
    }
}

/// `[journal]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    /// Its directory.
    #[serde(default = "default_journal")]
    pub dir: PathBuf,
    /// How long finished ops and audit entries are kept, seconds (default 30 days; at least
    /// 60). Consumed nonces are kept exactly as long as their op could still be admitted,
    /// whatever this says.
    #[serde(default = "default_retention")]
    pub retention_secs: u64,
}

fn default_retention() -> u64 {
    steward_engine::retention::DEFAULT_RETENTION.as_secs()
}

impl Default for JournalSection {
    fn default() -> Self {
        JournalSection {
            dir: default_journal(),
            retention_secs: default_retention(),
        }
    }
}

fn default_report() -> u64 {
    30
}

/// `[provider]`: a file, or a hub (exactly one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// A desired-state file (`.json`, or TOML).
    pub file: Option<PathBuf>,
    /// A hub's base URL (`https://hub.example.org:8443`).
    pub hub: Option<String>,
    /// The hub's bearer token file (mode 0600).
    pub hub_token_file: Option<PathBuf>,
    /// The hub certificate's SHA-256 (`AB:CD:…`).
    pub hub_fingerprint: Option<String>,
    /// Or a CA certificate file to trust for the hub.
    pub hub_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present to the hub (mutual TLS, e.g. nginx's
    /// `ssl_verify_client`); with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM, mode 0600).
    pub client_key: Option<PathBuf>,
    /// How often the source is asked for changes (and jobs), seconds.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// A hub hears the agent's status and held ops at least this often, seconds.
    #[serde(default = "default_report")]
    pub report_secs: u64,
    /// `"hub"` (default): report to the hub; `"off"`: a hub served by a plain web server has
    /// no report endpoint, so none is called.
    #[serde(default)]
    pub report: ReportMode,
}

/// `[provider] report`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportMode {
    /// Report to the hub.
    #[default]
    Hub,
    /// No reports.
    Off,
}

/// `[engine]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Seconds between passes when nothing else wakes the loop.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Actions in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Every managed guest's config is re-read within this many seconds.
    #[serde(default = "default_sweep")]
    pub sweep_secs: u64,
    /// How long one Proxmox task may take, seconds.
    #[serde(default = "default_deadline")]
    pub task_deadline_secs: u64,
    /// Where the node's guest configs are (`qemu-server/<vmid>.conf`, `lxc/<vmid>.conf`), for
    /// their mtimes as a change hint. Unset: `/etc/pve/nodes/<node>` when that exists; `""`:
    /// off.
    pub conf_dir: Option<PathBuf>,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            interval_secs: default_interval(),
            concurrency: default_concurrency(),
            sweep_secs: default_sweep(),
            task_deadline_secs: default_deadline(),
            conf_dir: None,
        }
    }
}
