//! The executor seam: what actually talks to Proxmox. The gate wraps every call in the journal
//! (intent before, dispatched with the task's UPID, terminal outcome after). An executor must
//! never be reachable except through the gate.

use async_trait::async_trait;
use steward_model::Action;

/// An executor failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecError(pub String);

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExecError {}

/// Runs actions against the node.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Starts the action; returns the Proxmox task's UPID when it runs as a task, `None` when
    /// it completed synchronously.
    async fn dispatch(&self, action: &Action) -> Result<Option<String>, ExecError>;

    /// Waits for the task `upid` to end; `Err` carries its failure.
    async fn wait(&self, upid: &str) -> Result<(), ExecError>;
}
