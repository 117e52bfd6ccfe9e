//! `node_stats`: what one node is doing and holding right now: work in
//! flight and queued, hints pending by target, the storage engine, repair,
//! the process. What the shell's `tpstats`, `hints`, `compactionstats` and
//! `info` show.

use ringkv_proto::v1 as pb;

use crate::client::Client;
use crate::error::Result;

/// A snapshot of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    /// Permanent node id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// ringkv version.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// The gossip generation: the node's first start at its gossip address
    /// (Unix microseconds); a restart there keeps it.
    pub generation: u64,
    /// Approximate bytes of data stored.
    pub load_bytes: u64,
    /// Resident memory of the process.
    pub rss_bytes: u64,
    /// Largest resident memory so far.
    pub peak_rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The process's limit of open file descriptors.
    pub max_fds: u64,
    /// Kinds of work, with what is under way and waiting.
    pub pools: Vec<WorkPool>,
    /// Hints held, by the node they are for.
    pub hints: Vec<HintsPending>,
    /// The storage engine.
    pub storage: StorageStats,
    /// Anti-entropy repair.
    pub repair: RepairState,
    /// The node's named tasks, sorted by name.
    pub workers: Vec<Worker>,
}

/// The tasks of one name on a node (a background worker, the connections
/// of a port, work left by requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// What the tasks do.
    pub name: String,
    /// In one word: `running`, `failed` (none runs and the last to end
    /// failed), `done` or `idle` (none ran).
    pub state: String,
    /// Under way.
    pub running: u64,
    /// Ended normally since the node started.
    pub done: u64,
    /// Ended with an error or a panic since the node started.
    pub failed: u64,
    /// The last error, and when it happened (Unix seconds).
    pub last_error: Option<(String, i64)>,
    /// What the worker says it is doing.
    pub status: Vec<String>,
}

/// One kind of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkPool {
    /// What the work is.
    pub name: String,
    /// Under way.
    pub active: u64,
    /// Waiting.
    pub pending: u64,
    /// The bound (0: none).
    pub limit: u64,
    /// Refused at the bound since the node started.
    pub refused: u64,
}

/// Hints held for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintsPending {
    /// The target's id.
    pub node_id: String,
    /// The target's name; empty once it is no longer a member.
    pub node_name: String,
    /// Bytes held.
    pub bytes: u64,
    /// Whether the target is up (its hints are being replayed).
    pub up: bool,
}

/// The storage engine (RocksDB).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Estimated live data.
    pub live_data_bytes: u64,
    /// SST files, every level.
    pub sst_files: u64,
    /// Bytes compaction must rewrite to bring every level under its target.
    pub pending_compaction_bytes: u64,
    /// Compactions running.
    pub running_compactions: u64,
    /// Memory of the memtables.
    pub memtable_bytes: u64,
    /// Memory held by the block cache.
    pub block_cache_bytes: u64,
    /// Free space of the data directory's file system.
    pub disk_free_bytes: u64,
    /// Size of that file system.
    pub disk_total_bytes: u64,
    /// Why the disk refuses writes, while it does.
    pub disk_problem: Option<String>,
}

/// Anti-entropy repair on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairState {
    /// A run is going on.
    pub running: bool,
    /// Ranges of the running (or last) run.
    pub ranges_total: u32,
    /// Ranges it has finished.
    pub ranges_done: u32,
    /// Cells it sent or received.
    pub keys_streamed: u64,
    /// Their bytes.
    pub bytes_streamed: u64,
    /// When the node last completed a repair that reached every replica
    /// (Unix seconds).
    pub last_completed: Option<i64>,
}

impl From<pb::NodeStatsResponse> for NodeStats {
    fn from(s: pb::NodeStatsResponse) -> Self {
        let storage = s.storage.unwrap_or_default();
        let repair = s.repair.unwrap_or_default();
        NodeStats {
            id: s.node_id,
            name: s.node_name,
            version: s.version,
            uptime_seconds: s.uptime_seconds,
            generation: s.generation,
            load_bytes: s.load_bytes,
            rss_bytes: s.rss_bytes,
            peak_rss_bytes: s.peak_rss_bytes,
            open_fds: s.open_fds,
            max_fds: s.max_fds,
            pools: s
                .pools
                .into_iter()
                .map(|p| WorkPool {
                    name: p.name,
                    active: p.active,
                    pending: p.pending,
                    limit: p.limit,
                    refused: p.refused,
                })
                .collect(),
            hints: s
                .hints
                .into_iter()
                .map(|h| HintsPending {
                    node_id: h.node_id,
                    node_name: h.node_name,
                    bytes: h.bytes,
                    up: h.up,
                })
                .collect(),
            storage: StorageStats {
                live_data_bytes: storage.live_data_bytes,
                sst_files: storage.sst_files,
                pending_compaction_bytes: storage.pending_compaction_bytes,
                running_compactions: storage.running_compactions,
                memtable_bytes: storage.memtable_bytes,
                block_cache_bytes: storage.block_cache_bytes,
                disk_free_bytes: storage.disk_free_bytes,
                disk_total_bytes: storage.disk_total_bytes,
                disk_problem: Some(storage.disk_problem).filter(|p| !p.is_empty()),
            },
            repair: RepairState {
                running: repair.running,
                ranges_total: repair.ranges_total,
                ranges_done: repair.ranges_done,
                keys_streamed: repair.keys_streamed,
                bytes_streamed: repair.bytes_streamed,
                last_completed: (repair.last_completed > 0).then_some(repair.last_completed),
            },
            workers: s
                .workers
                .into_iter()
                .map(|w| Worker {
                    name: w.name,
                    state: w.state,
                    running: w.running,
                    done: w.done,
                    failed: w.failed,
                    last_error: Some((w.last_error, w.last_error_at))
                        .filter(|(message, _)| !message.is_empty()),
                    status: w.status,
                })
                .collect(),
        }
    }
}

impl Client {
    /// What the node first connected to is doing and holding right now.
    pub async fn node_stats(&self) -> Result<NodeStats> {
        let request = self.request(pb::NodeStatsRequest {}, self.inner.config.request_timeout);
        let stats = self.admin()?.node_stats(request).await?.into_inner();
        Ok(stats.into())
    }
}
