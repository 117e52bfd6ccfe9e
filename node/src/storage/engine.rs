//! The `Storage` trait: what the rest of the node needs from a local store.
//!
//! Calls are synchronous. Point reads and writes are memtable and WAL
//! operations that take microseconds, cheaper than a hop to a blocking
//! thread pool; callers move anything that may block longer (an fsync, a
//! range scan) to `spawn_blocking` themselves.

use bytes::Bytes;

use super::batch::BatchLimit;
use super::cell::Cell;
use super::deletions::Deletions;
use super::error::Result;
use crate::ring::{Token, TokenRange};

/// Receives the entries of a scan: token, user key, encoded cell.
pub type ScanVisitor<'a> = dyn FnMut(Token, &[u8], &[u8]) + 'a;

/// One page of a range scan (see [`Storage::scan_page`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// (user key, encoded cell), in token order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The range holds more entries after the last one.
    pub more: bool,
}

/// A query of one partition's rows (see [`Storage::query`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsQuery {
    pub partition: Bytes,
    /// Included.
    pub start: Bytes,
    /// Excluded; `None`: to the last row.
    pub end: Option<Bytes>,
    /// Largest sort key first.
    pub reverse: bool,
    /// Rows (tombstones count) and bytes (sort keys and cells); the first
    /// row always goes.
    pub limit: BatchLimit,
}

/// One page of a partition's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowsPage {
    /// The partition's deletions that matter to the range.
    pub deletions: Option<Deletions>,
    /// (sort key, cell) in the query's order, tombstones included.
    pub rows: Vec<(Bytes, Cell)>,
    /// The range holds more rows after the last one.
    pub more: bool,
}

/// What [`Storage::delete_range`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub keys: u64,
    /// Bytes of the keys and encoded cells removed.
    pub bytes: u64,
}

/// What a storage engine holds and is doing, for metrics and `ringkv`'s
/// `compactionstats` (see [`Storage::engine_stats`]). Zero where an engine
/// has no such thing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Estimated bytes of live data (what compaction would keep).
    pub live_data_bytes: u64,
    /// SST files, every level.
    pub sst_files: u64,
    /// Bytes compaction must rewrite to bring every level under its
    /// target size.
    pub pending_compaction_bytes: u64,
    pub running_compactions: u64,
    /// Memory of the memtables.
    pub memtable_bytes: u64,
    /// Memory the block cache holds.
    pub block_cache_bytes: u64,
    /// Free and total space of the data directory's file system.
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
}

/// A node's local key-value store.
pub trait Storage: Send + Sync + 'static {
    /// Merges `cell` into what is stored for `key` by last-write-wins. When it
    /// returns the write is in the write-ahead log; with `sync` the log is
    /// also fsynced.
    fn write(&self, token: Token, key: &[u8], cell: &Cell, sync: bool) -> Result<()> {
        self.write_all(token, &[(key, cell)], sync)
    }

    /// Writes `entries` (row key, cell) of one partition, whose token is
    /// `token`, as [`write`](Self::write) writes one, all together: one
    /// atomic write, one WAL record. A deletions entry among them
    /// shadows the rows it covers that are stored already, not those of
    /// the same write that it does not shadow by timestamp (see
    /// `deletions::plan`). Entries of several partitions are refused.
    fn write_all(&self, token: Token, entries: &[(&[u8], &Cell)], sync: bool) -> Result<()>;

    /// The winning cell stored for `key`, tombstones and expired values
    /// included (they matter to read repair); `None` if nothing is stored.
    fn read(&self, token: Token, key: &[u8]) -> Result<Option<Cell>>;

    /// A page of the rows of `query.partition` (whose token is `token`) in
    /// its range, with the partition's deletions that overlap it. Rows
    /// stored are never shadowed by those deletions (see `deletions`); the
    /// deletions still matter to a coordinator merging replicas' pages.
    fn query(&self, token: Token, query: &RowsQuery) -> Result<RowsPage>;

    /// Visits every stored key whose token is in `range`, in token order,
    /// with its encoded cell (tombstones included).
    fn scan(&self, range: TokenRange, visit: &mut ScanVisitor<'_>) -> Result<()>;

    /// The entries of `range` after the user key `after` (exclusive; `None`:
    /// from the start of the range), in token order, as many as `limit`
    /// admits. A key `after` outside `range` is an error. Streaming pages
    /// through a range with this, so a page costs a seek, not a rescan.
    fn scan_page(
        &self,
        range: TokenRange,
        after: Option<&[u8]>,
        limit: BatchLimit,
    ) -> Result<ScanPage>;

    /// Deletes every stored key whose token is in `range` if `decide`,
    /// called once, says so (range deletes, then a compaction of the range
    /// so the space comes back), returning what went; `None` (nothing
    /// deleted) when `decide` said no. Blocking.
    ///
    /// `decide` and the delete are one step as far as writes are
    /// concerned: every write either returned before `decide` was called
    /// (and is deleted) or is stored after the delete (and kept). A caller
    /// that checks in `decide` that the range is still not its own can
    /// therefore never delete a row written after it decided, however long
    /// the delete takes (cleanup beside a topology change that streams the
    /// range back).
    fn delete_range_if(
        &self,
        range: TokenRange,
        decide: &dyn Fn() -> bool,
    ) -> Result<Option<Deleted>>;

    /// [`delete_range_if`](Self::delete_range_if) without a condition.
    fn delete_range(&self, range: TokenRange) -> Result<Deleted> {
        Ok(self.delete_range_if(range, &|| true)?.unwrap_or_default())
    }

    /// Stores a hint (`hints` column family).
    fn hint_put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Hints with keys in `[from, to)`, in key order, as many as `limit`
    /// admits (counting key and value bytes; the first always fits).
    fn hint_scan(
        &self,
        from: &[u8],
        to: &[u8],
        limit: BatchLimit,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Deletes hints.
    fn hint_delete(&self, keys: &[Vec<u8>]) -> Result<()>;

    /// Fsyncs the write-ahead log: every write that returned before this
    /// call survives a power loss once it returns.
    fn sync_wal(&self) -> Result<()>;

    /// A node-local setting from the `meta` column family.
    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Stores a node-local setting, synced to disk before returning.
    fn meta_put(&self, name: &str, value: &[u8]) -> Result<()>;

    /// Estimated bytes the partition `partition` (token `token`) holds,
    /// for the partition-size guardrail (see `guard`); 0 where the engine
    /// cannot tell.
    fn partition_size(&self, token: Token, partition: &[u8]) -> Result<u64> {
        let _ = (token, partition);
        Ok(0)
    }

    /// Approximate bytes of data stored (on disk and in memory), for the
    /// load that `status` shows.
    fn approximate_size(&self) -> Result<u64>;

    /// What the engine holds and is doing; see [`EngineStats`].
    fn engine_stats(&self) -> Result<EngineStats> {
        Ok(EngineStats::default())
    }

    /// After writes failed with an I/O error: tries to make the engine
    /// accept writes again (a full disk that has space again); `Ok` once it
    /// does. Blocking.
    fn recover(&self) -> Result<()> {
        Ok(())
    }

    /// Moves the cells an older storage format kept into this format's
    /// layout (format 1 keyed them by plain key: each becomes the row with
    /// the empty sort key), returning how many moved; 0 when there are
    /// none. Crash-safe: each step moves a batch of cells atomically, so
    /// a start interrupted in the middle finishes the move on the next.
    /// Blocking; called before the node serves anything.
    fn upgrade_format(&self) -> Result<u64> {
        Ok(0)
    }

    /// Compacts all data now, applying the garbage-collection rule
    /// (`gc::is_purgeable`) to every cell. Background compaction does the
    /// same over time; this is for operators and tests.
    fn compact(&self) -> Result<()>;
}
