//! The local API server, on a Unix socket created with mode 0660. Routes:
//!
//! - `GET /health` → `{"ok": true, "recovered": bool}`
//! - `GET /status` → the engine's `Status`, plus `agent`: `{"node", "metrics"}`
//! - `GET /pending` → held ops with their summaries (`HeldOp`)
//! - `GET /pending/{op}/template` → the exact bytes to sign for held op `{op}`
//! - `POST /submit` `{"payload": "<op.json text>", "signature": "<armored SSHSIG>"}` (or
//!   `"signatures": [...]`, up to eight over the same payload) → a `DecisionView` with each
//!   signature's verdict: signatures for a held op's template approve it (it runs once its
//!   m-of-n threshold is met); any other signed op runs as a signed job (both through the gate)
//! - `GET /ops/{id}` → one journal op: its action, class, signer, history, and `state`
//! - `POST /reconcile` → a pass now
//!
//! It must never act but through the engine.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use steward_engine::{DecisionView, Engine, Trigger};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

/// The largest request body (a payload is at most 64 KiB; its signature a few KiB).
const MAX_BODY: usize = 256 * 1024;

fn answer(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn json_answer(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    answer(status, v.to_string().into_bytes())
}

async fn handle(
    engine: Arc<Engine>,
    triggers: mpsc::UnboundedSender<Trigger>,
    about: &Value,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (method, path) = (
        req.method().as_str().to_string(),
        req.uri().path().to_string(),
    );
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return json_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": e.to_string()}),
            )
        }
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["health"]) => json_answer(
            StatusCode::OK,
            &json!({"ok": true, "recovered": engine.status_now().recovered}),
        ),
        ("GET", ["status"]) => {
            let mut v = json!(engine.status_now());
            v["agent"] = about.clone();
            json_answer(StatusCode::OK, &v)
        }
        ("GET", ["pending"]) => json_answer(StatusCode::OK, &json!(engine.held().await)),
        ("GET", ["pending", id, "template"]) => {
            let held = engine.held().await;
            match held.iter().find(|h| h.op.0.to_string() == *id) {
                Some(h) => answer(
                    StatusCode::OK,
                    serde_json::to_vec(&h.template).unwrap_or_default(),
                ),
                None => json_answer(
                    StatusCode::NOT_FOUND,
                    &json!({"error": format!("no held op {id}")}),
                ),
            }
        }
        ("GET", ["ops", id]) => {
            let Ok(n) = id.parse::<u64>() else {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("{id:?} is not an op id")}),
                );
            };
            match engine.op(steward_journal::OpId(n)).await {
                Some(rec) => {
                    let mut v = json!(rec);
                    v["state"] = json!(rec.state().name());
                    json_answer(StatusCode::OK, &v)
                }
                None => json_answer(
                    StatusCode::NOT_FOUND,
                    &json!({"error": format!("no op {n}")}),
                ),
            }
        }
        ("POST", ["submit"]) => {
            let req: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return json_answer(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()}))
                }
            };
            let Some((payload, sigs)) = submission(&req) else {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("body must be {{\"payload\": \"…\", \"signature\": \"…\"}} or {{\"payload\": \"…\", \"signatures\": [\"…\", …]}} with 1..={MAX_SIGNATURES} signatures")}),
                );
            };
            let p = engine.present(payload.as_bytes(), &sigs).await;
            let _ = triggers.send(Trigger::ReconcileNow);
            json_answer(StatusCode::OK, &json!(DecisionView::from(&p)))
        }
        ("POST", ["reconcile"]) => {
            let _ = triggers.send(Trigger::ReconcileNow);
            json_answer(StatusCode::OK, &json!({"ok": true}))
        }
        _ => json_answer(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no route {method} {path}")}),
        ),
    }
}

/// The most signatures one submission may carry (as many as a hub job may).
pub const MAX_SIGNATURES: usize = 8;

/// A submission's payload and signatures: `signature` (one) or `signatures` (several), not
/// both, each a string; None when the body has another shape.
fn submission(req: &Value) -> Option<(&str, Vec<Vec<u8>>)> {
    let payload = req.get("payload")?.as_str()?;
    let sigs: Vec<Vec<u8>> = match (req.get("signature"), req.get("signatures")) {
        (Some(one), None) => vec![one.as_str()?.as_bytes().to_vec()],
        (None, Some(Value::Array(many))) => many
            .iter()
            .map(|s| s.as_str().map(|s| s.as_bytes().to_vec()))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    (1..=MAX_SIGNATURES)
        .contains(&sigs.len())
        .then_some((payload, sigs))
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
    let about = Arc::new(json!({"node": opts.node, "metrics": opts.metrics_url}));
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
