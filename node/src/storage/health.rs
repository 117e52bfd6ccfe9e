//! Whether the local disk accepts writes.
//!
//! When a write to the engine fails with an I/O error (a full disk, a
//! failing device), the node keeps serving reads and refuses writes with
//! an error naming the first cause (RocksDB's later errors only say
//! "Writer has previous error"). The recovery worker
//! ([`run_disk_recovery`]) then retries every [`RECOVERY_INTERVAL`] until
//! the engine accepts writes again, so a node whose disk filled up resumes
//! by itself once space is freed. `/health` and `ringkv status` show the
//! node as unable to write meanwhile.
//!
//! `disk_failure_policy` decides what a failed write does to the node:
//! `best_effort` (default) as above; `stop` shuts the node down, as
//! Cassandra's `stop`, for operators who would rather lose a node than run
//! one that cannot write.
//!
//! Nothing acknowledged is lost: a write is acknowledged only after the
//! engine took it, and a refused write is reported as failed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::engine::Storage;
use super::error::{Result, StorageError};

/// How often an unwritable engine is retried.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// What a failed local write does to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum DiskFailurePolicy {
    /// Keep serving reads, refuse writes, and resume writes once the disk
    /// accepts them again.
    BestEffort,
    /// Shut the node down.
    Stop,
}

impl std::fmt::Display for DiskFailurePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiskFailurePolicy::BestEffort => "best_effort",
            DiskFailurePolicy::Stop => "stop",
        })
    }
}

/// The disk's state as the engine saw it last: `None` when writable,
/// otherwise the cause of the first failed write.
#[derive(Debug)]
pub struct DiskHealth {
    state: watch::Sender<Option<String>>,
}

impl Default for DiskHealth {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(None),
        }
    }
}

impl DiskHealth {
    /// Records a failed write; returns the cause to report (the first one
    /// since the disk was last writable).
    pub fn failed(&self, cause: &str) -> String {
        let mut reported = String::new();
        self.state.send_if_modified(|state| match state {
            Some(first) => {
                reported = first.clone();
                false
            }
            None => {
                tracing::error!(cause, "the disk refuses writes; reads go on, writes are refused until it accepts them again");
                *state = Some(cause.to_owned());
                reported = cause.to_owned();
                true
            }
        });
        reported
    }

    /// Records that writes succeed again.
    pub fn recovered(&self) {
        self.state.send_if_modified(|state| {
            let was = state.take();
            if let Some(cause) = &was {
                tracing::info!(cause, "the disk accepts writes again");
            }
            was.is_some()
        });
    }

    /// Why writes fail, if they do.
    pub fn problem(&self) -> Option<String> {
        self.state.borrow().clone()
    }

    /// Follows changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.state.subscribe()
    }
}

/// While the disk is unwritable, asks the engine to recover every
/// [`RECOVERY_INTERVAL`]; runs until `stop`.
pub async fn run_disk_recovery(
    engine: Arc<dyn Storage>,
    health: Arc<DiskHealth>,
    stop: CancellationToken,
) {
    let mut changes = health.subscribe();
    loop {
        if health.problem().is_none() {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = stop.cancelled() => return,
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(RECOVERY_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
        let engine = engine.clone();
        match super::blocking(move || engine.recover()).await {
            Ok(Ok(())) => health.recovered(),
            Ok(Err(error)) => tracing::debug!(%error, "the disk still refuses writes"),
            Err(error) => tracing::warn!(%error, "disk recovery task failed"),
        }
    }
}
/// Bytes free for unprivileged writers on the file system of `path`.
pub(super) fn free_bytes(path: &Path) -> Result<u64> {
    disk_space(path).map(|(free, _)| free)
}

/// Bytes free for unprivileged writers, and the size, of the file system of
/// `path`.
pub(super) fn disk_space(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| StorageError::Task(format!("bad data path: {e}")))?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `stat` a writable
    // statvfs, both alive for the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(StorageError::Task(format!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    let (free, blocks, size) = (
        stat.f_bavail as u64,
        stat.f_blocks as u64,
        stat.f_frsize as u64,
    );
    Ok((free.saturating_mul(size), blocks.saturating_mul(size)))
}

/// Bytes of write-ahead logs in `path`.
pub(super) fn wal_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
