//! `steward-planner`: from the desired-state document and the node's actual state to an ordered,
//! deterministic list of actions.
//!
//! - [`document`] reads the hub's document (JSON or TOML, one schema), validating every field and
//!   reporting every error with the guest and field it concerns.
//! - [`normalize`] brings Proxmox's stored forms and the document's forms to one canonical form
//!   per key, so that a plan converges in one pass and never re-issues a change.
//! - [`plan()`] diffs; [`export`] writes the document that describes guests as they are; [`pve_model`] is a reference model of how Proxmox stores what we write,
//!   used by the planner's convergence tests (`steward-pve-sim` models a whole node).
//!
//! It must never judge danger (the classifier does), never plan an action for a guest the
//! document does not name, and never do I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod actual;
pub mod document;
pub mod export;
pub mod keys;
pub mod normalize;
mod plan;
pub mod pve_model;

pub use actual::{ActualGuest, ActualState};
pub use plan::{plan, plan_guest, Note, Plan};
