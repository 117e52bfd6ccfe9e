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

mod checkpoint;
pub mod plan;
mod progress;
mod throttle;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

pub use checkpoint::Checkpoint;
pub use plan::{Movement, SourceError};
pub use progress::{StreamHandle, StreamStatus, Streams};
use throttle::Throttle;

use crate::clock::HybridClock;
use crate::identity::NodeId;
use crate::membership::keys::{self, NodeStatus, Phase};
use crate::membership::{Change, ClusterView, Membership};
use crate::peer::{RepairTransport, ReplicaError};
use crate::ring::{Token, TokenRange};
use crate::storage::{Deleted, LocalStore, StorageError};

/// Attempts of one page before a stream fails.
const PAGE_ATTEMPTS: u32 = 30;
/// Longest pause between attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// Marks a node that decommissioned: it must not rejoin with its old data.
const DECOMMISSIONED_KEY: &str = "topology.decommissioned";

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

/// Why a topology change or cleanup was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "a topology change is in progress: {0}; one change at a time, so wait until `ringkv status` shows every node NORMAL"
    )]
    InProgress(String),
    #[error(
        "decommission would leave {remaining} nodes, fewer than replication_factor = {replication_factor}; add a node first"
    )]
    TooFewNodes {
        remaining: usize,
        replication_factor: usize,
    },
    #[error("no node with id {0} is known to this cluster")]
    UnknownNode(String),
    #[error(
        "node {name} ({id}) is up; removenode is for dead nodes (run `ringkv decommission` on it instead)"
    )]
    NodeAlive { name: String, id: NodeId },
    #[error("{0}")]
    Refused(String),
    #[error("nodes {} did not see the change within {timeout:?}; it stays in progress and resumes when this node restarts", lagging.join(", "))]
    NoAgreement {
        lagging: Vec<String>,
        timeout: Duration,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("streaming {range} from {from} to {to} failed: {error}")]
    Stream {
        range: TokenRange,
        from: NodeId,
        to: NodeId,
        error: ReplicaError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Ranges to copy, by (source, target).
type Copies = BTreeMap<(NodeId, NodeId), Vec<TokenRange>>;

/// Every live replica that keeps `movement`'s range, other than `target`;
/// an error when there is none.
fn every_live_keeper(
    movement: &Movement,
    target: NodeId,
    live: &impl Fn(&NodeId) -> bool,
) -> Result<Vec<NodeId>, SourceError> {
    let keepers: Vec<NodeId> = movement
        .kept
        .iter()
        .filter(|n| **n != target && live(n))
        .copied()
        .collect();
    if keepers.is_empty() {
        return Err(SourceError::NoLiveReplica {
            range: movement.range,
        });
    }
    Ok(keepers)
}

/// What cleanup removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub ranges: usize,
    pub deleted: Deleted,
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

    /// Whether this node decommissioned before (and must not rejoin).
    pub fn was_decommissioned(store: &LocalStore) -> Result<bool, StorageError> {
        Ok(store
            .engine()
            .meta_get(DECOMMISSIONED_KEY)?
            .is_some_and(|v| !v.is_empty()))
    }

    fn busy(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, TopologyError> {
        self.busy.try_lock().map_err(|_| {
            TopologyError::InProgress(
                "this node is already running a topology change or cleanup".into(),
            )
        })
    }

    /// Waits until the ring has been settled for `cleanup_settle` (see
    /// there), and returns the view then; refuses when it does not settle
    /// within the agreement timeout.
    async fn await_settled(
        &self,
        mut view: Arc<ClusterView>,
    ) -> Result<Arc<ClusterView>, TopologyError> {
        let deadline = tokio::time::Instant::now() + self.settings.agreement_timeout;
        loop {
            let settled = self.membership.settled_for();
            if settled.is_some_and(|d| d >= self.settings.cleanup_settle) {
                return Ok(view);
            }
            // A change that starts meanwhile refuses cleanup at once.
            if let Some(what) = view.first_change() {
                return Err(TopologyError::InProgress(what));
            }
            if tokio::time::Instant::now() >= deadline {
                let why = if view.topology_laggards().is_empty() {
                    format!(
                        "the ring did not stay settled for {:?} within {:?}",
                        self.settings.cleanup_settle, self.settings.agreement_timeout
                    )
                } else {
                    view.laggards_in_words()
                };
                return Err(TopologyError::InProgress(why));
            }
            let rest = settled.map_or(self.settings.cleanup_settle, |d| {
                self.settings.cleanup_settle.saturating_sub(d)
            });
            tokio::time::sleep(rest.min(self.membership.interval())).await;
            view = self.membership.view();
        }
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

    /// The copies `change` needs, from the current view: (source, target)
    /// pairs and their ranges. A join streams each range from the replica
    /// giving it up; a replacement and a removal, whose node giving the
    /// ranges up is dead, from every live replica that keeps them (a write
    /// acknowledged by a quorum may be on only one of them); a
    /// decommission from this node.
    fn copies(&self, change: &Change) -> Result<Copies, SourceError> {
        let view = self.membership.view();
        let mut copies = Copies::new();
        let Some(t) = view.transition() else {
            return Ok(copies);
        };
        let live = |n: &NodeId| view.is_alive(n);
        for movement in plan::movements(&t.old, &t.new) {
            let range = movement.range;
            match change {
                Change::Join(_) if movement.to.contains(&self.local) => {
                    let (source, consistent) = plan::source(
                        &movement,
                        true,
                        self.settings.allow_inconsistent_source,
                        |n| *n != self.local && live(n),
                    )?;
                    if !consistent {
                        tracing::warn!(%range, %source, "streaming from a replica other than the one giving the range up (--allow-inconsistent-source): a write acknowledged by a quorum may be missing until repair");
                    }
                    copies.entry((source, self.local)).or_default().push(range);
                }
                Change::Replace { .. } if movement.to.contains(&self.local) => {
                    let sources = every_live_keeper(&movement, self.local, &live)?;
                    for source in sources {
                        copies.entry((source, self.local)).or_default().push(range);
                    }
                }
                Change::Leave(node) if movement.from.contains(node) => {
                    for target in &movement.to {
                        copies.entry((self.local, *target)).or_default().push(range);
                    }
                }
                Change::Remove { node, .. } if movement.from.contains(node) => {
                    for target in &movement.to {
                        for source in every_live_keeper(&movement, *target, &live)? {
                            copies.entry((source, *target)).or_default().push(range);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(copies)
    }

    /// Streams what `change` needs once it is the only change in progress;
    /// plans again and streams what is new whenever the plan changed
    /// meanwhile (a source died, another change withdrew late). Copies the
    /// checkpoint holds are not repeated.
    async fn stream_change(
        &self,
        operation: &'static str,
        change: &Change,
        ignoring: &[NodeId],
        checkpoint: &mut Checkpoint,
    ) -> Result<(), TopologyError> {
        let mut streamed: Option<Copies> = None;
        let deadline = tokio::time::Instant::now() + self.settings.agreement_timeout;
        loop {
            self.await_alone(ignoring).await?;
            let plan = match self.copies(change) {
                Ok(plan) => plan,
                // A source that is down (paused, partitioned, restarting)
                // is waited for, up to the agreement timeout.
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(%error, "waiting for a streaming source");
                    tokio::time::sleep(self.membership.interval()).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if streamed.as_ref() == Some(&plan) {
                return Ok(());
            }
            for (&(source, target), ranges) in &plan {
                self.stream(operation, source, target, ranges, checkpoint)
                    .await?;
            }
            streamed = Some(plan);
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

    /// Join (or, with `replaces`, replace a dead node): announce the
    /// tokens as pending, stream every range this node gains, then turn
    /// NORMAL. Resumes from its checkpoint after a restart.
    pub async fn bootstrap(
        &self,
        tokens: &[Token],
        replaces: Option<NodeId>,
    ) -> Result<(), TopologyError> {
        let _busy = self.busy()?;
        let operation = if replaces.is_some() {
            "replace"
        } else {
            "bootstrap"
        };
        let engine = self.store.engine().clone();
        let mut checkpoint = match Checkpoint::load(engine.as_ref(), operation)? {
            Some(checkpoint) => checkpoint,
            None => Checkpoint::begin(&engine, operation, replaces).await?,
        };
        let mut pairs = vec![
            (keys::TOKENS, keys::encode_tokens(tokens)),
            (keys::PHASE, Phase::Pending.as_str().to_owned()),
            (keys::STATUS, NodeStatus::Joining.to_string()),
        ];
        if let Some(dead) = replaces {
            pairs.push((keys::REPLACES, dead.to_string()));
        }
        self.announce(pairs).await;
        tracing::info!(operation, tokens = tokens.len(), "announced pending tokens");
        self.settle().await?;
        if let Some(other) = self.contested(&[]) {
            // Withdraw: back to choosing tokens, owning nothing. The tokens
            // go first: a restart must not find them without the
            // checkpoint that marks them as not yet streamed.
            tracing::warn!(%other, "another topology change started at the same time; withdrawing");
            self.announce(vec![
                (keys::TOKENS, String::new()),
                (keys::PHASE, String::new()),
                (keys::REPLACES, String::new()),
            ])
            .await;
            {
                let engine = engine.clone();
                crate::storage::blocking(move || {
                    crate::membership::persist::clear_tokens(engine.as_ref())
                        .map_err(|e| StorageError::Task(e.to_string()))
                })
                .await??;
            }
            Checkpoint::clear(&engine, operation).await?;
            return Err(TopologyError::InProgress(other));
        }
        self.announce(vec![(keys::PHASE, Phase::ReadOld.as_str().to_owned())])
            .await;
        self.agree().await?;
        let change = match replaces {
            Some(dead) => Change::Replace {
                node: self.local,
                replaces: dead,
            },
            None => Change::Join(self.local),
        };
        self.stream_change(operation, &change, &[], &mut checkpoint)
            .await?;

        self.announce(vec![(keys::PHASE, Phase::ReadNew.as_str().to_owned())])
            .await;
        self.agree().await?;
        let mut done = vec![
            (keys::PHASE.to_owned(), String::new()),
            (keys::STATUS.to_owned(), NodeStatus::Normal.to_string()),
        ];
        if let Some(dead) = replaces {
            // Remembered before the checkpoint goes: a restart in between
            // must still count the replaced node as removed.
            let mut removed = self.membership.view().removed().clone();
            removed.insert(dead);
            let (engine, remembered) = (engine.clone(), removed.clone());
            crate::storage::blocking(move || {
                crate::membership::persist::save_removed(engine.as_ref(), &remembered)
                    .map_err(|e| StorageError::Task(e.to_string()))
            })
            .await??;
            done.extend(keys::encode_removed(&removed));
        }
        // Streamed and agreed: from here a restart comes back NORMAL.
        Checkpoint::clear(&engine, operation).await?;
        self.announce(done).await;
        tracing::info!(operation, "joined: NORMAL");
        Ok(())
    }

    /// A bootstrap (or replacement) that was started and not finished:
    /// `Some(replaces)`.
    pub fn pending_bootstrap(store: &LocalStore) -> Result<Option<Option<NodeId>>, StorageError> {
        for operation in ["bootstrap", "replace"] {
            if let Some(checkpoint) = Checkpoint::load(store.engine().as_ref(), operation)? {
                return Ok(Some(checkpoint.replaces));
            }
        }
        Ok(None)
    }

    /// Marks a bootstrap as started, before its tokens are saved, so a
    /// restart at any point resumes it.
    pub async fn begin_bootstrap(
        store: &LocalStore,
        replaces: Option<NodeId>,
    ) -> Result<(), StorageError> {
        let operation = if replaces.is_some() {
            "replace"
        } else {
            "bootstrap"
        };
        Checkpoint::begin(store.engine(), operation, replaces).await?;
        Ok(())
    }

    /// Decommission this node: LEAVING, stream every range it holds to
    /// the new replicas, LEFT. The caller stops the node afterwards.
    pub async fn decommission(&self) -> Result<(), TopologyError> {
        let _busy = self.busy()?;
        let view = self.membership.view();
        self.idle(&view)?;
        let me = view
            .member(&self.local)
            .ok_or_else(|| TopologyError::Refused("this node is not a member yet".into()))?;
        if me.status != NodeStatus::Normal {
            return Err(TopologyError::Refused(format!(
                "this node is {}; only a NORMAL node can decommission",
                me.status
            )));
        }
        let nodes = view.ring().nodes().len();
        let rf = self.settings.replication_factor;
        if nodes.saturating_sub(1) < rf {
            return Err(TopologyError::TooFewNodes {
                remaining: nodes.saturating_sub(1),
                replication_factor: rf,
            });
        }
        let operation = "decommission";
        let engine = self.store.engine().clone();
        let mut checkpoint = Checkpoint::begin(&engine, operation, None).await?;
        self.announce(vec![
            (keys::PHASE, Phase::Pending.as_str().to_owned()),
            (keys::STATUS, NodeStatus::Leaving.to_string()),
        ])
        .await;
        tracing::info!("decommissioning: LEAVING");
        let mut reads_moved = false;
        let outcome = async {
            self.settle().await?;
            if let Some(other) = self.contested(&[]) {
                return Err(TopologyError::InProgress(other));
            }
            self.announce(vec![(keys::PHASE, Phase::ReadOld.as_str().to_owned())])
                .await;
            self.agree().await?;
            self.stream_change(operation, &Change::Leave(self.local), &[], &mut checkpoint)
                .await?;
            reads_moved = true;
            self.announce(vec![(keys::PHASE, Phase::ReadNew.as_str().to_owned())])
                .await;
            self.agree().await
        }
        .await;
        if let Err(error) = outcome {
            tracing::warn!(%error, "decommission failed; back to NORMAL");
            self.roll_back_leave(reads_moved).await;
            Checkpoint::clear(&engine, operation).await?;
            return Err(error);
        }
        {
            let engine = engine.clone();
            crate::storage::blocking(move || engine.meta_put(DECOMMISSIONED_KEY, b"1")).await??;
        }
        Checkpoint::clear(&engine, operation).await?;
        self.announce(vec![
            (keys::PHASE, String::new()),
            (keys::STATUS, NodeStatus::Left.to_string()),
        ])
        .await;
        // Let the others hear it before this node stops gossiping.
        if let Err(error) = self.agree().await {
            tracing::warn!(%error, "not every node saw LEFT yet; gossip will tell them");
        }
        tracing::info!("decommissioned: LEFT");
        Ok(())
    }

    /// Undoes a decommission that did not finish: back to NORMAL, through
    /// `read_old` first when reads had moved to the new replicas (a node
    /// still reading from those must not meet one that writes only to the
    /// old ones). This node still holds its ranges and got every write
    /// meanwhile, so the old ring is whole.
    async fn roll_back_leave(&self, reads_moved: bool) {
        if reads_moved {
            self.announce(vec![(keys::PHASE, Phase::ReadOld.as_str().to_owned())])
                .await;
            if let Err(error) = self.agree().await {
                tracing::warn!(%error, "not every node saw the decommission roll back to read_old");
            }
        }
        self.announce(vec![
            (keys::PHASE, String::new()),
            (keys::STATUS, NodeStatus::Normal.to_string()),
        ])
        .await;
    }

    /// Whether a decommission was interrupted (the node stopped during it).
    pub fn decommission_interrupted(store: &LocalStore) -> Result<bool, StorageError> {
        Ok(Checkpoint::load(store.engine().as_ref(), "decommission")?.is_some())
    }

    /// At the start of a node whose decommission was interrupted (it
    /// gossips LEAVING at `read_old` from its first message): rolls it
    /// back to NORMAL once every node has seen `read_old`.
    pub async fn abandon_decommission(&self) -> Result<(), TopologyError> {
        tracing::warn!("a decommission was interrupted; rolling it back (run it again to leave)");
        self.roll_back_leave(true).await;
        Checkpoint::clear(self.store.engine(), "decommission").await?;
        Ok(())
    }

    /// Remove a dead node: its ranges are re-replicated from the surviving
    /// replicas to the new ones, then it is gossiped as removed.
    pub async fn remove(&self, node: NodeId) -> Result<(), TopologyError> {
        let _busy = self.busy()?;
        let view = self.membership.view();
        // A node that left may be forgotten by now but is remembered as
        // removed: a repeated removenode says so rather than "unknown".
        if view.removed().contains(&node) && view.member(&node).is_none() {
            return Err(TopologyError::Refused(format!(
                "node {node} has already left the cluster"
            )));
        }
        let member = view
            .member(&node)
            .ok_or_else(|| TopologyError::UnknownNode(node.to_string()))?;
        if member.status == NodeStatus::Left {
            return Err(TopologyError::Refused(format!(
                "node {} ({node}) has already left the cluster",
                member.name
            )));
        }
        if node == self.local || view.is_alive(&node) {
            return Err(TopologyError::NodeAlive {
                name: member.name.clone(),
                id: node,
            });
        }
        // A dead node's own change (a join or decommission it died in) is
        // what removing it ends; any other change must finish first.
        if let Some(change) = view.change_besides(&[self.local, node]) {
            return Err(TopologyError::InProgress(change));
        }
        let operation = "removenode";
        let engine = self.store.engine().clone();
        let mut checkpoint = Checkpoint::begin(&engine, operation, None).await?;
        self.announce(vec![(
            keys::REMOVING,
            keys::encode_removing(&node, Phase::Pending),
        )])
        .await;
        tracing::info!(node = %member.name, "removing a dead node");
        let outcome = async {
            self.settle().await?;
            if let Some(other) = self.contested(&[node]) {
                return Err(TopologyError::InProgress(other));
            }
            self.announce(vec![(
                keys::REMOVING,
                keys::encode_removing(&node, Phase::ReadOld),
            )])
            .await;
            self.agree().await?;
            let change = Change::Remove {
                node,
                by: self.local,
            };
            self.stream_change(operation, &change, &[node], &mut checkpoint)
                .await?;
            self.announce(vec![(
                keys::REMOVING,
                keys::encode_removing(&node, Phase::ReadNew),
            )])
            .await;
            self.agree().await
        }
        .await;
        if let Err(error) = outcome {
            tracing::warn!(%error, "removenode failed; the node stays in the ring");
            self.announce(vec![(keys::REMOVING, String::new())]).await;
            return Err(error);
        }
        Checkpoint::clear(&engine, operation).await?;
        let mut removed = view.removed().clone();
        removed.insert(node);
        let mut done = keys::encode_removed(&removed);
        done.push((keys::REMOVING.to_owned(), String::new()));
        self.announce(done).await;
        if let Err(error) = self.agree().await {
            tracing::warn!(%error, "not every node saw the removal yet; gossip will tell them");
        }
        tracing::info!(node = %member.name, "removed");
        Ok(())
    }

    /// Deletes the local data of every range this node does not replicate.
    pub async fn cleanup(&self) -> Result<CleanupReport, TopologyError> {
        let _busy = self.busy()?;
        let view = self.membership.view();
        if let Some(what) = view.first_change() {
            return Err(TopologyError::InProgress(what));
        }
        if !view.ring().nodes().contains(&self.local) {
            return Err(TopologyError::Refused(
                "this node owns no tokens in the ring; cleanup would delete everything".into(),
            ));
        }
        let view = self.await_settled(view).await?;
        let ring = view.ring();
        // Ranges this node does not replicate, neighbours merged.
        let mut unowned: Vec<TokenRange> = Vec::new();
        for (range, replicas) in ring.ranges() {
            if replicas.contains(&self.local) {
                continue;
            }
            match unowned.last_mut() {
                Some(last) if last.end == range.start => last.end = range.end,
                _ => unowned.push(range),
            }
        }
        let mut report = CleanupReport {
            ranges: unowned.len(),
            ..CleanupReport::default()
        };
        for range in unowned {
            // A change that started meanwhile may stream into these ranges
            // or send this node writes for them: decide range by range, in
            // the same step as the delete as far as writes are concerned
            // (`delete_range_if`), so that nothing written after the
            // decision is deleted.
            let engine = self.store.engine().clone();
            let (membership, ring) = (self.membership.clone(), ring.clone());
            let settle = self.settings.cleanup_settle;
            let deleted = crate::storage::blocking(move || {
                engine.delete_range_if(range, &|| {
                    let now = membership.view();
                    now.transition().is_none()
                        && Arc::ptr_eq(now.ring(), &ring)
                        && membership.settled_for().is_some_and(|d| d >= settle)
                })
            })
            .await??;
            let Some(deleted) = deleted else {
                let now = self.membership.view();
                return Err(TopologyError::InProgress(
                    now.change_besides(&[self.local])
                        .unwrap_or_else(|| "the ring changed during cleanup".into()),
                ));
            };
            report.deleted.keys += deleted.keys;
            report.deleted.bytes += deleted.bytes;
        }
        metrics::counter!(crate::metrics::CLEANUP_BYTES).increment(report.deleted.bytes);
        tracing::info!(
            ranges = report.ranges,
            keys = report.deleted.keys,
            bytes = report.deleted.bytes,
            "cleanup done"
        );
        Ok(report)
    }

    /// Copies `ranges` from `source` to `target`, skipping what the
    /// checkpoint says is done.
    async fn stream(
        &self,
        operation: &'static str,
        source: NodeId,
        target: NodeId,
        ranges: &[TokenRange],
        checkpoint: &mut Checkpoint,
    ) -> Result<(), TopologyError> {
        let handle = self
            .streams
            .start(operation, (source, target), ranges.len(), self.local);
        let outcome = self
            .copy_ranges(&handle, source, target, ranges, checkpoint)
            .await;
        handle.finish(outcome.as_ref().err().map(ToString::to_string));
        outcome
    }

    async fn copy_ranges(
        &self,
        handle: &StreamHandle,
        source: NodeId,
        target: NodeId,
        ranges: &[TokenRange],
        checkpoint: &mut Checkpoint,
    ) -> Result<(), TopologyError> {
        let mut throttle = Throttle::new(self.settings.throughput_bytes_per_second);
        let engine = self.store.engine().clone();
        for range in ranges {
            let pair = (source, target);
            if checkpoint.is_done(*range, pair) {
                handle.range_done();
                continue;
            }
            let mut after = checkpoint.resume_after(*range, pair);
            let failed = |error| TopologyError::Stream {
                range: *range,
                from: source,
                to: target,
                error,
            };
            loop {
                let (cells, more) =
                    retrying(|| self.transport.stream_range(source, *range, after.clone()))
                        .await
                        .map_err(failed)?;
                if let Some((last, _)) = cells.last() {
                    let last: Bytes = last.clone();
                    let keys = cells.len() as u64;
                    let bytes: u64 = cells
                        .iter()
                        .map(|(k, c)| (k.len() + c.encoded_len()) as u64)
                        .sum();
                    for (_, cell) in &cells {
                        self.clock.observe(cell.timestamp);
                    }
                    retrying(|| self.transport.write_batch(target, cells.clone()))
                        .await
                        .map_err(failed)?;
                    handle.copied(keys, bytes);
                    checkpoint.advance(&engine, *range, pair, &last).await?;
                    throttle.pace(bytes).await;
                    after = Some(last);
                }
                if !more {
                    break;
                }
            }
            checkpoint.finish(&engine, *range, pair).await?;
            handle.range_done();
        }
        Ok(())
    }
}

/// Runs `call` until it succeeds, up to [`PAGE_ATTEMPTS`] times with
/// growing pauses: a peer that restarts mid-stream is waited for.
async fn retrying<T>(
    mut call: impl FnMut() -> BoxFuture<'static, Result<T, ReplicaError>>,
) -> Result<T, ReplicaError> {
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt >= PAGE_ATTEMPTS => return Err(error),
            Err(error) => {
                tracing::debug!(%error, attempt, "stream page failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
                attempt += 1;
            }
        }
    }
}
