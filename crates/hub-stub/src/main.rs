//! `steward-hub-stub`: run the hub stub standalone. Thin: arguments and the token file in,
//! `HubStub::start`, one JSON line out (where it listens and its fingerprint), then wait for
//! SIGTERM or Ctrl-C.
//! It must never be shipped as a hub: it is a test server.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use steward_hub::HubToken;
use steward_hub_stub::HubStub;

/// A hub for tests and demos that speaks Steward's hub protocol v1 (docs/hub-protocol.md):
/// HTTPS with a self-signed certificate, the bearer token in --token-file checked on every
/// request. It prints one JSON line: {"hub": "https://localhost:PORT", "fingerprint": "AB:…",
/// "control": "127.0.0.1:PORT"}. The control listener (plain HTTP, loopback) plays the hub's
/// operators:
///
///   PUT    /nodes/NODE/desired      body: a desired-state document (JSON)
///   POST   /nodes/NODE/jobs         body: {"id": "…", "payload": "…", "signatures": ["…"]}
///   DELETE /nodes/NODE/jobs/ID
///   GET    /nodes/NODE/reports      what the agent reported
///   GET    /counts                  200s, 304s, reports, refused tokens
///
/// Not a product: state lives in memory, and the control listener has no authentication.
#[derive(Parser)]
#[command(name = "steward-hub-stub", version, verbatim_doc_comment)]
struct Args {
    /// The hub API's address (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// The control listener's address (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: std::net::SocketAddr,
    /// A file (mode 0600) holding the bearer token agents must present.
    #[arg(long)]
    token_file: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let token = HubToken::from_file(&args.token_file).map_err(anyhow::Error::msg)?;
    let hub = HubStub::start(args.listen, args.control, token)
        .await
        .map_err(anyhow::Error::msg)
        .context("starting the hub stub")?;
    println!(
        "{}",
        serde_json::json!({
            "hub": format!("https://localhost:{}", hub.addr.port()),
            "fingerprint": hub.fingerprint,
            "control": hub.control.to_string(),
        })
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
