//! Hinted handoff: a coordinator holds writes for replicas that are down or
//! did not answer, and hands them over when the replica is back.
//!
//! - [`store`]: the hints column family, per-node caps.
//! - [`replay`]: the worker that replays, throttled, and expires hints.
//!
//! Hints never count toward a write's consistency level, except at ANY,
//! where a stored hint is the acknowledgement.

pub mod replay;
pub mod store;

pub use replay::{ReplaySettings, run_replay};

/// The name the replay worker runs under (see `crate::workers`).
pub const REPLAY_WORKER: &str = "hint replay";
pub use store::{DropReason, Hint, HintStore};
