//! The stub's two listeners: the hub API (HTTPS, bearer token) and the control listener
//! (plain HTTP, loopback). Routes of the control listener:
//!
//! - `PUT /nodes/{node}/desired` (body: the document) → 204
//! - `POST /nodes/{node}/jobs` (body: a `Job`) → 204
//! - `DELETE /nodes/{node}/jobs/{id}` → 204
//! - `GET /nodes/{node}/reports` → every report received, oldest first
//! - `GET /counts` → [`Counts`]
//!
//! The control listener has no authentication: it must never be given an address beyond loopback.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use steward_hub::protocol::{self, Job, JobsAnswer, ReportBody};
use steward_hub::HubToken;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How many requests of each kind the hub API answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// `GET …/desired` answered 200.
    pub desired_full: u64,
    /// `GET …/desired` answered 304.
    pub desired_not_modified: u64,
    /// `GET …/jobs` answered 200.
    pub jobs_full: u64,
    /// `GET …/jobs` answered 304.
    pub jobs_not_modified: u64,
    /// Reports received.
    pub reports: u64,
    /// Requests refused for a missing or wrong token.
    pub unauthorized: u64,
}

#[derive(Default)]
struct NodeState {
    desired: Option<Bytes>,
    jobs: Vec<Job>,
    reports: Vec<Value>,
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, NodeState>,
    counts: Counts,
}

struct Shared {
    token: HubToken,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running stub.
pub struct HubStub {
    /// The hub API's address (`https://localhost:PORT` reaches it).
    pub addr: SocketAddr,
    /// Its certificate's SHA-256, as the agent's `hub_fingerprint` wants it.
    pub fingerprint: String,
    /// The control listener's address.
    pub control: SocketAddr,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for HubStub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubStub")
            .field("addr", &self.addr)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl Drop for HubStub {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn etag(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn answer(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn json_answer(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = answer(status, v.to_string());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A 200 with `ETag`, or a 304 when the client already has it.
fn tagged(body: Bytes, if_none_match: Option<&str>) -> (Response<Full<Bytes>>, bool) {
    let tag = etag(&body);
    if if_none_match == Some(tag.as_str()) {
        let mut r = answer(StatusCode::NOT_MODIFIED, Bytes::new());
        if let Ok(v) = hyper::header::HeaderValue::from_str(&tag) {
            r.headers_mut().insert(hyper::header::ETAG, v);
        }
        return (r, false);
    }
    let mut r = answer(StatusCode::OK, body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&tag) {
        r.headers_mut().insert(hyper::header::ETAG, v);
    }
    (r, true)
}

async fn body_of(req: Request<hyper::body::Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    Limited::new(req.into_body(), protocol::MAX_ANSWER_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| {
            json_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": e.to_string()}),
            )
        })
}

async fn hub_api(
    shared: Arc<Shared>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| shared.token.matches_header(h));
    if !authorized {
        shared.state().counts.unauthorized += 1;
        return json_answer(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "bearer token refused"}),
        );
    }
    let inm = req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match (method, parts.as_slice()) {
        (Method::GET, ["v1", "nodes", node, "desired"]) => {
            let mut st = shared.state();
            let Some(doc) = st.nodes.get(*node).and_then(|n| n.desired.clone()) else {
                return json_answer(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "no desired state for this node"}),
                );
            };
            let (r, full) = tagged(doc, inm.as_deref());
            if full {
                st.counts.desired_full += 1;
            } else {
                st.counts.desired_not_modified += 1;
            }
            r
        }
        (Method::GET, ["v1", "nodes", node, "jobs"]) => {
            let mut st = shared.state();
            let jobs = st
                .nodes
                .get(*node)
                .map(|n| n.jobs.clone())
                .unwrap_or_default();
            let body = json!(JobsAnswer {
                protocol: protocol::VERSION,
                jobs
            })
            .to_string();
            let (r, full) = tagged(Bytes::from(body), inm.as_deref());
            if full {
                st.counts.jobs_full += 1;
            } else {
                st.counts.jobs_not_modified += 1;
            }
            r
        }
        (Method::POST, ["v1", "nodes", node, "report"]) => {
            let node = node.to_string();
            let body = match body_of(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let report: ReportBody = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    return json_answer(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()}))
                }
            };
            if report.node != node {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "report for another node"}),
                );
            }
            let mut st = shared.state();
            st.counts.reports += 1;
            st.nodes
                .entry(node)
                .or_default()
                .reports
                .push(json!(report));
            answer(StatusCode::NO_CONTENT, Bytes::new())
        }
        (m, _) => json_answer(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no route {m} {path}")}),
        ),
    }
}

async fn control_api(
    shared: Arc<Shared>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method, parts.as_slice()) {
        (Method::PUT, ["nodes", node, "desired"]) => {
            let node = node.to_string();
            let body = match body_of(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            shared.state().nodes.entry(node).or_default().desired = Some(body);
            answer(StatusCode::NO_CONTENT, Bytes::new())
        }
        (Method::POST, ["nodes", node, "jobs"]) => {
            let node = node.to_string();
            let body = match body_of(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match serde_json::from_slice::<Job>(&body) {
                Ok(job) => {
                    let mut st = shared.state();
                    let n = st.nodes.entry(node).or_default();
                    n.jobs.retain(|j| j.id != job.id);
                    n.jobs.push(job);
                    answer(StatusCode::NO_CONTENT, Bytes::new())
                }
                Err(e) => json_answer(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
            }
        }
        (Method::DELETE, ["nodes", node, "jobs", id]) => {
            if let Some(n) = shared.state().nodes.get_mut(*node) {
                n.jobs.retain(|j| j.id != *id);
            }
            answer(StatusCode::NO_CONTENT, Bytes::new())
        }
        (Method::GET, ["nodes", node, "reports"]) => {
            let reports = shared
                .state()
                .nodes
                .get(*node)
                .map(|n| n.reports.clone())
                .unwrap_or_default();
            json_answer(StatusCode::OK, &json!(reports))
        }
        (Method::GET, ["counts"]) => json_answer(StatusCode::OK, &json!(shared.state().counts)),
        (m, _) => json_answer(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no route {m} {path}")}),
        ),
    }
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl HubStub {
    /// Starts both listeners on the current runtime: the hub API on `listen`, the control
    /// listener on `control` (both must be loopback), accepting `token`.
    pub async fn start(
        listen: SocketAddr,
        control_at: SocketAddr,
        token: HubToken,
    ) -> Result<HubStub, String> {
        if !listen.ip().is_loopback() || !control_at.ip().is_loopback() {
            return Err("the hub stub listens on loopback only".into());
        }
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| format!("certificate: {e}"))?;
        let cert_der = cert.cert.der().clone();
        let fingerprint = fingerprint(cert_der.as_ref());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .map_err(|e| format!("TLS config: {e}"))?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let api = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{listen}: {e}"))?;
        let ctl = TcpListener::bind(control_at)
            .await
            .map_err(|e| format!("{control_at}: {e}"))?;
        let addr = api.local_addr().map_err(|e| e.to_string())?;
        let control = ctl.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            token,
            state: Mutex::new(State::default()),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (s, mut halt) = (shared.clone(), stopped.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    r = api.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = halt.changed() => return,
                };
                let (acceptor, s) = (acceptor.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(hub_api(s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        let (s, mut halt) = (shared.clone(), stopped);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    r = ctl.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = halt.changed() => return,
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(control_api(s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Ok(HubStub {
            addr,
            fingerprint,
            control,
            shared,
            stop,
        })
    }

    /// Sets `node`'s desired-state document (the bytes the agent will fetch).
    pub fn set_desired(&self, node: &str, doc: &str) {
        self.shared
            .state()
            .nodes
            .entry(node.into())
            .or_default()
            .desired = Some(Bytes::from(doc.to_string()));
    }

    /// Adds (or replaces, by id) a signed job for `node`.
    pub fn add_job(&self, node: &str, job: Job) {
        let mut st = self.shared.state();
        let n = st.nodes.entry(node.into()).or_default();
        n.jobs.retain(|j| j.id != job.id);
        n.jobs.push(job);
    }

    /// Every report `node` sent, oldest first.
    pub fn reports(&self, node: &str) -> Vec<Value> {
        self.shared
            .state()
            .nodes
            .get(node)
            .map(|n| n.reports.clone())
            .unwrap_or_default()
    }

    /// The request counts so far.
    pub fn counts(&self) -> Counts {
        self.shared.state().counts.clone()
    }
}
