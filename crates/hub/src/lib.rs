//! `steward-hub`: the hub protocol, version 1 (`docs/hub-protocol.md`), and the agent's side
//! of it, [`HubProvider`]. The hub is untrusted by design: what it sends is a desired-state
//! document (validated like a file's) and signed jobs (which only the gate can judge), so a
//! compromised hub can ask for anything but cause no destruction without an operator's
//! signature.
//!
//! It must never send the agent's token anywhere but the configured hub over verified TLS, and
//! never log it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
pub mod fleet;
pub mod protocol;
mod token;

pub use client::{HubConfig, HubProvider};
pub use token::HubToken;
