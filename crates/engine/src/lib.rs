//! `steward-engine`: the reconcile engine, shaped as a controller. The observer reads the node
//! at constant cost and publishes snapshots; one event loop turns wake-ups into a closed set
//! of events; a scheduler keeps one slot per guest (the only lock on it, taken by the loop's
//! actions and by signed ops alike); `reconcile` says what one guest needs next from the
//! newest snapshot; `policy` decides every delay and park. At most one action per guest and at
//! most K across guests reach the gate. Only a [`Recovered`] engine runs: recovery resolves
//! every op the journal holds in flight before the first mutation.
//!
//! What it must never do: mutate the node except through the gate; run before recovery;
//! destroy anything because it is absent from the desired state (only `state = "absent"` asks,
//! and the gate decides); send `skiplock`.
//!
//! **Invariant:** the only door to mutating calls is the gate, and only `exec.rs` holds the
//! API's write half. Enforced by: `Engine::new` takes the read half (`GuestRead`) and a `Gate`;
//! `NodeExecutor` (the only `Executor`) is built around a `GuestWrite` and handed to the gate
//! by value.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod blocking;
mod decision_view;
pub mod dry_run;
mod engine;
mod event_loop;
mod exec;
mod feed;
mod held;
mod identity;
mod moved;
mod observe;
mod policy;
mod reconcile;
mod recover;
pub mod retention;
mod schedule;
mod signed;

pub use backoff::Backoff;
pub use decision_view::ToView;
pub use engine::{Engine, EngineConfig, Recovered, Trigger};
pub use exec::NodeExecutor;
pub use feed::{feed, Channels, FeedConfig};
pub use held::HeldOp;
pub use observe::{Observed, PassReport, Snapshot};
pub use policy::{needs_admin, ParkReason, Requeue, PARK_AFTER};
pub use recover::{task_type, RecoverError, Recovery};
pub use steward_view::{DecisionView, Parked, ProviderHealth, Status};
