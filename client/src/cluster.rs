//! What the cluster says about itself: members, the ring, a key's replicas.

use ringkv_proto::v1 as pb;

/// One node as the answering node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo {
    /// Permanent node id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Client API address (`host:port`).
    pub client_addr: String,
    /// Rack.
    pub rack: String,
    /// Up according to the answering node's failure detector.
    pub up: bool,
    /// JOINING, NORMAL, LEAVING or LEFT.
    pub state: String,
    /// Approximate bytes stored.
    pub load_bytes: u64,
    /// Share of the data this node holds a replica of (0..1).
    pub owns: f64,
    /// Number of tokens.
    pub tokens: u32,
    /// When the node last completed an anti-entropy repair (Unix seconds).
    pub last_repair: Option<i64>,
    /// Why the node cannot write, while its disk refuses writes.
    pub disk_problem: Option<String>,
    /// Ranges the node's last repair could not sync (their `error` is
    /// empty here: `repair` on that node lists the reasons).
    pub last_repair_failed_ranges: Vec<FailedRange>,
    /// The node's ringkv version (empty if it does not gossip it).
    pub version: String,
    /// The settings every node should share, `name=value;...`.
    pub settings: String,
    /// The node's gossip generation: its first start at its gossip address
    /// (Unix microseconds; a restart there keeps it).
    pub generation: u64,
    /// The node's wall clock minus the answering node's, as that node last
    /// measured it (microseconds; 0 for itself); `None` when not measured
    /// lately.
    pub clock_offset_micros: Option<i64>,
}

impl From<pb::Member> for MemberInfo {
    fn from(m: pb::Member) -> Self {
        MemberInfo {
            id: m.node_id,
            name: m.name,
            client_addr: m.client_addr,
            rack: m.rack,
            up: m.up,
            state: m.state,
            load_bytes: m.load_bytes,
            owns: m.owns,
            tokens: m.tokens,
            last_repair: (m.last_repair > 0).then_some(m.last_repair),
            disk_problem: Some(m.disk_problem).filter(|p| !p.is_empty()),
            last_repair_failed_ranges: m
                .last_repair_failed_ranges
                .into_iter()
                .map(FailedRange::from)
                .collect(),
            version: m.version,
            settings: m.settings,
            generation: m.generation,
            clock_offset_micros: m.clock_offset_micros,
        }
    }
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterStatus {
    /// Name of the cluster.
    pub cluster_name: String,
    /// Replicas per key.
    pub replication_factor: u32,
    /// Id of the node that answered.
    pub local_node_id: String,
    /// Every known node.
    pub members: Vec<MemberInfo>,
    /// The topology change in progress, in words; `None` when none.
    pub change_in_progress: Option<String>,
}

/// What a topology change (decommission, removenode) streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeSummary {
    /// Cells streamed through the answering node.
    pub keys_streamed: u64,
    /// Bytes of those cells.
    pub bytes_streamed: u64,
    /// How long the change took.
    pub elapsed: std::time::Duration,
}

/// What cleanup removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupSummary {
    /// Ranges of the ring the node does not replicate.
    pub ranges: u32,
    /// Keys deleted.
    pub keys_deleted: u64,
    /// Bytes of keys and cells deleted.
    pub bytes_freed: u64,
}

/// One range stream of a topology change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// bootstrap, replace, decommission or removenode.
    pub operation: String,
    /// Name of the node the ranges come from.
    pub source: String,
    /// Name of the node they go to.
    pub target: String,
    /// Ranges to copy.
    pub ranges_total: u32,
    /// Ranges copied.
    pub ranges_done: u32,
    /// Cells copied.
    pub keys: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Finished (successfully unless `error`).
    pub done: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it has run (or ran, once done).
    pub elapsed: std::time::Duration,
}

/// The streams of a node, and the change in progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Streams {
    /// Running and recent streams, oldest first.
    pub streams: Vec<StreamInfo>,
    /// The topology change in progress, in words; `None` when none.
    pub change_in_progress: Option<String>,
}

impl From<pb::StreamsResponse> for Streams {
    fn from(r: pb::StreamsResponse) -> Self {
        Streams {
            streams: r
                .streams
                .into_iter()
                .map(|s| StreamInfo {
                    operation: s.operation,
                    source: s.source,
                    target: s.target,
                    ranges_total: s.ranges_total,
                    ranges_done: s.ranges_done,
                    keys: s.keys,
                    bytes: s.bytes,
                    done: s.done,
                    error: Some(s.error).filter(|e| !e.is_empty()),
                    elapsed: std::time::Duration::from_millis(s.elapsed_ms),
                })
                .collect(),
            change_in_progress: Some(r.change_in_progress).filter(|c| !c.is_empty()),
        }
    }
}

/// A token range and its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeInfo {
    /// Exclusive start token.
    pub start_token: i64,
    /// Inclusive end token (owned by the first replica).
    pub end_token: i64,
    /// Indices into [`RingInfo::members`], primary owner first.
    pub replicas: Vec<usize>,
}

/// Token ownership and placement.
#[derive(Debug, Clone, PartialEq)]
pub struct RingInfo {
    /// Replicas per key.
    pub replication_factor: u32,
    /// Every known node.
    pub members: Vec<MemberInfo>,
    /// Ranges in token order.
    pub ranges: Vec<RangeInfo>,
}

impl From<pb::RingResponse> for RingInfo {
    fn from(r: pb::RingResponse) -> Self {
        RingInfo {
            replication_factor: r.replication_factor,
            members: r.members.into_iter().map(MemberInfo::from).collect(),
            ranges: r
                .ranges
                .into_iter()
                .map(|range| RangeInfo {
                    start_token: range.start_token,
                    end_token: range.end_token,
                    replicas: range.replicas.into_iter().map(|i| i as usize).collect(),
                })
                .collect(),
        }
    }
}

impl RingInfo {
    /// The index in `ranges` of the range holding `token`; `None` for an
    /// empty ring.
    pub fn range_index(&self, token: i64) -> Option<usize> {
        if self.ranges.is_empty() {
            return None;
        }
        let at = self.ranges.partition_point(|r| r.end_token < token);
        Some(if at == self.ranges.len() { 0 } else { at })
    }

    /// The replicas (indices into `members`) of a token, primary first;
    /// empty for an empty ring.
    pub fn replicas_of_token(&self, token: i64) -> &[usize] {
        match self.range_index(token) {
            Some(i) => &self.ranges[i].replicas,
            None => &[],
        }
    }
}

/// The replicas of one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    /// The key's token.
    pub token: i64,
    /// Its replicas, primary first.
    pub replicas: Vec<MemberInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> RingInfo {
        let range = |start, end, replicas: &[usize]| RangeInfo {
            start_token: start,
            end_token: end,
            replicas: replicas.to_vec(),
        };
        RingInfo {
            replication_factor: 2,
            members: Vec::new(),
            ranges: vec![
                range(100, -50, &[0, 1]),
                range(-50, 10, &[1, 2]),
                range(10, 100, &[2, 0]),
            ],
        }
    }

    #[test]
    fn token_lookup_follows_ranges_and_wraps() {
        let ring = ring();
        assert_eq!(ring.replicas_of_token(-60), &[0, 1]);
        assert_eq!(ring.replicas_of_token(-50), &[0, 1]);
        assert_eq!(ring.replicas_of_token(-49), &[1, 2]);
        assert_eq!(ring.replicas_of_token(100), &[2, 0]);
        assert_eq!(
            ring.replicas_of_token(101),
            &[0, 1],
            "past the last token wraps to the first range"
        );
    }
}

/// Progress (and, when `done`, the summary) of a repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairProgress {
    /// Token ranges to repair.
    pub ranges_total: u32,
    /// Ranges compared with every other live replica so far.
    pub ranges_done: u32,
    /// Merkle leaves found to differ.
    pub leaves_differing: u64,
    /// Cells sent or received.
    pub keys_streamed: u64,
    /// Bytes of cells sent or received.
    pub bytes_streamed: u64,
    /// Replica pairs skipped because the other replica was down.
    pub replicas_skipped: u32,
    /// Time since the repair started.
    pub elapsed: std::time::Duration,
    /// The repair has finished.
    pub done: bool,
    /// Ranges that could not be synced with some replica (skipped; the
    /// next repair retries them).
    pub failed_ranges: Vec<FailedRange>,
}

/// A token range a repair could not sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedRange {
    /// The range is (start_token, end_token].
    pub start_token: i64,
    /// Last token of the range.
    pub end_token: i64,
    /// Why it failed.
    pub error: String,
}

impl From<pb::FailedRange> for FailedRange {
    fn from(f: pb::FailedRange) -> Self {
        FailedRange {
            start_token: f.start_token,
            end_token: f.end_token,
            error: f.error,
        }
    }
}

impl From<pb::RepairProgress> for RepairProgress {
    fn from(p: pb::RepairProgress) -> Self {
        RepairProgress {
            ranges_total: p.ranges_total,
            ranges_done: p.ranges_done,
            leaves_differing: p.leaves_differing,
            keys_streamed: p.keys_streamed,
            bytes_streamed: p.bytes_streamed,
            replicas_skipped: p.replicas_skipped,
            elapsed: std::time::Duration::from_millis(p.elapsed_ms),
            done: p.done,
            failed_ranges: p.failed_ranges.into_iter().map(FailedRange::from).collect(),
        }
    }
}
