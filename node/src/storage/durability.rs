//! When an acknowledged write is safe from a power loss.
//!
//! Every write is in RocksDB's write-ahead log (handed to the OS) before the
//! node acknowledges it, so a crash of the *process* never loses an
//! acknowledged write. What differs between modes is when the log is
//! fsynced, which is what protects against a crash of the *machine*:
//!
//! - `always`: each write fsyncs before it is acknowledged. Nothing
//!   acknowledged is lost; each write pays an fsync (RocksDB batches
//!   concurrent ones).
//! - `group`: a write waits for the next shared fsync, which starts
//!   `commitlog_sync_group_window_ms` after the first waiter arrives. Nothing
//!   acknowledged is lost; writes pay up to one window plus one fsync, shared
//!   by everything that arrived in the window.
//! - `periodic` (default): writes are acknowledged at once and the log is
//!   fsynced every `commitlog_sync_period_ms`. A power loss of a replica can
//!   lose what it acknowledged in the last period; with N > 1 the other
//!   replicas still hold those writes unless they lose power too.
//!
//! The names follow Cassandra's `commitlog_sync`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::engine::Storage;
use super::error::{Result, StorageError};

/// When the write-ahead log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Fsync before acknowledging each write.
    Always,
    /// Acknowledge after a shared fsync that covers a short window of writes.
    Group,
    /// Acknowledge at once; fsync on a fixed period.
    Periodic,
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncMode::Always => "always",
            SyncMode::Group => "group",
            SyncMode::Periodic => "periodic",
        })
    }
}

/// Progress of the group syncer.
#[derive(Debug, Clone, Default)]
struct SyncState {
    /// Number of the last fsync that finished.
    completed: u64,
    /// After a failed fsync N: (N + 1, why). Writers waiting for fsync N
    /// or N + 1 are told their write is not durable (it is not
    /// acknowledged): a writer waiting for N + 1 may have appended before
    /// N started, and after a failed writeback the kernel may have dropped
    /// its pages, so N + 1 succeeding proves nothing for it. Later writers
    /// are synced afresh, so writes resume once the disk recovers.
    failed: Option<(u64, String)>,
}

/// Group commit: writers wait for an fsync that started after their write.
///
/// Fsyncs are numbered. A writer reads the number of fsyncs started so far,
/// `s`; the next one to start, `s + 1`, begins after the writer's WAL append
/// and so covers it. The writer waits until fsync `s + 1` has completed. If
/// the syncer starts `s + 1` between the append and the read, the writer
/// waits for `s + 2` instead: later, never wrong.
#[derive(Debug)]
pub struct GroupSync {
    started: AtomicU64,
    wake: Notify,
    state: watch::Sender<SyncState>,
    window: Duration,
}

impl GroupSync {
    /// A syncer that waits `window` after the first waiter before fsyncing.
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            started: AtomicU64::new(0),
            wake: Notify::new(),
            state: watch::Sender::new(SyncState::default()),
            window,
        })
    }

    /// Waits until every write that returned before this call is fsynced.
    pub async fn wait_synced(&self) -> Result<()> {
        let needed = self.started.load(Ordering::SeqCst) + 1;
        let mut state = self.state.subscribe();
        self.wake.notify_one();
        let state = state
            .wait_for(|s| s.completed >= needed)
            .await
            .map_err(|_| StorageError::ShuttingDown)?;
        match &state.failed {
            Some((round, error)) if *round >= needed => {
                Err(StorageError::SyncFailed(error.clone()))
            }
            _ => Ok(()),
        }
    }

    /// The syncer loop; runs until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, storage: Arc<dyn Storage>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stop.cancelled() => break,
            }
            tokio::time::sleep(self.window).await;
            let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            let result = sync_blocking(&storage).await;
            self.state.send_modify(|s| {
                s.completed = number;
                if let Err(error) = result {
                    tracing::error!(%error, "write-ahead log fsync failed");
                    s.failed = Some((number + 1, error.to_string()));
                }
            });
        }
    }
}

/// Fsyncs the WAL on a blocking thread.
pub async fn sync_blocking(storage: &Arc<dyn Storage>) -> Result<()> {
    let storage = storage.clone();
    super::blocking(move || storage.sync_wal()).await?
}

/// Fsyncs the WAL every `period` until `stop`, then once more.
pub async fn run_periodic_sync(
    storage: Arc<dyn Storage>,
    period: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        }
        if let Err(error) = sync_blocking(&storage).await {
            tracing::error!(%error, "periodic write-ahead log fsync failed");
        }
    }
    if let Err(error) = sync_blocking(&storage).await {
        tracing::error!(%error, "final write-ahead log fsync failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[tokio::test(start_paused = true)]
    async fn group_waiters_are_released_by_one_fsync() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
        let group = GroupSync::new(Duration::from_millis(5));
        let stop = CancellationToken::new();
        let worker = tokio::spawn(group.clone().run(storage, stop.clone()));
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let group = group.clone();
                tokio::spawn(async move { group.wait_synced().await })
            })
            .collect();
        for waiter in waiters {
            assert!(waiter.await.is_ok_and(|r| r.is_ok()));
        }
        let syncs = group.started.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&syncs),
            "10 concurrent writers shared {syncs} fsyncs"
        );
        stop.cancel();
        assert!(worker.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fsync_fails_its_writers_and_later_ones_succeed_once_it_works() {
        let disk = Arc::new(MemoryStorage::default());
        disk.faults.fail_sync.store(true, Ordering::SeqCst);
        let disk_faults = &disk.faults.fail_sync;
        let storage: Arc<dyn Storage> = disk.clone();
        let group = GroupSync::new(Duration::from_millis(5));
        let stop = CancellationToken::new();
        let worker = tokio::spawn(group.clone().run(storage, stop.clone()));
        assert!(matches!(
            group.wait_synced().await,
            Err(StorageError::SyncFailed(_))
        ));
        assert!(matches!(
            group.wait_synced().await,
            Err(StorageError::SyncFailed(_))
        ));
        // The disk recovers. The writer waiting for the fsync right after
        // a failed one is still refused (its data may have been in the
        // failed writeback); writers after it are synced.
        disk_faults.store(false, Ordering::SeqCst);
        assert!(matches!(
            group.wait_synced().await,
            Err(StorageError::SyncFailed(_))
        ));
        assert!(group.wait_synced().await.is_ok());
        assert!(group.wait_synced().await.is_ok());
        stop.cancel();
        assert!(worker.await.is_ok());
    }
}
