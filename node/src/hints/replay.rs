//! Hint replay: handing held writes to a replica that is back.
//!
//! Every second the replayer looks at the nodes it holds hints for:
//! - a node that left the cluster (or is unknown to it) loses its hints;
//! - hints older than the window (`max_hint_window_ms`, never more than
//!   `gc_grace`) are dropped: replaying them could bring back data whose
//!   tombstone has been purged, and anti-entropy covers them anyway;
//! - a node that is up gets its hints, oldest first, in batches bounded by
//!   count and bytes ([`BatchLimit`]: one large hint goes alone), at most
//!   `hint_replay_throttle_kb` per second, each batch deleted once the
//!   node acknowledged it. A failed batch stops replay to that node until
//!   the next round.
//! - targets are replayed to independently: a target that hangs (paused,
//!   black-holed) holds up only its own replay, until the internode
//!   deadline fails it, never the replay to the others.
//!
//! Hints carry the original write's timestamp, so replay after newer writes
//! is harmless: LWW keeps the newer value.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::store::{DropReason, Hint, HintStore};
use crate::clock::Timestamp;
use crate::identity::NodeId;
use crate::membership::{NodeStatus, ViewHandle};
use crate::metrics::HINTS_REPLAYED;
use crate::peer::{RepairTransport, ReplicaError};
use crate::storage::BatchLimit;
use crate::storage::batch::MAX_BATCH_ENTRIES;

/// How often the replayer looks for work.
const ROUND: Duration = Duration::from_secs(1);
/// Hints per replay batch (and at most `MAX_BATCH_BYTES` of them).
const BATCH: usize = 200;

/// Settings of replay.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySettings {
    /// Hints older than this are dropped.
    pub window: Duration,
    /// Replay bandwidth, bytes per second, per node.
    pub throttle_bytes_per_second: u64,
}

/// The replay worker; runs until `stop`.
pub async fn run_replay(
    hints: Arc<HintStore>,
    view: ViewHandle,
    transport: Arc<dyn RepairTransport>,
    settings: ReplaySettings,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One replay in flight per target; a new round starts the targets that
    // are not busy, so a stuck target never delays another.
    let mut busy: HashSet<NodeId> = HashSet::new();
    let mut running: FuturesUnordered<BoxFuture<'static, NodeId>> = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(target) = running.next() => {
                busy.remove(&target);
                continue;
            }
            _ = stop.cancelled() => return,
        }
        for target in hints.targets() {
            if !busy.insert(target) {
                continue;
            }
            let (hints, view, transport) = (hints.clone(), view.clone(), transport.clone());
            running.push(Box::pin(async move {
                let outcome = replay_to(&hints, &view, transport.as_ref(), settings, target).await;
                if let Err(error) = outcome {
                    tracing::debug!(node = %target, %error, "hint replay paused");
                }
                target
            }));
        }
    }
}

fn expired(hint: &Hint, window: Duration, now: Timestamp) -> bool {
    let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    hint.created.saturating_add(window) < now
}

/// One round for one target.
async fn replay_to(
    hints: &HintStore,
    view: &ViewHandle,
    transport: &dyn RepairTransport,
    settings: ReplaySettings,
    target: NodeId,
) -> Result<(), String> {
    let view = view.load_full();
    // Hints for a node being replaced, or replaced, go to its replacement,
    // which now holds its ranges.
    let replacement = view
        .members()
        .find(|m| m.replaces == Some(target) && m.status != NodeStatus::Left);
    let (receiver, member) = match (replacement, view.member(&target)) {
        (Some(replacement), _) => (replacement.id, replacement),
        (None, Some(member)) if member.status != NodeStatus::Left => (target, member),
        (None, _) => {
            hints
                .drop_all(target, DropReason::Left)
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
    };
    let alive = view.is_alive(&receiver);
    let mut replayed = 0u64;
    loop {
        let batch = hints
            .oldest(target, BatchLimit::entries(BATCH))
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            break;
        }
        let (old, mut fresh): (Vec<Hint>, Vec<Hint>) = batch
            .into_iter()
            .partition(|h| expired(h, settings.window, hints.wall().micros()));
        if !old.is_empty() {
            hints.count_dropped(target, DropReason::Expired, old.len() as u64);
            hints.remove(target, &old).map_err(|e| e.to_string())?;
        }
        if !alive {
            // Down: only sweep the expired hints at the front.
            if fresh.is_empty() {
                continue;
            }
            break;
        }
        if fresh.is_empty() {
            continue;
        }
        // A hint may hold a partition batch of many cells: keep the
        // batch within the receiver's bound on cells (a hint goes whole,
        // and the first goes in any case).
        let mut cells = 0;
        let fits = fresh
            .iter()
            .take_while(|hint| {
                let first = cells == 0;
                cells += hint.entries.len();
                first || cells <= MAX_BATCH_ENTRIES
            })
            .count();
        fresh.truncate(fits);
        let bytes: u64 = fresh.iter().map(Hint::size).sum();
        let entries = fresh.iter().flat_map(|h| h.entries.clone()).collect();
        match transport.write_batch(receiver, entries).await {
            Ok(()) => {}
            // Some hint breaks a bound the receiver will not lift: send
            // them one at a time and drop the ones it refuses, rather than
            // retry the batch (and hold up every later hint) forever.
            Err(ReplicaError::Refused(_)) => {
                for hint in &fresh {
                    let one = hint.entries.clone();
                    match transport.write_batch(receiver, one).await {
                        Ok(()) => {}
                        Err(ReplicaError::Refused(why)) => {
                            tracing::warn!(node = %member.name, %why, "dropping a hint its target refuses");
                            hints.count_dropped(target, DropReason::Refused, 1);
                        }
                        Err(error) => return Err(error.to_string()),
                    }
                    hints
                        .remove(target, std::slice::from_ref(hint))
                        .map_err(|e| e.to_string())?;
                }
                continue;
            }
            Err(error) => return Err(error.to_string()),
        }
        hints.remove(target, &fresh).map_err(|e| e.to_string())?;
        metrics::counter!(HINTS_REPLAYED, "target" => hints.label(&target))
            .increment(fresh.len() as u64);
        replayed += fresh.len() as u64;
        let pause = Duration::from_secs_f64(
            bytes as f64 / settings.throttle_bytes_per_second.max(1) as f64,
        );
        tokio::time::sleep(pause).await;
    }
    if replayed > 0 {
        tracing::info!(node = %member.name, replayed, "replayed hints");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{ClusterView, Member};
    use crate::peer::fake::{Behaviour, FakeCluster, replica};
    use crate::ring::Token;
    use crate::storage::{Cell, MemoryStorage};
    use arc_swap::ArcSwap;
    use bytes::Bytes;

    fn node(n: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(n))
    }

    /// The row key of the plain key `key`, as hints hold it.
    fn row(key: &str) -> Vec<u8> {
        crate::storage::key::plain_key(key.as_bytes())
    }

    fn member(n: u128, status: NodeStatus, alive: bool) -> Member {
        Member {
            status,
            alive,
            ..Member::normal(node(n), vec![Token(n as i64)])
        }
    }

    const SETTINGS: ReplaySettings = ReplaySettings {
        window: Duration::from_secs(3600),
        throttle_bytes_per_second: 1 << 30,
    };

    #[tokio::test]
    async fn hints_go_to_live_targets_wait_for_down_ones_and_are_dropped_for_departed_ones() {
        let hints = HintStore::open(Arc::new(MemoryStorage::default()), 1 << 20).expect("hints");
        let cell = Cell::live(1, Bytes::from_static(b"v"), None);
        for target in [2, 3, 4, 5] {
            hints
                .store(node(target), &row(&format!("k{target}")), &cell)
                .expect("store");
        }
        // n2 up, n3 down, n4 left, n5 unknown to the cluster.
        let members = [
            member(1, NodeStatus::Normal, true),
            member(2, NodeStatus::Normal, true),
            member(3, NodeStatus::Normal, false),
            member(4, NodeStatus::Left, true),
        ];
        let view = view_of(members);
        let transport = FakeCluster::of([(node(2), replica()), (node(3), replica())]);
        for target in [2, 3, 4, 5] {
            replay_to(&hints, &view, &transport, SETTINGS, node(target))
                .await
                .expect("replay");
        }
        let written = transport.written();
        assert_eq!(written, vec![(node(2), Bytes::from(row("k2")))]);
        assert_eq!(
            hints.targets(),
            vec![node(3)],
            "only the down node's hint is kept"
        );
    }

    #[tokio::test]
    async fn hints_for_a_replaced_node_go_to_its_replacement() {
        let hints = HintStore::open(Arc::new(MemoryStorage::default()), 1 << 20).expect("hints");
        let cell = Cell::live(1, Bytes::from_static(b"v"), None);
        hints.store(node(3), &row("k3"), &cell).expect("store");
        // n3 is dead; n4 replaces it (bootstrapping with n3's tokens).
        let replacer = Member {
            status: NodeStatus::Joining,
            replaces: Some(node(3)),
            tokens: vec![Token(3)],
            ..member(4, NodeStatus::Joining, true)
        };
        let members = [
            member(1, NodeStatus::Normal, true),
            member(3, NodeStatus::Normal, false),
            replacer,
        ];
        let view = view_of(members);
        let transport = FakeCluster::of([(node(3), replica()), (node(4), replica())]);
        replay_to(&hints, &view, &transport, SETTINGS, node(3))
            .await
            .expect("replay");
        assert_eq!(transport.written(), vec![(node(4), Bytes::from(row("k3")))]);
        assert!(hints.targets().is_empty(), "delivered, so deleted");
    }

    /// Regression: a hint its target refuses for good (here a deletions
    /// entry that deletes nothing) was retried with its batch forever,
    /// holding up every later hint for that node.
    #[tokio::test]
    async fn a_hint_the_target_refuses_is_dropped_and_the_rest_delivered() {
        let hints = HintStore::open(Arc::new(MemoryStorage::default()), 1 << 20).expect("hints");
        let cell = Cell::live(1, Bytes::from_static(b"v"), None);
        hints.store(node(2), &row("before"), &cell).expect("store");
        let nothing = Cell::live(
            1,
            Bytes::from(crate::storage::deletions::Deletions::default().encode()),
            Some(1),
        );
        hints
            .store(node(2), &crate::storage::key::deletions_key(b"p"), &nothing)
            .expect("store");
        hints.store(node(2), &row("after"), &cell).expect("store");
        let view = view_of([
            member(1, NodeStatus::Normal, true),
            member(2, NodeStatus::Normal, true),
        ]);
        let transport = FakeCluster::of([(node(2), replica()), (node(3), replica())]);
        replay_to(&hints, &view, &transport, SETTINGS, node(2))
            .await
            .expect("replay");
        assert!(hints.targets().is_empty(), "nothing left to retry");
        for key in ["before", "after"] {
            assert!(transport.stored(node(2), key.as_bytes()).is_some(), "{key}");
        }
    }

    #[tokio::test]
    async fn hints_past_the_window_are_dropped_not_replayed() {
        let hints = HintStore::open(Arc::new(MemoryStorage::default()), 1 << 20).expect("hints");
        let cell = Cell::live(1, Bytes::from_static(b"v"), None);
        hints.store(node(2), &row("old"), &cell).expect("store");
        let members = [
            member(1, NodeStatus::Normal, true),
            member(2, NodeStatus::Normal, false),
        ];
        let view = view_of(members);
        let transport = FakeCluster::of([(node(2), replica()), (node(3), replica())]);
        let expired = ReplaySettings {
            window: Duration::ZERO,
            ..SETTINGS
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        // Even while the target is down, expired hints are swept.
        replay_to(&hints, &view, &transport, expired, node(2))
            .await
            .expect("replay");
        assert!(hints.targets().is_empty());
        assert!(transport.written().is_empty());
    }

    fn view_of(members: impl IntoIterator<Item = Member>) -> ViewHandle {
        Arc::new(ArcSwap::from_pointee(ClusterView::build(
            node(1),
            3,
            members,
            None,
        )))
    }

    /// Regression: 100 hints of 1 MiB went as one 100 MiB batch, over the
    /// internode message limit, failed, and were retried until they expired.
    #[tokio::test]
    async fn large_hints_are_replayed_in_batches_bounded_by_bytes() {
        let hints = HintStore::open(Arc::new(MemoryStorage::default()), 1 << 30).expect("hints");
        let cell = Cell::live(1, Bytes::from(vec![7u8; 1 << 20]), None);
        for i in 0..100 {
            hints
                .store(node(2), &row(&format!("big{i}")), &cell)
                .expect("store");
        }
        let view = view_of([
            member(1, NodeStatus::Normal, true),
            member(2, NodeStatus::Normal, true),
        ]);
        let transport = FakeCluster::of([(node(2), replica()), (node(3), replica())]);
        replay_to(&hints, &view, &transport, SETTINGS, node(2))
            .await
            .expect("replay");
        let batches: Vec<usize> = transport.batches().iter().map(|(_, b)| *b).collect();
        assert_eq!(transport.written().len(), 100, "every hint delivered");
        assert!(
            batches
                .iter()
                .all(|&b| b <= crate::storage::batch::MAX_BATCH_BYTES + (1 << 20) + 64),
            "batches of {batches:?} bytes"
        );
        assert!(batches.len() >= 50, "{} batches", batches.len());
        assert!(hints.targets().is_empty());
    }

    /// Regression: replay went target by target, so one target that never
    /// answered held up hint delivery to every other node.
    #[tokio::test(start_paused = true)]
    async fn a_stuck_target_does_not_hold_up_replay_to_the_others() {
        let hints =
            Arc::new(HintStore::open(Arc::new(MemoryStorage::default()), 1 << 20).expect("hints"));
        let cell = Cell::live(1, Bytes::from_static(b"v"), None);
        let view = view_of([
            member(1, NodeStatus::Normal, true),
            member(2, NodeStatus::Normal, true),
            member(3, NodeStatus::Normal, true),
        ]);
        let transport = FakeCluster::of([(node(2), replica()), (node(3), replica())]);
        transport.set(node(2), Behaviour::Silent);
        let stop = CancellationToken::new();
        let worker = tokio::spawn(run_replay(
            hints.clone(),
            view,
            Arc::new(transport.clone()),
            SETTINGS,
            stop.clone(),
        ));
        hints.store(node(2), &row("stuck"), &cell).expect("store");
        let delivered = |n: usize| {
            let transport = transport.clone();
            async move {
                for _ in 0..600 {
                    let to_3 = transport
                        .written()
                        .iter()
                        .filter(|(t, _)| *t == node(3))
                        .count();
                    if to_3 >= n {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                false
            }
        };
        // Hints for node 3 stored before and after replay to node 2 got
        // stuck both arrive.
        hints.store(node(3), &row("first"), &cell).expect("store");
        assert!(delivered(1).await, "first hint for node 3 delivered");
        hints.store(node(3), &row("second"), &cell).expect("store");
        assert!(delivered(2).await, "second hint for node 3 delivered");
        assert_eq!(hints.targets(), vec![node(2)]);
        stop.cancel();
        assert!(worker.await.is_ok());
    }
}
