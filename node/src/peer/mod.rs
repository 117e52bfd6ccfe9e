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

pub mod cache;
mod ranges;
mod replica;
pub mod serve;
pub mod tree;

pub use cache::TreeCache;
pub use ranges::{BatchRead, RepairTransport};
pub use replica::{ReadReply, ReplicaError, ReplicaTransport};
pub use tree::{Hash, MerkleTree};
