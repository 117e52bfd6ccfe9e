//! What one node asks of another, and what a node answers.
//!
//! The layer below the coordinator, hints and repair: they all reach other
//! replicas through these traits, and a node's replica side answers with
//! these handlers, so none of them imports another for it.
//!
//! - [`replica`](ReplicaTransport): one key's write and read (the
//!   coordinator's requests), and how a replica can fail ([`ReplicaError`]).
//! - [`ranges`](RepairTransport): requests over token ranges and batches
//!   (Merkle nodes, leaf digests, batch reads and writes), used by
//!   anti-entropy and hint replay.
//! - [`tree`] and [`cache`]: the Merkle trees a replica compares with, and
//!   its cache of them.
//! - [`serve`]: the replica-side handlers behind those requests.
//! - [`paxos`]: the acceptor of compare-and-set's Paxos rounds: what a
//!   replica promises, accepts and learns committed, per partition.
//! - `fake` (tests only): the in-memory cluster the unit tests above this
//!   layer share.

pub mod cache;
#[cfg(test)]
pub mod fake;
pub mod paxos;
mod ranges;
mod replica;
pub mod serve;
pub mod tree;

pub use cache::TreeCache;
pub use ranges::{BatchRead, RepairTransport, StreamPage};
pub use replica::{ReadReply, ReplicaError, ReplicaErrorKind, ReplicaTransport, WriteAck};
pub use tree::{Hash, MerkleTree};

use std::sync::Arc;

use crate::storage::LocalStore;

/// This node's replica: its store, and the Merkle trees over it.
#[derive(Clone)]
pub struct LocalReplica {
    pub cache: Arc<TreeCache>,
    pub store: LocalStore,
}
