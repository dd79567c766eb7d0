//! `steward-control`: the agent's local API, JSON over HTTP/1.1 on a Unix socket (mode 0660),
//! for the CLI on the node. Its server lists every route in `server.rs`; `Client` is what the
//! `steward-agent` subcommands use; they never open the journal themselves.
//!
//! **API Boundary:** the local API's routes and JSON shapes (`DecisionView`, the engine's
//! `Status` and `HeldOp`) are what the CLI and local tooling build against.
//!
//! It must never listen on anything but its Unix socket, and never execute anything itself:
//! every decision is the engine's and the gate's.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod server;
mod view;

pub use client::{Client, ControlError};
pub use server::serve;
pub use view::DecisionView;
