//! `steward-hub-stub`: a hub that speaks protocol v1 (`docs/hub-protocol.md`) for one or more
//! nodes, in memory. HTTPS with a self-signed certificate (its fingerprint is what the agent
//! pins), the bearer token checked on every request, ETags on both GETs. A plain-HTTP control
//! listener on loopback lets a test or the demo act as the hub's operators: set a node's
//! desired state, add or drop signed jobs, read the reports and the request counts.
//!
//! It must never listen anywhere but loopback, and it is not a product: no persistence, no
//! authentication on the control listener.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod server;

pub use server::{Counts, HubStub};
