//! `steward-pve-sim`: a Proxmox VE API simulator that behaves like Proxmox in everything the
//! client touches — the `{"data": …}` envelope, numbers as strings where Proxmox sends strings,
//! errors as HTTP 500 with the reason in the status line, memory in MiB in config and bytes in
//! lists, `digest` moving on every write and refusing a stale one, pending changes on running
//! guests, tasks with real UPIDs that run for a while, guest locks while they run, the task list
//! and status endpoints, token checks with privileges — plus deterministic fault injection.
//! It listens on loopback only in tests; it must never be mistaken for (or pointed at) a node.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acl;
mod cluster;
mod control;
mod faults;
mod forms;
mod ha;
mod migrate;
mod moves;
mod node;
mod ops;
mod persist;
mod routes;
mod schema;
mod server;
mod task;
mod token;
mod upid;
mod view;
mod volumes;

pub use acl::{role, Grant, Privileges};
pub use cluster::{Cluster, NO_QUORUM};
pub use faults::Faults;
pub use forms::Kind;
pub use ha::HaResource;
pub use node::{Counters, Effect, Node, NodeState, Refusal, SimGuest, Snapshot};
pub use persist::{conf_text, Saved};
pub use server::{Sim, SimConfig, SimNode};
pub use token::SimToken;
pub use upid::TaskId;
