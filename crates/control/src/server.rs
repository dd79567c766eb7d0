//! The local API server, on a Unix socket created with mode 0660. Routes:
//!
//! Every answer is a `steward_view` shape (pinned by that crate's golden files); a request it
//! refuses gets an `ErrorBody`.
//!
//! - `GET /health` → `Health`
//! - `GET /status` → the engine's `Status`, with `agent` (`AgentAbout`) set
//! - `GET /pending` → held ops with their summaries (`HeldOp`)
//! - `GET /pending/{op}/template` → the exact bytes to sign for held op `{op}`
//! - `POST /submit` `Submission`: `{"payload": "<op.json text>", "signature": "<SSHSIG>"}` (or
//!   `"signatures": [...]`, up to eight over the same payload) → a `DecisionView` with each
//!   signature's verdict: signatures for a held op's template approve it (it runs once its
//!   m-of-n threshold is met); any other signed op runs as a signed job (both through the gate)
//! - `GET /ops/{id}` → `OpView`: one journal op (its action, class, signer, history) and `state`
//! - `POST /reconcile` → a pass now; answers `Health`
//!
//! It must never act but through the engine.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use steward_engine::{Engine, ToView, Trigger};
use steward_view::{AgentAbout, ErrorBody, Health, OpView, Submission};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

/// The largest request body (a payload is at most 64 KiB; its signature a few KiB).
const MAX_BODY: usize = 256 * 1024;

fn answer(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// A view as JSON. The views are plain data: serializing one cannot fail, and if it ever
/// did the caller would get an empty body, never a partial one.
fn view<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    answer(status, serde_json::to_vec(v).unwrap_or_default())
}

fn error(status: StatusCode, error: String) -> Response<Full<Bytes>> {
    view(status, &ErrorBody { error })
}

fn health(engine: &Engine) -> Health {
    Health {
        ok: true,
        recovered: engine.status_now().recovered,
    }
}

async fn handle(
    engine: Arc<Engine>,
    triggers: mpsc::UnboundedSender<Trigger>,
    about: &AgentAbout,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (method, path, query) = (
        req.method().as_str().to_string(),
        req.uri().path().to_string(),
        req.uri().query().unwrap_or("").to_string(),
    );
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["health"]) => view(StatusCode::OK, &health(&engine)),
        ("GET", ["status"]) => {
            let mut s = engine.status_now();
            s.agent = Some(about.clone());
            view(StatusCode::OK, &s)
        }
        ("GET", ["pending"]) => view(StatusCode::OK, &engine.held().await),
        ("GET", ["pending", id, "template"]) => {
            let held = engine.held().await;
            match held.iter().find(|h| h.op.to_string() == *id) {
                // The exact bytes to sign: compact serde_json, as the gate mints them.
                Some(h) => answer(
                    StatusCode::OK,
                    serde_json::to_vec(&h.template).unwrap_or_default(),
                ),
                None => error(StatusCode::NOT_FOUND, format!("no held op {id}")),
            }
        }
        ("GET", ["ops", id]) => {
            let Ok(n) = id.parse::<u64>() else {
                return error(StatusCode::BAD_REQUEST, format!("{id:?} is not an op id"));
            };
            match engine.op(steward_journal::OpId(n)).await {
                Some(rec) => {
                    let record = match serde_json::to_value(&rec) {
                        Ok(serde_json::Value::Object(m)) => m,
                        _ => serde_json::Map::new(),
                    };
                    let state = rec.state().name().to_string();
                    view(StatusCode::OK, &OpView { state, record })
                }
                None => error(StatusCode::NOT_FOUND, format!("no op {n}")),
            }
        }
        ("GET", ["audit"]) => {
            // `?since=N`: entries from N on; the whole chain (from its anchor) otherwise.
            let since = match query_u64(&query, "since") {
                Ok(n) => n.unwrap_or(0),
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match engine.audit_entries(since, AUDIT_PAGE).await {
                Ok(entries) => {
                    let mut body = Vec::new();
                    for e in &entries {
                        // One compact JSON object per line: the export format.
                        if serde_json::to_writer(&mut body, e).is_err() {
                            return error(StatusCode::INTERNAL_SERVER_ERROR, "encode".into());
                        }
                        body.push(b'\n');
                    }
                    answer(StatusCode::OK, body)
                }
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            }
        }
        ("POST", ["submit"]) => {
            let sub: Submission = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("submission: {e}")),
            };
            let sigs = match sub.signature_bytes() {
                Ok(s) => s,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("submission: {e}")),
            };
            let p = engine.present(sub.payload.as_bytes(), &sigs).await;
            let _ = triggers.send(Trigger::ReconcileNow);
            view(StatusCode::OK, &p.view())
        }
        ("POST", ["reconcile"]) => {
            let _ = triggers.send(Trigger::ReconcileNow);
            view(StatusCode::OK, &health(&engine))
        }
        _ => error(StatusCode::NOT_FOUND, format!("no route {method} {path}")),
    }
}

/// The most audit entries one `GET /audit` answers; the client asks again from the next.
pub const AUDIT_PAGE: usize = 5_000;

/// Query parameter `key` as a number, if given.
fn query_u64(query: &str, key: &str) -> Result<Option<u64>, String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return v
                .parse()
                .map(Some)
                .map_err(|_| format!("{key}={v:?} is not a number"));
        }
    }
    Ok(None)
}

/// The numeric id of group `name`, through the system's group database (NSS).
fn group_id(name: &str) -> std::io::Result<u32> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("socket_group {name:?}: no such group"),
        )),
        Err(e) => Err(std::io::Error::other(format!("socket_group {name:?}: {e}"))),
    }
}

/// How the local API is set up, and what it says about the agent besides the engine's status.
#[derive(Clone, Debug, Default)]
pub struct ApiOptions {
    /// The group that owns the socket (its members may use the CLI); the process's own group
    /// when `None`.
    pub group: Option<String>,
    /// This node's name (shown by `status`).
    pub node: String,
    /// Where `/metrics` is served, if anywhere (shown by `status`).
    pub metrics_url: Option<String>,
}

/// Serves the local API on `socket` (replacing a stale socket file) until `shutdown`. The
/// socket is mode 0660, owned by `opts.group` when given.
pub async fn serve(
    socket: &Path,
    opts: ApiOptions,
    engine: Arc<Engine>,
    triggers: mpsc::UnboundedSender<Trigger>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let gid = opts.group.as_deref().map(group_id).transpose()?;
    let about = Arc::new(AgentAbout {
        node: opts.node,
        metrics: opts.metrics_url,
    });
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(socket, None, Some(gid))?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "local API accept failed");
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let (engine, triggers, about) = (engine.clone(), triggers.clone(), about.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (engine, triggers, about) =
                        (engine.clone(), triggers.clone(), about.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            handle(engine, triggers, &about, req).await,
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }))
}
