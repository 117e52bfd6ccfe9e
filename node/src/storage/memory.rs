//! An in-memory engine with the same semantics as RocksDB, for unit tests of
//! the layers above storage and for the simulation.
//!
//! With [`MemoryStorage::crash_safe`] it also loses what a crash of RocksDB
//! loses: [`MemoryStorage::crash`] goes back to the state of the last WAL
//! fsync (a synced write, `sync_wal`, or a `meta` write, which RocksDB
//! syncs), dropping unsynced writes, hints and hint deletions.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::batch::BatchLimit;
use super::cell::Cell;
use super::deletions::{self, Deletion, Deletions};
use super::engine::{Deleted, RowsPage, RowsQuery, ScanPage, ScanVisitor, Storage};
use super::error::{Result, StorageError};
use super::{gc, key};
use crate::clock::wall_clock_seconds;
use crate::ring::{Token, TokenRange};

/// Cells in a `BTreeMap` ordered like the RocksDB `data` column family.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    data: Mutex<BTreeMap<Vec<u8>, Cell>>,
    meta: Mutex<BTreeMap<String, Vec<u8>>>,
    hints: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    gc_grace_seconds: u64,
    /// What survives a crash; `None`: crashes are not modelled.
    durable: Mutex<Option<Snapshot>>,
    /// Faults tests switch on.
    pub faults: Faults,
}

/// The store as of the last fsync.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    data: BTreeMap<Vec<u8>, Cell>,
    meta: BTreeMap<String, Vec<u8>>,
    hints: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Failures a [`MemoryStorage`] can be told to produce, as a failing disk
/// would: writes, hint writes or WAL fsyncs fail with an I/O error.
#[derive(Default)]
pub struct Faults {
    pub fail_writes: AtomicBool,
    pub fail_hint_puts: AtomicBool,
    pub fail_sync: AtomicBool,
    /// Runs after every hint scan with the number of hints it found (to
    /// interleave a concurrent writer).
    #[allow(clippy::type_complexity)]
    pub after_hint_scan: Mutex<Option<Box<dyn Fn(usize) + Send + Sync>>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("fail_writes", &self.fail_writes)
            .field("fail_hint_puts", &self.fail_hint_puts)
            .field("fail_sync", &self.fail_sync)
            .finish_non_exhaustive()
    }
}

fn injected(what: &str, on: &AtomicBool) -> Result<()> {
    if on.load(Ordering::SeqCst) {
        return Err(StorageError::Task(format!("injected {what} failure (EIO)")));
    }
    Ok(())
}

impl MemoryStorage {
    /// An empty store whose `compact` purges with the given `gc_grace`.
    pub fn new(gc_grace_seconds: u64) -> Self {
        Self {
            gc_grace_seconds,
            ..Self::default()
        }
    }

    /// An empty store that models crashes (see the module docs).
    pub fn crash_safe(gc_grace_seconds: u64) -> Self {
        let store = Self::new(gc_grace_seconds);
        if let Ok(mut durable) = store.durable.lock() {
            *durable = Some(Snapshot::default());
        }
        store
    }

    /// The machine crashed: what was not fsynced is gone.
    pub fn crash(&self) -> Result<()> {
        let durable = self.durable.lock().map_err(poisoned)?;
        if let Some(snapshot) = durable.as_ref() {
            *self.data.lock().map_err(poisoned)? = snapshot.data.clone();
            *self.meta.lock().map_err(poisoned)? = snapshot.meta.clone();
            *self.hints.lock().map_err(poisoned)? = snapshot.hints.clone();
        }
        Ok(())
    }

    /// Everything written so far survives a crash.
    fn synced(&self) -> Result<()> {
        let mut durable = self.durable.lock().map_err(poisoned)?;
        if let Some(snapshot) = durable.as_mut() {
            snapshot
                .data
                .clone_from(&*self.data.lock().map_err(poisoned)?);
            snapshot
                .meta
                .clone_from(&*self.meta.lock().map_err(poisoned)?);
            snapshot
                .hints
                .clone_from(&*self.hints.lock().map_err(poisoned)?);
        }
        Ok(())
    }
}

/// The partition's stored deletions; an undecodable entry counts as none
/// (this engine only holds what its own writes decoded).
fn stored_deletions(
    data: &BTreeMap<Vec<u8>, Cell>,
    token: Token,
    partition: &[u8],
) -> Option<Deletions> {
    let held = data.get(&key::data_key(token, &key::deletions_key(partition)))?;
    Deletions::from_cell(held).ok()
}

fn poisoned<T>(_: T) -> StorageError {
    StorageError::Task("memory storage lock poisoned".into())
}

impl Storage for MemoryStorage {
    fn write_all(&self, token: Token, entries: &[(&[u8], &Cell)], sync: bool) -> Result<()> {
        injected("write", &self.faults.fail_writes)?;
        {
            let mut data = self.data.lock().map_err(poisoned)?;
            let plan = deletions::plan(entries, |partition| {
                Ok(stored_deletions(&data, token, partition))
            })?;
            if let Some(incoming) = &plan.incoming {
                let partition = entries
                    .first()
                    .and_then(|(key, _)| key::split_row_key(key))
                    .map_or(&[][..], |r| r.partition);
                let mut doomed = Vec::new();
                for (from, to) in deletions::shadowed_spans(token, partition, incoming) {
                    if from >= to {
                        continue;
                    }
                    for (row, held) in data.range(from..to) {
                        if deletions::shadowed_row(incoming, row, &held.encode())? {
                            doomed.push(row.clone());
                        }
                    }
                }
                for row in doomed {
                    data.remove(&row);
                }
            }
            for ((key, cell), keep) in entries.iter().zip(&plan.keep) {
                if !*keep {
                    continue;
                }
                let stored = key::data_key(token, key);
                let merged = match data.remove(&stored) {
                    Some(held) => deletions::merge_entry(key, held, (*cell).clone()),
                    None => deletions::merge_entry(key, (*cell).clone(), (*cell).clone()),
                };
                data.insert(stored, merged);
            }
        }
        if sync { self.synced() } else { Ok(()) }
    }

    fn partition_size(&self, token: Token, partition: &[u8]) -> Result<u64> {
        let data = self.data.lock().map_err(poisoned)?;
        let (from, to) = key::row_bounds(token, partition, b"", None);
        let to = to.max(from.clone());
        Ok(data
            .range(from..to)
            .map(|(key, cell)| (key.len() + cell.encoded_len()) as u64)
            .sum())
    }

    fn read(&self, token: Token, key: &[u8]) -> Result<Option<Cell>> {
        let data = self.data.lock().map_err(poisoned)?;
        if let Some(cell) = data.get(&key::data_key(token, key)) {
            return Ok(Some(cell.clone()));
        }
        // As RocksStorage: a missing row a deletion removed reads as its
        // tombstone.
        Ok(match key::split_row_key(key) {
            Some(row) if row.kind == key::KIND_ROW => stored_deletions(&data, token, row.partition)
                .and_then(|d| d.covering(row.sort))
                .map(Deletion::tombstone),
            _ => None,
        })
    }

    fn query(&self, token: Token, query: &RowsQuery) -> Result<RowsPage> {
        let data = self.data.lock().map_err(poisoned)?;
        let partition = &query.partition;
        let deletions = stored_deletions(&data, token, partition)
            .map(|d| d.overlapping(&query.start, query.end.as_deref()))
            .filter(|d| !d.is_empty());
        let (from, to) = key::row_bounds(token, partition, &query.start, query.end.as_deref());
        // An empty range (its end before its start) holds nothing.
        let to = to.max(from.clone());
        let range = data.range(from..to);
        let rows: Box<dyn Iterator<Item = (&Vec<u8>, &Cell)>> = if query.reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut page = RowsPage {
            deletions,
            ..RowsPage::default()
        };
        let mut bytes = 0;
        for (stored, cell) in rows {
            let Some(row) = key::decode_data_key(stored).and_then(|(_, k)| key::split_row_key(k))
            else {
                continue;
            };
            let len = row.sort.len() + cell.encoded_len();
            if !query.limit.admits(page.rows.len(), bytes, len) {
                page.more = true;
                break;
            }
            bytes += len;
            page.rows
                .push((bytes::Bytes::copy_from_slice(row.sort), cell.clone()));
        }
        Ok(page)
    }

    fn scan(&self, range: TokenRange, visit: &mut ScanVisitor<'_>) -> Result<()> {
        let data = self.data.lock().map_err(poisoned)?;
        for (first, last) in super::key::pieces(range) {
            let from = first.to_ordered_bytes().to_vec();
            for (stored, cell) in data.range(from..) {
                let Some((token, key)) = key::decode_data_key(stored) else {
                    continue;
                };
                if token > last {
                    break;
                }
                visit(token, key, &cell.encode());
            }
        }
        Ok(())
    }

    fn scan_page(
        &self,
        range: TokenRange,
        after: Option<&[u8]>,
        limit: BatchLimit,
    ) -> Result<ScanPage> {
        let starts = key::page_starts(range, after)
            .ok_or_else(|| StorageError::Task("scan cursor outside its range".into()))?;
        let data = self.data.lock().map_err(poisoned)?;
        let mut page = ScanPage::default();
        let mut bytes = 0usize;
        for (from, last) in starts {
            for (stored, cell) in data.range(from..) {
                let Some((token, key)) = key::decode_data_key(stored) else {
                    continue;
                };
                if token > last {
                    break;
                }
                let encoded = cell.encode();
                let len = key.len() + encoded.len();
                if !limit.admits(page.entries.len(), bytes, len) {
                    page.more = true;
                    return Ok(page);
                }
                bytes += len;
                page.entries.push((key.to_vec(), encoded));
            }
        }
        Ok(page)
    }

    fn delete_range_if(
        &self,
        range: TokenRange,
        decide: &dyn Fn() -> bool,
    ) -> Result<Option<Deleted>> {
        // Writes take this lock too: none lands between the decision and
        // the delete.
        let mut data = self.data.lock().map_err(poisoned)?;
        if !decide() {
            return Ok(None);
        }
        let mut doomed = Vec::new();
        for (first, last) in super::key::pieces(range) {
            for stored in data
                .range(first.to_ordered_bytes().to_vec()..)
                .map(|(k, _)| k)
            {
                match key::decode_data_key(stored) {
                    Some((token, _)) if token > last => break,
                    _ => doomed.push(stored.clone()),
                }
            }
        }
        let mut deleted = Deleted::default();
        for stored in doomed {
            if let Some(cell) = data.remove(&stored) {
                deleted.keys += 1;
                deleted.bytes +=
                    (stored.len() - key::TOKEN_PREFIX_LEN + cell.encode().len()) as u64;
            }
        }
        Ok(Some(deleted))
    }

    fn hint_put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        injected("hint write", &self.faults.fail_hint_puts)?;
        self.hints
            .lock()
            .map_err(poisoned)?
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn hint_scan(
        &self,
        from: &[u8],
        to: &[u8],
        limit: BatchLimit,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let found = {
            let hints = self.hints.lock().map_err(poisoned)?;
            let entries = hints
                .range(from.to_vec()..to.to_vec())
                .map(|(k, v)| Ok::<_, StorageError>((k.clone(), v.clone())));
            limit.fill(entries, |(k, v)| k.len() + v.len())?
        };
        if let Some(hook) = self
            .faults
            .after_hint_scan
            .lock()
            .map_err(poisoned)?
            .as_ref()
        {
            hook(found.len());
        }
        Ok(found)
    }

    fn hint_delete(&self, keys: &[Vec<u8>]) -> Result<()> {
        let mut hints = self.hints.lock().map_err(poisoned)?;
        for key in keys {
            hints.remove(key);
        }
        Ok(())
    }

    fn sync_wal(&self) -> Result<()> {
        injected("fsync", &self.faults.fail_sync)?;
        self.synced()
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.lock().map_err(poisoned)?.get(name).cloned())
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.meta
            .lock()
            .map_err(poisoned)?
            .insert(name.to_owned(), value.to_vec());
        self.synced()
    }

    fn approximate_size(&self) -> Result<u64> {
        let data = self.data.lock().map_err(poisoned)?;
        Ok(data
            .iter()
            .map(|(k, c)| (k.len() + c.encoded_len()) as u64)
            .sum())
    }

    fn compact(&self) -> Result<()> {
        let now = wall_clock_seconds();
        self.data
            .lock()
            .map_err(poisoned)?
            .retain(|_, cell| !gc::is_purgeable(cell, now, self.gc_grace_seconds));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn cell(ts: i64) -> Cell {
        Cell::live(ts, Bytes::from(format!("v{ts}")), None)
    }

    /// What a crash of RocksDB keeps: synced writes, writes before a WAL
    /// fsync, and `meta`; it loses unsynced writes and hints.
    #[test]
    fn a_crash_keeps_what_was_fsynced_and_loses_the_rest() {
        let store = MemoryStorage::crash_safe(60);
        let t = Token(1);
        store.write(t, b"synced", &cell(1), true).expect("write");
        store
            .write(t, b"before-fsync", &cell(2), false)
            .expect("write");
        store.hint_put(b"hint-before", b"h").expect("hint");
        store.sync_wal().expect("fsync");
        store.meta_put("node_id", b"n1").expect("meta");
        store.write(t, b"unsynced", &cell(3), false).expect("write");
        store.hint_put(b"hint-after", b"h").expect("hint");
        store.crash().expect("crash");
        assert_eq!(store.read(t, b"synced").expect("read"), Some(cell(1)));
        assert_eq!(store.read(t, b"before-fsync").expect("read"), Some(cell(2)));
        assert_eq!(store.read(t, b"unsynced").expect("read"), None);
        let hints = store
            .hint_scan(b"", b"\xff", BatchLimit::default())
            .expect("scan");
        assert_eq!(hints.len(), 1, "the hint stored after the fsync is gone");
        assert_eq!(
            store.meta_get("node_id").expect("meta"),
            Some(b"n1".to_vec())
        );
        store.write(t, b"lost", &cell(4), false).expect("write");
        store.crash().expect("crash");
        assert_eq!(store.read(t, b"lost").expect("read"), None);
        assert_eq!(store.read(t, b"unsynced").expect("read"), None);
    }

    #[test]
    fn without_crash_safety_a_crash_changes_nothing() {
        let store = MemoryStorage::new(60);
        store.write(Token(1), b"k", &cell(1), false).expect("write");
        store.crash().expect("crash");
        assert_eq!(store.read(Token(1), b"k").expect("read"), Some(cell(1)));
    }
}
