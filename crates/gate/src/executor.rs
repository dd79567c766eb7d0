//! The executor seam: what actually talks to Proxmox. The gate wraps every call in the journal
//! (intent before, dispatched with the task's UPID, terminal outcome after). The gate takes its
//! executor by value (`Box<dyn Executor>`) and never hands it out, so an executor is reachable
//! only through the gate; the engine builds it around the API's write half and keeps no copy.

use async_trait::async_trait;
use steward_model::{Action, Failure};

/// Runs actions against the node. Failures are typed ([`Failure`]) so that the journal records,
/// and the engine's retry policy matches, what kind of failure it was.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Starts the action; returns the Proxmox task's UPID when it runs as a task, `None` when
    /// it completed synchronously.
    async fn dispatch(&self, action: &Action) -> Result<Option<String>, Failure>;

    /// Waits for the task `upid` to end; `Err` carries its failure.
    async fn wait(&self, upid: &str) -> Result<(), Failure>;
}
