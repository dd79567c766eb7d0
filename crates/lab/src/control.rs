//! A client for the simulator's out-of-band control listener (plain HTTP on loopback, one
//! request per connection): what in-process tests use to act behind the agent's back. It must
//! never talk to anything but the control address it is given.

use crate::{said, LabError};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `method path` with a JSON `body` to the control listener at `addr`: the status and the
/// JSON answer (`null` when the answer is not JSON).
pub async fn control(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Value), LabError> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| said("connecting to the control listener")(&e))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| said("sending to the control listener")(&e))?;
    let mut out = String::new();
    tcp.read_to_string(&mut out)
        .await
        .map_err(|e| said("reading the control listener's answer")(&e))?;
    let status = out
        .get(9..12)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| LabError(format!("control answer without a status line: {out:?}")))?;
    let json = out.split("\r\n\r\n").nth(1).unwrap_or("null");
    Ok((status, serde_json::from_str(json).unwrap_or(Value::Null)))
}
