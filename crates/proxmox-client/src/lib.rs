//! `steward-proxmox-client`: the two halves of the node API seam, [`GuestRead`] and
//! [`GuestWrite`], and their implementation over hyper 1.x and rustls for the Proxmox VE HTTP API.
//!
//! The client authenticates with an API token (never a password) whose secret never reaches
//! `Debug`, logs or errors; it trusts the node by a pinned SHA-256 certificate fingerprint or a
//! CA file, with no switch to disable verification; every request has a timeout; only
//! idempotent reads are retried. It must never widen what a token may do.
//!
//! The read half and the write half are different types. [`PveClient`] implements only
//! [`GuestRead`]; [`PveWriter`], built with the admin token, implements [`GuestWrite`], is not
//! `Clone`, and is handed to the gate's executor alone. Code that was given a reader cannot
//! reach a write method. The executor's side compiles:
//!
//! ```no_run
//! use steward_model::{GuestKind, Vmid};
//! use steward_proxmox_client::{GuestRead, GuestWrite, PveWriter};
//! async fn execute(node: &PveWriter, vmid: Vmid) {
//!     let _ = node.start(GuestKind::Qemu, vmid).await;
//!     let _ = node.list_guests().await;
//! }
//! async fn execute_dyn(node: &dyn GuestWrite, vmid: Vmid) {
//!     let _ = node.destroy(GuestKind::Qemu, vmid, true, false).await;
//! }
//! ```
//!
//! and the same calls on the read half do not (rustdoc on stable does not check the error
//! code, so each failing case is the twin of a compiling one above, differing only in the type):
//!
//! ```compile_fail,E0599
//! use steward_model::{GuestKind, Vmid};
//! use steward_proxmox_client::{GuestRead, PveClient};
//! async fn observe(node: &PveClient, vmid: Vmid) {
//!     let _ = node.start(GuestKind::Qemu, vmid).await; // no such method on the read half
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use steward_model::{GuestKind, Vmid};
//! use steward_proxmox_client::GuestRead;
//! async fn observe(node: &dyn GuestRead, vmid: Vmid) {
//!     let _ = node.destroy(GuestKind::Qemu, vmid, true, false).await;
//! }
//! ```
//!
//! ```compile_fail,E0599
//! use steward_proxmox_client::PveWriter;
//! fn share(w: &PveWriter) -> PveWriter {
//!     w.clone() // the writer is not Clone: there is one holder
//! }
//! ```
//!
//! **Invariant:** nothing holding a `PveClient` or a `&dyn GuestRead` can mutate the node.
//! Enforced by: the type split above (compile-fail tests in this file).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod client;
mod error;
pub mod files;
mod http;
mod pacing;
mod pending;
pub mod tls;
mod token;
mod upid;

pub use api::{
    exit_ok, num, text, ClusterView, GuestConfig, GuestEntry, GuestRead, GuestWrite, PendingEntry,
    TaskEntry, TaskFilter, TaskSource, TaskStatus,
};
pub use client::{PveClient, PveWriter};
pub use error::ApiError;
pub use http::{endpoint_class, Endpoint, RequestHook};
pub use tls::Trust;
pub use token::{read_secret_file, ApiToken};
pub use upid::{Upid, UpidError};
