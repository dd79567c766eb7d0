//! `GET /status` and the report's `status`: what the engine says about itself, and what the
//! agent adds (its node and where its metrics are). It must never carry a token or a path to
//! one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A guest parked until something changes, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parked {
    /// The guest.
    pub vmid: u32,
    /// Why, as a closed code (`admin_lock`, `denied`, `held`, `refused`, `gone`, `failing`,
    /// `unsatisfiable`, `internal`; the engine's `ParkReason::code`).
    pub reason: String,
    /// Why, said for a person.
    pub why: String,
}

/// A managed guest that lives on another node of the cluster: that node's agent manages it;
/// this one never creates, changes or destroys it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Elsewhere {
    /// The guest.
    pub vmid: u32,
    /// The node holding it.
    pub node: String,
}

/// How calls to the provider went on one channel (`desired`, `jobs`, `report`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderHealth {
    /// Unix ms of the last call that succeeded; None: none yet.
    pub last_success_ms: Option<i64>,
    /// Why the last call failed (escaped), until one succeeds.
    pub last_error: Option<String>,
    /// Calls that failed in a row.
    pub consecutive_failures: u64,
}

/// What the agent adds to the engine's status on the local API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentAbout {
    /// This node's name.
    pub node: String,
    /// Where `/metrics` is served; None: off.
    pub metrics: Option<String>,
}

/// The audit chain's head: its last entry's sequence number and hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The last entry's sequence number (the chain's length since genesis).
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

impl std::fmt::Display for AuditHead {
    /// `SEQ:HASH`, as `steward-verify audit --head` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// What the engine reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Passes so far.
    pub passes: u64,
    /// Unix ms of the last pass.
    pub last_pass_ms: i64,
    /// Guests the desired state names.
    pub managed: usize,
    /// Of those, with nothing to do.
    pub converged: usize,
    /// Of those, with something to do.
    pub drifting: usize,
    /// Actions in flight.
    pub in_flight: usize,
    /// Ops held for a signature.
    pub held: usize,
    /// Guests parked, with the reason.
    pub parked: Vec<Parked>,
    /// Managed guests that live on another node of the cluster.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub elsewhere: Vec<Elsewhere>,
    /// The node has lost quorum: writes are paused (observation goes on) until it is back.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_quorum: bool,
    /// API requests made by observation so far.
    pub observe_requests: u64,
    /// The last observation error, if the last pass failed.
    pub last_error: Option<String>,
    /// Set while journal writes fail (disk full, I/O error): no action can start until they
    /// succeed again, since every mutation is journaled before it is sent.
    pub journal_error: Option<String>,
    /// Whether recovery has run.
    pub recovered: bool,
    /// The provider's channels (`desired`, `jobs`, `report`), each on its own: a hung or
    /// failing hub shows here, in reports and in metrics.
    pub provider: BTreeMap<String, ProviderHealth>,
    /// The m-of-n policy in force: distinct keys per signed op kind (`default` for the kinds
    /// not named, `recovery keys.rotate` for rotations signed with recovery keys).
    pub approval_policy: BTreeMap<String, u8>,
    /// The audit chain's head after the last pass: anyone who keeps it (from `status`, a hub
    /// report or the log) can later prove the chain up to it was not rewritten
    /// (`steward-verify audit --head SEQ:HASH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<AuditHead>,
    /// Set by the local API (the engine leaves it out): which agent answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentAbout>,
}
