//! An in-memory engine with the same semantics as RocksDB, for unit tests of
//! the layers above storage.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::batch::BatchLimit;
use super::cell::Cell;
use super::engine::{ScanVisitor, Storage};
use super::error::{Result, StorageError};
use super::{gc, key, lww};
use crate::clock::wall_clock_seconds;
use crate::ring::{Token, TokenRange};

/// Cells in a `BTreeMap` ordered like the RocksDB `data` column family.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    data: Mutex<BTreeMap<Vec<u8>, Cell>>,
    meta: Mutex<BTreeMap<String, Vec<u8>>>,
    hints: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    gc_grace_seconds: u64,
    /// Faults tests switch on.
    pub faults: Faults,
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
}

fn poisoned<T>(_: T) -> StorageError {
    StorageError::Task("memory storage lock poisoned".into())
}

impl Storage for MemoryStorage {
    fn write(&self, token: Token, key: &[u8], cell: &Cell, _sync: bool) -> Result<()> {
        injected("write", &self.faults.fail_writes)?;
        let mut data = self.data.lock().map_err(poisoned)?;
        let slot = data
            .entry(key::data_key(token, key))
            .or_insert_with(|| cell.clone());
        if lww::supersedes(cell, slot) {
            *slot = cell.clone();
        }
        Ok(())
    }

    fn read(&self, token: Token, key: &[u8]) -> Result<Option<Cell>> {
        let data = self.data.lock().map_err(poisoned)?;
        Ok(data.get(&key::data_key(token, key)).cloned())
    }

    fn scan(&self, range: TokenRange, visit: &mut ScanVisitor<'_>) -> Result<()> {
        let data = self.data.lock().map_err(poisoned)?;
        for (first, last) in super::rocks::pieces(range) {
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
        injected("fsync", &self.faults.fail_sync)
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.lock().map_err(poisoned)?.get(name).cloned())
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.meta
            .lock()
            .map_err(poisoned)?
            .insert(name.to_owned(), value.to_vec());
        Ok(())
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
