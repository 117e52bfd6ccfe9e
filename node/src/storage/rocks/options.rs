//! How ringkv opens RocksDB: its tuning ([`RocksConfig`]), the column
//! families and their options, the LWW merge operator and the gc
//! compaction filter (see the parent module's docs).

use std::path::Path;

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, DataBlockIndexType,
    MergeOperands, Options, WriteBufferManager,
};

use crate::clock::wall_clock_seconds;
use crate::storage::cell::CellView;
use crate::storage::deletions::{self, Deletions};
use crate::storage::error::Result;
use crate::storage::{gc, key, lww};

/// Cells, keyed by token ++ row key (storage format 2).
pub(super) const CF_DATA: &str = "rows";
/// Cells keyed by token ++ plain key, as storage format 1 kept them: only
/// in a directory written by an older release, until
/// [`RocksStorage::upgrade_format`](super::RocksStorage) has moved them.
pub(super) const CF_LEGACY_DATA: &str = "data";
pub(super) const CF_HINTS: &str = "hints";
pub(super) const CF_META: &str = "meta";

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
    /// Most memory all memtables (write buffers) take together; past it
    /// RocksDB flushes, and stalls writes until flushes catch up.
    pub memtable_bytes: usize,
    /// Flush and compaction threads; 0: one per core, 2 to 8.
    pub background_jobs: usize,
    /// A whole-key Bloom filter in each memtable of the data.
    pub memtable_bloom: bool,
    /// A hash index in each data block beside the binary one.
    pub block_hash_index: bool,
    /// Most files RocksDB keeps open (its table files); -1: no bound.
    pub max_open_files: i32,
}

impl Default for RocksConfig {
    fn default() -> Self {
        Self {
            gc_grace_seconds: gc::DEFAULT_GC_GRACE_SECONDS,
            block_cache_bytes: 64 << 20,
            memtable_bytes: 64 << 20,
            background_jobs: 0,
            memtable_bloom: false,
            block_hash_index: false,
            max_open_files: -1,
        }
    }
}

/// Opens the database at `path` with ringkv's options.
pub(super) fn open_db(path: &Path, config: &RocksConfig, read_only: bool) -> Result<DB> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    db_opts.increase_parallelism(i32::try_from(cores).unwrap_or(2));
    let jobs = match config.background_jobs {
        0 => cores.clamp(2, 8),
        jobs => jobs,
    };
    db_opts.set_max_background_jobs(i32::try_from(jobs).unwrap_or(2));
    db_opts.set_max_open_files(config.max_open_files);
    db_opts.set_keep_log_file_num(4);
    db_opts.set_max_log_file_size(16 << 20);
    db_opts.set_bytes_per_sync(1 << 20);

    // Memory: the block cache (blocks, and the index and filter blocks of
    // open tables) and every memtable are bounded by the two settings.
    let memtables = WriteBufferManager::new_write_buffer_manager(config.memtable_bytes, true);
    db_opts.set_write_buffer_manager(&memtables);
    let write_buffer = (config.memtable_bytes / 4).max(1 << 20);
    let cache = Cache::new_lru_cache(config.block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    if config.block_hash_index {
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
        table.set_data_block_hash_ratio(0.75);
    }

    let data = data_options(config, &table, write_buffer, lww_merge);
    let mut hints = Options::default();
    hints.set_compression_type(DBCompressionType::Lz4);
    hints.set_write_buffer_size(write_buffer);
    let mut meta = Options::default();
    meta.set_write_buffer_size(1 << 20);

    // An older release's cells, still to be moved (see `upgrade_format`),
    // open with options of their own built the same way: their merge
    // operands fold by the same rule.
    let legacy = DB::list_cf(&db_opts, path)
        .unwrap_or_default()
        .iter()
        .any(|name| name == CF_LEGACY_DATA);
    let mut families = Vec::with_capacity(4);
    if legacy {
        // Plain keys: no deletions entries to recognise.
        let legacy = data_options(config, &table, write_buffer, plain_lww_merge);
        families.push(ColumnFamilyDescriptor::new(CF_LEGACY_DATA, legacy));
    }
    families.extend([
        ColumnFamilyDescriptor::new(CF_DATA, data),
        ColumnFamilyDescriptor::new(CF_HINTS, hints),
        ColumnFamilyDescriptor::new(CF_META, meta),
    ]);
    Ok(if read_only {
        DB::open_cf_descriptors_read_only(&db_opts, path, families, false)?
    } else {
        DB::open_cf_descriptors(&db_opts, path, families)?
    })
}

/// The options of a family of cells: the LWW merge operator, the gc
/// compaction filter, and the shared table settings.
fn data_options(
    config: &RocksConfig,
    table: &BlockBasedOptions,
    write_buffer: usize,
    merge: MergeFn,
) -> Options {
    let mut data = Options::default();
    data.set_block_based_table_factory(table);
    data.set_compression_type(DBCompressionType::Lz4);
    data.set_write_buffer_size(write_buffer);
    data.set_merge_operator_associative("ringkv.lww.v1", merge);
    // A key overwritten many times between flushes would otherwise make
    // every read fold all its operands; past this many, the write folds
    // them in the memtable instead.
    data.set_max_successive_merges(MAX_SUCCESSIVE_MERGES);
    let grace = config.gc_grace_seconds;
    data.set_compaction_filter(
        "ringkv.gc.v1",
        move |_level: u32, _key: &[u8], value: &[u8]| match CellView::decode(value) {
            Ok(cell) if gc::is_purgeable(&cell, wall_clock_seconds(), grace) => Decision::Remove,
            _ => Decision::Keep,
        },
    );
    data.set_periodic_compaction_seconds(PERIODIC_COMPACTION_SECONDS);
    if config.memtable_bloom {
        // Every write is a merge, so a point read never stops at the first
        // memtable that holds its key: it looks in all of them, then in
        // every table level. The filter lets it skip the memtables that
        // lack the key (2% of the write buffer: ~10 bits per entry).
        data.set_memtable_prefix_bloom_ratio(0.02);
        data.set_memtable_whole_key_filtering(true);
    }

    data
}

/// The merge operator: for a partition's deletions entry their union, for
/// anything else the LWW winner among the stored value and operands.
/// Undecodable versions are skipped (they cannot win); if none decodes the
/// merge fails and RocksDB reports corruption for the key.
fn lww_merge(key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    if key::decode_data_key(key).is_some_and(|(_, row)| deletions::is_deletions_key(row)) {
        return union_merge(key, existing, operands);
    }
    plain_lww_merge(key, existing, operands)
}

/// A merge operator.
type MergeFn = fn(&[u8], Option<&[u8]>, &MergeOperands) -> Option<Vec<u8>>;

/// The LWW winner among the stored value and operands (see [`lww_merge`]).
fn plain_lww_merge(
    key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
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

/// The union of a deletions entry's versions (see `deletions`).
fn union_merge(key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut union: Option<Deletions> = None;
    for bytes in existing.into_iter().chain(operands) {
        match deletions::decode_stored(bytes) {
            Ok(found) => union.get_or_insert_with(Deletions::default).merge(&found),
            Err(error) => {
                tracing::error!(key = ?key, %error, "skipping a corrupt deletions entry in merge")
            }
        }
    }
    Some(union?.to_cell()?.encode())
}
