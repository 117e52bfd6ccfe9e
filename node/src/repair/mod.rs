//! Anti-entropy: Merkle-tree repair between replicas.
//!
//! - [`session`]: syncing one range with one peer.
//! - [`runner`]: runs over all ranges, and the background scheduler.
//!
//! The Merkle trees, their cache, what a repair asks of a peer and what a
//! peer answers live one layer down, in [`crate::peer`].

pub mod runner;
pub mod session;

#[cfg(test)]
mod tests;

pub use crate::peer::LocalReplica;
pub use crate::peer::tree::LEAVES_PER_RANGE;
pub use runner::{
    Progress, RangeFailure, Repairer, Scope, load_last_completed, run_scheduler,
    save_last_completed,
};
pub use session::{SyncError, SyncStats};

/// The name repairs run under, scheduled or asked for (see
/// `crate::workers`).
pub const WORKER: &str = "repair";
