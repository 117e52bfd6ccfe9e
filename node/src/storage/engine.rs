//! The `Storage` trait: what the rest of the node needs from a local store.
//!
//! Calls are synchronous. Point reads and writes are memtable and WAL
//! operations that take microseconds, cheaper than a hop to a blocking
//! thread pool; callers move anything that may block longer (an fsync, a
//! range scan) to `spawn_blocking` themselves.

use super::cell::Cell;
use super::error::Result;
use crate::ring::Token;

/// A node's local key-value store.
pub trait Storage: Send + Sync + 'static {
    /// Merges `cell` into what is stored for `key` by last-write-wins. When it
    /// returns the write is in the write-ahead log; with `sync` the log is
    /// also fsynced.
    fn write(&self, token: Token, key: &[u8], cell: &Cell, sync: bool) -> Result<()>;

    /// The winning cell stored for `key`, tombstones and expired values
    /// included (they matter to read repair); `None` if nothing is stored.
    fn read(&self, token: Token, key: &[u8]) -> Result<Option<Cell>>;

    /// Fsyncs the write-ahead log: every write that returned before this
    /// call survives a power loss once it returns.
    fn sync_wal(&self) -> Result<()>;

    /// A node-local setting from the `meta` column family.
    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Stores a node-local setting, synced to disk before returning.
    fn meta_put(&self, name: &str, value: &[u8]) -> Result<()>;

    /// Approximate bytes of data stored (on disk and in memory), for the
    /// load that `status` shows.
    fn approximate_size(&self) -> Result<u64>;

    /// Compacts all data now, applying the garbage-collection rule
    /// (`gc::is_purgeable`) to every cell. Background compaction does the
    /// same over time; this is for operators and tests.
    fn compact(&self) -> Result<()>;
}
