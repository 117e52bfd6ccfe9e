//! `LocalStore`: the engine plus the durability policy, as the coordinator
//! and the peer service see it.

use std::sync::Arc;

use super::cell::Cell;
use super::dirty::DirtyMap;
use super::durability::{GroupSync, SyncMode};
use super::engine::Storage;
use super::error::Result;
use crate::ring::Token;

/// The node's data, with writes acknowledged per the configured [`SyncMode`].
#[derive(Clone)]
pub struct LocalStore {
    engine: Arc<dyn Storage>,
    sync: SyncPolicy,
    dirty: Option<Arc<DirtyMap>>,
    guard: Option<Arc<super::guard::PartitionGuard>>,
}

#[derive(Clone)]
enum SyncPolicy {
    Always,
    Group(Arc<GroupSync>),
    Periodic,
}

impl LocalStore {
    /// Writes fsync per `mode`; `group` must be given for [`SyncMode::Group`]
    /// (and its `run` loop started by the caller).
    pub fn new(engine: Arc<dyn Storage>, mode: SyncMode, group: Option<Arc<GroupSync>>) -> Self {
        let sync = match (mode, group) {
            (SyncMode::Always, _) => SyncPolicy::Always,
            (SyncMode::Group, Some(group)) => SyncPolicy::Group(group),
            (SyncMode::Group, None) | (SyncMode::Periodic, _) => SyncPolicy::Periodic,
        };
        Self {
            engine,
            sync,
            dirty: None,
            guard: None,
        }
    }

    /// Checks client writes against the partition-size guardrail (see
    /// `guard`).
    pub fn guarded(mut self, guard: Arc<super::guard::PartitionGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Records every applied write in `dirty` (for Merkle rehashing).
    pub fn tracking(mut self, dirty: Arc<DirtyMap>) -> Self {
        self.dirty = Some(dirty);
        self
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Arc<dyn Storage> {
        &self.engine
    }

    /// Applies a cell (LWW) and returns once it is as durable as the policy
    /// promises.
    pub async fn apply(&self, token: Token, key: &[u8], cell: &Cell) -> Result<()> {
        self.apply_entries(token, &[(key, cell)]).await
    }

    /// Applies the cells of one partition in one atomic write (see
    /// [`Storage::write_all`]) and returns once they are as durable as the
    /// policy promises.
    ///
    /// The Merkle dirty mark is set as soon as the engine holds the cells,
    /// before waiting for an fsync: a caller that gives up during the wait
    /// (a coordinator timeout, a reset stream) drops this future, and the
    /// stored cells must still be rehashed.
    pub async fn apply_entries(&self, token: Token, entries: &[(&[u8], &Cell)]) -> Result<()> {
        match &self.sync {
            SyncPolicy::Periodic => {
                self.engine.write_all(token, entries, false)?;
                self.mark(token);
                Ok(())
            }
            SyncPolicy::Group(group) => {
                self.engine.write_all(token, entries, false)?;
                self.mark(token);
                group.wait_synced().await
            }
            SyncPolicy::Always => {
                // An fsync blocks for milliseconds: keep it off the runtime's
                // worker threads. The blocking task runs to its end even if
                // this future is dropped, so it marks the bucket itself.
                let engine = self.engine.clone();
                let owned: Vec<(Vec<u8>, Cell)> = entries
                    .iter()
                    .map(|(key, cell)| (key.to_vec(), (*cell).clone()))
                    .collect();
                let dirty = self.dirty.clone();
                super::blocking(move || {
                    let written = engine.write_all(token, &super::mutation::borrowed(&owned), true);
                    if written.is_ok()
                        && let Some(dirty) = dirty
                    {
                        dirty.mark(token);
                    }
                    written
                })
                .await?
            }
        }
    }

    /// Applies many cells (LWW), then waits once for all of them to be as
    /// durable as the policy promises: a batch (repair, hint replay) pays
    /// one fsync, not one per cell. Consecutive entries of one partition
    /// are written together, atomically (a replayed partition batch lands
    /// whole).
    pub async fn apply_all<K: AsRef<[u8]>>(&self, entries: &[(K, Cell)]) -> Result<()> {
        let mut rest = entries;
        while let Some((first, _)) = rest.first() {
            let first = first.as_ref();
            let Some(row) = super::key::split_row_key(first) else {
                return Err(super::StorageError::Task(format!(
                    "{} bytes that are not a row key",
                    first.len()
                )));
            };
            let run = rest
                .iter()
                .take_while(|(key, _)| {
                    super::key::split_row_key(key.as_ref())
                        .is_some_and(|other| other.partition == row.partition)
                })
                .count()
                .max(1);
            let (group, after) = rest.split_at(run);
            let token = Token::of(row.partition);
            self.engine
                .write_all(token, &super::mutation::borrowed(group), false)?;
            self.mark(token);
            rest = after;
        }
        self.make_durable().await
    }

    fn mark(&self, token: Token) {
        if let Some(dirty) = &self.dirty {
            dirty.mark(token);
        }
    }

    /// Waits until everything written so far is as durable as the policy
    /// promises for a write (for writes that bypass [`apply`](Self::apply),
    /// such as hints).
    pub async fn make_durable(&self) -> Result<()> {
        match &self.sync {
            SyncPolicy::Periodic => Ok(()),
            SyncPolicy::Group(group) => group.wait_synced().await,
            SyncPolicy::Always => super::durability::sync_blocking(&self.engine).await,
        }
    }

    /// A page of a partition's rows (see [`Storage::query`]), read on the
    /// blocking pool: a page may walk thousands of rows.
    pub async fn query(&self, token: Token, query: super::RowsQuery) -> Result<super::RowsPage> {
        let engine = self.engine.clone();
        super::blocking(move || engine.query(token, &query)).await?
    }

    /// The stored cell of a key (tombstones and expired values included).
    pub fn read(&self, token: Token, key: &[u8]) -> Result<Option<Cell>> {
        self.engine.read(token, key)
    }

    /// Applies `mutation` as [`apply_entries`](Self::apply_entries) does;
    /// a client's write (not `mode.repair`) is first checked against the
    /// partition-size guardrail. With `mode.report_newer`, it first reads
    /// what the store holds for its rows
    /// and returns the newest timestamp of a held row that the mutation's
    /// cell does not supersede (the write loses to it). A coordinator that
    /// stamped the write itself then writes again above it, so that a
    /// write is never stamped below one a replica already held when it
    /// arrived, whatever the clocks say.
    pub async fn apply_reporting(
        &self,
        mutation: &super::Mutation,
        mode: super::WriteMode,
    ) -> Result<Option<crate::clock::Timestamp>> {
        // A write that puts a row (not a deletions entry, not a
        // tombstone) is checked against the guardrail.
        let puts_into = || {
            mutation.entries().iter().find_map(|(key, cell)| {
                super::key::split_row_key(key)
                    .filter(|row| row.kind == super::key::KIND_ROW && !cell.tombstone)
                    .map(|row| row.partition)
            })
        };
        if !mode.repair
            && let Some(guard) = &self.guard
            && let Some(partition) = puts_into()
        {
            guard.check(self.engine.as_ref(), mutation.token, partition)?;
        }
        let mut newer = None;
        if mode.report_newer {
            for (key, cell) in mutation.entries() {
                // Deletions merge by union: nothing "newer" to report.
                if super::deletions::is_deletions_key(key) {
                    continue;
                }
                let held = self
                    .read(mutation.token, key)?
                    .filter(|held| held != cell && !crate::storage::lww::supersedes(cell, held))
                    .map(|held| held.timestamp);
                newer = newer.max(held);
            }
        }
        self.apply_entries(mutation.token, &mutation.borrowed())
            .await?;
        Ok(newer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use bytes::Bytes;
    use std::time::Duration;

    /// Regression: a write whose caller gave up while it waited for the
    /// group fsync was stored but never marked dirty, so its Merkle leaf
    /// kept the old hash and repair never saw the cell.
    #[tokio::test]
    async fn a_write_dropped_while_waiting_for_its_fsync_is_still_marked_dirty() {
        let engine: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
        // No syncer runs: a group-mode write waits for its fsync forever.
        let group = GroupSync::new(Duration::from_millis(1));
        let dirty = Arc::new(DirtyMap::default());
        let store =
            LocalStore::new(engine.clone(), SyncMode::Group, Some(group)).tracking(dirty.clone());
        let whole = crate::ring::TokenRange::new(Token(0), Token(0));
        let before = dirty.version(whole);
        let token = Token::of(b"k");
        let cell = Cell::live(1, Bytes::from_static(b"v"), None);
        let gave_up =
            tokio::time::timeout(Duration::from_millis(50), store.apply(token, b"k", &cell)).await;
        assert!(
            gave_up.is_err(),
            "the write was still waiting for its fsync"
        );
        assert!(engine.read(token, b"k").expect("read").is_some(), "stored");
        assert!(dirty.version(whole) > before, "and marked for rehashing");
    }
}
