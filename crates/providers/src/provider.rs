//! The provider seam: what the agent asks of any source of desired state and signed jobs, and
//! what it tells the source back. Reports carry JSON built by the engine (its status and held
//! ops): this crate does not know their shape, so it never depends on the engine.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use steward_model::DesiredState;

/// What a poll found.
#[derive(Debug)]
pub enum Update {
    /// Nothing changed since the last poll.
    Unchanged,
    /// A new, valid document.
    New(Arc<DesiredState>),
    /// A new document was refused (the reason names where); the last good one stays in force.
    Refused(String),
    /// The source could not be asked (unreachable, refused our token, …); the last good
    /// document stays in force.
    Unavailable(String),
}

/// A signed op handed over by a provider: the exact bytes that were signed, and one or more
/// armored SSHSIG signatures over them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The provider's id for it (echoed in the report).
    pub id: String,
    /// The op payload, exactly as signed.
    pub payload: String,
    /// Armored signatures (`-----BEGIN SSH SIGNATURE-----`).
    pub signatures: Vec<String>,
}

pub use steward_view::JobResult;

/// What the agent tells its source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The engine's status.
    pub status: steward_view::Status,
    /// Ops held for a signature, with their templates and summaries.
    pub held: Vec<steward_view::HeldOp>,
    /// Jobs decided since the last report.
    pub results: Vec<JobResult>,
}

/// A source of desired state (and, for a hub, of signed jobs).
#[async_trait]
pub trait Provider: Send {
    /// Where it reads from, for logs (`file /etc/steward/desired.toml`, `hub https://…`).
    fn describe(&self) -> String;

    /// Looks for a new desired state.
    async fn poll(&mut self) -> Update;

    /// Signed jobs not handed over before. A file provider has none.
    async fn jobs(&mut self) -> Result<Vec<Job>, String> {
        Ok(Vec::new())
    }

    /// Tells the source the agent's status, its held ops and what became of jobs. A file
    /// provider has no one to tell.
    async fn report(&mut self, _report: &Report) -> Result<(), String> {
        Ok(())
    }
}
