//! The RocksDB engine.
//!
//! Column families:
//! - `data`: cells, keyed by token ++ user key (see `key`).
//! - `hints`: writes held for replicas that were down.
//! - `meta`: node-local settings (node id, tokens).
//!
//! Writes are blind: a write is a RocksDB *merge* of the new cell, and the
//! merge operator applies the LWW rule (`lww`) whenever RocksDB folds
//! versions together (on reads, and in compactions). No write reads first,
//! so the write path costs one WAL append and one memtable insert.
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

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamily, ColumnFamilyDescriptor,
    CompactOptions, DB, DBCompressionType, Direction, IteratorMode, MergeOperands, Options,
    ReadOptions, WriteBatch, WriteOptions,
};

use super::cell::{Cell, CellView};
use super::engine::{ScanVisitor, Storage};
use super::error::{Result, StorageError};
use super::{gc, key, lww};
use crate::clock::wall_clock_seconds;
use crate::ring::{Token, TokenRange};

const CF_DATA: &str = "data";
const CF_HINTS: &str = "hints";
const CF_META: &str = "meta";

/// How often background compaction must revisit every SST file, so that
/// tombstones past `gc_grace` are eventually dropped from cold files too.
const PERIODIC_COMPACTION_SECONDS: u64 = 24 * 3600;

/// Merge operands of one key kept in the memtable before a write folds them.
const MAX_SUCCESSIVE_MERGES: usize = 8;

/// Tuning of the RocksDB engine.
#[derive(Debug, Clone)]
pub struct RocksConfig {
    /// How long tombstones and expired values are kept (seconds).
    pub gc_grace_seconds: u64,
    /// Size of the shared block cache.
    pub block_cache_bytes: usize,
}

impl Default for RocksConfig {
    fn default() -> Self {
        Self {
            gc_grace_seconds: gc::DEFAULT_GC_GRACE_SECONDS,
            block_cache_bytes: 64 << 20,
        }
    }
}

/// A node's store in a RocksDB database.
pub struct RocksStorage {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage")
            .field("path", &self.path)
            .finish()
    }
}

impl RocksStorage {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path, config: &RocksConfig) -> Result<Self> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        db_opts.increase_parallelism(i32::try_from(cores).unwrap_or(2));
        db_opts.set_max_background_jobs(i32::try_from(cores.clamp(2, 8)).unwrap_or(2));
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_log_file_size(16 << 20);
        db_opts.set_bytes_per_sync(1 << 20);

        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);

        let mut data = Options::default();
        data.set_block_based_table_factory(&table);
        data.set_compression_type(DBCompressionType::Lz4);
        data.set_merge_operator_associative("ringkv.lww.v1", lww_merge);
        // A key overwritten many times between flushes would otherwise make
        // every read fold all its operands; past this many, the write folds
        // them in the memtable instead.
        data.set_max_successive_merges(MAX_SUCCESSIVE_MERGES);
        let grace = config.gc_grace_seconds;
        data.set_compaction_filter(
            "ringkv.gc.v1",
            move |_level: u32, _key: &[u8], value: &[u8]| match CellView::decode(value) {
                Ok(cell) if gc::is_purgeable(&cell, wall_clock_seconds(), grace) => {
                    Decision::Remove
                }
                _ => Decision::Keep,
            },
        );
        data.set_periodic_compaction_seconds(PERIODIC_COMPACTION_SECONDS);

        let mut hints = Options::default();
        hints.set_compression_type(DBCompressionType::Lz4);
        let meta = Options::default();

        let families = vec![
            ColumnFamilyDescriptor::new(CF_DATA, data),
            ColumnFamilyDescriptor::new(CF_HINTS, hints),
            ColumnFamilyDescriptor::new(CF_META, meta),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, families)?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
        })
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Task(format!("column family {name} is missing")))
    }
}

/// The merge operator: the LWW winner among the stored value and operands.
/// Undecodable versions are skipped (they cannot win); if none decodes the
/// merge fails and RocksDB reports corruption for the key.
fn lww_merge(key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut winner: Option<(CellView<'_>, &[u8])> = None;
    for bytes in existing.into_iter().chain(operands) {
        match CellView::decode(bytes) {
            Ok(cell) => {
                if winner
                    .as_ref()
                    .is_none_or(|(best, _)| lww::supersedes(&cell, best))
                {
                    winner = Some((cell, bytes));
                }
            }
            Err(error) => tracing::error!(key = ?key, %error, "skipping corrupt cell in merge"),
        }
    }
    winner.map(|(_, bytes)| bytes.to_vec())
}

/// The non-wrapping pieces of a range: `(start, end]` with `start < end`,
/// as (first token, last token) pairs.
pub(super) fn pieces(range: TokenRange) -> Vec<(Token, Token)> {
    let after = |t: Token| Token(t.0.saturating_add(1));
    if range.start < range.end {
        vec![(after(range.start), range.end)]
    } else {
        // Wraps (or is the whole ring): past the start to the top, then
        // from the bottom to the end. The minimum token holds no keys.
        let mut out = Vec::with_capacity(2);
        if range.start < Token::MAX {
            out.push((after(range.start), Token::MAX));
        }
        out.push((Token(i64::MIN + 1), range.end));
        out
    }
}

impl Storage for RocksStorage {
    fn write(&self, token: Token, key: &[u8], cell: &Cell, sync: bool) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        let stored_key = key::data_key(token, key);
        self.db
            .merge_cf_opt(self.cf(CF_DATA)?, stored_key, cell.encode(), &opts)?;
        Ok(())
    }

    fn read(&self, token: Token, key: &[u8]) -> Result<Option<Cell>> {
        let stored_key = key::data_key(token, key);
        match self.db.get_pinned_cf(self.cf(CF_DATA)?, stored_key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(CellView::decode(&bytes)?.to_owned_cell())),
        }
    }

    fn scan(&self, range: TokenRange, visit: &mut ScanVisitor<'_>) -> Result<()> {
        let data = self.cf(CF_DATA)?;
        for (first, last) in pieces(range) {
            let from = first.to_ordered_bytes();
            let mut opts = ReadOptions::default();
            // Stop at the first key past the piece (exclusive bound).
            if last < Token::MAX {
                opts.set_iterate_upper_bound(Token(last.0 + 1).to_ordered_bytes().to_vec());
            }
            let iter =
                self.db
                    .iterator_cf_opt(data, opts, IteratorMode::From(&from, Direction::Forward));
            for entry in iter {
                let (stored_key, value) = entry?;
                let Some((token, key)) = key::decode_data_key(&stored_key) else {
                    continue;
                };
                visit(token, key, &value);
            }
        }
        Ok(())
    }

    fn hint_put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_cf(self.cf(CF_HINTS)?, key, value)?;
        Ok(())
    }

    fn hint_scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(to.to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_HINTS)?,
            opts,
            IteratorMode::From(from, Direction::Forward),
        );
        let mut out = Vec::new();
        for entry in iter.take(limit) {
            let (k, v) = entry?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn hint_delete(&self, keys: &[Vec<u8>]) -> Result<()> {
        let hints = self.cf(CF_HINTS)?;
        let mut batch = WriteBatch::default();
        for key in keys {
            batch.delete_cf(hints, key);
        }
        self.db.write(batch)?;
        Ok(())
    }

    fn sync_wal(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_META)?, name)?)
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.put_cf_opt(self.cf(CF_META)?, name, value, &opts)?;
        Ok(())
    }

    fn approximate_size(&self) -> Result<u64> {
        let data = self.cf(CF_DATA)?;
        let mut total = 0u64;
        for property in [
            "rocksdb.total-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ] {
            total += self.db.property_int_value_cf(data, property)?.unwrap_or(0);
        }
        Ok(total)
    }

    fn compact(&self) -> Result<()> {
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        let data = self.cf(CF_DATA)?;
        // Pass 1 folds merge operands into values; pass 2 shows those values
        // to the compaction filter (see CAVEATS).
        for _ in 0..2 {
            self.db
                .compact_range_cf_opt(data, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }
}
