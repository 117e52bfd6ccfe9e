//! The RocksDB engine.
//!
//! Column families:
//! - `rows`: cells, keyed by token ++ row key (see `key`).
//! - `hints`: writes held for replicas that were down.
//! - `meta`: node-local settings (node id, tokens).
//!
//! A write is a RocksDB *merge* of the new cell, and the merge operator
//! applies the LWW rule (`lww`) whenever RocksDB folds versions together
//! (on reads, and in compactions); a partition's deletions entry merges by
//! union instead (`deletions`). The only read before a row write is of
//! its partition's deletions entry (a Bloom-filtered miss for most
//! partitions), under the partition's stripe lock: a row a deletion
//! shadows is never stored. A deletion reads and removes the rows it
//! shadows in the same atomic write.
//!
//! A compaction filter drops cells that `gc::is_purgeable` says may go.
//! RocksDB turns a dropped entry into a deletion marker while older levels
//! could still hold versions of the key, so dropping never resurfaces an
//! older value.
//!
//! CAVEATS: RocksDB shows compaction filters only full values, not merge
//! operands, and not the value a compaction has just produced by merging. A
//! cell written by merge therefore becomes purgeable in the compaction after
//! the one that folded its operands; `compact` runs two passes for that
//! reason, and `periodic_compaction_seconds` makes background compaction
//! revisit every file at least daily.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use rocksdb::{
    BottommostLevelCompaction, ColumnFamily, CompactOptions, DB, Direction, IteratorMode,
    ReadOptions, Snapshot, WriteBatch, WriteOptions,
};

use super::batch::BatchLimit;
use super::cell::{Cell, CellView};
use super::deletions::{self, Deletion, Deletions};
use super::engine::{Deleted, EngineStats, RowsPage, RowsQuery, ScanPage, ScanVisitor, Storage};
use super::error::{Result, StorageError};
use super::health::{DiskHealth, disk_space, free_bytes, wal_bytes};
use super::key;
use crate::ring::{Token, TokenRange};

mod options;

pub use options::RocksConfig;
use options::{CF_DATA, CF_HINTS, CF_LEGACY_DATA, CF_META, open_db};

/// Most cells, and bytes of them, one step of a format upgrade moves.
const UPGRADE_BATCH: BatchLimit = BatchLimit {
    entries: 10_000,
    bytes: 8 << 20,
};

/// Stripe locks of partitions (see `RocksStorage::stripes`).
const STRIPES: usize = 64;

/// A `meta` key written to find out whether the disk accepts writes again.
const PROBE_KEY: &str = "disk.probe";

/// A node's store in a RocksDB database.
///
/// The database sits behind a lock only so that [`Storage::recover`] can
/// close and reopen it: RocksDB keeps a WAL writer that failed (a full
/// disk) failed for good, and its C API has no `Resume`. Every other call
/// takes the lock shared: one uncontended atomic.
pub struct RocksStorage {
    db: RwLock<Opened>,
    /// Data writes hold it shared; [`Storage::delete_range_if`] holds it
    /// alone while it decides and writes its range deletes, so no write
    /// lands between the two.
    fence: RwLock<()>,
    /// Row writes and deletions of partitions whose tokens share a stripe
    /// take it in turn: a row checked against the partition's deletions
    /// is written before new deletions are applied, or after them.
    stripes: Box<[Mutex<()>]>,
    path: PathBuf,
    config: RocksConfig,
    health: Arc<DiskHealth>,
}

/// The database as currently open.
enum Opened {
    Writable(DB),
    /// Reopened read-only after a failed write, while the disk has too
    /// little space to open it for writing: reads go on.
    ReadOnly(DB),
    /// Neither open worked (the next recovery attempt retries).
    Closed,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage")
            .field("path", &self.path)
            .finish()
    }
}

/// Free space a reopen needs beyond twice the WAL: a new MANIFEST and WAL,
/// and the flush of what the old WAL held.
const REOPEN_SPARE_BYTES: u64 = 16 << 20;

impl RocksStorage {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path, config: &RocksConfig) -> Result<Self> {
        let db = open_db(path, config, false)?;
        Ok(Self {
            db: RwLock::new(Opened::Writable(db)),
            fence: RwLock::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            path: path.to_path_buf(),
            config: config.clone(),
            health: Arc::new(DiskHealth::default()),
        })
    }

    /// The stripe lock of the partitions of `token`.
    fn stripe(&self, token: Token) -> std::sync::MutexGuard<'_, ()> {
        let stripe = &self.stripes[(token.0 as u64 % STRIPES as u64) as usize];
        // It guards no data: a panic elsewhere leaves nothing to repair.
        stripe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the disk accepts this store's writes.
    pub fn health(&self) -> Arc<DiskHealth> {
        self.health.clone()
    }

    /// The error for a failed write: an I/O error marks the disk
    /// unwritable and names the first cause.
    fn refused(&self, error: rocksdb::Error) -> StorageError {
        match error.kind() {
            rocksdb::ErrorKind::IOError => StorageError::Unwritable {
                cause: self.health.failed(error.as_ref()),
            },
            _ => StorageError::Rocks(error),
        }
    }

    fn unwritable(&self, fallback: &str) -> StorageError {
        StorageError::Unwritable {
            cause: self.health.problem().unwrap_or_else(|| fallback.to_owned()),
        }
    }

    fn opened(&self) -> Result<RwLockReadGuard<'_, Opened>> {
        self.db
            .read()
            .map_err(|_| StorageError::Task("rocksdb handle lock poisoned".into()))
    }

    /// Runs `f` on the database, open for reading.
    fn reading<T>(&self, f: impl FnOnce(&DB) -> Result<T>) -> Result<T> {
        match &*self.opened()? {
            Opened::Writable(db) | Opened::ReadOnly(db) => f(db),
            Opened::Closed => Err(self.unwritable("the store is closed while the disk recovers")),
        }
    }

    /// Runs `f` on the database, open for writing; I/O errors mark the
    /// disk unwritable.
    fn writing<T>(&self, f: impl FnOnce(&DB) -> Result<T, WriteFailure>) -> Result<T> {
        match &*self.opened()? {
            Opened::Writable(db) => f(db).map_err(|failure| match failure {
                WriteFailure::Rocks(error) => self.refused(error),
                WriteFailure::Other(error) => error,
            }),
            Opened::ReadOnly(_) | Opened::Closed => {
                Err(self.unwritable("the store is read-only while the disk recovers"))
            }
        }
    }
}

/// Why a write closure failed.
enum WriteFailure {
    Rocks(rocksdb::Error),
    Other(StorageError),
}

impl From<rocksdb::Error> for WriteFailure {
    fn from(error: rocksdb::Error) -> Self {
        WriteFailure::Rocks(error)
    }
}

impl From<StorageError> for WriteFailure {
    fn from(error: StorageError) -> Self {
        WriteFailure::Other(error)
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| StorageError::Task(format!("column family {name} is missing")))
}

/// A synced write of a probe key: does the database accept writes?
fn probe(db: &DB) -> Result<(), WriteFailure> {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.put_cf_opt(cf(db, CF_META)?, PROBE_KEY, b"", &opts)?;
    Ok(())
}

/// The exclusive upper bound, as a stored key, of a piece whose last
/// token is `last`; `None` for the largest token, past which no bound lies.
fn piece_end(last: Token) -> Option<[u8; 8]> {
    (last < Token::MAX).then(|| Token(last.0 + 1).to_ordered_bytes())
}

/// The partition's stored deletions, if any.
fn read_deletions(db: &DB, token: Token, partition: &[u8]) -> Result<Option<Deletions>> {
    let stored = key::data_key(token, &key::deletions_key(partition));
    match db.get_pinned_cf(cf(db, CF_DATA)?, stored)? {
        None => Ok(None),
        Some(bytes) => deletions::decode_stored(&bytes).map(Some),
    }
}

/// A stored key and its cell's bytes.
type StoredEntry = (Box<[u8]>, Box<[u8]>);

/// The stored entries of one piece of a range, from the stored key `from`
/// through those of token `last`, in order, as `snapshot` (or, without
/// one, the latest state) shows them: (stored key, cell bytes). Every
/// range walk (scans, pages, what a range delete removed) reads through
/// this.
fn walk_piece<'a>(
    db: &'a DB,
    from: &[u8],
    last: Token,
    snapshot: Option<&Snapshot<'_>>,
) -> Result<impl Iterator<Item = Result<StoredEntry>> + 'a> {
    let data = cf(db, CF_DATA)?;
    let mut opts = ReadOptions::default();
    if let Some(snapshot) = snapshot {
        opts.set_snapshot(snapshot);
    }
    if let Some(end) = piece_end(last) {
        opts.set_iterate_upper_bound(end.to_vec());
    }
    let iter = db.iterator_cf_opt(data, opts, IteratorMode::From(from, Direction::Forward));
    Ok(iter.map(|entry| entry.map_err(StorageError::from)))
}

/// Visits every stored key of `range` in token order, as `snapshot` (or,
/// without one, the latest state) shows it.
fn scan_data(
    db: &DB,
    range: TokenRange,
    snapshot: Option<&Snapshot<'_>>,
    visit: &mut ScanVisitor<'_>,
) -> Result<()> {
    for (first, last) in key::pieces(range) {
        for entry in walk_piece(db, &first.to_ordered_bytes(), last, snapshot)? {
            let (stored_key, value) = entry?;
            let Some((token, key)) = key::decode_data_key(&stored_key) else {
                continue;
            };
            visit(token, key, &value);
        }
    }
    Ok(())
}

impl Storage for RocksStorage {
    fn write_all(&self, token: Token, entries: &[(&[u8], &Cell)], sync: bool) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.writing(|db| {
            let _fence = self
                .fence
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let data = cf(db, CF_DATA)?;
            // A row's check and write, or deletions and the removal of
            // what they shadow, are one step for the partition.
            let _partition = self.stripe(token);
            let plan = deletions::plan(entries, |partition| read_deletions(db, token, partition))?;
            if plan.is_noop() {
                return Ok(());
            }
            let mut batch = WriteBatch::default();
            if let Some(incoming) = &plan.incoming {
                let partition = entries
                    .first()
                    .and_then(|(key, _)| key::split_row_key(key))
                    .map_or(&[][..], |r| r.partition);
                for (from, to) in deletions::shadowed_spans(token, partition, incoming) {
                    let mut read = ReadOptions::default();
                    read.set_iterate_upper_bound(to);
                    let rows = db.iterator_cf_opt(
                        data,
                        read,
                        IteratorMode::From(&from, Direction::Forward),
                    );
                    for entry in rows {
                        let (stored, value) = entry?;
                        if deletions::shadowed_row(incoming, &stored, &value)? {
                            batch.delete_cf(data, &stored);
                        }
                    }
                }
            }
            // After the removals: a row of this write that they would
            // have removed is stored again, as it should be.
            for ((key, cell), keep) in entries.iter().zip(&plan.keep) {
                if *keep {
                    batch.merge_cf(data, key::data_key(token, key), cell.encode());
                }
            }
            Ok(db.write_opt(batch, &opts)?)
        })
    }

    fn read(&self, token: Token, key: &[u8]) -> Result<Option<Cell>> {
        let stored_key = key::data_key(token, key);
        self.reading(|db| {
            if let Some(bytes) = db.get_pinned_cf(cf(db, CF_DATA)?, stored_key)? {
                return Ok(Some(CellView::decode(&bytes)?.to_owned_cell()));
            }
            // A missing row may be one a deletion removed: it reads as
            // that deletion's tombstone, which must win over a replica
            // that still holds the row.
            match key::split_row_key(key) {
                Some(row) if row.kind == key::KIND_ROW => {
                    Ok(read_deletions(db, token, row.partition)?
                        .and_then(|d| d.covering(row.sort))
                        .map(Deletion::tombstone))
                }
                _ => Ok(None),
            }
        })
    }

    fn scan(&self, range: TokenRange, visit: &mut ScanVisitor<'_>) -> Result<()> {
        self.reading(|db| scan_data(db, range, None, visit))
    }

    fn query(&self, token: Token, query: &RowsQuery) -> Result<RowsPage> {
        self.reading(|db| {
            let partition = &query.partition;
            // The deletions and the rows as of one moment: a deletion
            // applied between the two reads would otherwise leave rows it
            // removed beside deletions without it.
            let snapshot = db.snapshot();
            let data = cf(db, CF_DATA)?;
            let held = key::data_key(token, &key::deletions_key(partition));
            let deletions = match snapshot.get_pinned_cf(data, held)? {
                None => None,
                Some(bytes) => Some(deletions::decode_stored(&bytes)?),
            }
            .map(|d| d.overlapping(&query.start, query.end.as_deref()))
            .filter(|d| !d.is_empty());
            let (from, to) = key::row_bounds(token, partition, &query.start, query.end.as_deref());
            let mut opts = ReadOptions::default();
            opts.set_snapshot(&snapshot);
            opts.set_iterate_lower_bound(from);
            opts.set_iterate_upper_bound(to);
            let mode = if query.reverse {
                IteratorMode::End
            } else {
                IteratorMode::Start
            };
            let mut page = RowsPage {
                deletions,
                ..RowsPage::default()
            };
            let mut bytes = 0;
            for entry in db.iterator_cf_opt(data, opts, mode) {
                let (stored, value) = entry?;
                let Some(row) =
                    key::decode_data_key(&stored).and_then(|(_, k)| key::split_row_key(k))
                else {
                    continue;
                };
                let len = row.sort.len() + value.len();
                if !query.limit.admits(page.rows.len(), bytes, len) {
                    page.more = true;
                    break;
                }
                bytes += len;
                let cell = CellView::decode(&value)?.to_owned_cell();
                page.rows
                    .push((bytes::Bytes::copy_from_slice(row.sort), cell));
            }
            Ok(page)
        })
    }

    fn scan_page(
        &self,
        range: TokenRange,
        after: Option<&[u8]>,
        limit: BatchLimit,
    ) -> Result<ScanPage> {
        let starts = key::page_starts(range, after)
            .ok_or_else(|| StorageError::Task("scan cursor outside its range".into()))?;
        self.reading(|db| {
            let mut page = ScanPage::default();
            let mut bytes = 0usize;
            for (from, last) in starts {
                for entry in walk_piece(db, &from, last, None)? {
                    let (stored_key, value) = entry?;
                    let Some((_, key)) = key::decode_data_key(&stored_key) else {
                        continue;
                    };
                    let len = key.len() + value.len();
                    if !limit.admits(page.entries.len(), bytes, len) {
                        page.more = true;
                        return Ok(page);
                    }
                    bytes += len;
                    page.entries.push((key.to_vec(), value.into_vec()));
                }
            }
            Ok(page)
        })
    }

    fn delete_range_if(
        &self,
        range: TokenRange,
        decide: &dyn Fn() -> bool,
    ) -> Result<Option<Deleted>> {
        self.writing(|db| {
            let data = cf(db, CF_DATA)?;
            let mut bounds = Vec::new();
            let before = {
                // The fence guards no data: a panic elsewhere while it was
                // held leaves nothing to repair, so a poisoned one still
                // fences.
                let _fence = self
                    .fence
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !decide() {
                    return Ok(None);
                }
                // No write runs while the fence is held: the snapshot
                // holds exactly what the range deletes below remove.
                let before = db.snapshot();
                let mut batch = WriteBatch::default();
                for (first, last) in key::pieces(range) {
                    let from = first.to_ordered_bytes();
                    if let Some(to) = piece_end(last) {
                        batch.delete_range_cf(data, from, to);
                        bounds.push((from, Some(to)));
                    } else {
                        // No bound lies past the largest token: delete up
                        // to it, then that token's keys one by one.
                        let top = Token::MAX.to_ordered_bytes();
                        batch.delete_range_cf(data, from, top);
                        for entry in
                            db.iterator_cf(data, IteratorMode::From(&top, Direction::Forward))
                        {
                            batch.delete_cf(data, entry?.0);
                        }
                        bounds.push((from, None));
                    }
                }
                db.write(batch)?;
                before
            };
            // Counted after the fence is released, from the snapshot: what
            // went, without holding writes up for a scan.
            let mut deleted = Deleted::default();
            scan_data(db, range, Some(&before), &mut |_, key, cell| {
                deleted.keys += 1;
                deleted.bytes += (key.len() + cell.len()) as u64;
            })?;
            drop(before);
            for (from, to) in bounds {
                db.compact_range_cf(data, Some(from), to);
            }
            Ok(Some(deleted))
        })
    }

    fn hint_put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.writing(|db| Ok(db.put_cf(cf(db, CF_HINTS)?, key, value)?))
    }

    fn hint_scan(
        &self,
        from: &[u8],
        to: &[u8],
        limit: BatchLimit,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.reading(|db| {
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(to.to_vec());
            let iter = db.iterator_cf_opt(
                cf(db, CF_HINTS)?,
                opts,
                IteratorMode::From(from, Direction::Forward),
            );
            let entries = iter.map(|entry| {
                entry
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StorageError::from)
            });
            limit.fill(entries, |(k, v)| k.len() + v.len())
        })
    }

    fn hint_delete(&self, keys: &[Vec<u8>]) -> Result<()> {
        self.writing(|db| {
            let hints = cf(db, CF_HINTS)?;
            let mut batch = WriteBatch::default();
            for key in keys {
                batch.delete_cf(hints, key);
            }
            Ok(db.write(batch)?)
        })
    }

    fn sync_wal(&self) -> Result<()> {
        self.writing(|db| Ok(db.flush_wal(true)?))
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.reading(|db| Ok(db.get_cf(cf(db, CF_META)?, name)?))
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.writing(|db| Ok(db.put_cf_opt(cf(db, CF_META)?, name, value, &opts)?))
    }

    /// A probe write first; if the open database still refuses writes
    /// (RocksDB keeps a failed WAL writer failed), close and reopen it once
    /// the disk has room, falling back to read-only so reads go on.
    fn recover(&self) -> Result<()> {
        if let Opened::Writable(db) = &*self.opened()?
            && probe(db).is_ok()
        {
            return Ok(());
        }
        let (free, needed) = (
            free_bytes(&self.path)?,
            wal_bytes(&self.path)
                .saturating_mul(2)
                .saturating_add(REOPEN_SPARE_BYTES),
        );
        if free < needed {
            return Err(self.unwritable(&format!("{free} bytes free; reopening needs {needed}")));
        }
        // Never wait for the lock: a waiting writer would queue every new
        // reader (request threads) behind a long scan. Busy: next round.
        let mut opened = match self.db.try_write() {
            Ok(opened) => opened,
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(self.unwritable("the store is busy; retrying the reopen"));
            }
            Err(std::sync::TryLockError::Poisoned(_)) => {
                return Err(StorageError::Task("rocksdb handle lock poisoned".into()));
            }
        };
        // Close first: a database directory has one opener at a time.
        *opened = Opened::Closed;
        match open_db(&self.path, &self.config, false) {
            Ok(db) => {
                let probed = probe(&db);
                *opened = Opened::Writable(db);
                match probed {
                    Ok(()) => Ok(()),
                    Err(WriteFailure::Rocks(error)) => Err(StorageError::Rocks(error)),
                    Err(WriteFailure::Other(error)) => Err(error),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reopen the store for writing; reopening it read-only");
                match open_db(&self.path, &self.config, true) {
                    Ok(db) => *opened = Opened::ReadOnly(db),
                    Err(error) => {
                        tracing::error!(%error, "cannot reopen the store at all; retrying")
                    }
                }
                Err(error)
            }
        }
    }

    fn partition_size(&self, token: Token, partition: &[u8]) -> Result<u64> {
        let (from, to) = key::row_bounds(token, partition, b"", None);
        self.reading(|db| {
            let data = cf(db, CF_DATA)?;
            let range = rocksdb::Range::new(&from, &to);
            Ok(db
                .get_approximate_sizes_cf(data, &[range])
                .first()
                .copied()
                .unwrap_or(0))
        })
    }

    fn approximate_size(&self) -> Result<u64> {
        self.reading(|db| {
            let data = cf(db, CF_DATA)?;
            let mut total = 0u64;
            for property in [
                "rocksdb.total-sst-files-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                total += db.property_int_value_cf(data, property)?.unwrap_or(0);
            }
            Ok(total)
        })
    }

    fn engine_stats(&self) -> Result<EngineStats> {
        let (disk_free_bytes, disk_total_bytes) = disk_space(&self.path)?;
        self.reading(|db| {
            let mut stats = EngineStats {
                disk_free_bytes,
                disk_total_bytes,
                ..EngineStats::default()
            };
            for name in [CF_DATA, CF_HINTS, CF_META] {
                let family = cf(db, name)?;
                let property = |name: &str| -> Result<u64> {
                    Ok(db.property_int_value_cf(family, name)?.unwrap_or(0))
                };
                stats.live_data_bytes += property("rocksdb.estimate-live-data-size")?;
                stats.pending_compaction_bytes +=
                    property("rocksdb.estimate-pending-compaction-bytes")?;
                stats.memtable_bytes += property("rocksdb.cur-size-all-mem-tables")?;
                for level in 0..7 {
                    stats.sst_files += property(&format!("rocksdb.num-files-at-level{level}"))?;
                }
            }
            // Database-wide: the families share one cache and one pool.
            let data = cf(db, CF_DATA)?;
            stats.running_compactions = db
                .property_int_value_cf(data, "rocksdb.num-running-compactions")?
                .unwrap_or(0);
            stats.block_cache_bytes = db
                .property_int_value_cf(data, "rocksdb.block-cache-usage")?
                .unwrap_or(0);
            Ok(stats)
        })
    }

    fn upgrade_format(&self) -> Result<u64> {
        let mut opened = self
            .db
            .write()
            .map_err(|_| StorageError::Task("rocksdb handle lock poisoned".into()))?;
        let Opened::Writable(db) = &mut *opened else {
            return Err(self.unwritable("the store is not open for writing"));
        };
        if db.cf_handle(CF_LEGACY_DATA).is_none() {
            return Ok(0);
        }
        let mut moved = 0u64;
        let mut from = Vec::new();
        loop {
            let (legacy, rows) = (cf(db, CF_LEGACY_DATA)?, cf(db, CF_DATA)?);
            let mut batch = WriteBatch::default();
            let (mut entries, mut bytes) = (0usize, 0usize);
            let mut last = None;
            for entry in db.iterator_cf(legacy, IteratorMode::From(&from, Direction::Forward)) {
                let (stored, cell) = entry?;
                let len = stored.len() + cell.len();
                if !UPGRADE_BATCH.admits(entries, bytes, len) {
                    break;
                }
                (entries, bytes) = (entries + 1, bytes + len);
                // Format 1 keyed a cell by token ++ plain key, the token
                // being the plain key's: the partition's now.
                match key::decode_data_key(&stored) {
                    Some((token, plain)) => {
                        batch.put_cf(rows, key::data_key(token, &key::plain_key(plain)), &cell)
                    }
                    None => {
                        tracing::warn!(key = ?stored, "dropping a format 1 key too short to hold a token")
                    }
                }
                batch.delete_cf(legacy, &stored);
                last = Some(stored);
            }
            let Some(last) = last else { break };
            // The move of each cell and the delete of its old copy are
            // one atomic write: interrupted, the next start goes on.
            db.write(batch).map_err(|e| self.refused(e))?;
            moved += entries as u64;
            tracing::info!(moved, "moving cells to storage format 2");
            from = last.into_vec();
            from.push(0);
        }
        // The moved cells must be on disk before their old copies go: a
        // power loss after the drop would otherwise lose the WAL's tail.
        db.flush_wal(true).map_err(|e| self.refused(e))?;
        db.drop_cf(CF_LEGACY_DATA).map_err(|e| self.refused(e))?;
        Ok(moved)
    }

    fn compact(&self) -> Result<()> {
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        self.writing(|db| {
            let data = cf(db, CF_DATA)?;
            // Pass 1 folds merge operands into values; pass 2 shows those
            // values to the compaction filter (see CAVEATS).
            for _ in 0..2 {
                db.compact_range_cf_opt(data, None::<&[u8]>, None::<&[u8]>, &opts);
            }
            Ok(())
        })
    }
}
