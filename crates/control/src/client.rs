//! The client the CLI subcommands use: one request per call over the agent's Unix socket.
//! It must never retry a submission: an op is presented once per call.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use tokio::net::UnixStream;

/// The agent could not be asked.
#[derive(Debug)]
pub struct ControlError(pub String);

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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

    /// One request; returns the status and the body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ControlError> {
        let e = |what: &str, err: &dyn std::fmt::Display| {
            ControlError(format!("{what} {}: {err}", self.socket.display()))
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
