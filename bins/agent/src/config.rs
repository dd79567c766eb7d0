//! The agent's configuration (TOML), loaded without side effects: every error is reported with
//! file, line and key, unknown keys are errors, and nothing is opened or connected here (that is
//! `run.rs`'s job, in a fixed order). `check-config` is exactly this.
//! It must never open, create or connect anything.

use serde::Deserialize;
use std::path::{Path, PathBuf};

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
pub struct Config {
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
    /// m-of-n: distinct operator keys per signed op kind (see [`Config::approval_policy`]).
    #[serde(default)]
    pub approval: toml::Table,
}

impl Config {
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

impl Api {
    /// The metrics address, `None` when `off` (checked by `load`).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        if self.metrics == "off" {
            return None;
        }
        self.metrics.parse().ok()
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
    /// How often the source is asked for changes (and jobs), seconds.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// A hub hears the agent's status and held ops at least this often, seconds.
    #[serde(default = "default_report")]
    pub report_secs: u64,
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

impl EngineSection {
    /// The config directory the engine watches, if any (see `conf_dir`). Seeing an mtime needs
    /// only search permission on the directories, which pmxcfs gives every user; the files
    /// themselves (mode 0640, root:www-data) stay unreadable to the agent, so the hint tells it
    /// when a guest's config changed, never what it holds.
    pub fn conf_dir_for(&self, node: &str) -> Option<PathBuf> {
        match &self.conf_dir {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => {
                let p = PathBuf::from("/etc/pve/nodes").join(node);
                p.is_dir().then_some(p)
            }
        }
    }
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

/// Where each key of the file stands, from the TOML parser's own spans: errors found after
/// parsing name the line of the key they are about (in its table, so a key of one section is
/// never mistaken for another's).
struct Spans<'a> {
    text: &'a str,
    doc: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> Spans<'a> {
    fn new(text: &'a str) -> Spans<'a> {
        Spans {
            text,
            doc: toml::de::DeTable::parse(text).ok(),
        }
    }

    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line of the key at `path` (`["engine", "concurrency"]`), if the file sets it.
    fn line(&self, path: &[&str]) -> Option<usize> {
        let mut table = self.doc.as_ref()?.get_ref();
        let (last, parents) = path.split_last()?;
        for p in parents {
            table = table.get(*p)?.get_ref().as_table()?;
        }
        let (key, _) = table.get_key_value(*last)?;
        Some(self.line_at(key.span().start))
    }

    /// The line of the key at `path`, or else of its table's header, or else 1.
    fn line_or_table(&self, path: &[&str]) -> usize {
        self.line(path)
            .or_else(|| self.line(path.get(..path.len().checked_sub(1)?)?))
            .unwrap_or(1)
    }
}

/// Loads and checks `path`; `Err` holds every problem, each `file:line: key: what`.
pub fn load(path: &Path) -> Result<Config, Vec<String>> {
    let shown = path.display().to_string();
    // Whoever can write the config can point the agent at their own trust store.
    steward_proxmox_client::files::check_secure_path(
        path,
        steward_proxmox_client::files::Sensitivity::Public,
        steward_proxmox_client::files::effective_uid(),
    )
    .map_err(|e| vec![e])?;
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    let cfg: Config = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        });
        vec![format!("{shown}:{line}: {}", e.message())]
    })?;
    let mut errors = Vec::new();
    let spans = Spans::new(&text);
    let at = |path: &[&str]| {
        let key = path.last().copied().unwrap_or_default();
        format!("{shown}:{}: {key}", spans.line_or_table(path))
    };
    if cfg.node.trim().is_empty() {
        errors.push(format!("{}: must name this node", at(&["node"])));
    }
    match (&cfg.proxmox.fingerprint, &cfg.proxmox.ca_file) {
        (Some(_), Some(_)) => errors.push(format!(
            "{}: give fingerprint or ca_file, not both",
            at(&["proxmox", "fingerprint"])
        )),
        (None, None) => errors.push(format!(
            "{shown}: [proxmox]: give fingerprint (as `pvenode cert info` prints it) or ca_file: there is no unverified mode"
        )),
        (Some(f), None) => {
            if let Err(e) = steward_proxmox_client::tls::parse_fingerprint(f) {
                errors.push(format!("{}: {e}", at(&["proxmox", "fingerprint"])));
            }
        }
        (None, Some(_)) => {}
    }
    if !cfg.proxmox.url.starts_with("https://") {
        errors.push(format!(
            "{}: the Proxmox API is reached over https only",
            at(&["proxmox", "url"])
        ));
    }
    let p = &cfg.provider;
    match (&p.file, &p.hub) {
        (Some(_), Some(_)) => errors.push(format!(
            "{}: give file or hub, not both",
            at(&["provider", "hub"])
        )),
        (None, None) => errors.push(format!(
            "{shown}: [provider]: give file (a desired-state document) or hub (a hub's URL)"
        )),
        (Some(_), None) => {
            for key in ["hub_token_file", "hub_fingerprint", "hub_ca_file"] {
                let set = match key {
                    "hub_token_file" => p.hub_token_file.is_some(),
                    "hub_fingerprint" => p.hub_fingerprint.is_some(),
                    _ => p.hub_ca_file.is_some(),
                };
                if set {
                    errors.push(format!(
                        "{}: only for a hub provider",
                        at(&["provider", key])
                    ));
                }
            }
        }
        (None, Some(url)) => {
            if !url.starts_with("https://") {
                errors.push(format!(
                    "{}: the hub is reached over https only",
                    at(&["provider", "hub"])
                ));
            }
            if url
                .trim_start_matches("https://")
                .split('/')
                .next()
                .is_some_and(|authority| authority.contains('@'))
            {
                errors.push(format!(
                    "{}: no credentials in the URL: the bearer token file is the credential",
                    at(&["provider", "hub"])
                ));
            }
            if p.hub_token_file.is_none() {
                errors.push(format!(
                    "{shown}: [provider]: a hub needs hub_token_file (the bearer token, mode 0600)"
                ));
            }
            match (&p.hub_fingerprint, &p.hub_ca_file) {
                (Some(_), Some(_)) => errors.push(format!(
                    "{}: give hub_fingerprint or hub_ca_file, not both",
                    at(&["provider", "hub_fingerprint"])
                )),
                (None, None) => errors.push(format!(
                    "{shown}: [provider]: give hub_fingerprint or hub_ca_file: there is no unverified mode"
                )),
                (Some(f), None) => {
                    if let Err(e) = steward_proxmox_client::tls::parse_fingerprint(f) {
                        errors.push(format!("{}: {e}", at(&["provider", "hub_fingerprint"])));
                    }
                }
                (None, Some(_)) => {}
            }
        }
    }
    if cfg.journal.retention_secs < 60 {
        errors.push(format!(
            "{}: at least 60 seconds of history are kept",
            at(&["journal", "retention_secs"])
        ));
    }
    if cfg.engine.concurrency == 0 {
        errors.push(format!(
            "{}: must be at least 1",
            at(&["engine", "concurrency"])
        ));
    }
    if cfg.engine.interval_secs == 0 {
        errors.push(format!(
            "{}: must be at least 1",
            at(&["engine", "interval_secs"])
        ));
    }
    if cfg.api.metrics != "off" {
        match cfg.api.metrics.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => {}
            Ok(a) => errors.push(format!(
                "{}: {a} is not a loopback address: metrics are served on loopback only (scrape through a proxy, or `off`)",
                at(&["api", "metrics"])
            )),
            Err(_) => errors.push(format!(
                "{}: {:?} is not `host:port` (such as {DEFAULT_METRICS}) or `off`",
                at(&["api", "metrics"]),
                cfg.api.metrics
            )),
        }
    }
    if let Err((key, what)) = cfg.approval_policy() {
        // Dotted (`guest.destroy = 2`: nested tables) or quoted (`"guest.destroy" = 2`); a
        // threshold left at its default has no line of its own: name the table's.
        let dotted: Vec<&str> = std::iter::once("approval").chain(key.split('.')).collect();
        let line = spans
            .line(&dotted)
            .or_else(|| spans.line(&["approval", key.as_str()]))
            .or_else(|| spans.line(&["approval"]))
            .unwrap_or(1);
        errors.push(format!("{shown}:{line}: approval: {what}"));
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "node = \"pve-a\"\n\n[proxmox]\ntoken_file = \"/etc/steward/token\"\nadmin_token_file = \"/etc/steward/admin-token\"\nfingerprint = \"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\"\n\n[provider]\nfile = \"/etc/steward/desired.toml\"\n";

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("agent.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn a_good_file_loads_with_its_defaults() {
        let (_d, p) = write(GOOD);
        let c = load(&p).unwrap();
        assert_eq!(c.proxmox.url, "https://127.0.0.1:8006");
        assert_eq!(c.engine.concurrency, 4);
        assert_eq!(c.journal.dir, PathBuf::from("/var/lib/steward"));
    }

    #[test]
    fn the_approval_policy_reads_dotted_or_quoted_op_kinds_and_names_a_bad_line() {
        let (_d, p) = write(&format!(
            "{GOOD}\n[approval]\nguest.destroy = 2\n\"keys.rotate\" = 3\nrecovery = 2\n"
        ));
        let policy = load(&p).unwrap().approval_policy().unwrap();
        use steward_authz::Role;
        assert_eq!(policy.threshold("guest.destroy", Role::Operational), 2);
        assert_eq!(policy.threshold("guest.rollback", Role::Operational), 1);
        assert_eq!(policy.threshold("keys.rotate", Role::Operational), 3);
        assert_eq!(policy.threshold("keys.rotate", Role::Recovery), 2);
        for (bad, line, what) in [
            ("guest.destory = 2", 12, "not an op kind"),
            (
                "guest.destroy = 0\nkeys.rotate = 8\nrecovery = 8",
                12,
                "outside 1..=8",
            ),
            ("guest.destroy = \"two\"", 12, "not a whole number"),
            ("default = 9", 12, "outside 1..=8"),
            (
                "guest.destroy = 2",
                11,
                "keys.rotate = 1 is below guest.destroy = 2",
            ),
            (
                "guest.destroy = 2\nkeys.rotate = 2\n\"guest.destroy\" = 1",
                12,
                "guest.destroy is set twice",
            ),
        ] {
            let (_d, p) = write(&format!("{GOOD}\n[approval]\n{bad}\n"));
            let e = load(&p).unwrap_err();
            assert!(
                e[0].contains(&format!("agent.toml:{line}: approval")) && e[0].contains(what),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let (_d, p) = write(&GOOD.replace("[provider]", "[provider]\ncolour = \"blue\""));
        let e = load(&p).unwrap_err();
        assert!(
            e[0].contains("agent.toml:9") && e[0].contains("colour"),
            "{e:?}"
        );
        let (_d, p) = write(&GOOD.replace("fingerprint = \"AB", "fingerprint = \"ZZ"));
        let e = load(&p).unwrap_err();
        assert!(e[0].contains("agent.toml:6: fingerprint"), "{e:?}");
        let no_trust = GOOD
            .lines()
            .filter(|l| !l.starts_with("fingerprint"))
            .collect::<Vec<_>>()
            .join("\n");
        let (_d, p) = write(&no_trust);
        let e = load(&p).unwrap_err();
        assert!(e[0].contains("no unverified mode"), "{e:?}");
        let (_d, p) = write(&format!("{GOOD}\n[api]\nmetrics = \"0.0.0.0:9184\"\n"));
        let e = load(&p).unwrap_err();
        assert!(
            e[0].contains("agent.toml:12: metrics") && e[0].contains("loopback"),
            "{e:?}"
        );
    }

    #[test]
    fn a_provider_is_a_file_or_a_hub_with_its_token_and_trust() {
        let (_d, p) = write(&GOOD.replace(
            "file = \"/etc/steward/desired.toml\"",
            "hub = \"https://hub.example.org\"\nhub_token_file = \"/etc/steward/hub-token\"\nhub_ca_file = \"/etc/steward/hub-ca.pem\"",
        ));
        let c = load(&p).unwrap();
        assert_eq!(c.provider.hub.as_deref(), Some("https://hub.example.org"));
        let (_d, p) = write(&GOOD.replace(
            "file = \"/etc/steward/desired.toml\"",
            "hub = \"http://hub.example.org\"",
        ));
        let e = load(&p).unwrap_err().join("\n");
        assert!(
            e.contains("agent.toml:9: hub: the hub is reached over https only"),
            "{e}"
        );
        assert!(e.contains("needs hub_token_file"), "{e}");
        assert!(e.contains("no unverified mode"), "{e}");
        let (_d, p) = write(&GOOD.replace(
            "[provider]\n",
            "[provider]\nhub = \"https://hub.example.org\"\n",
        ));
        let e = load(&p).unwrap_err().join("\n");
        assert!(
            e.contains("agent.toml:9: hub: give file or hub, not both"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_example_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        load(&example).unwrap();
    }

    #[test]
    fn the_config_directory_hint_defaults_to_the_nodes_directory_and_can_be_turned_off() {
        let mut e = EngineSection::default();
        // No /etc/pve here: the default finds nothing and the hint is off.
        assert_eq!(e.conf_dir_for("no-such-node-here"), None);
        e.conf_dir = Some(PathBuf::from(""));
        assert_eq!(e.conf_dir_for("pve-a"), None);
        e.conf_dir = Some(PathBuf::from("/srv/pve-view"));
        assert_eq!(
            e.conf_dir_for("pve-a"),
            Some(PathBuf::from("/srv/pve-view"))
        );
    }

    #[test]
    fn a_bad_value_is_named_at_its_own_line_however_the_key_is_written() {
        // A dotted key in the root table and an inline table: no line starts with the key's
        // name, and the parser's spans still find it.
        let (_d, p) = write(&format!(
            "# dotted and inline\nengine.concurrency = 0\napi = {{ metrics = \"10.0.0.1:9184\" }}\n{GOOD}"
        ));
        let e = load(&p).unwrap_err();
        assert!(
            e.iter().any(|l| l.contains("agent.toml:2: concurrency")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|l| l.contains("agent.toml:3: metrics")),
            "{e:?}"
        );
    }
}
