//! Metric names, and the Prometheus recorder behind `/metrics`.
//!
//! Code records with the `metrics` macros and these names; without an
//! installed recorder (unit tests) recording is a no-op.

use std::time::Duration;

use metrics::{Unit, describe_counter, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Client requests served, by `op` (get, put, delete) and `outcome` (ok,
/// invalid, unavailable, timeout, failed, error).
pub const REQUESTS: &str = "ringkv_requests_total";
/// Latency of client requests as the coordinator saw them, by `op`.
pub const REQUEST_SECONDS: &str = "ringkv_request_duration_seconds";
/// Stale replicas rewritten by read repair, blocking (in the read) or
/// background (`kind` = blocking | background).
pub const READ_REPAIRS: &str = "ringkv_read_repairs_total";
/// Hints stored for replicas that missed a write.
pub const HINTS_STORED: &str = "ringkv_hints_stored_total";
/// Hints handed to their replica.
pub const HINTS_REPLAYED: &str = "ringkv_hints_replayed_total";
/// Hints dropped, by `reason` (full, expired, left, corrupt).
pub const HINTS_DROPPED: &str = "ringkv_hints_dropped_total";
/// Keys (cells) sent or received by anti-entropy repair.
pub const REPAIR_KEYS: &str = "ringkv_repair_keys_streamed_total";
/// Bytes of cells sent or received by anti-entropy repair.
pub const REPAIR_BYTES: &str = "ringkv_repair_bytes_streamed_total";
/// Token ranges compared by anti-entropy repair.
pub const REPAIR_RANGES: &str = "ringkv_repair_ranges_compared_total";
/// Token ranges a repair run could not sync with some replica (skipped).
pub const REPAIR_RANGES_FAILED: &str = "ringkv_repair_ranges_failed_total";
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
/// Gossip datagrams dropped, by `reason` (mac: no or a wrong MAC;
/// malformed; oversize).
pub const GOSSIP_DROPPED: &str = "ringkv_gossip_dropped_total";

/// How often histograms are compacted even when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Latency buckets: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder. `None` if a recorder is
/// already installed (several nodes in one process, as in some tests).
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.to_owned()), &LATENCY_BUCKETS)
        .ok()?
        .install_recorder()
        .ok()?;
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Client requests served, by op and outcome"
    );
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Client request latency at the coordinator"
    );
    describe_counter!(
        READ_REPAIRS,
        Unit::Count,
        "Stale replicas rewritten by read repair"
    );
    describe_counter!(
        STREAMED_KEYS,
        Unit::Count,
        "Cells streamed for topology changes, by direction"
    );
    describe_counter!(
        STREAMED_BYTES,
        Unit::Bytes,
        "Bytes streamed for topology changes, by direction"
    );
    describe_counter!(
        CLEANUP_BYTES,
        Unit::Bytes,
        "Bytes of data cleanup removed from ranges this node no longer holds"
    );
    describe_counter!(
        INTERNODE_REQUESTS,
        Unit::Count,
        "Replica writes and reads served for peers, by protocol and call"
    );
    describe_counter!(
        REQUESTS_REFUSED,
        Unit::Count,
        "Requests refused before any work (overload), by api and reason"
    );
    describe_counter!(
        GOSSIP_DROPPED,
        Unit::Count,
        "Gossip datagrams dropped unread, by reason"
    );
    Some(handle)
}
