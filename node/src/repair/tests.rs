//! Repair between in-memory replicas (the shared fake cluster), through
//! the same replica-side code the gRPC service runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::identity::NodeId;
use crate::peer::fake::{FakeCluster, replica};
use crate::peer::{Hash, LocalReplica};
use crate::ring::{Token, TokenRange};
use crate::storage::{Cell, CellView};

fn node(n: u128) -> NodeId {
    NodeId(uuid::Uuid::from_u128(n))
}

/// Writes the plain key `key` (its row) into `r`.
async fn put(r: &LocalReplica, key: &str, cell: Cell) {
    let row = crate::storage::key::plain_key(key.as_bytes());
    r.store
        .apply(Token::of(key.as_bytes()), &row, &cell)
        .await
        .expect("write");
}

fn contents(r: &LocalReplica) -> BTreeMap<Vec<u8>, Cell> {
    let mut out = BTreeMap::new();
    let whole = TokenRange::new(Token(0), Token(0));
    r.store
        .engine()
        .scan(whole, &mut |_, key, cell| {
            out.insert(
                key.to_vec(),
                CellView::decode(cell).expect("cell").to_owned_cell(),
            );
        })
        .expect("scan");
    out
}

fn value(ts: i64) -> Cell {
    Cell::live(ts, Bytes::from(format!("v{ts}")), None)
}

#[tokio::test]
async fn three_replicas_converge_and_only_differences_move() {
    let (me, b, c) = (replica(), replica(), replica());
    // 2,000 keys everywhere, then a few differences on each replica.
    for i in 0..2_000 {
        for r in [&me, &b, &c] {
            put(r, &format!("k{i}"), value(1)).await;
        }
    }
    put(&me, "k1", value(5)).await; // newer here
    put(&b, "k2", value(6)).await; // newer on b
    put(&c, "k3", Cell::tombstone(7, 0)).await; // deleted on c only
    put(&c, "only-on-c", value(8)).await;
    put(&b, "only-on-b", value(9)).await;

    let peers = FakeCluster::of([(node(2), b.clone()), (node(3), c.clone())]);
    let whole = TokenRange::new(Token(0), Token(0));
    let mut moved = 0;
    // The runner's order: me↔b, me↔c, me↔b.
    for peer in [node(2), node(3), node(2)] {
        let stats = me.sync(&peers, peer, whole).await.expect("sync");
        moved += stats.keys_sent + stats.keys_received;
        assert!(stats.leaves_differing <= 5, "{stats:?}");
    }
    let expected = contents(&me);
    assert_eq!(contents(&b), expected);
    assert_eq!(contents(&c), expected);
    assert_eq!(
        expected
            .get(&crate::storage::key::plain_key(b"k3"))
            .map(|c| c.tombstone),
        Some(true),
        "the delete won"
    );
    assert_eq!(
        expected
            .get(&crate::storage::key::plain_key(b"k2"))
            .map(|c| c.timestamp),
        Some(6)
    );
    assert!(
        moved <= 20,
        "{moved} cells moved for 5 differing keys out of 2,002"
    );

    // Trees now agree, and another round moves nothing.
    let again = me.sync(&peers, node(3), whole).await.expect("sync");
    assert_eq!(
        again.leaves_differing + again.keys_sent + again.keys_received,
        0
    );
    let roots: Vec<Hash> = [&me, &b, &c]
        .iter()
        .map(|r| r.cache.refresh(whole).expect("tree").0.root())
        .collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn an_unreachable_peer_fails_the_sync() {
    let me = replica();
    let peers = FakeCluster::of([]);
    let whole = TokenRange::new(Token(0), Token(0));
    assert!(me.sync(&peers, node(9), whole).await.is_err());
}

/// Two replicas hold different deletions of one partition: repair leaves
/// both with their union (not one side's entry), the rows either deletes
/// gone from both, and the trees equal, so another round moves nothing.
#[tokio::test]
async fn a_partitions_deletions_converge_to_their_union() {
    use crate::storage::deletions::{Deletion, Deletions};
    use crate::storage::key;
    let (me, b) = (replica(), replica());
    let partition = b"events";
    let token = Token::of(partition);
    for r in [&me, &b] {
        for sort in ["r1", "r2", "r3", "r4"] {
            r.store
                .apply(token, &key::row_key(partition, sort.as_bytes()), &value(1))
                .await
                .expect("row");
        }
    }
    let range = |start: &'static str, end: &'static str, ts| {
        Deletions::of_range(
            Bytes::from_static(start.as_bytes()),
            Some(Bytes::from_static(end.as_bytes())),
            Deletion {
                timestamp: ts,
                deleted_at: 0,
            },
        )
    };
    let deletions = key::deletions_key(partition);
    let mine = range("r1", "r2", 5).to_cell().expect("cell");
    let theirs = range("r3", "r4", 6).to_cell().expect("cell");
    me.store
        .apply(token, &deletions, &mine)
        .await
        .expect("delete");
    b.store
        .apply(token, &deletions, &theirs)
        .await
        .expect("delete");

    let peers = FakeCluster::of([(node(2), b.clone())]);
    let whole = TokenRange::new(Token(0), Token(0));
    me.sync(&peers, node(2), whole).await.expect("sync");
    let expected = contents(&me);
    assert_eq!(contents(&b), expected);
    let held = Deletions::from_cell(expected.get(&deletions).expect("deletions")).expect("decodes");
    assert_eq!(held.ranges.len(), 2, "{held:?}");
    let rows: Vec<_> = expected
        .keys()
        .filter_map(|k| key::split_row_key(k))
        .filter(|r| r.kind == key::KIND_ROW)
        .map(|r| r.sort.to_vec())
        .collect();
    assert_eq!(rows, [b"r2".to_vec(), b"r4".to_vec()]);
    let again = me.sync(&peers, node(2), whole).await.expect("sync");
    assert_eq!(again.keys_sent + again.keys_received, 0, "{again:?}");
}

/// Regression: repair streamed up to 500 cells per batch whatever their
/// size, so a leaf of large values made one batch over the internode
/// message limit, which failed on every run.
#[tokio::test]
async fn large_cells_stream_in_batches_bounded_by_bytes() {
    let (me, b) = (replica(), replica());
    let big = |ts| Cell::live(ts, Bytes::from(vec![1u8; 3 << 19]), None); // 1.5 MiB
    for i in 0..6 {
        put(&me, &format!("mine{i}"), big(1)).await;
        put(&b, &format!("theirs{i}"), big(1)).await;
    }
    let peers = FakeCluster::of([(node(2), b.clone())]);
    let whole = TokenRange::new(Token(0), Token(0));
    let stats = me.sync(&peers, node(2), whole).await.expect("sync");
    assert_eq!((stats.keys_sent, stats.keys_received), (6, 6));
    assert_eq!(contents(&me), contents(&b));
    let batches = peers.batches();
    for (entries, bytes) in &batches {
        assert!(
            *entries == 1 || *bytes <= crate::storage::batch::MAX_BATCH_BYTES,
            "a batch of {entries} cells and {bytes} bytes"
        );
    }
}

fn member(n: u128, tokens: Vec<i64>) -> crate::membership::Member {
    crate::membership::Member {
        replication_factor: Some(2),
        ..crate::membership::Member::normal(node(n), tokens.into_iter().map(Token).collect())
    }
}

/// A repairer on node 1 of three nodes (RF 2) with 24 ranges, which node 1
/// shares with node 2 or node 3; `peers` serves whichever it holds.
fn repairer(me: &LocalReplica, peers: Arc<FakeCluster>) -> super::Repairer {
    let members = (1..=3u128).map(|n| {
        let tokens = (0..8).map(|t| Token::of(format!("n{n}-{t}").as_bytes()).0);
        member(n, tokens.collect())
    });
    let view = crate::membership::ClusterView::build(node(1), 2, members, None);
    super::Repairer::new(
        node(1),
        Arc::new(arc_swap::ArcSwap::from_pointee(view)),
        me.clone(),
        Arc::new(peers),
        0,
    )
}

/// Regression: one failing range aborted the whole run (`?`), so later
/// ranges were never repaired and the last repair time never advanced.
#[tokio::test]
async fn a_failing_range_is_reported_and_skipped_and_the_run_goes_on() {
    let (me, b) = (replica(), replica());
    for i in 0..300 {
        put(&b, &format!("k{i}"), value(3)).await;
    }
    // Node 3 is unreachable: every range shared with it fails.
    let peers = FakeCluster::of([(node(2), b.clone())]);
    let repairer = repairer(&me, peers);
    let summary = repairer
        .run(super::Scope::All, None)
        .await
        .expect("the run finishes");
    assert!(summary.done);
    assert_eq!(summary.ranges_done, summary.ranges_total);
    assert!(!summary.failed.is_empty(), "{summary:?}");
    assert!(
        summary.failed.len() < summary.ranges_total as usize,
        "ranges shared with node 2 succeeded: {summary:?}"
    );
    assert!(summary.stats.keys_received > 0, "node 2's data came over");
    assert_eq!(
        repairer.last_completed(),
        0,
        "a run with failures is not complete"
    );
    // What `status` gossips: the ranges of this run that failed.
    let published = repairer.subscribe_failures().borrow().clone();
    assert!(!published.is_empty());
    assert!(
        published
            .iter()
            .all(|r| summary.failed.iter().any(|f| f.range == *r))
    );
}

/// The scheduler keeps what went wrong in a run as its worker's last
/// error, for `ringkv tpstats`: a run whose ranges failed finishes, and
/// without this only the log said so.
#[tokio::test]
async fn the_scheduler_keeps_failed_ranges_as_its_workers_last_error() {
    let (me, b) = (replica(), replica());
    // Node 3 is unreachable: every range shared with it fails.
    let peers = FakeCluster::of([(node(2), b)]);
    let repairer = Arc::new(repairer(&me, peers));
    let workers = crate::workers::Workers::new();
    let worker = workers.worker(super::WORKER);
    let stop = tokio_util::sync::CancellationToken::new();
    worker.spawn(super::run_scheduler(
        repairer,
        std::time::Duration::from_millis(10),
        worker.clone(),
        stop.clone(),
    ));
    let reported = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            if let Some(failure) = worker.status().last_error {
                return failure.message;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the failed ranges are reported");
    assert!(
        reported.contains("ranges could not be repaired, the first"),
        "{reported}"
    );
    // Reported, not ended: the scheduler goes on.
    assert_eq!(worker.status().running, 1);
    stop.cancel();
    workers.close();
    workers.wait().await;
    assert_eq!((worker.status().done, worker.status().failed), (1, 0));
}

/// Regression: progress went through a bounded channel; a client that
/// stopped reading (Ctrl-C) blocked the run on its 17th send while it held
/// the one-at-a-time lock, so no repair ever ran again.
#[tokio::test]
async fn a_run_nobody_watches_finishes_and_the_next_one_runs() {
    let (me, b, c) = (replica(), replica(), replica());
    let peers = FakeCluster::of([(node(2), b), (node(3), c)]);
    let repairer = repairer(&me, peers);
    let (progress, unread) = tokio::sync::watch::channel(super::Progress::default());
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        repairer.run(super::Scope::All, Some(progress)),
    )
    .await
    .expect("an unread progress channel does not stall the run")
    .expect("run");
    assert!(first.ranges_total > 16, "{} ranges", first.ranges_total);
    drop(unread);
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        repairer.run(super::Scope::All, None),
    )
    .await
    .expect("the next run is not locked out")
    .expect("run");
    assert!(second.done && second.failed.is_empty());
    assert!(repairer.last_completed() > 0);
}

/// Regression (hardening II, item 8): every Admin/Repair call queued a
/// full run behind the running one, so calling and cancelling in a loop
/// queued unbounded work. Now one run waits, and the rest are refused.
#[tokio::test]
async fn while_a_run_goes_and_another_waits_more_runs_are_refused() {
    let (me, b, c) = (replica(), replica(), replica());
    let peers = FakeCluster::of([(node(2), b), (node(3), c)]);
    let repairer = Arc::new(repairer(&me, peers));
    let held = repairer.running.lock().await;
    let waiting = tokio::spawn({
        let repairer = repairer.clone();
        async move { repairer.run(super::Scope::All, None).await }
    });
    while !repairer.waiting.load(std::sync::atomic::Ordering::Acquire) {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        let refused = repairer.run(super::Scope::All, None).await;
        assert!(
            matches!(refused, Err(super::SyncError::Busy)),
            "{refused:?}"
        );
    }
    drop(held);
    let ran = waiting.await.expect("task").expect("the waiting run runs");
    assert!(ran.done);
    // A dropped waiter leaves no flag behind.
    let held = repairer.running.lock().await;
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        repairer.run(super::Scope::All, None),
    )
    .await;
    assert!(dropped.is_err(), "it waited");
    drop(held);
    repairer
        .run(super::Scope::All, None)
        .await
        .expect("runs again");
}
