//! `Admin/NodeStats`: what a node is doing and holding right now, as the
//! shell's `tpstats`, `hints`, `compactionstats` and `info` show it. The
//! server gathers it ([`StatsSource`]); this module turns it into protobuf.

use std::sync::Arc;

use ringkv_proto::v1 as pb;

use crate::identity::NodeId;
use crate::repair::Progress;
use crate::storage::EngineStats;
use crate::workers::WorkerStatus;

/// One kind of work: how much is under way, how much waits, its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkPool {
    pub name: &'static str,
    pub active: u64,
    pub pending: u64,
    /// 0: unbounded.
    pub limit: u64,
    /// Refused at the bound since the node started.
    pub refused: u64,
}

/// Hints held for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintsPending {
    pub node: NodeId,
    /// `None` once the node is no longer a member.
    pub name: Option<String>,
    pub bytes: u64,
    pub up: bool,
}

/// A snapshot of the node.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    pub generation: u64,
    pub load_bytes: u64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub pools: Vec<WorkPool>,
    pub hints: Vec<HintsPending>,
    pub storage: EngineStats,
    pub disk_problem: Option<String>,
    pub repair_running: bool,
    /// Of the running repair run, or the last.
    pub repair: Progress,
    /// Unix seconds (0: never).
    pub repair_last_completed: i64,
    /// The node's named tasks.
    pub workers: Vec<WorkerStatus>,
}

/// Takes a snapshot of the node.
pub type StatsSource = Arc<dyn Fn() -> NodeStats + Send + Sync>;

/// The snapshot as `Admin/NodeStats` answers it.
pub fn to_proto(stats: NodeStats, identity: pb::NodeInfoResponse) -> pb::NodeStatsResponse {
    let storage = stats.storage;
    pb::NodeStatsResponse {
        node_id: identity.node_id,
        node_name: identity.node_name,
        version: identity.version,
        uptime_seconds: identity.uptime_seconds,
        generation: stats.generation,
        load_bytes: stats.load_bytes,
        rss_bytes: stats.rss_bytes,
        peak_rss_bytes: stats.peak_rss_bytes,
        open_fds: stats.open_fds,
        max_fds: stats.max_fds,
        pools: stats
            .pools
            .into_iter()
            .map(|pool| pb::WorkPool {
                name: pool.name.to_owned(),
                active: pool.active,
                pending: pool.pending,
                limit: pool.limit,
                refused: pool.refused,
            })
            .collect(),
        hints: stats
            .hints
            .into_iter()
            .map(|hints| pb::HintsPending {
                node_id: hints.node.to_string(),
                node_name: hints.name.unwrap_or_default(),
                bytes: hints.bytes,
                up: hints.up,
            })
            .collect(),
        storage: Some(pb::StorageStats {
            live_data_bytes: storage.live_data_bytes,
            sst_files: storage.sst_files,
            pending_compaction_bytes: storage.pending_compaction_bytes,
            running_compactions: storage.running_compactions,
            memtable_bytes: storage.memtable_bytes,
            block_cache_bytes: storage.block_cache_bytes,
            disk_free_bytes: storage.disk_free_bytes,
            disk_total_bytes: storage.disk_total_bytes,
            disk_problem: stats.disk_problem.unwrap_or_default(),
        }),
        repair: Some(pb::RepairState {
            running: stats.repair_running,
            ranges_total: stats.repair.ranges_total,
            ranges_done: stats.repair.ranges_done,
            keys_streamed: stats.repair.keys_streamed(),
            bytes_streamed: stats.repair.bytes_streamed(),
            last_completed: stats.repair_last_completed,
        }),
        workers: stats.workers.into_iter().map(worker).collect(),
    }
}

fn worker(worker: WorkerStatus) -> pb::Worker {
    let (last_error, last_error_at) = match worker.last_error {
        Some(failure) => {
            let at = failure
                .at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs() as i64);
            (failure.message, at)
        }
        None => (String::new(), 0),
    };
    pb::Worker {
        state: worker.state.to_string(),
        name: worker.name,
        running: worker.running,
        done: worker.done,
        failed: worker.failed,
        last_error,
        last_error_at,
        status: worker.status,
    }
}
