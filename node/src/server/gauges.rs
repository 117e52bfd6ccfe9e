//! The gauges of `/metrics`: what the node holds and is doing right now
//! (storage engine, disk, members, hints held, the repair run, requests in
//! flight, the process), read from their sources when Prometheus scrapes
//! and every [`UPKEEP_INTERVAL`](crate::metrics::UPKEEP_INTERVAL).
//!
//! The HTTP port starts before the node has joined, so the sources that
//! exist only after joining (the cluster view, hints, the repairer) are
//! handed over late, once.

use std::sync::{Arc, OnceLock};

use crate::hints::{DropReason, HintStore};
use crate::membership::{NodeStatus, ViewHandle};
use crate::metrics::*;
use crate::repair::Repairer;
use crate::rpc::limit::InFlightLimit;
use crate::rpc::replica_metrics::ReplicaMetrics;
use crate::rpc::stats::{HintsPending, NodeStats, WorkPool};
use crate::storage::{DiskHealth, Storage};
use crate::workers::Workers;

/// Sources that exist once the node has joined.
pub struct Joined {
    pub view: ViewHandle,
    pub generation: u64,
    pub hints: Option<Arc<HintStore>>,
    pub repairer: Arc<Repairer>,
    pub internode: InFlightLimit,
    /// Work that outlives requests: replica writes after an early answer,
    /// background read repairs.
    pub background: Workers,
    /// The replica call series of current peers, kept alive here.
    pub replicas: Arc<ReplicaMetrics>,
    /// The names peers are labelled with, learnt here from the view.
    pub names: PeerNames,
}

/// Reads the gauges' sources and sets the gauges.
pub struct Gauges {
    gc_grace_seconds: u64,
    engine: Arc<dyn Storage>,
    disk: Arc<DiskHealth>,
    process: metrics_process::Collector,
    /// The node's table of named tasks.
    workers: Workers,
    joined: OnceLock<Joined>,
    client: OnceLock<InFlightLimit>,
    /// One reading on a blocking thread at a time (see `off_runtime`).
    blocking: Arc<tokio::sync::Semaphore>,
}

impl Gauges {
    pub fn new(
        gc_grace_seconds: u64,
        engine: Arc<dyn Storage>,
        disk: Arc<DiskHealth>,
        workers: Workers,
    ) -> Self {
        Self {
            gc_grace_seconds,
            engine,
            disk,
            process: metrics_process::Collector::default(),
            workers,
            joined: OnceLock::new(),
            client: OnceLock::new(),
            blocking: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// Runs `work` (which reads RocksDB properties, statvfs and /proc:
    /// quick, but not for a runtime thread, and seconds while a store
    /// reopens after a full disk) on a blocking thread, one at a time:
    /// HTTP requests that ask meanwhile wait their turn (at most one per
    /// HTTP connection) instead of each taking a thread. `None` if the
    /// work panicked.
    pub async fn off_runtime<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Gauges) -> T + Send + 'static,
    ) -> Option<T> {
        // The turn goes with the blocking work: a caller that gives up
        // (a client gone) does not free it while the work still runs.
        let turn = self.blocking.clone().acquire_owned().await.ok()?;
        let gauges = self.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(&gauges)
        })
        .await
        .ok()
    }

    /// Gives the process series their HELP; call once the recorder is
    /// installed.
    pub fn describe(&self) {
        self.process.describe();
    }

    /// Hands over the sources that exist once the node has joined.
    pub fn joined(&self, joined: Joined) {
        let _ = self.joined.set(joined);
    }

    /// Hands over the client API's in-flight limit, once it serves.
    pub fn serving(&self, client: InFlightLimit) {
        let _ = self.client.set(client);
    }

    /// Sets every gauge from its source.
    pub fn refresh(&self) {
        // Set on every refresh: gauges left alone expire from `/metrics`.
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        metrics::gauge!(GC_GRACE).set(self.gc_grace_seconds as f64);
        self.process.collect();
        self.storage();
        if let Some(client) = self.client.get() {
            metrics::gauge!(REQUESTS_IN_FLIGHT, "api" => "client").set(client.in_flight() as f64);
        }
        let Some(joined) = self.joined.get() else {
            return;
        };
        metrics::gauge!(REQUESTS_IN_FLIGHT, "api" => "internode")
            .set(joined.internode.in_flight() as f64);
        let view = joined.view.load_full();
        joined
            .names
            .learn(view.members().map(|m| (&m.id, m.name.as_str())));
        joined.replicas.keep_alive();
        let (mut up, mut down) = (0u32, 0u32);
        for member in view.members().filter(|m| m.status != NodeStatus::Left) {
            let alive = view.is_alive(&member.id);
            if alive {
                up += 1;
            } else {
                down += 1;
            }
            if member.id == view.local() {
                continue;
            }
            let peer = joined.names.label(&member.id);
            metrics::gauge!(PEER_UP, "peer" => peer.clone()).set(if alive { 1.0 } else { 0.0 });
            // The hint counters exist from 0, so the first hints stored or
            // dropped for a peer show as an increase (alerts use increase()).
            for reason in DropReason::ALL {
                metrics::counter!(HINTS_DROPPED, "target" => peer.clone(), "reason" => reason.label())
                    .increment(0);
            }
            metrics::counter!(HINTS_STORED, "target" => peer.clone()).increment(0);
            metrics::counter!(HINTS_REPLAYED, "target" => peer.clone()).increment(0);
            if let Some(hints) = &joined.hints {
                metrics::gauge!(HINTS_PENDING_BYTES, "target" => peer)
                    .set(hints.pending_bytes(member.id) as f64);
            }
        }
        metrics::gauge!(MEMBERS, "status" => "up").set(f64::from(up));
        metrics::gauge!(MEMBERS, "status" => "down").set(f64::from(down));
        if let Some(hints) = &joined.hints {
            // Hints for nodes the view no longer lists (they left).
            for target in hints.targets() {
                if view.member(&target).is_none() {
                    metrics::gauge!(HINTS_PENDING_BYTES, "target" => joined.names.label(&target))
                        .set(hints.pending_bytes(target) as f64);
                }
            }
        }
        let repair = joined.repairer.latest();
        let running = joined.repairer.is_running();
        metrics::gauge!(REPAIR_RUNNING).set(if running { 1.0 } else { 0.0 });
        metrics::gauge!(REPAIR_RUN_RANGES).set(f64::from(repair.ranges_total));
        metrics::gauge!(REPAIR_RUN_RANGES_DONE).set(f64::from(repair.ranges_done));
        metrics::gauge!(REPAIR_LAST_COMPLETED).set(joined.repairer.last_completed() as f64);
    }

    /// What `ringkv tpstats`, `hints`, `compactionstats` and `info` show.
    pub fn snapshot(&self) -> NodeStats {
        let process = ProcessStats::read();
        let mut stats = NodeStats {
            load_bytes: self.engine.approximate_size().unwrap_or(0),
            rss_bytes: process.rss_bytes,
            peak_rss_bytes: process.peak_rss_bytes,
            open_fds: process.open_fds,
            max_fds: process.max_fds,
            storage: self.engine.engine_stats().unwrap_or_default(),
            disk_problem: self.disk.problem(),
            workers: self.workers.snapshot(),
            ..NodeStats::default()
        };
        let pool = |name, limit: &InFlightLimit| WorkPool {
            name,
            active: limit.in_flight() as u64,
            pending: 0,
            limit: limit.limit() as u64,
            refused: limit.refused(),
        };
        if let Some(client) = self.client.get() {
            stats.pools.push(pool("client requests", client));
        }
        let Some(joined) = self.joined.get() else {
            return stats;
        };
        stats.generation = joined.generation;
        stats
            .pools
            .push(pool("internode requests", &joined.internode));
        stats.pools.push(WorkPool {
            name: "background replica writes and read repairs",
            active: joined.background.len() as u64,
            pending: 0,
            limit: 0,
            refused: 0,
        });
        let view = joined.view.load_full();
        if let Some(hints) = &joined.hints {
            for target in hints.targets() {
                let member = view.member(&target);
                stats.hints.push(HintsPending {
                    node: target,
                    name: member.map(|m| m.name.clone()),
                    bytes: hints.pending_bytes(target),
                    up: view.is_alive(&target),
                });
            }
            let replaying = stats.hints.iter().filter(|h| h.up).count() as u64;
            stats.pools.push(WorkPool {
                name: "hint replay (targets)",
                active: replaying,
                pending: stats.hints.len() as u64 - replaying,
                limit: 0,
                refused: 0,
            });
        }
        stats.repair_running = joined.repairer.is_running();
        stats.repair = joined.repairer.latest();
        stats.repair_last_completed = joined.repairer.last_completed();
        let ranges_left = u64::from(
            stats.repair.ranges_total - stats.repair.ranges_done.min(stats.repair.ranges_total),
        );
        stats.pools.push(WorkPool {
            name: "repair (ranges)",
            active: u64::from(stats.repair_running),
            pending: if stats.repair_running { ranges_left } else { 0 },
            limit: 1,
            refused: 0,
        });
        stats.pools.push(WorkPool {
            name: "compactions",
            active: stats.storage.running_compactions,
            pending: 0,
            limit: 0,
            refused: 0,
        });
        stats
    }

    fn storage(&self) {
        metrics::gauge!(DISK_WRITABLE).set(if self.disk.problem().is_some() {
            0.0
        } else {
            1.0
        });
        // A store closed while its disk recovers has no figures to give.
        let Ok(stats) = self.engine.engine_stats() else {
            return;
        };
        let gauges = [
            (STORAGE_LIVE_DATA, stats.live_data_bytes),
            (STORAGE_SST_FILES, stats.sst_files),
            (STORAGE_PENDING_COMPACTION, stats.pending_compaction_bytes),
            (STORAGE_RUNNING_COMPACTIONS, stats.running_compactions),
            (STORAGE_MEMTABLE, stats.memtable_bytes),
            (STORAGE_BLOCK_CACHE, stats.block_cache_bytes),
            (DISK_FREE, stats.disk_free_bytes),
            (DISK_TOTAL, stats.disk_total_bytes),
        ];
        for (name, value) in gauges {
            metrics::gauge!(name).set(value as f64);
        }
    }
}

/// The process as `/proc` shows it (zeros where it cannot be read).
#[derive(Debug, Default, Clone, Copy)]
struct ProcessStats {
    rss_bytes: u64,
    peak_rss_bytes: u64,
    open_fds: u64,
    max_fds: u64,
}

impl ProcessStats {
    fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0, |n| n * 1024)
        };
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let max_fds = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Self {
            rss_bytes: kib("VmRSS:"),
            peak_rss_bytes: kib("VmHWM:"),
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
            max_fds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_reads_itself() {
        let process = ProcessStats::read();
        assert!(process.rss_bytes > 0);
        assert!(process.peak_rss_bytes >= process.rss_bytes);
        assert!(process.open_fds >= 3, "stdin, stdout, stderr");
        assert!(process.max_fds >= process.open_fds);
    }
}
