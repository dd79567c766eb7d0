//! `steward-lab`: test support, one of each. `rig` builds the engine the way the agent does
//! (gate over a writer per token, a reader, a real journal, recovery before the loop) against
//! a simulator at any address; `Lab` is that rig over an in-process simulator with the agent's
//! two tokens, real `ssh-keygen` keys and the helpers tests drive it with; `FakeExecutor` is the
//! gate's one stand-in for a node; `control` drives the simulator's out-of-band listener. Used by the workspace's `tests/`, the gate's tests, the
//! adversarial matrix and `cargo xtask bench engine`.
//!
//! It must never be a dependency of a shipped crate (checked by `cargo xtask layers`), and
//! never fake what it stands beside: the engine, gate and journal are the real ones.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod control;
mod fake;
mod lab;
mod rig;

pub use control::control;
pub use fake::FakeExecutor;
pub use lab::{calls_by, config_job, sim_with, Lab, LabConfig, TEMPLATE};
pub use rig::{
    endpoint, everyday_privileges, executor, rig, sim_tokens, Rig, RigConfig, ADMIN, EVERYDAY,
    EVERYDAY_USER, USER,
};

/// What went wrong building or driving a lab (a test support failure, said whole).
#[derive(Debug)]
pub struct LabError(pub String);

impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LabError {}

/// Result alias (crate-private: tests glob-import this crate beside their own `Result`).
pub(crate) type Result<T> = std::result::Result<T, LabError>;

/// Any error, said as a `LabError` naming what was being done.
pub(crate) fn said(what: &str) -> impl Fn(&dyn std::fmt::Display) -> LabError + '_ {
    move |e| LabError(format!("{what}: {e}"))
}
