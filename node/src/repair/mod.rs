//! Anti-entropy: Merkle-tree repair between replicas.
//!
//! - [`tree`]: Merkle trees over token ranges and the top-down comparison.
//! - [`cache`]: the cached trees of this node.
//! - [`session`]: syncing one range with one peer.
//! - [`runner`]: runs over all ranges, and the background scheduler.
//! - [`transport`]: what a repair asks of a peer.

pub mod cache;
pub mod runner;
pub mod serve;
pub mod session;
pub mod transport;
pub mod tree;

#[cfg(test)]
mod tests;

pub use cache::TreeCache;
pub use runner::{
    Progress, RangeFailure, Repairer, Scope, load_last_completed, run_scheduler,
    save_last_completed,
};
pub use session::{LEAVES_PER_RANGE, LocalReplica, SyncError, SyncStats};
pub use transport::{BatchRead, RepairTransport};
pub use tree::{Hash, MerkleTree};
