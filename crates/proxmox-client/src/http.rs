//! The HTTP transport: TLS (pinned or CA) over TCP, HTTP/1.1 with keep-alive on one connection
//! (re-established when it breaks), the `{"data": …}` envelope, status lines mapped to typed
//! errors, a timeout on every request, and retries with backoff for idempotent reads only. It
//! must never log or return the token.

use crate::error::ApiError;
use crate::tls::{client_config, Trust};
use crate::token::ApiToken;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `host:port` to connect to (`127.0.0.1:8006`).
    pub addr: String,
    /// The TLS server name (`localhost`, the node name, or an IP).
    pub server_name: String,
    /// How the node's certificate is trusted.
    pub trust: Trust,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Keep one connection alive between requests (false: a fresh connection per request).
    pub keep_alive: bool,
}

impl Endpoint {
    /// An endpoint for `url` (`https://HOST[:PORT]`, port 8006 by default), as Proxmox serves
    /// its API: the TLS name is the URL's host. Only `https` is accepted: there is no clear-text
    /// or unverified mode.
    pub fn from_url(url: &str, trust: Trust, timeout: Duration) -> Result<Endpoint, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "{url:?}: the Proxmox API is reached over https only"
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("{url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(8006);
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Endpoint {
            addr,
            server_name: host,
            trust,
            timeout,
            keep_alive: true,
        })
    }
}

/// Told of every request as it ends: the method, its [`endpoint_class`], `ok` or the error's
/// [`ApiError::kind`], and how long it took (retries are separate requests). For metrics; it
/// never sees a path's parameters, a body or the token.
#[derive(Clone)]
pub struct RequestHook(pub Arc<RequestFn>);

/// A [`RequestHook`]'s function: (method, endpoint class, outcome, duration).
pub type RequestFn = dyn Fn(&str, &str, &str, Duration) + Send + Sync;

/// What a request reads or does, as a closed set of labels (so the agent can say where its
/// requests go, per class, without a path's VMIDs in a label): `write` (any method but GET),
/// `list` (the guest lists, `/cluster/resources`, and `/cluster/status`, which observation reads
/// beside it every pass for quorum), `config`, `pending`, `status` (a guest's
/// `status/current`), `task` (a task's status or log, the task list), `other`.
pub fn endpoint_class(method: &Method, path: &str) -> &'static str {
    if method != Method::GET {
        return "write";
    }
    let path = path.split('?').next().unwrap_or(path);
    let mut parts = path.trim_matches('/').split('/');
    let (first, rest): (Option<&str>, Vec<&str>) = (parts.next(), parts.collect());
    match (first, rest.as_slice()) {
        (Some("cluster"), ["resources" | "status"]) => "list",
        (Some("nodes"), [_, "qemu" | "lxc"]) => "list",
        (Some("nodes"), [_, "tasks", ..]) => "task",
        (Some("nodes"), [_, "qemu" | "lxc", _, "config"]) => "config",
        (Some("nodes"), [_, "qemu" | "lxc", _, "pending"]) => "pending",
        (Some("nodes"), [_, "qemu" | "lxc", _, "status", "current"]) => "status",
        _ => "other",
    }
}

impl std::fmt::Debug for RequestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestHook")
    }
}

/// The transport.
pub struct Http {
    endpoint: Endpoint,
    token: ApiToken,
    tls: TlsConnector,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
    requests: std::sync::atomic::AtomicU64,
    hook: Option<RequestHook>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

const READ_RETRIES: u32 = 3;

impl Http {
    /// The token id requests run as (`user@realm!name`), as UPIDs name it.
    pub(crate) fn token_id(&self) -> &str {
        self.token.id()
    }

    /// A transport to `endpoint` authenticating with `token`.
    pub fn new(endpoint: Endpoint, token: ApiToken) -> Result<Http, String> {
        let tls = TlsConnector::from(Arc::new(client_config(&endpoint.trust)?));
        Ok(Http {
            endpoint,
            token,
            tls,
            conn: Mutex::new(None),
            requests: std::sync::atomic::AtomicU64::new(0),
            hook: None,
        })
    }

    /// Reports every request to `hook` from now on.
    pub fn set_hook(&mut self, hook: RequestHook) {
        self.hook = Some(hook);
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        let tcp = TcpStream::connect(&self.endpoint.addr)
            .await
            .map_err(|e| ApiError::Transport(format!("connect {}: {e}", self.endpoint.addr)))?;
        let name = rustls::pki_types::ServerName::try_from(self.endpoint.server_name.clone())
            .map_err(|e| ApiError::Transport(format!("server name: {e}")))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| ApiError::Transport(format!("TLS: {e}")))?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ApiError::Transport(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// One API call. GET and DELETE carry `params` in the query, POST and PUT as a form body.
    /// Returns the `data` of the envelope.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, ApiError> {
        let idempotent = method == Method::GET;
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            let result =
                tokio::time::timeout(self.endpoint.timeout, self.once(&method, path, params))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApiError::Timeout(format!(
                            "{method} {path} after {:?}",
                            self.endpoint.timeout
                        )))
                    });
            if let Some(h) = &self.hook {
                let outcome = result.as_ref().map_or_else(ApiError::kind, |_| "ok");
                (h.0)(
                    method.as_str(),
                    endpoint_class(&method, path),
                    outcome,
                    started.elapsed(),
                );
            }
            match result {
                Err(e) if idempotent && e.is_transient() && attempt + 1 < READ_RETRIES => {
                    attempt += 1;
                    // A broken connection is not reused.
                    *self.conn.lock().await = None;
                    tokio::time::sleep(Duration::from_millis(50 * (1 << attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn once(
        &self,
        method: &Method,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, ApiError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        let in_query = matches!(*method, Method::GET | Method::DELETE);
        let uri = if in_query && !form.is_empty() {
            format!("/api2/json{path}?{form}")
        } else {
            format!("/api2/json{path}")
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(hyper::header::HOST, self.endpoint.server_name.as_str())
            .header(hyper::header::AUTHORIZATION, self.token.header());
        if !self.endpoint.keep_alive {
            req = req.header(hyper::header::CONNECTION, "close");
        }
        let body = if in_query {
            Full::new(Bytes::new())
        } else {
            req = req.header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
            Full::new(Bytes::from(form))
        };
        let req = req
            .body(body)
            .map_err(|e| ApiError::Transport(format!("request: {e}")))?;

        let mut guard = self.conn.lock().await;
        let reused = match guard.take() {
            Some(mut s) if self.endpoint.keep_alive => s.ready().await.ok().map(|()| s),
            _ => None,
        };
        let mut send = match reused {
            Some(s) => s,
            None => self.connect().await?,
        };
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| ApiError::Transport(format!("{method} {path}: {e}")))?;
        let status = resp.status().as_u16();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .unwrap_or_else(|| resp.status().canonical_reason().unwrap_or("").to_string());
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::Transport(format!("{method} {path}: body: {e}")))?
            .to_bytes();
        if self.endpoint.keep_alive {
            *guard = Some(send);
        }
        drop(guard);
        if !(200..300).contains(&status) {
            return Err(ApiError::from_response(status, &reason, &bytes));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Decode(format!("{method} {path}: not JSON: {e}")))?;
        match v {
            Value::Object(mut m) if m.contains_key("data") => {
                Ok(m.remove("data").unwrap_or(Value::Null))
            }
            _ => Err(ApiError::Decode(format!(
                "{method} {path}: no data envelope"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_has_its_class() {
        let cases = [
            (Method::GET, "/nodes/pve-a/qemu", "list"),
            (Method::GET, "/nodes/pve-a/lxc", "list"),
            (Method::GET, "/cluster/resources?type=vm", "list"),
            (Method::GET, "/cluster/status", "list"),
            (Method::GET, "/nodes/pve-a/qemu/100/config", "config"),
            (Method::GET, "/nodes/pve-a/lxc/100/pending", "pending"),
            (
                Method::GET,
                "/nodes/pve-a/qemu/100/status/current",
                "status",
            ),
            (Method::GET, "/nodes/pve-a/tasks/UPID:x/status", "task"),
            (Method::GET, "/nodes/pve-a/tasks", "task"),
            (Method::GET, "/nodes/pve-a/storage", "other"),
            (Method::GET, "/version", "other"),
            (Method::POST, "/nodes/pve-a/qemu/100/status/start", "write"),
            (Method::PUT, "/nodes/pve-a/qemu/100/config", "write"),
            (Method::DELETE, "/nodes/pve-a/qemu/100", "write"),
        ];
        for (m, path, want) in cases {
            assert_eq!(endpoint_class(&m, path), want, "{m} {path}");
        }
    }
}
