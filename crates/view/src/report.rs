//! The body of the hub report (`POST /v1/nodes/{node}/report`): the engine's status, what is
//! held, and what became of each job. It must never carry a job's payload or signatures back.

use crate::{DecisionView, HeldOp, Status};
use serde::{Deserialize, Serialize};

/// The hub protocol version a report speaks.
pub const REPORT_PROTOCOL: u32 = 1;

/// What became of one job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobResult {
    /// The job's id, as the hub gave it.
    pub job: String,
    /// The gate's decision, as the local API shows it.
    pub decision: DecisionView,
}

/// The body of `POST …/report`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportBody {
    /// [`REPORT_PROTOCOL`].
    pub protocol: u32,
    /// The reporting node.
    pub node: String,
    /// The agent's version.
    pub agent_version: String,
    /// The engine's status (as `steward-agent status` shows it).
    pub status: Status,
    /// Ops held for a signature, with their templates and summaries.
    pub held: Vec<HeldOp>,
    /// Jobs decided since the last report delivered.
    pub results: Vec<JobResult>,
}
