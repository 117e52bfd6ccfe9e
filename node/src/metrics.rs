//! Metric names, and the Prometheus recorder behind `/metrics`.
//!
//! Code records with the `metrics` macros and these names; without an
//! installed recorder (unit tests) recording is a no-op. [`CATALOGUE`] lists
//! every ringkv series with its type and HELP text; `install` describes them
//! all, so every series the node exports carries HELP. Names follow
//! Prometheus conventions: counters end in `_total`, durations are seconds
//! (`_seconds`), sizes bytes (`_bytes`).
//!
//! Labels that name another node (`peer`, `target`) carry its name, as
//! `ringkv status` shows it, once gossip has told it (see [`PeerNames`]).
//! The counters and histograms labelled so ([`PEER_SERIES`]) live in a
//! registry of their own whose series are dropped once nothing has
//! updated them for [`PEER_SERIES_IDLE`]: a peer that left, or a label
//! that changed with a rename, does not stay in `/metrics` for the life
//! of the process. The node keeps a current member's series alive (the
//! gauge refresher touches them); peer-labelled gauges, like every gauge,
//! go after [`GAUGE_IDLE`].
//!
//! The process series (`process_resident_memory_bytes`, `process_open_fds`
//! and the rest of the standard set) come from `metrics-process`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    describe_counter, describe_gauge, describe_histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;

use crate::identity::NodeId;

/// Client requests served, by `op` (get, put, delete), consistency `level`
/// (one … any; `unknown` when the request named none the node knows) and
/// `outcome` (ok, invalid, unavailable, timeout, failed, error).
pub const REQUESTS: &str = "ringkv_requests_total";
/// Latency of client requests as the coordinator saw them, by `op` and
/// `level`.
pub const REQUEST_SECONDS: &str = "ringkv_request_duration_seconds";
/// Latency of the replica writes and reads this node sent as a coordinator,
/// by `peer` and `call` (write, read).
pub const REPLICA_SECONDS: &str = "ringkv_replica_request_duration_seconds";
/// Replica writes and reads that failed, by `peer`, `call` and `error`
/// (unreachable, timeout, failed).
pub const REPLICA_ERRORS: &str = "ringkv_replica_request_errors_total";
/// Stale replicas rewritten by read repair, blocking (in the read) or
/// background (`kind` = blocking | background).
pub const READ_REPAIRS: &str = "ringkv_read_repairs_total";
/// Hints stored for replicas that missed a write, by `target`.
pub const HINTS_STORED: &str = "ringkv_hints_stored_total";
/// Hints handed to their replica, by `target`.
pub const HINTS_REPLAYED: &str = "ringkv_hints_replayed_total";
/// Hints dropped, by `target` and `reason` (full, expired, left, corrupt).
pub const HINTS_DROPPED: &str = "ringkv_hints_dropped_total";
/// Bytes of hints held, by `target`.
pub const HINTS_PENDING_BYTES: &str = "ringkv_hints_pending_bytes";
/// Keys (cells) sent or received by anti-entropy repair.
pub const REPAIR_KEYS: &str = "ringkv_repair_keys_streamed_total";
/// Bytes of cells sent or received by anti-entropy repair.
pub const REPAIR_BYTES: &str = "ringkv_repair_bytes_streamed_total";
/// Token ranges compared by anti-entropy repair.
pub const REPAIR_RANGES: &str = "ringkv_repair_ranges_compared_total";
/// Token ranges a repair run could not sync with some replica (skipped).
pub const REPAIR_RANGES_FAILED: &str = "ringkv_repair_ranges_failed_total";
/// 1 while a repair runs on this node.
pub const REPAIR_RUNNING: &str = "ringkv_repair_running";
/// Ranges of the running (or last) repair run, and how many are done.
pub const REPAIR_RUN_RANGES: &str = "ringkv_repair_run_ranges";
pub const REPAIR_RUN_RANGES_DONE: &str = "ringkv_repair_run_ranges_done";
/// When this node last completed a repair that reached every replica.
pub const REPAIR_LAST_COMPLETED: &str = "ringkv_repair_last_completed_timestamp_seconds";
/// Cells streamed for topology changes, by direction (in, out, relay).
pub const STREAMED_KEYS: &str = "ringkv_streamed_keys_total";
/// Bytes of cells streamed for topology changes, by direction.
pub const STREAMED_BYTES: &str = "ringkv_streamed_bytes_total";
/// Bytes of local data cleanup removed (ranges the node no longer holds).
pub const CLEANUP_BYTES: &str = "ringkv_cleanup_bytes_total";

/// Replica writes and reads this node served for its peers, by `protocol`
/// (framed, grpc) and `call` (write, read).
pub const INTERNODE_REQUESTS: &str = "ringkv_internode_requests_total";
/// Requests refused before any work, by `api` (client, internode) and
/// `reason` (overloaded).
pub const REQUESTS_REFUSED: &str = "ringkv_requests_refused_total";
/// Failed credential checks, by `reason` (wrong: a wrong user name or
/// password; throttled: refused unchecked, too many failures).
pub const AUTH_FAILURES: &str = "ringkv_auth_failures_total";
/// A peer's clock minus this node's, as last measured (seconds).
pub const CLOCK_OFFSET: &str = "ringkv_clock_offset_seconds";
/// 1 while this node's clock is further than `max_clock_offset_ms` from
/// the majority of its peers' and it refuses to coordinate writes.
pub const CLOCK_OFFSET_EXCEEDED: &str = "ringkv_clock_offset_exceeded";
/// Connections closed at once because their port was at its cap, by
/// `port` (client, internode, http).
pub const CONNECTIONS_REFUSED: &str = "ringkv_connections_refused_total";
/// Requests being served, by `api` (client, internode).
pub const REQUESTS_IN_FLIGHT: &str = "ringkv_requests_in_flight";
/// Gossip datagrams dropped, by `reason` (mac: no or a wrong MAC;
/// malformed; oversize).
pub const GOSSIP_DROPPED: &str = "ringkv_gossip_dropped_total";
/// Members this node knows, by `status` (up, down) as its failure detector
/// sees them; itself included.
pub const MEMBERS: &str = "ringkv_cluster_members";
/// 1 while `peer` is up according to this node's failure detector.
pub const PEER_UP: &str = "ringkv_peer_up";

/// Storage engine state (RocksDB; zero on the in-memory engine).
pub const STORAGE_LIVE_DATA: &str = "ringkv_storage_live_data_bytes";
pub const STORAGE_SST_FILES: &str = "ringkv_storage_sst_files";
pub const STORAGE_PENDING_COMPACTION: &str = "ringkv_storage_pending_compaction_bytes";
pub const STORAGE_RUNNING_COMPACTIONS: &str = "ringkv_storage_running_compactions";
pub const STORAGE_MEMTABLE: &str = "ringkv_storage_memtable_bytes";
pub const STORAGE_BLOCK_CACHE: &str = "ringkv_storage_block_cache_usage_bytes";
/// Space of the file system holding the data directory.
pub const DISK_FREE: &str = "ringkv_disk_free_bytes";
pub const DISK_TOTAL: &str = "ringkv_disk_total_bytes";
/// 0 while the disk refuses writes (full, failing); the node serves reads.
pub const DISK_WRITABLE: &str = "ringkv_disk_writable";
/// Writes to a partition past `partition_size_warn_mb` (one write in 64
/// is measured).
pub const LARGE_PARTITION_WRITES: &str = "ringkv_large_partition_writes_total";
/// Row writes refused: their partition is past `partition_size_max_mb`.
pub const PARTITION_WRITES_REFUSED: &str = "ringkv_partition_writes_refused_total";
/// The node's version, as a label of a series that is always 1.
pub const BUILD_INFO: &str = "ringkv_build_info";
/// The node's `gc_grace_seconds` (for the repair-overdue alert).
pub const GC_GRACE: &str = "ringkv_gc_grace_seconds";

/// How often histograms are compacted and gauges refreshed even when
/// nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Gauges not set for this long are dropped from `/metrics` (a peer that
/// left, a hint target with nothing held).
const GAUGE_IDLE: Duration = Duration::from_secs(60);

/// The counters and histograms labelled by another node.
pub const PEER_SERIES: [&str; 5] = [
    REPLICA_SECONDS,
    REPLICA_ERRORS,
    HINTS_STORED,
    HINTS_REPLAYED,
    HINTS_DROPPED,
];

/// A peer-labelled series nothing updated for this long is dropped.
pub const PEER_SERIES_IDLE: Duration = Duration::from_secs(600);

/// Latency buckets: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A series' Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every ringkv series: name, type, unit and HELP text.
pub const CATALOGUE: &[(&str, Kind, Unit, &str)] = &[
    (
        REQUESTS,
        Kind::Counter,
        Unit::Count,
        "Client requests served, by op, consistency level and outcome",
    ),
    (
        REQUEST_SECONDS,
        Kind::Histogram,
        Unit::Seconds,
        "Client request latency at the coordinator, by op and consistency level",
    ),
    (
        LARGE_PARTITION_WRITES,
        Kind::Counter,
        Unit::Count,
        "Sampled writes (one in 64) to a partition past partition_size_warn_mb",
    ),
    (
        PARTITION_WRITES_REFUSED,
        Kind::Counter,
        Unit::Count,
        "Row writes refused: their partition is past partition_size_max_mb",
    ),
    (
        REPLICA_SECONDS,
        Kind::Histogram,
        Unit::Seconds,
        "Latency of replica writes and reads sent to a peer, by peer and call",
    ),
    (
        REPLICA_ERRORS,
        Kind::Counter,
        Unit::Count,
        "Replica writes and reads to a peer that failed, by peer, call and error",
    ),
    (
        READ_REPAIRS,
        Kind::Counter,
        Unit::Count,
        "Stale replicas rewritten by read repair, by kind (blocking, background)",
    ),
    (
        HINTS_STORED,
        Kind::Counter,
        Unit::Count,
        "Hints stored for replicas that missed a write, by target",
    ),
    (
        HINTS_REPLAYED,
        Kind::Counter,
        Unit::Count,
        "Hints handed to their replica, by target",
    ),
    (
        HINTS_DROPPED,
        Kind::Counter,
        Unit::Count,
        "Hints dropped, by target and reason (full, expired, left, corrupt)",
    ),
    (
        HINTS_PENDING_BYTES,
        Kind::Gauge,
        Unit::Bytes,
        "Bytes of hints this node holds, by target",
    ),
    (
        REPAIR_KEYS,
        Kind::Counter,
        Unit::Count,
        "Cells sent or received by anti-entropy repair",
    ),
    (
        REPAIR_BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Bytes of cells sent or received by anti-entropy repair",
    ),
    (
        REPAIR_RANGES,
        Kind::Counter,
        Unit::Count,
        "Token ranges compared by anti-entropy repair",
    ),
    (
        REPAIR_RANGES_FAILED,
        Kind::Counter,
        Unit::Count,
        "Token ranges a repair run could not sync with some replica",
    ),
    (
        REPAIR_RUNNING,
        Kind::Gauge,
        Unit::Count,
        "1 while an anti-entropy repair runs on this node",
    ),
    (
        REPAIR_RUN_RANGES,
        Kind::Gauge,
        Unit::Count,
        "Token ranges of the running or last repair run",
    ),
    (
        REPAIR_RUN_RANGES_DONE,
        Kind::Gauge,
        Unit::Count,
        "Token ranges the running or last repair run has finished",
    ),
    (
        REPAIR_LAST_COMPLETED,
        Kind::Gauge,
        Unit::Seconds,
        "Unix time this node last completed a repair that reached every replica (0: never)",
    ),
    (
        STREAMED_KEYS,
        Kind::Counter,
        Unit::Count,
        "Cells streamed for topology changes, by direction",
    ),
    (
        STREAMED_BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Bytes streamed for topology changes, by direction",
    ),
    (
        CLEANUP_BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Bytes of data cleanup removed from ranges this node no longer holds",
    ),
    (
        INTERNODE_REQUESTS,
        Kind::Counter,
        Unit::Count,
        "Replica writes, reads and queries served for peers, by protocol and call",
    ),
    (
        REQUESTS_REFUSED,
        Kind::Counter,
        Unit::Count,
        "Requests refused before any work (overload), by api and reason",
    ),
    (
        AUTH_FAILURES,
        Kind::Counter,
        Unit::Count,
        "Failed credential checks, by reason (wrong, throttled)",
    ),
    (
        CLOCK_OFFSET,
        Kind::Gauge,
        Unit::Seconds,
        "A peer's wall clock minus this node's, as last measured, by peer",
    ),
    (
        CLOCK_OFFSET_EXCEEDED,
        Kind::Gauge,
        Unit::Count,
        "1 while this node's clock is further than max_clock_offset_ms from the majority of its peers' and it refuses to coordinate writes",
    ),
    (
        CONNECTIONS_REFUSED,
        Kind::Counter,
        Unit::Count,
        "Connections closed at once because their port was at its connection cap, by port",
    ),
    (
        REQUESTS_IN_FLIGHT,
        Kind::Gauge,
        Unit::Count,
        "Requests being served, by api (client, internode)",
    ),
    (
        GOSSIP_DROPPED,
        Kind::Counter,
        Unit::Count,
        "Gossip datagrams dropped unread, by reason",
    ),
    (
        MEMBERS,
        Kind::Gauge,
        Unit::Count,
        "Cluster members by status (up, down) as this node's failure detector sees them",
    ),
    (
        PEER_UP,
        Kind::Gauge,
        Unit::Count,
        "1 while the peer is up according to this node's failure detector, else 0",
    ),
    (
        STORAGE_LIVE_DATA,
        Kind::Gauge,
        Unit::Bytes,
        "Estimated live data in the storage engine",
    ),
    (
        STORAGE_SST_FILES,
        Kind::Gauge,
        Unit::Count,
        "SST files of the storage engine, every level",
    ),
    (
        STORAGE_PENDING_COMPACTION,
        Kind::Gauge,
        Unit::Bytes,
        "Estimated bytes compaction must rewrite to bring every level under its target",
    ),
    (
        STORAGE_RUNNING_COMPACTIONS,
        Kind::Gauge,
        Unit::Count,
        "Compactions running in the storage engine",
    ),
    (
        STORAGE_MEMTABLE,
        Kind::Gauge,
        Unit::Bytes,
        "Memory of the storage engine's memtables",
    ),
    (
        STORAGE_BLOCK_CACHE,
        Kind::Gauge,
        Unit::Bytes,
        "Memory held by the storage engine's block cache",
    ),
    (
        DISK_FREE,
        Kind::Gauge,
        Unit::Bytes,
        "Free space of the file system holding the data directory",
    ),
    (
        DISK_TOTAL,
        Kind::Gauge,
        Unit::Bytes,
        "Size of the file system holding the data directory",
    ),
    (
        DISK_WRITABLE,
        Kind::Gauge,
        Unit::Count,
        "0 while the disk refuses writes (full, failing), else 1",
    ),
    (
        BUILD_INFO,
        Kind::Gauge,
        Unit::Count,
        "Always 1; the version label is the node's ringkv version",
    ),
    (
        GC_GRACE,
        Kind::Gauge,
        Unit::Seconds,
        "The node's gc_grace_seconds: a replica must be repaired within it",
    ),
];

/// Renders and maintains what the recorder holds: the node's series and
/// the peer-labelled ones.
#[derive(Clone)]
pub struct MetricsHandle {
    node: PrometheusHandle,
    peers: PrometheusHandle,
}

impl MetricsHandle {
    /// `/metrics` in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = self.node.render();
        out.push_str(&self.peers.render());
        out
    }

    /// Compacts histograms and drops idle series.
    pub fn run_upkeep(&self) {
        self.node.run_upkeep();
        self.peers.run_upkeep();
    }
}

/// The recorder: [`PEER_SERIES`] to a registry whose idle series expire,
/// the rest to one where only gauges do.
struct Split {
    node: PrometheusRecorder,
    peers: PrometheusRecorder,
}

impl Split {
    fn new(peer_idle: Duration) -> Option<Split> {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)
                .ok()
        };
        Some(Split {
            node: builder()?
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
                .build_recorder(),
            peers: builder()?
                .idle_timeout(MetricKindMask::ALL, Some(peer_idle))
                .build_recorder(),
        })
    }

    fn handle(&self) -> MetricsHandle {
        MetricsHandle {
            node: self.node.handle(),
            peers: self.peers.handle(),
        }
    }

    fn of(&self, name: &str) -> &PrometheusRecorder {
        if PEER_SERIES.contains(&name) {
            &self.peers
        } else {
            &self.node
        }
    }
}

impl Recorder for Split {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.of(key.as_str())
            .describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.of(key.as_str()).describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.of(key.as_str())
            .describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.of(key.name()).register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.of(key.name()).register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.of(key.name()).register_histogram(key, metadata)
    }
}

/// Installs the process-wide Prometheus recorder. `None` if a recorder is
/// already installed (several nodes in one process, as in some tests).
pub fn install() -> Option<MetricsHandle> {
    let split = Split::new(PEER_SERIES_IDLE)?;
    let handle = split.handle();
    metrics::set_global_recorder(split).ok()?;
    for &(name, kind, unit, help) in CATALOGUE {
        match kind {
            Kind::Counter => describe_counter!(name, unit, help),
            Kind::Gauge => describe_gauge!(name, unit, help),
            Kind::Histogram => describe_histogram!(name, unit, help),
        }
    }
    Some(handle)
}

/// The names of the nodes one node has heard of, for the labels that name
/// another node. Each node keeps its own (the simulation runs several in
/// one process) and hands it to what labels peers; clones share it.
#[derive(Debug, Clone, Default)]
pub struct PeerNames(Arc<RwLock<HashMap<NodeId, SharedString>>>);

impl PeerNames {
    /// Learns the names of `members`; a member whose name gossip has not
    /// told yet keeps its id as label.
    pub fn learn<'a>(&self, members: impl IntoIterator<Item = (&'a NodeId, &'a str)>) {
        let Ok(mut names) = self.0.write() else {
            return;
        };
        for (id, name) in members.into_iter().filter(|(_, name)| !name.is_empty()) {
            if names.get(id).is_none_or(|known| known.as_ref() != name) {
                names.insert(*id, SharedString::from(Arc::<str>::from(name)));
            }
        }
    }

    /// The label value naming `node`: its name once known, else its id.
    pub fn label(&self, node: &NodeId) -> SharedString {
        self.0
            .read()
            .ok()
            .and_then(|names| names.get(node).cloned())
            .unwrap_or_else(|| SharedString::from(node.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 24 item 8: series labelled by a peer were never dropped, so a
    /// cluster with churn grew `/metrics` (and the node's memory) with
    /// every peer that ever was. Now they expire once idle, and the
    /// node's own series do not.
    #[test]
    fn peer_series_expire_once_idle_and_the_nodes_own_do_not() {
        let split = Split::new(Duration::from_millis(200)).expect("recorder");
        let handle = split.handle();
        metrics::with_local_recorder(&split, || {
            metrics::counter!(HINTS_STORED, "target" => "gone").increment(1);
            metrics::histogram!(REPLICA_SECONDS, "peer" => "gone", "call" => "write").record(0.1);
            metrics::counter!(REQUESTS, "op" => "get").increment(1);
        });
        let shown = handle.render();
        assert!(
            shown.contains("ringkv_hints_stored_total{target=\"gone\"} 1"),
            "{shown}"
        );
        assert!(shown.contains("ringkv_replica_request_duration_seconds_count{peer=\"gone\""));
        std::thread::sleep(Duration::from_millis(400));
        handle.run_upkeep();
        let shown = handle.render();
        assert!(!shown.contains("gone"), "{shown}");
        assert!(
            shown.contains("ringkv_requests_total{op=\"get\"} 1"),
            "{shown}"
        );
    }

    /// Review finding: a peer's latency histogram deleted from the registry
    /// while the peer had no calls kept recording into a bucket nobody
    /// read. The refresher's keep-alive registers the handles again.
    #[test]
    fn a_peer_histogram_deleted_while_idle_records_again_after_keep_alive() {
        use crate::rpc::replica_metrics::ReplicaMetrics;
        let split = Split::new(Duration::from_millis(200)).expect("recorder");
        let handle = split.handle();
        let peer = NodeId(uuid::Uuid::from_u128(0x5eed_0002));
        let replicas = ReplicaMetrics::default();
        metrics::with_local_recorder(&split, || {
            replicas.of(peer, "quiet").expect("handles");
        });
        // The registry notes when it first saw each series.
        assert!(handle.render().contains("quiet"), "registered");
        std::thread::sleep(Duration::from_millis(400));
        handle.run_upkeep();
        assert!(!handle.render().contains("quiet"), "deleted while idle");
        metrics::with_local_recorder(&split, || replicas.keep_alive());
        let calls = replicas.of(peer, "quiet").expect("handles");
        calls.write.start().finish::<()>(&Ok(()));
        handle.run_upkeep();
        let shown = handle.render();
        assert!(
            shown.contains(
                "ringkv_replica_request_duration_seconds_count{peer=\"quiet\",call=\"write\"} 1"
            ),
            "{shown}"
        );
    }

    #[test]
    fn an_unnamed_member_keeps_its_id_as_label_until_named() {
        let id = NodeId(uuid::Uuid::from_u128(0x5eed_0001));
        let names = PeerNames::default();
        names.learn([(&id, "")]);
        assert_eq!(names.label(&id).as_ref(), id.to_string());
        names.learn([(&id, "n7")]);
        assert_eq!(names.label(&id).as_ref(), "n7");
        names.learn([(&id, "n8")]);
        assert_eq!(names.label(&id).as_ref(), "n8", "a rename is followed");
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for &(name, kind, unit, help) in CATALOGUE {
            assert!(seen.insert(name), "{name} listed twice");
            assert!(name.starts_with("ringkv_"), "{name}");
            assert!(!help.is_empty(), "{name} has no HELP");
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                _ => assert!(!name.ends_with("_total"), "{name}"),
            }
            match unit {
                Unit::Seconds => assert!(name.ends_with("_seconds"), "{name}"),
                // ringkv_repair_bytes_streamed_total predates the check.
                Unit::Bytes => assert!(name.contains("_bytes"), "{name}"),
                _ => assert!(!name.contains("_bytes") && !name.contains("_seconds")),
            }
        }
    }

    #[test]
    fn the_readme_documents_every_series() {
        let readme = include_str!("../../README.md");
        for &(name, ..) in CATALOGUE {
            assert!(
                readme.contains(&format!("| `{name}`")),
                "README.md's metrics table lacks {name}"
            );
        }
    }

    /// The `ringkv_…` names `text` mentions.
    fn series_in(text: &str) -> std::collections::BTreeSet<&str> {
        text.match_indices("ringkv_")
            .map(|(at, _)| {
                let rest = &text[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect()
    }

    fn exported(name: &str) -> bool {
        CATALOGUE.iter().any(|&(known, kind, ..)| {
            name == known
                || (kind == Kind::Histogram
                    && ["_bucket", "_count", "_sum"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(known)))
        })
    }

    #[test]
    fn the_dashboard_shows_every_series_and_the_alerts_use_real_ones() {
        let dashboard = include_str!("../../deploy/grafana/ringkv.json");
        let alerts = include_str!("../../deploy/prometheus/ringkv-alerts.yml");
        for name in series_in(dashboard).into_iter().chain(series_in(alerts)) {
            assert!(exported(name), "{name} is not a series the node exports");
        }
        let shown = series_in(dashboard);
        for &(name, kind, ..) in CATALOGUE {
            let bucket = format!("{name}_bucket");
            let found = match kind {
                Kind::Histogram => shown.contains(bucket.as_str()),
                _ => shown.contains(name),
            };
            assert!(found, "the Grafana dashboard does not show {name}");
        }
    }

    #[test]
    fn peers_are_labelled_by_name_once_known() {
        let id = NodeId(uuid::Uuid::from_u128(0x5eed));
        let (names, other) = (PeerNames::default(), PeerNames::default());
        assert_eq!(names.label(&id).as_ref(), id.to_string());
        names.learn([(&id, "n7")]);
        assert_eq!(names.label(&id).as_ref(), "n7");
        // Nodes sharing a process (the simulation) keep their own names.
        assert_eq!(other.label(&id).as_ref(), id.to_string());
    }
}
