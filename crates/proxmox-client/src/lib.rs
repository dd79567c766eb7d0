//! `steward-proxmox-client`: the `GuestApi` seam the engine and tests use, and its
//! implementation over hyper 1.x and rustls for the Proxmox VE HTTP API.
//!
//! The client authenticates with an API token (never a password) whose secret never reaches
//! `Debug`, logs or errors; it trusts the node by a pinned SHA-256 certificate fingerprint or a
//! CA file, with no switch to disable verification; every request has a timeout; only
//! idempotent reads are retried. It must never widen what a token may do.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod client;
mod error;
mod http;
pub mod tls;
mod token;
mod upid;

pub use api::{num, text, GuestApi, GuestConfig, GuestEntry, PendingEntry, TaskEntry, TaskStatus};
pub use client::PveClient;
pub use error::ApiError;
pub use http::Endpoint;
pub use tls::Trust;
pub use token::ApiToken;
pub use upid::{Upid, UpidError};
