//! `steward-control`: the agent's local API, JSON over HTTP/1.1 on a Unix socket (mode 0660),
//! for the CLI on the node. Its server lists every route in `server.rs`; `Client` is what the
//! `steward-agent` subcommands use; they never open the journal themselves.
//!
//! **API Boundary:** the local API's routes, and its JSON shapes in `steward-view` (re-exported as
//! `view`, pinned by golden files), are what the CLI and local tooling build against.
//!
//! `/metrics` (Prometheus text) is served apart, on a loopback TCP address, by `metrics.rs`:
//! that listener has no other route.
//!
//! It must never serve anything but `/metrics` over TCP, and never execute anything itself:
//! every decision is the engine's and the gate's.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod metrics;
mod server;

pub use client::{Client, ControlError};
pub use metrics::serve_metrics;
pub use server::{serve, ApiOptions};
pub use steward_view as view;
