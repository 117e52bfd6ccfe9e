//! Local storage: cells, the LWW rule, and the engines that hold them.
//!
//! - [`cell`](CellOf): a versioned value or tombstone and its encoding.
//! - [`lww`]: the one conflict-resolution rule, with its laws.
//! - [`deletions`]: a partition's partition and range deletions.
//! - [`gc`]: when tombstones and expired values may be dropped.
//! - [`Storage`]: the engine trait; [`RocksStorage`] for real,
//!   [`MemoryStorage`] for tests.
//! - [`LocalStore`]: an engine plus the write durability policy.
//! - [`digest`]: 16-byte digests of cells, for digest reads.
//! - [`health`]: whether the disk accepts writes, and recovery.
//! - [`batch`]: count-and-bytes bounds of internode batches.
//! - [`DirtyMap`]: which token buckets were written, for Merkle rehashing.
//! - [`format`]: the on-disk format's version, checked at every start.
//! - [`guard`]: the partition-size guardrail.
//! - [`Mutation`]: the cells of one partition written together.

pub mod batch;
mod blocking;
mod cell;
pub mod codec;
pub mod deletions;
mod digest;
mod dirty;
mod durability;
mod engine;
mod error;
pub mod format;
pub mod gc;
pub mod guard;
pub mod health;
pub mod key;
mod local;
pub mod lww;
mod memory;
mod mutation;
pub mod node_id;
mod rocks;

pub use batch::BatchLimit;
pub use blocking::{blocking, run_inline_on_this_thread};
pub use cell::{Cell, CellDecodeError, CellOf, CellView};
pub use digest::digest;
pub use dirty::DirtyMap;
pub use durability::{GroupSync, SyncMode, run_periodic_sync, sync_blocking};
pub use engine::{Deleted, EngineStats, RowsPage, RowsQuery, ScanPage, ScanVisitor, Storage};
pub use error::{Result, StorageError};
pub use health::{DiskFailurePolicy, DiskHealth, run_disk_recovery};
pub use local::LocalStore;
pub use memory::MemoryStorage;
pub use mutation::{Mutation, WriteMode};
pub use rocks::{RocksConfig, RocksStorage};

#[cfg(test)]
mod tests;
