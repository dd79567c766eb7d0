//! `steward-view`: the shapes the agent shows the world — the local API's answers (what
//! `steward-agent status|pending|submit|op` print) and the body of the hub report. The engine
//! fills them, the control server and the hub client send them, and the CLI and the hub stub
//! read them back as the same types: no side reads JSON by key.
//!
//! Every type here is a wire format, pinned byte for byte by the golden files under `golden/`
//! (`golden.rs`). A field must never change meaning: additions only, each with a default so
//! an older reader and a newer writer (or the reverse) still agree. It must never hold a
//! secret, a signature or anything the decision it reports does not say, and never depend on
//! more than serde.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod decision;
#[cfg(test)]
mod golden;
mod held;
mod plan;
mod report;
mod status;

pub use api::{ErrorBody, Health, OpView, Submission, SubmissionError, MAX_SIGNATURES};
pub use decision::{DecisionView, SignatureView};
pub use held::HeldOp;
pub use plan::{ActionPlan, FieldChange, GuestPlan, PlanView};
pub use report::{JobResult, ReportBody, REPORT_PROTOCOL};
pub use status::{AgentAbout, AuditHead, Elsewhere, Parked, ProviderHealth, Status};
