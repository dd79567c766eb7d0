//! The local API server, on a Unix socket created with mode 0660. Routes:
//!
//! - `GET /health` → `{"ok": true, "recovered": bool}`
//! - `GET /status` → the engine's `Status`
//! - `GET /pending` → held ops with their summaries (`HeldOp`)
//! - `GET /pending/{op}/template` → the exact bytes to sign for held op `{op}`
//! - `POST /submit` `{"payload": "<op.json text>", "signature": "<armored SSHSIG>"}` → a
//!   `DecisionView`: the signature for a held op's template releases it; any other signed op
//!   runs as a signed job (both through the gate)
//! - `POST /reconcile` → a pass now
//!
//! It must never act but through the engine.

use crate::view::DecisionView;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use steward_engine::{Engine, Trigger};
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
        ("GET", ["status"]) => json_answer(StatusCode::OK, &json!(engine.status_now())),
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
        ("POST", ["submit"]) => {
            let req: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return json_answer(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()}))
                }
            };
            let (Some(payload), Some(sig)) = (req["payload"].as_str(), req["signature"].as_str())
            else {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "body must be {\"payload\": \"…\", \"signature\": \"…\"}"}),
                );
            };
            // A held op whose template is exactly this payload is released; anything else is a
            // signed job. The gate verifies either way.
            let parsed: Option<Value> = serde_json::from_str(payload).ok();
            let held = engine.held().await;
            let target = parsed.and_then(|p| held.iter().find(|h| h.template == p).map(|h| h.op));
            let d = match target {
                Some(op) => {
                    engine
                        .sign_pending(op, payload.as_bytes(), sig.as_bytes())
                        .await
                }
                None => engine.signed_job(payload.as_bytes(), sig.as_bytes()).await,
            };
            let _ = triggers.send(Trigger::ReconcileNow);
            json_answer(StatusCode::OK, &json!(DecisionView::from(&d)))
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

/// Serves the local API on `socket` (replacing a stale socket file) until `shutdown`.
pub async fn serve(
    socket: &Path,
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
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
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
            let (engine, triggers) = (engine.clone(), triggers.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (engine, triggers) = (engine.clone(), triggers.clone());
                    async move { Ok::<_, std::convert::Infallible>(handle(engine, triggers, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }))
}
