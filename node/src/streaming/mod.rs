//! Streaming: moving token ranges between nodes when the ring changes —
//! bootstrap (join), replace, decommission and removenode — and cleanup of
//! the ranges a node no longer holds.
//!
//! Every change runs the same protocol, driven by one node (the joiner,
//! the replacer, the leaver, or the node running removenode) through what
//! it gossips:
//! 1. Refuse if another change is in progress (see "one change at a time").
//! 2. Announce the change in phase `read_old`. Every coordinator that sees
//!    it sends writes to the replicas before *and* after the change, and
//!    needs one more acknowledgement per replica added
//!    (`ClusterView::write_replicas`), so a write reaches its level on both
//!    replica sets; reads still use the old replicas.
//! 3. Wait until every live node gossips the topology hash this node sees
//!    (`Membership::await_agreement`), then one write timeout more, so no
//!    write started under the old ring is still in flight. The change is
//!    announced `pending` first: if, once every node has seen it, another
//!    change shows up that was announced at the same time, the one whose
//!    driver has the larger id (or that is still `pending` while the other
//!    is not) withdraws; the survivor moves on to `read_old`.
//! 4. Stream: for each range whose replicas change (`plan::movements`),
//!    copy it to each new replica page by page (`Peer.StreamRange`, one
//!    internode batch per page, then `WriteBatch`), throttled to
//!    `stream_throughput_mb`, one page in flight per stream (backpressure),
//!    checkpointed in `meta` after every page. A join streams each range
//!    from the replica giving it up (strict source); another replica only
//!    with `--allow-inconsistent-source`. A replacement or removal, whose
//!    node giving the range up is dead, streams it from every live replica
//!    that keeps it: a write a quorum acknowledged may be on one of them
//!    only. The plan is made once this change is the only one in
//!    progress, and made again (streaming what is new) if it changed by
//!    the end.
//! 5. Announce phase `read_new` and wait for agreement: reads move to the
//!    new replicas while writes still go to both.
//! 6. Finish: the joiner turns NORMAL, the leaver LEFT, the removed or
//!    replaced node is gossiped as removed; writes go to the new replicas
//!    only.
//!
//! Because every node passes `read_new` before any passes the end, a
//! coordinator that reads from the new replicas never meets one that
//! writes only to the old, and vice versa.
//!
//! One change at a time: a node refuses to start a change while its view
//! shows another in progress, naming it; a joiner waits for it (up to
//! `join_timeout_ms`). The rule is checked against gossip, not agreed by
//! consensus (CAVEATS).
//!
//! Cleanup deletes the ranges this node does not replicate, range by
//! range. For each, the decision (no change in progress in this node's
//! view, the ring it started from unchanged) and the range delete are one
//! step for the store (`Storage::delete_range_if`): a row written after the
//! decision is never deleted. A change started meanwhile cannot stream into
//! this node before this node has seen it (step 3 waits for every live
//! node), and once it has, the next decision refuses.
//!
//! The files, by job: `change` (one driver for every change, and the
//! operations it runs), `copy` (what a change copies, page by page),
//! `cleanup`, `error`; `plan` (which ranges move), `checkpoint`,
//! `progress` and `throttle` serve the copying.
//!
//! CAVEATS:
//! - The one-at-a-time rule rests on gossip and the failure detector, not
//!   on consensus: a node partitioned away (seen down) during another's
//!   announcement can start a change of its own when it comes back before
//!   it has heard of the first; the two then overlap (the CASSANDRA-2434
//!   hazard) until the withdrawal check of the later one sees the first.
//!   Cassandra 5 (TCM) and ScyllaDB (Raft) rule this out with a consensus
//!   log; ringkv has none yet.
//! - A node down during a change does not take part in the agreement; if
//!   it comes back with an old view it may coordinate by it until gossip
//!   reaches it (about one round).
//! - Streamed cells are as durable on the target as any write under its
//!   `commitlog_sync`.
//! - Removenode relays every range through the node that runs it.
//! - A restarted node routes by the view it remembers (phases included)
//!   until gossip reaches it, which takes about a round.
//! - A node that a change's driver sees down takes no part in the
//!   change's agreement; should it run cleanup in the moment between
//!   coming back and hearing of the change, it may delete rows the change
//!   wrote or streamed to it before that (another replica still holds
//!   them; repair brings them back).
//! - Removed node ids are gossiped over at most `keys::MAX_REMOVED_SHARDS`
//!   keys of `keys::MAX_REMOVED` each (16,384); past that many removals a
//!   node started afresh may not learn of the rest.

mod change;
mod checkpoint;
mod cleanup;
mod copy;
mod error;
pub mod plan;
mod progress;
mod throttle;

use std::sync::Arc;
use std::time::Duration;

pub use change::Operation;
pub use checkpoint::Checkpoint;
pub use cleanup::CleanupReport;
pub use error::TopologyError;
pub use plan::{Movement, SourceError};
pub use progress::{StreamHandle, StreamStatus, Streams};

/// The name topology changes run under (see `crate::workers`).
pub const WORKER: &str = "topology change";

use crate::clock::HybridClock;
use crate::identity::NodeId;
use crate::membership::keys::Phase;
use crate::membership::{ClusterView, Membership};
use crate::peer::RepairTransport;
use crate::storage::LocalStore;

/// Settings of topology changes.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// 0: unthrottled.
    pub throughput_bytes_per_second: u64,
    /// A join may stream a range from a replica other than the one giving
    /// it up when that one is down.
    pub allow_inconsistent_source: bool,
    /// How long each step waits for every live node to see it.
    pub agreement_timeout: Duration,
    /// Wait after agreement for writes started under the old ring (the
    /// write timeout).
    pub drain: Duration,
    /// How long the ring must have been settled (no change in progress,
    /// every live node on this topology) before cleanup deletes: a request
    /// a node routed by the old ring can still ask this node for the
    /// ranges it gave up until then (the longer of the read and write
    /// timeouts, and two gossip rounds for the news to travel).
    pub cleanup_settle: Duration,
    pub replication_factor: usize,
}

/// Drives this node's part in topology changes.
pub struct Topology {
    local: NodeId,
    membership: Arc<Membership>,
    transport: Arc<dyn RepairTransport>,
    store: LocalStore,
    clock: Arc<HybridClock>,
    settings: StreamSettings,
    streams: Arc<Streams>,
    /// Held while this node drives a change or runs a cleanup.
    busy: tokio::sync::Mutex<()>,
}

impl Topology {
    pub fn new(
        membership: Arc<Membership>,
        transport: Arc<dyn RepairTransport>,
        store: LocalStore,
        clock: Arc<HybridClock>,
        settings: StreamSettings,
    ) -> Self {
        Self {
            local: membership.view().local(),
            membership,
            transport,
            store,
            clock,
            settings,
            streams: Arc::new(Streams::default()),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// The streams this node ran or runs.
    pub fn streams(&self) -> &Arc<Streams> {
        &self.streams
    }

    /// The streams under way, as the topology change worker's status.
    pub fn streams_in_words(&self) -> Vec<String> {
        let view = self.membership.view();
        self.streams
            .snapshot()
            .into_iter()
            .filter(|stream| !stream.done)
            .map(|stream| {
                format!(
                    "{} stream {} → {}: {} of {} ranges, {} keys, {} bytes",
                    stream.operation,
                    view.name_of(&stream.source),
                    view.name_of(&stream.target),
                    stream.ranges_done,
                    stream.ranges_total,
                    stream.keys,
                    stream.bytes
                )
            })
            .collect()
    }

    fn busy(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, TopologyError> {
        self.busy.try_lock().map_err(|_| {
            TopologyError::InProgress(
                "this node is already running a topology change or cleanup".into(),
            )
        })
    }

    fn idle(&self, view: &ClusterView) -> Result<(), TopologyError> {
        match view.change_besides(&[self.local]) {
            Some(change) => Err(TopologyError::InProgress(change)),
            None => Ok(()),
        }
    }

    /// After this node's change reached every node: another change that
    /// was announced at the same time, which this one must yield to — one
    /// already past its announcement, or one whose driver has a smaller id.
    /// Changes driven by `ignoring` (a dead node being removed) do not
    /// count.
    fn contested(&self, ignoring: &[NodeId]) -> Option<String> {
        let view = self.membership.view();
        let changes = &view.transition()?.changes;
        changes
            .iter()
            .filter(|(change, _)| {
                change.driver() != self.local && !ignoring.contains(&change.driver())
            })
            .find(|(change, phase)| *phase != Phase::Pending || change.driver() < self.local)
            .map(|(change, _)| view.describe(change))
    }

    /// Waits until this node's change is the only one in progress (besides
    /// those driven by `ignoring`): a change that lost the contest takes a
    /// moment to withdraw, and its ranges must not shape this one's plan.
    async fn await_alone(&self, ignoring: &[NodeId]) -> Result<(), TopologyError> {
        let deadline = tokio::time::Instant::now() + self.settings.agreement_timeout;
        let mut drivers = ignoring.to_vec();
        drivers.push(self.local);
        loop {
            let view = self.membership.view();
            let Some(other) = view.change_besides(&drivers) else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(TopologyError::InProgress(other));
            }
            tokio::time::sleep(self.membership.interval()).await;
        }
    }

    async fn announce<K: AsRef<str>>(&self, pairs: Vec<(K, String)>) {
        self.membership.announce(pairs).await;
    }

    async fn agree(&self) -> Result<(), TopologyError> {
        self.membership
            .await_agreement(self.settings.agreement_timeout)
            .await
            .map_err(|lagging| TopologyError::NoAgreement {
                lagging,
                timeout: self.settings.agreement_timeout,
            })
    }

    /// Steps 3 after an announcement: every live node saw it, and writes
    /// started before have ended.
    async fn settle(&self) -> Result<(), TopologyError> {
        self.agree().await?;
        tokio::time::sleep(self.settings.drain).await;
        Ok(())
    }
}
