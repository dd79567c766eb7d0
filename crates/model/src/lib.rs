//! `steward-model`: the vocabulary every other Steward crate speaks — VMIDs, guest kinds, power
//! states, sizes in MiB and bytes, what a guest should look like, and the closed set of actions
//! the engine can take. Plain data with serde; it must never do I/O, judge danger (that is the
//! classifier's job) or know about HTTP.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod action;
mod disk;
mod failure;
mod guest;
mod identity;
mod setting;
mod size;
mod vmid;
mod volume;

pub use action::{is_config_key, Action, ConfigChange};
pub use disk::DiskSpec;
pub use failure::{Failure, FailureKind};
pub use guest::{DesiredState, GuestKind, GuestSpec, GuestState, PowerState, Startup};
pub use identity::{guest_identity, is_net_key, without_chosen_identity};
pub use setting::Setting;
pub use size::{ByteSize, MiB};
pub use vmid::{Vmid, VmidError};
pub use volume::{is_storage_id, volume_of, volume_size, AmbiguousVolume};
