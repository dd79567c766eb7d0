//! The agent's configuration, in two stages. `load` reads the TOML file (`file.rs`: its shape
//! and defaults), checks it whole — every error with file, line and key, from the parser's
//! spans (`spans.rs`) — and resolves it into `Settings`: durations, the Proxmox endpoint, the
//! provider's source and trust, the metrics address, the approval policy, the config
//! directory hint. `run` takes `Settings` and cannot fail on any of them; `check-config` is
//! `load` plus the file checks `run` makes (`preflight.rs`).
//! It must never open, create or connect anything.

mod file;
mod spans;

pub use file::DEFAULT_SOCKET;
use file::{File, DEFAULT_METRICS};
use spans::Spans;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use steward_gate::ApprovalPolicy;
use steward_proxmox_client::{tls, Endpoint, Trust};

/// Everything `run` needs from the configuration, resolved and checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node's name, as Proxmox and signed ops name it.
    pub node: String,
    /// How to reach the node's API, and with which tokens.
    pub proxmox: ProxmoxSettings,
    /// The allowed_signers file.
    pub trust_file: PathBuf,
    /// The journal.
    pub journal: JournalSettings,
    /// Where the desired state and jobs come from.
    pub provider: ProviderSettings,
    /// The reconcile loop.
    pub engine: EngineSettings,
    /// The local API and metrics.
    pub api: ApiSettings,
    /// m-of-n: distinct operator keys per signed op kind.
    pub approval: ApprovalPolicy,
}

/// `[proxmox]`, resolved.
#[derive(Clone, Debug)]
pub struct ProxmoxSettings {
    /// Address, server name, trust and per-request timeout.
    pub endpoint: Endpoint,
    /// The everyday token's file.
    pub token_file: PathBuf,
    /// The admin token's file.
    pub admin_token_file: PathBuf,
    /// The CA file the node is trusted by, if that is how (checked like the config).
    pub ca_file: Option<PathBuf>,
}

/// `[journal]`, resolved.
#[derive(Clone, Debug)]
pub struct JournalSettings {
    /// Its directory.
    pub dir: PathBuf,
    /// How long finished ops and audit entries are kept.
    pub retention: Duration,
}

/// Where the desired state comes from: exactly one.
#[derive(Clone, Debug)]
pub enum Source {
    /// A desired-state file on the node.
    File(PathBuf),
    /// A hub.
    Hub {
        /// Its base URL (https).
        url: String,
        /// The bearer token's file.
        token_file: PathBuf,
        /// How its certificate is trusted.
        trust: Trust,
        /// The client certificate presented to it, if any (mutual TLS).
        identity: Option<tls::ClientIdentity>,
    },
}

/// `[provider]`, resolved.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// The source.
    pub source: Source,
    /// The hub's CA file, if that is how it is trusted (checked like the config).
    pub hub_ca_file: Option<PathBuf>,
    /// How often the source is asked for changes and jobs.
    pub poll: Duration,
    /// A hub hears the agent's status and held ops at least this often.
    pub report_every: Duration,
    /// Whether the agent reports at all (`[provider] report = "off"`: no).
    pub reports: bool,
}

/// `[engine]`, resolved.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Between passes when nothing else wakes the loop.
    pub interval: Duration,
    /// Actions in flight at once.
    pub concurrency: usize,
    /// Every managed guest's config is re-read within this.
    pub sweep: Duration,
    /// How long one Proxmox task may take.
    pub task_deadline: Duration,
    /// The config directory whose mtimes hint at changes; None: no hint.
    pub conf_dir: Option<PathBuf>,
}

/// `[api]`, resolved.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// The Unix socket the CLI talks to.
    pub socket: PathBuf,
    /// The group that owns it; the agent's own when None.
    pub socket_group: Option<String>,
    /// Where `/metrics` is served (loopback); None: off.
    pub metrics: Option<SocketAddr>,
}

/// Loads, checks and resolves `path`; `Err` holds every problem, each `file:line: key: what`.
pub fn load(path: &Path) -> Result<Settings, Vec<String>> {
    let shown = path.display().to_string();
    // Whoever can write the config can point the agent at their own trust store.
    steward_proxmox_client::files::check_secure_path(
        path,
        steward_proxmox_client::files::Sensitivity::Public,
        steward_proxmox_client::files::effective_uid(),
    )
    .map_err(|e| vec![e])?;
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    let cfg: File = toml::from_str(&text).map_err(|e| {
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
    let node_trust = match (&cfg.proxmox.fingerprint, &cfg.proxmox.ca_file) {
        (Some(_), Some(_)) => Err(format!(
            "{}: give fingerprint or ca_file, not both",
            at(&["proxmox", "fingerprint"])
        )),
        (None, None) => Err(format!(
            "{shown}: [proxmox]: give fingerprint (as `pvenode cert info` prints it) or ca_file: there is no unverified mode"
        )),
        (Some(f), None) => tls::parse_fingerprint(f)
            .map(Trust::Fingerprint)
            .map_err(|e| format!("{}: {e}", at(&["proxmox", "fingerprint"]))),
        (None, Some(ca)) => Ok(Trust::CaFile(ca.clone())),
    };
    let endpoint = match node_trust {
        Err(e) => {
            errors.push(e);
            None
        }
        Ok(trust) => Endpoint::from_url(
            &cfg.proxmox.url,
            trust,
            Duration::from_secs(cfg.proxmox.timeout_secs),
        )
        .map_err(|e| errors.push(format!("{}: {e}", at(&["proxmox", "url"]))))
        .ok(),
    };
    let p = &cfg.provider;
    let source = match (&p.file, &p.hub) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "{}: give file or hub, not both",
                at(&["provider", "hub"])
            ));
            None
        }
        (None, None) => {
            errors.push(format!(
                "{shown}: [provider]: give file (a desired-state document) or hub (a hub's URL)"
            ));
            None
        }
        (Some(file), None) => {
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
            Some(Source::File(file.clone()))
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
            let trust = match (&p.hub_fingerprint, &p.hub_ca_file) {
                (Some(_), Some(_)) => Err(format!(
                    "{}: give hub_fingerprint or hub_ca_file, not both",
                    at(&["provider", "hub_fingerprint"])
                )),
                (None, None) => Err(format!(
                    "{shown}: [provider]: give hub_fingerprint or hub_ca_file: there is no unverified mode"
                )),
                (Some(f), None) => tls::parse_fingerprint(f)
                    .map(Trust::Fingerprint)
                    .map_err(|e| format!("{}: {e}", at(&["provider", "hub_fingerprint"]))),
                (None, Some(ca)) => Ok(Trust::CaFile(ca.clone())),
            };
            let trust = trust.map_err(|e| errors.push(e)).ok();
            let identity = match (&p.client_cert, &p.client_key) {
                (Some(cert_file), Some(key_file)) => Some(tls::ClientIdentity {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                }),
                (None, None) => None,
                (Some(_), None) => {
                    errors.push(format!(
                        "{}: a client certificate needs its client_key",
                        at(&["provider", "client_cert"])
                    ));
                    None
                }
                (None, Some(_)) => {
                    errors.push(format!(
                        "{}: a client key needs its client_cert",
                        at(&["provider", "client_key"])
                    ));
                    None
                }
            };
            match (trust, &p.hub_token_file) {
                (Some(trust), Some(token_file)) => Some(Source::Hub {
                    url: url.clone(),
                    token_file: token_file.clone(),
                    trust,
                    identity,
                }),
                _ => None,
            }
        }
    };
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
    for (section, key, value) in [
        ("engine", "interval_secs", cfg.engine.interval_secs),
        ("provider", "poll_secs", cfg.provider.poll_secs),
        ("provider", "report_secs", cfg.provider.report_secs),
    ] {
        if value == 0 {
            errors.push(format!("{}: must be at least 1", at(&[section, key])));
        }
    }
    let metrics = match cfg.api.metrics.as_str() {
        "off" => Ok(None),
        text => match text.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => Ok(Some(a)),
            Ok(a) => Err(format!(
                "{}: {a} is not a loopback address: metrics are served on loopback only (scrape through a proxy, or `off`)",
                at(&["api", "metrics"])
            )),
            Err(_) => Err(format!(
                "{}: {text:?} is not `host:port` (such as {DEFAULT_METRICS}) or `off`",
                at(&["api", "metrics"]),
            )),
        },
    };
    let metrics = metrics.map_err(|e| errors.push(e)).ok();
    let approval = cfg.approval_policy().map_err(|(key, what)| {
        // Dotted (`guest.destroy = 2`: nested tables) or quoted (`"guest.destroy" = 2`); a
        // threshold left at its default has no line of its own: name the table's.
        let dotted: Vec<&str> = std::iter::once("approval").chain(key.split('.')).collect();
        let line = spans
            .line(&dotted)
            .or_else(|| spans.line(&["approval", key.as_str()]))
            .or_else(|| spans.line(&["approval"]))
            .unwrap_or(1);
        errors.push(format!("{shown}:{line}: approval: {what}"));
    });
    match (endpoint, source, metrics, approval) {
        (Some(endpoint), Some(source), Some(metrics), Ok(approval)) if errors.is_empty() => {
            Ok(resolve(cfg, endpoint, source, metrics, approval))
        }
        _ => Err(errors),
    }
}

/// The checked file as settings: every fallible part was resolved by `load`.
fn resolve(
    cfg: File,
    endpoint: Endpoint,
    source: Source,
    metrics: Option<SocketAddr>,
    approval: ApprovalPolicy,
) -> Settings {
    let conf_dir = conf_dir_for(cfg.engine.conf_dir.as_deref(), &cfg.node);
    Settings {
        proxmox: ProxmoxSettings {
            endpoint,
            token_file: cfg.proxmox.token_file,
            admin_token_file: cfg.proxmox.admin_token_file,
            ca_file: cfg.proxmox.ca_file,
        },
        trust_file: cfg.trust.allowed_signers,
        journal: JournalSettings {
            dir: cfg.journal.dir,
            retention: Duration::from_secs(cfg.journal.retention_secs),
        },
        provider: ProviderSettings {
            source,
            hub_ca_file: cfg.provider.hub_ca_file,
            poll: Duration::from_secs(cfg.provider.poll_secs),
            report_every: Duration::from_secs(cfg.provider.report_secs),
            reports: cfg.provider.report != file::ReportMode::Off,
        },
        engine: EngineSettings {
            interval: Duration::from_secs(cfg.engine.interval_secs),
            concurrency: cfg.engine.concurrency,
            sweep: Duration::from_secs(cfg.engine.sweep_secs),
            task_deadline: Duration::from_secs(cfg.engine.task_deadline_secs),
            conf_dir,
        },
        api: ApiSettings {
            socket: cfg.api.socket,
            socket_group: cfg.api.socket_group,
            metrics,
        },
        approval,
        node: cfg.node,
    }
}

/// The config directory the engine watches, if any (`[engine] conf_dir`: unset means
/// `/etc/pve/nodes/<node>` when it exists, `""` off). Seeing an mtime needs only search
/// permission on the directories, which pmxcfs gives every user; the files themselves (mode
/// 0640, root:www-data) stay unreadable to the agent, so the hint tells it when a guest's
/// config changed, never what it holds.
fn conf_dir_for(set: Option<&Path>, node: &str) -> Option<PathBuf> {
    match set {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p.to_path_buf()),
        None => {
            let p = PathBuf::from("/etc/pve/nodes").join(node);
            p.is_dir().then_some(p)
        }
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
        let ep = format!("{:?}", c.proxmox.endpoint);
        assert!(ep.contains("127.0.0.1:8006"), "{ep}");
        assert_eq!(c.engine.concurrency, 4);
        assert_eq!(c.engine.interval, Duration::from_secs(30));
        assert_eq!(c.engine.sweep, Duration::from_secs(1200));
        assert_eq!(c.provider.poll, Duration::from_secs(2));
        assert_eq!(c.journal.dir, PathBuf::from("/var/lib/steward"));
        assert_eq!(c.api.metrics, Some("127.0.0.1:9184".parse().unwrap()));
        assert!(matches!(&c.provider.source, Source::File(f) if f.ends_with("desired.toml")));
    }

    #[test]
    fn the_approval_policy_reads_dotted_or_quoted_op_kinds_and_names_a_bad_line() {
        let (_d, p) = write(&format!(
            "{GOOD}\n[approval]\nguest.destroy = 2\n\"keys.rotate\" = 3\nrecovery = 2\n"
        ));
        let policy = load(&p).unwrap().approval;
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
        let (_d, p) = write(&GOOD.replace("[provider]", "[provider]\npoll_secs = 0"));
        let e = load(&p).unwrap_err();
        assert!(
            e[0].contains("agent.toml:9: poll_secs: must be at least 1"),
            "{e:?}"
        );
        // A URL `run` could not reach is refused here, not when the agent starts.
        let (_d, p) =
            write(&GOOD.replace("[proxmox]\n", "[proxmox]\nurl = \"https://pve a:8006\"\n"));
        let e = load(&p).unwrap_err();
        assert!(
            e[0].contains("agent.toml:4: url") && e[0].contains("not a URL"),
            "{e:?}"
        );
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
        assert!(
            matches!(&c.provider.source, Source::Hub { url, trust: Trust::CaFile(_), .. } if url == "https://hub.example.org"),
            "{:?}",
            c.provider.source
        );
        let (_d, p) = write(&GOOD.replace(
            "file = \"/etc/steward/desired.toml\"",
            "hub = \"http://hub.example.org\"",
        ));
        let e = load(&p).unwrap_err().join("\n");
        assert!(
            e.contains("agent.toml:9: hub: the hub is reached over https only"),
            "{e}"
        );
        // Mutual TLS: a certificate and its key, both or neither; `report = "off"`.
        {
            let hub = "hub = \"https://hub.example.org\"\nhub_token_file = \"/etc/steward/hub-token\"\nhub_ca_file = \"/etc/steward/hub-ca.pem\"";
            let (_d, p) = write(&GOOD.replace(
            "file = \"/etc/steward/desired.toml\"",
            &format!("{hub}\nclient_cert = \"/etc/steward/client.pem\"\nclient_key = \"/etc/steward/client.key\"\nreport = \"off\""),
        ));
            let c = load(&p).unwrap();
            assert!(
                matches!(&c.provider.source, Source::Hub { identity: Some(id), .. } if id.key_file == Path::new("/etc/steward/client.key")),
                "{:?}",
                c.provider.source
            );
            assert!(!c.provider.reports);
            let (_d, p) = write(&GOOD.replace(
                "file = \"/etc/steward/desired.toml\"",
                &format!("{hub}\nclient_cert = \"/etc/steward/client.pem\""),
            ));
            let e = load(&p).unwrap_err().join("\n");
            assert!(
                e.contains("agent.toml:12: client_cert: a client certificate needs its client_key"),
                "{e}"
            );
            let (_d, p) = write(&GOOD.replace(
                "file = \"/etc/steward/desired.toml\"",
                &format!("{hub}\nreport = \"sometimes\""),
            ));
            let e = load(&p).unwrap_err().join("\n");
            assert!(e.contains("agent.toml:12"), "{e}");
        }
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
        // No /etc/pve here: the default finds nothing and the hint is off.
        assert_eq!(conf_dir_for(None, "no-such-node-here"), None);
        assert_eq!(conf_dir_for(Some(Path::new("")), "pve-a"), None);
        assert_eq!(
            conf_dir_for(Some(Path::new("/srv/pve-view")), "pve-a"),
            Some(PathBuf::from("/srv/pve-view"))
        );
        let (_d, p) = write(&format!("{GOOD}\n[engine]\nconf_dir = \"\"\n"));
        assert_eq!(load(&p).unwrap().engine.conf_dir, None);
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
