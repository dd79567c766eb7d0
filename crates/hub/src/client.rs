//! The hub provider: HTTPS to the hub (certificate pinned by fingerprint, or a CA file, exactly
//! as the Proxmox client trusts a node), a fresh connection per request (the agent polls every
//! few seconds; a kept-alive connection buys nothing), `If-None-Match` with the last `ETag` so
//! an unchanged answer is a bodiless 304, and every answer bounded in size before it is read.
//! It must never send the token without verified TLS, nor read an unbounded answer.

use crate::protocol::{self, ReportBody};
use crate::token::HubToken;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use steward_providers::{Job, Provider, Report, Update};
use steward_proxmox_client::{tls, Trust};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where the hub is and how to trust it.
#[derive(Debug)]
pub struct HubConfig {
    /// The base URL (`https://hub.example.org:8443/steward`); https only.
    pub url: String,
    /// This node's name, as the hub knows it.
    pub node: String,
    /// The bearer token.
    pub token: HubToken,
    /// How the hub's certificate is trusted.
    pub trust: Trust,
    /// A client certificate to present (mutual TLS), if the hub's server asks for one.
    pub identity: Option<tls::ClientIdentity>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// One answer.
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    body: Bytes,
}

/// The agent's provider for a hub.
pub struct HubProvider {
    url: String,
    addr: String,
    host: String,
    host_header: String,
    prefix: String,
    node: String,
    token: HubToken,
    tls: TlsConnector,
    timeout: Duration,
    desired_etag: Option<String>,
    last_desired: Option<Bytes>,
    jobs_etag: Option<String>,
    seen_jobs: BTreeSet<String>,
    /// The hub answered the report with 404 or 405: a static server, which has no report
    /// endpoint. Said once; not asked again.
    no_report_endpoint: bool,
}

impl std::fmt::Debug for HubProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubProvider")
            .field("url", &self.url)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl HubProvider {
    /// A provider for `cfg`; fails on a URL that is not `https://HOST[:PORT][/PATH]` or a trust
    /// setting that cannot be loaded.
    pub fn new(cfg: HubConfig) -> Result<HubProvider, String> {
        let uri: hyper::Uri = cfg
            .url
            .parse()
            .map_err(|e| format!("{:?} is not a URL: {e}", cfg.url))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{:?}: the hub is reached over https only", cfg.url));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("the hub URL must not carry credentials (user:password@): the bearer token file is the credential".into());
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("{:?} names no host", cfg.url))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let addr = format!("{bracketed}:{port}");
        // The Host header names the port unless it is https's own.
        let host_header = if port == 443 { bracketed } else { addr.clone() };
        let tls = TlsConnector::from(Arc::new(tls::client_config_with(
            &cfg.trust,
            cfg.identity.as_ref(),
        )?));
        Ok(HubProvider {
            url: cfg.url.trim_end_matches('/').to_string(),
            addr,
            host,
            host_header,
            prefix: uri.path().trim_end_matches('/').to_string(),
            node: cfg.node,
            token: cfg.token,
            tls,
            timeout: cfg.timeout,
            desired_etag: None,
            last_desired: None,
            jobs_etag: None,
            seen_jobs: BTreeSet::new(),
            no_report_endpoint: false,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        etag: Option<&str>,
    ) -> Result<Answer, String> {
        tokio::time::timeout(self.timeout, self.once(method, path, body, etag))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        etag: Option<&str>,
    ) -> Result<Answer, String> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| format!("server name: {e}"))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, self.host_header.as_str())
            .header(hyper::header::AUTHORIZATION, self.token.header_value()?)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(e) = etag {
            req = req.header(hyper::header::IF_NONE_MATCH, e);
        }
        let body = match body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| format!("request: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(hyper::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(resp.into_body(), protocol::MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                format!(
                    "answer body (at most {} bytes): {e}",
                    protocol::MAX_ANSWER_BYTES
                )
            })?
            .to_bytes();
        Ok(Answer { status, etag, body })
    }

    fn trouble(&self, what: &str, a: &Answer) -> String {
        let said: String = String::from_utf8_lossy(&a.body)
            .chars()
            .take(200)
            .flat_map(char::escape_default)
            .collect();
        match a.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                format!("{what}: the hub refused our token ({})", a.status)
            }
            StatusCode::NOT_FOUND => {
                format!("{what}: the hub has nothing for node {:?} (404)", self.node)
            }
            s => format!("{what}: the hub answered {s}: {said}"),
        }
    }
}

#[async_trait]
impl Provider for HubProvider {
    fn describe(&self) -> String {
        format!("hub {}", self.url)
    }

    async fn poll(&mut self) -> Update {
        let path = protocol::desired_path(&self.node);
        let a = match self
            .send(Method::GET, &path, None, self.desired_etag.as_deref())
            .await
        {
            Ok(a) => a,
            Err(e) => return Update::Unavailable(format!("desired state: {e}")),
        };
        match a.status {
            StatusCode::NOT_MODIFIED => Update::Unchanged,
            StatusCode::OK => {
                self.desired_etag = a.etag.clone();
                // A hub that sends no ETag still costs no re-validation for the same bytes.
                if self.last_desired.as_ref() == Some(&a.body) {
                    return Update::Unchanged;
                }
                self.last_desired = Some(a.body.clone());
                let source = format!("{}{path}", self.url);
                let Ok(text) = std::str::from_utf8(&a.body) else {
                    return Update::Refused(format!("{source}: not UTF-8"));
                };
                match steward_planner::document::parse_json(&source, text) {
                    Ok(d) => Update::New(Arc::new(d)),
                    Err(errors) => Update::Refused(errors.to_string()),
                }
            }
            _ => Update::Unavailable(self.trouble("desired state", &a)),
        }
    }

    async fn jobs(&mut self) -> Result<Vec<Job>, String> {
        let path = protocol::jobs_path(&self.node);
        let a = self
            .send(Method::GET, &path, None, self.jobs_etag.as_deref())
            .await?;
        match a.status {
            StatusCode::NOT_MODIFIED => return Ok(Vec::new()),
            StatusCode::OK => {}
            _ => return Err(self.trouble("jobs", &a)),
        }
        let jobs = protocol::parse_jobs(&a.body).map_err(|e| format!("{}{path}: {e}", self.url))?;
        // Every id the hub lists (taken or not): what it stops listing is forgotten.
        let listed: BTreeSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let mut fresh: Vec<Job> = jobs
            .into_iter()
            .filter(|j| !self.seen_jobs.contains(&j.id))
            .collect();
        // Keep the ETag only when everything new was taken: otherwise the next poll must get
        // the list again (a 304 would strand the rest).
        self.jobs_etag = if fresh.len() > protocol::MAX_JOBS {
            None
        } else {
            a.etag
        };
        fresh.truncate(protocol::MAX_JOBS);
        let new = fresh;
        // Remember what we took and the hub still lists: a job it drops is forgotten, so the
        // set never outgrows the hub's list. Presenting a job twice is safe anyway (the
        // second is a replay).
        self.seen_jobs.extend(new.iter().map(|j| j.id.clone()));
        self.seen_jobs.retain(|id| listed.contains(id));
        Ok(new)
    }

    async fn report(&mut self, report: &Report) -> Result<(), String> {
        if self.no_report_endpoint {
            return Ok(());
        }
        let body = ReportBody {
            protocol: protocol::VERSION,
            node: self.node.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            status: report.status.clone(),
            held: report.held.clone(),
            results: report.results.clone(),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let a = self
            .send(
                Method::POST,
                &protocol::report_path(&self.node),
                Some(bytes),
                None,
            )
            .await?;
        if a.status.is_success() {
            Ok(())
        } else if matches!(
            a.status,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
        ) {
            // A web server serving rendered files (`steward-fleet`) has nowhere to post to.
            self.no_report_endpoint = true;
            tracing::info!(
                url = %self.url,
                status = %a.status,
                "the hub has no report endpoint: reports are off; held ops reach operators through `steward-agent pending` and the steward_held_op metric"
            );
            Ok(())
        } else {
            Err(self.trouble("report", &a))
        }
    }
}
