//! `LocalStore`: the engine plus the durability policy, as the coordinator
//! and the peer service see it.

use std::sync::Arc;

use super::cell::Cell;
use super::dirty::DirtyMap;
use super::durability::{GroupSync, SyncMode};
use super::engine::Storage;
use super::error::{Result, StorageError};
use crate::ring::Token;

/// The node's data, with writes acknowledged per the configured [`SyncMode`].
#[derive(Clone)]
pub struct LocalStore {
    engine: Arc<dyn Storage>,
    sync: SyncPolicy,
    dirty: Option<Arc<DirtyMap>>,
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
        }
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
        self.write(token, key, cell).await?;
        if let Some(dirty) = &self.dirty {
            dirty.mark(token);
        }
        Ok(())
    }

    async fn write(&self, token: Token, key: &[u8], cell: &Cell) -> Result<()> {
        match &self.sync {
            SyncPolicy::Periodic => self.engine.write(token, key, cell, false),
            SyncPolicy::Group(group) => {
                self.engine.write(token, key, cell, false)?;
                group.wait_synced().await
            }
            SyncPolicy::Always => {
                // An fsync blocks for milliseconds: keep it off the runtime's
                // worker threads.
                let (engine, key, cell) = (self.engine.clone(), key.to_vec(), cell.clone());
                tokio::task::spawn_blocking(move || engine.write(token, &key, &cell, true))
                    .await
                    .map_err(|e| StorageError::Task(e.to_string()))?
            }
        }
    }

    /// The stored cell of a key (tombstones and expired values included).
    pub fn read(&self, token: Token, key: &[u8]) -> Result<Option<Cell>> {
        self.engine.read(token, key)
    }
}
