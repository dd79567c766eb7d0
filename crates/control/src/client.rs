//! The client the CLI subcommands use: one request per call over the agent's Unix socket, one
//! typed method per route, each answer read as its `steward_view` shape. It must never retry
//! a submission: an op is presented once per call.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use steward_view::{DecisionView, ErrorBody, Health, HeldOp, OpView, Status, Submission};
use tokio::net::UnixStream;

/// Why a call to the agent did not give its answer.
#[derive(Debug)]
pub enum ControlError {
    /// The agent could not be reached, or the exchange broke off.
    Unreachable(String),
    /// The agent answered, refusing the request (`status`, and what it said).
    Answered {
        /// The HTTP status.
        status: u16,
        /// The agent's `ErrorBody`, or the body as text when it is not one.
        error: String,
    },
    /// The agent answered 200 with something that is not the route's shape (another version?).
    Malformed {
        /// The route.
        path: String,
        /// What the decoder said.
        error: String,
    },
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Unreachable(e) => f.write_str(e),
            ControlError::Answered { status, error } => {
                write!(f, "the agent answered {status}: {error}")
            }
            ControlError::Malformed { path, error } => {
                write!(
                    f,
                    "{path}: the agent's answer is not what this CLI reads: {error}"
                )
            }
        }
    }
}

impl std::error::Error for ControlError {}

/// A client for the agent at `socket`.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client for the socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Health, ControlError> {
        self.json("GET", "/health", Vec::new()).await
    }

    /// `GET /status`: the engine's status with the agent's node and metrics address.
    pub async fn status(&self) -> Result<Status, ControlError> {
        self.json("GET", "/status", Vec::new()).await
    }

    /// `GET /pending`: the ops held for a signature.
    pub async fn pending(&self) -> Result<Vec<HeldOp>, ControlError> {
        self.json("GET", "/pending", Vec::new()).await
    }

    /// `GET /pending/{op}/template`: the exact bytes to sign for held op `op`.
    pub async fn template(&self, op: u64) -> Result<Vec<u8>, ControlError> {
        self.ok("GET", &format!("/pending/{op}/template"), Vec::new())
            .await
    }

    /// `GET /ops/{id}`: one journal op.
    pub async fn op(&self, id: u64) -> Result<OpView, ControlError> {
        self.json("GET", &format!("/ops/{id}"), Vec::new()).await
    }

    /// `POST /submit`: presents a signed op once; the gate's decision.
    pub async fn submit(&self, sub: &Submission) -> Result<DecisionView, ControlError> {
        let body = serde_json::to_vec(sub).map_err(|e| ControlError::Malformed {
            path: "/submit".into(),
            error: e.to_string(),
        })?;
        self.json("POST", "/submit", body).await
    }

    /// `GET /audit?since=N`, page after page: the audit chain from entry `since` on, one JSON
    /// object per line, exactly as the journal holds it.
    pub async fn audit(&self, since: u64) -> Result<Vec<u8>, ControlError> {
        let mut out = Vec::new();
        let mut next = since;
        loop {
            let page = self
                .ok("GET", &format!("/audit?since={next}"), Vec::new())
                .await?;
            let lines = page.split(|b| *b == b'\n').filter(|l| !l.is_empty());
            let mut last = None;
            for line in lines {
                #[derive(serde::Deserialize)]
                struct Seq {
                    seq: u64,
                }
                let seq = serde_json::from_slice::<Seq>(line)
                    .map_err(|e| ControlError::Malformed {
                        path: "/audit".into(),
                        error: e.to_string(),
                    })?
                    .seq;
                last = Some(seq);
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            match last {
                Some(s)
                    if page.iter().filter(|b| **b == b'\n').count()
                        >= crate::server::AUDIT_PAGE =>
                {
                    next = s + 1
                }
                _ => return Ok(out),
            }
        }
    }

    /// `POST /reconcile`: asks for a pass now.
    pub async fn reconcile(&self) -> Result<Health, ControlError> {
        self.json("POST", "/reconcile", Vec::new()).await
    }

    /// One call whose 200 answer is `T`.
    async fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ControlError> {
        let bytes = self.ok(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ControlError::Malformed {
            path: path.to_string(),
            error: e.to_string(),
        })
    }

    /// One call; its body when the status is 200, the agent's refusal otherwise.
    async fn ok(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Vec<u8>, ControlError> {
        let (status, bytes) = self.call(method, path, body).await?;
        if status == 200 {
            return Ok(bytes);
        }
        let error = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        Err(ControlError::Answered { status, error })
    }

    /// One request, any route: the status and the body as they came (for tests and tools
    /// that probe the API itself; the CLI uses the typed methods).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ControlError> {
        let e = |what: &str, err: &dyn std::fmt::Display| {
            ControlError::Unreachable(format!("{what} {}: {err}", self.socket.display()))
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|err| e("cannot reach the agent at", &err))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| e("local API handshake with", &err))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| e("bad request for", &err))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|err| e("local API request to", &err))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|err| e("local API answer from", &err))?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    }
}
