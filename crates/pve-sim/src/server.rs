//! The HTTPS server: a self-signed certificate made at start (its SHA-256 printed in `pvenode
//! cert info` form), HTTP/1.1 with keep-alive, per-request faults, and the node behind a mutex;
//! optionally the out-of-band control listener, the persisted state and the config-file view,
//! brought up to date after every request that changed the node.
//! It must never be mistaken for a node: it is a test double.

use crate::acl::Privileges;
use crate::cluster::Cluster;
use crate::faults::Faults;
use crate::node::Node;
use crate::persist::{self, ConfView};
use crate::routes::route;
use crate::token::SimToken;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How to run the simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Node name (the first node of a cluster).
    pub node: String,
    /// The cluster's other nodes (none: a standalone node). Each listens on a port of its own
    /// (`listen`'s port plus its position, or any free port when that is 0).
    pub peers: Vec<String>,
    /// Guests at start, per node (a cluster's nodes number theirs one block after another).
    pub guests: usize,
    /// Accepted tokens and what each may do.
    pub tokens: Vec<(SimToken, Privileges)>,
    /// How long a task runs.
    pub task_time: Duration,
    /// Faults to inject.
    pub faults: Faults,
    /// Seed for the faults.
    pub seed: u64,
    /// The out-of-band control listener (plain HTTP; loopback in tests), off when None.
    pub control: Option<SocketAddr>,
    /// Persist the node here (`state.json`), and start from it when present.
    pub state_dir: Option<PathBuf>,
    /// Keep a config-file view here (`qemu-server/<vmid>.conf`, `lxc/<vmid>.conf`).
    pub conf_dir: Option<PathBuf>,
}

impl Default for SimConfig {
    /// `pve-a` on 127.0.0.1 (any port), 6 guests, no tokens, 200 ms tasks, no faults, seed 1.
    fn default() -> SimConfig {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            node: "pve-a".into(),
            peers: Vec::new(),
            guests: 6,
            tokens: Vec::new(),
            task_time: Duration::from_millis(200),
            faults: Faults::default(),
            seed: 1,
            control: None,
            state_dir: None,
            conf_dir: None,
        }
    }
}

/// What the cluster's changes must reach after each request.
struct Outside {
    state_dir: Option<PathBuf>,
    /// One config-file view per node: the directory itself for a standalone node,
    /// `nodes/<node>/` below it for a cluster's, as `/etc/pve` lays them out.
    conf: BTreeMap<String, ConfView>,
    saved: u64,
}

impl Outside {
    /// Brings the state file and the config-file views up to date with `cluster`.
    fn sync(&mut self, cluster: &Cluster) {
        let generation = cluster.generation();
        if generation == self.saved {
            return;
        }
        if let Some(d) = &self.state_dir {
            if let Err(e) = persist::save(d, cluster) {
                eprintln!("steward-pve-sim: cannot save state: {e}");
            }
        }
        for (name, v) in &mut self.conf {
            if let Some(n) = cluster.nodes.get(name) {
                if let Err(e) = v.sync(&n.st.guests) {
                    eprintln!("steward-pve-sim: cannot write the config-file view: {e}");
                }
            }
        }
        self.saved = generation;
    }
}

struct Shared {
    cluster: Mutex<Cluster>,
    outside: Mutex<Outside>,
    tokens: Vec<(SimToken, Privileges)>,
    fingerprints: BTreeMap<String, String>,
}

/// One node's API listener.
#[derive(Clone, Debug)]
pub struct SimNode {
    /// Node name.
    pub name: String,
    /// Where its API listens.
    pub addr: SocketAddr,
    /// Its certificate's SHA-256, `AB:CD:…`.
    pub fingerprint: String,
}

/// A running simulator.
pub struct Sim {
    /// Where the first node listens.
    pub addr: SocketAddr,
    /// The first node's certificate's SHA-256, `AB:CD:…`.
    pub fingerprint: String,
    /// Every node's listener, the first node first.
    pub nodes: Vec<SimNode>,
    /// Where the control listener listens, if it was asked for.
    pub control_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.addr)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Starts it on the current tokio runtime.
    pub async fn start(config: SimConfig) -> Result<Sim, String> {
        let names: Vec<String> = std::iter::once(config.node.clone())
            .chain(config.peers.iter().cloned())
            .collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("node {n} named twice"));
            }
        }
        let saved = config
            .state_dir
            .as_deref()
            .map(persist::load)
            .transpose()?
            .flatten();
        let cluster = match saved {
            Some(c) => {
                let (c_no_quorum, c_ha, c_fenced) = (c.no_quorum, c.ha, c.fenced);
                let mut c = Cluster::new(
                    c.nodes
                        .into_iter()
                        .enumerate()
                        .map(|(i, st)| {
                            let seed = config.seed.wrapping_add(i as u64);
                            Node::from_state(st, config.task_time, config.faults.clone(), seed)
                        })
                        .collect(),
                );
                for n in &c_no_quorum {
                    c.set_quorum(n, false)?;
                }
                c.ha = c_ha;
                c.fenced = c_fenced.into_iter().collect();
                c
            }
            None => Cluster::new(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let block = u32::try_from(i * config.guests).unwrap_or(u32::MAX);
                        Node::numbered(
                            name,
                            100u32.saturating_add(block),
                            config.guests,
                            config.task_time,
                            config.faults.clone(),
                            config.seed.wrapping_add(i as u64),
                        )
                    })
                    .collect(),
            ),
        };
        let mut cluster = cluster;
        // The HA manager acts a couple of task lengths after a request, as its rounds do.
        cluster.crm_delay_ms =
            2 * u64::try_from(config.task_time.as_millis()).unwrap_or(u64::MAX / 4);
        let is_cluster = cluster.is_cluster();
        let mut outside = Outside {
            state_dir: config.state_dir.clone(),
            conf: cluster
                .order
                .iter()
                .filter_map(|n| {
                    let d = config.conf_dir.clone()?;
                    let d = if is_cluster {
                        d.join("nodes").join(n)
                    } else {
                        d
                    };
                    Some((n.clone(), ConfView::new(d)))
                })
                .collect(),
            saved: u64::MAX,
        };
        outside.sync(&cluster);
        let mut listeners = Vec::new();
        let mut fingerprints = BTreeMap::new();
        for (i, name) in cluster.order.iter().enumerate() {
            let (acceptor, fp) = tls_for(name)?;
            let mut at = config.listen;
            if at.port() != 0 {
                at.set_port(
                    at.port()
                        .checked_add(u16::try_from(i).unwrap_or(u16::MAX))
                        .ok_or_else(|| format!("no port for node {name}"))?,
                );
            }
            let listener = TcpListener::bind(at)
                .await
                .map_err(|e| format!("{at}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            fingerprints.insert(name.clone(), fp.clone());
            listeners.push((
                SimNode {
                    name: name.clone(),
                    addr,
                    fingerprint: fp,
                },
                listener,
                acceptor,
            ));
        }
        let shared = Arc::new(Shared {
            cluster: Mutex::new(cluster),
            outside: Mutex::new(outside),
            tokens: config.tokens.clone(),
            fingerprints,
        });
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut nodes = Vec::new();
        for (node, listener, acceptor) in listeners {
            serve_api(
                listener,
                acceptor,
                node.name.clone(),
                shared.clone(),
                stop.subscribe(),
            );
            nodes.push(node);
        }
        let control_addr = match config.control {
            Some(at) => Some(serve_control(at, shared.clone(), stop.subscribe()).await?),
            None => None,
        };
        let first = nodes.first().cloned().ok_or("no nodes")?;
        Ok(Sim {
            addr: first.addr,
            fingerprint: first.fingerprint,
            nodes,
            control_addr,
            shared,
            stop,
        })
    }

    /// Runs `f` on the whole cluster.
    pub fn with_cluster<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut c = self
            .shared
            .cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let out = f(&mut c);
        self.shared.sync_outside(&c);
        out
    }

    /// Runs `f` on the node (tests: lock a guest, look at state).
    pub fn with_node<T>(&self, f: impl FnOnce(&mut Node) -> T) -> T {
        self.with_cluster(|c| {
            let first = c.first().to_string();
            match c.node_mut(&first) {
                Some(n) => f(n),
                None => unreachable!("a cluster has its first node"),
            }
        })
    }

    /// "Node restarted": running tasks are lost.
    pub fn restart_node(&self) {
        self.with_node(Node::restart);
    }

    /// Locks a guest as a backup (or another root tool) would; `None` unlocks (`qm unlock`).
    pub fn lock(&self, vmid: u32, lock: Option<&str>) {
        self.with_node(|n| n.lock(vmid, lock));
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

impl Shared {
    fn sync_outside(&self, cluster: &Cluster) {
        self.outside
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sync(cluster);
    }
}

/// Serves the out-of-band control interface on `at` (plain HTTP).
async fn serve_control(
    at: SocketAddr,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(at)
        .await
        .map_err(|e| format!("control {at}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                _ = stopped.changed() => return,
            };
            let s = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let method = req.method().as_str().to_string();
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (status, v) = {
                            let mut c = s.cluster.lock().unwrap_or_else(|e| e.into_inner());
                            let answer = crate::control::handle(&mut c, &method, &path, &body);
                            s.sync_outside(&c);
                            answer
                        };
                        let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status)
                            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// How long pveproxy waits before answering a failed authentication.
const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(3);

/// An injected connection reset.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset (injected)")
    }
}

impl std::error::Error for Reset {}

async fn handle(
    s: Arc<Shared>,
    me: Arc<str>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Reset> {
    let (latency, error, reset) = {
        let c = s.cluster.lock().unwrap_or_else(|e| e.into_inner());
        if c.fenced.contains(&*me) {
            // A node that is down answers nothing.
            return Err(Reset);
        }
        match c.nodes.get(&*me) {
            Some(n) => {
                let f = n.faults().clone();
                (f.latency_ms, n.roll(f.error_rate), n.roll(f.reset_rate))
            }
            None => (0, false, false),
        }
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if reset {
        return Err(Reset);
    }
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let json_body = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if json_body && !body.is_empty() {
        // pve-http-server takes a JSON object body as the parameters: strings as sent,
        // numbers as their text, booleans as 1/0 (what its schema check then reads).
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(m)) => {
                for (k, v) in m {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Bool(b) => u8::from(b).to_string(),
                        serde_json::Value::Null => continue,
                        other => other.to_string(),
                    };
                    params.insert(k, text);
                }
            }
            _ => {
                let mut resp = Response::new(Full::new(Bytes::from(
                    "{\"data\":null,\"message\":\"unable to parse JSON body\\n\"}",
                )));
                *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
                return Ok(resp);
            }
        }
    } else {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let answer = if error {
        crate::routes::Answer {
            status: 500,
            reason: "Internal Server Error (injected)".into(),
            body: serde_json::json!({"data": null, "message": "Internal Server Error (injected)\n"}),
        }
    } else {
        let mut c = s.cluster.lock().unwrap_or_else(|e| e.into_inner());
        let answer = route(
            &mut c,
            &me,
            &s.tokens,
            &s.fingerprints,
            &method,
            &path,
            auth.as_deref(),
            &params,
        );
        s.sync_outside(&c);
        if let Some(n) = c.node_mut(&me) {
            if method != "GET" && n.st.lose_next_answer > 0 {
                n.st.lose_next_answer -= 1;
                return Err(Reset);
            }
        }
        answer
    };
    if answer.status == 401 {
        // pveproxy answers a failed authentication after a delay.
        tokio::time::sleep(AUTH_FAILURE_DELAY).await;
    }
    let mut resp = Response::new(Full::new(Bytes::from(answer.body.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(answer.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(r) = hyper::ext::ReasonPhrase::try_from(answer.reason.into_bytes()) {
        resp.extensions_mut().insert(r);
    }
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if answer.status >= 400 {
        // pveproxy closes the connection after an error.
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    Ok(resp)
}

/// A self-signed certificate for node `name` (and localhost): its acceptor and fingerprint.
fn tls_for(name: &str) -> Result<(TlsAcceptor, String), String> {
    let cert = rcgen::generate_simple_self_signed(vec![
        "localhost".into(),
        "127.0.0.1".into(),
        name.to_string(),
    ])
    .map_err(|e| format!("certificate: {e}"))?;
    let cert_der = cert.cert.der().clone();
    let fp = fingerprint(cert_der.as_ref());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(vec![cert_der], key)
    .map_err(|e| format!("TLS config: {e}"))?;
    Ok((TlsAcceptor::from(Arc::new(tls)), fp))
}

/// Serves node `me`'s API on `listener` until `stopped`.
fn serve_api(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    me: String,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let me: Arc<str> = me.into();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                _ = stopped.changed() => return,
            };
            let (acceptor, s, me) = (acceptor.clone(), shared.clone(), me.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req| handle(s.clone(), me.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
}

/// The certificate's SHA-256 fingerprint as `pvenode cert info` prints it: upper-case hex pairs
/// joined by `:`.
fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
