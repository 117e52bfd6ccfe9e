//! The read and write paths over a simulated cluster.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::clock::HybridClock;
use crate::hints::HintStore;
use crate::peer::fake::{Behaviour, FakeCluster};
use crate::storage::Cell;

fn settings() -> CoordinatorSettings {
    CoordinatorSettings {
        replication_factor: 3,
        write_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_millis(300),
        limits: Limits {
            max_value_size: 1 << 20,
            max_clock_skew: crate::clock::SkewLimit::from_millis(60_000),
        },
        read_repair_chance: 0.0,
    }
}

fn coordinator(sim: &Arc<FakeCluster>, local: NodeId, down: &[NodeId]) -> Coordinator {
    let down: BTreeSet<NodeId> = down.iter().copied().collect();
    Coordinator::new(
        sim.view(local, &down),
        Arc::new(sim.clone()),
        Arc::new(HybridClock::default()),
        settings(),
        None,
    )
}

/// A coordinator on `local` that keeps hints in `hints`.
fn hinting(
    sim: &Arc<FakeCluster>,
    local: NodeId,
    down: &[NodeId],
    hints: Arc<HintStore>,
) -> Coordinator {
    let down: BTreeSet<NodeId> = down.iter().copied().collect();
    Coordinator::new(
        sim.view(local, &down),
        Arc::new(sim.clone()),
        Arc::new(HybridClock::default()),
        settings(),
        Some(hints),
    )
}

fn hint_store() -> Arc<HintStore> {
    let storage = Arc::new(crate::storage::MemoryStorage::default());
    Arc::new(HintStore::open(storage, 1 << 20).expect("hints"))
}

/// A key whose replicas do not include node 0, the coordinator.
fn key_elsewhere(sim: &FakeCluster) -> String {
    (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| !sim.replicas(k.as_bytes()).contains(&sim.nodes[0]))
        .expect("some key lives elsewhere")
}

fn put(key: &str, value: &str, level: ConsistencyLevel) -> WriteRequest {
    WriteRequest {
        target: Target::default(),
        key: Bytes::from(key.to_owned()),
        value: Some(Bytes::from(value.to_owned())),
        level,
        ttl_ms: None,
        timestamp: None,
        timeout: None,
        trace: None,
    }
}

fn get(key: &str, level: ConsistencyLevel) -> ReadRequest {
    ReadRequest {
        sort_key: Bytes::new(),
        key: Bytes::from(key.to_owned()),
        level,
        timeout: None,
        trace: None,
    }
}

async fn settle() {
    // Background replica writes run on spawned tasks.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn quorum_write_reaches_every_replica_and_only_them() {
    let sim = FakeCluster::balanced(5);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    c.write(put("k", "v", ConsistencyLevel::Quorum))
        .await
        .expect("write");
    settle().await;
    let replicas = sim.replicas(b"k");
    assert_eq!(replicas.len(), 3);
    for node in &sim.nodes {
        let holds = sim.stored(*node, b"k").is_some();
        assert_eq!(holds, replicas.contains(node), "node {node}");
    }
    let found = c
        .read(get("k", ConsistencyLevel::Quorum))
        .await
        .expect("read");
    assert_eq!(found.map(|r| r.value), Some(Bytes::from("v")));
}

#[tokio::test]
async fn too_few_live_replicas_is_unavailable_and_sends_nothing() {
    let sim = FakeCluster::balanced(3);
    let c = coordinator(&sim, sim.nodes[0], &[sim.nodes[1], sim.nodes[2]]);
    let err = c
        .write(put("k", "v", ConsistencyLevel::Quorum))
        .await
        .expect_err("unavailable");
    assert!(
        matches!(
            err,
            CoordinatorError::Unavailable {
                required: 2,
                alive: 1
            }
        ),
        "{err:?}"
    );
    settle().await;
    assert!(
        sim.nodes.iter().all(|n| sim.stored(*n, b"k").is_none()),
        "nothing written"
    );
    let err = c
        .read(get("k", ConsistencyLevel::All))
        .await
        .expect_err("unavailable");
    assert!(matches!(
        err,
        CoordinatorError::Unavailable {
            required: 3,
            alive: 1
        }
    ));
    c.write(put("k", "v", ConsistencyLevel::One))
        .await
        .expect("ONE works");
}

#[tokio::test]
async fn silent_replicas_time_out_with_counts() {
    let sim = FakeCluster::balanced(3);
    sim.set(sim.nodes[1], Behaviour::Silent);
    sim.set(sim.nodes[2], Behaviour::Silent);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    let err = c
        .write(put("k", "v", ConsistencyLevel::Quorum))
        .await
        .expect_err("timeout");
    assert!(
        matches!(
            err,
            CoordinatorError::Timeout {
                required: 2,
                received: 1
            }
        ),
        "{err:?}"
    );
    let err = c
        .read(get("k", ConsistencyLevel::Quorum))
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, CoordinatorError::Timeout { required: 2, .. }),
        "{err:?}"
    );
    c.read(get("k", ConsistencyLevel::One))
        .await
        .expect("the local replica answers");
}

#[tokio::test]
async fn refusing_replicas_fail_the_write_early() {
    let sim = FakeCluster::balanced(3);
    sim.set(sim.nodes[1], Behaviour::Unreachable);
    sim.set(sim.nodes[2], Behaviour::Unreachable);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    // As soon as the level cannot be met any more, the answer goes out.
    let err = c
        .write(put("k", "v", ConsistencyLevel::Quorum))
        .await
        .expect_err("failed");
    match err {
        CoordinatorError::Failed {
            required: 2,
            received,
            reasons,
        } => {
            assert!(received <= 1);
            assert!(
                reasons.iter().all(|r| r.contains("connection refused")),
                "{reasons:?}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // The local replica still got the write: the outcome is unknown, not "nothing".
    settle().await;
    assert!(sim.stored(sim.nodes[0], b"k").is_some());
}

#[tokio::test]
async fn a_replica_that_fails_a_read_is_replaced_by_a_spare() {
    let sim = FakeCluster::balanced(3);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    c.write(put("k", "v", ConsistencyLevel::All))
        .await
        .expect("write");
    // Down but not yet noticed by the failure detector.
    sim.set(sim.nodes[1], Behaviour::Unreachable);
    for _ in 0..10 {
        let found = c
            .read(get("k", ConsistencyLevel::Quorum))
            .await
            .expect("read");
        assert_eq!(found.map(|r| r.value), Some(Bytes::from("v")));
    }
}

#[tokio::test]
async fn slow_replicas_still_get_the_write() {
    let sim = FakeCluster::balanced(3);
    sim.set(sim.nodes[2], Behaviour::Slow(Duration::from_millis(100)));
    let c = coordinator(&sim, sim.nodes[0], &[]);
    c.write(put("k", "v", ConsistencyLevel::Quorum))
        .await
        .expect("write");
    assert!(
        sim.stored(sim.nodes[2], b"k").is_none(),
        "answered before the slow replica"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sim.stored(sim.nodes[2], b"k").is_some(),
        "late write completed in the background"
    );
}

#[tokio::test]
async fn digest_mismatch_repairs_the_stale_replicas() {
    let sim = FakeCluster::balanced(3);
    let newer = Cell::live(200, Bytes::from_static(b"new"), None);
    let older = Cell::live(100, Bytes::from_static(b"old"), None);
    // The local node (asked for data first) is stale; the others are not.
    sim.plant(sim.nodes[0], b"k", &older);
    sim.plant(sim.nodes[1], b"k", &newer);
    sim.plant(sim.nodes[2], b"k", &newer);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    let found = c
        .read(get("k", ConsistencyLevel::Quorum))
        .await
        .expect("read");
    assert_eq!(found.map(|r| r.value), Some(Bytes::from("new")));
    assert_eq!(
        sim.stored(sim.nodes[0], b"k"),
        Some(newer.clone()),
        "repaired before answering"
    );

    // A tombstone that only one replica has wins and is spread, too.
    let tomb = Cell::tombstone(300, 0);
    sim.plant(sim.nodes[2], b"k", &tomb);
    let found = c.read(get("k", ConsistencyLevel::All)).await.expect("read");
    assert_eq!(found, None);
    for node in &sim.nodes {
        assert_eq!(sim.stored(*node, b"k"), Some(tomb.clone()));
    }
}

#[tokio::test]
async fn one_reads_a_single_replica_without_repair() {
    let sim = FakeCluster::balanced(3);
    sim.plant(
        sim.nodes[0],
        b"k",
        &Cell::live(1, Bytes::from_static(b"old"), None),
    );
    sim.plant(
        sim.nodes[1],
        b"k",
        &Cell::live(2, Bytes::from_static(b"new"), None),
    );
    let c = coordinator(&sim, sim.nodes[0], &[]);
    let found = c.read(get("k", ConsistencyLevel::One)).await.expect("read");
    assert_eq!(
        found.map(|r| r.value),
        Some(Bytes::from("old")),
        "ONE asks this node only"
    );
    assert_eq!(sim.stored(sim.nodes[0], b"k").map(|c| c.timestamp), Some(1));
}

#[tokio::test]
async fn invalid_requests_are_rejected_before_any_replica_is_asked() {
    let sim = FakeCluster::balanced(3);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    let err = c
        .write(put("", "v", ConsistencyLevel::One))
        .await
        .expect_err("empty key");
    assert!(matches!(err, CoordinatorError::InvalidArgument(_)));
    let err = c
        .read(get("k", ConsistencyLevel::Any))
        .await
        .expect_err("ANY read");
    assert!(matches!(err, CoordinatorError::InvalidArgument(_)));
}

#[tokio::test]
async fn down_and_failing_replicas_get_hints_that_do_not_count() {
    let sim = FakeCluster::balanced(3);
    let hints = hint_store();
    // n2 is known down; n1 refuses.
    sim.set(sim.nodes[1], Behaviour::Unreachable);
    let c = hinting(&sim, sim.nodes[0], &[sim.nodes[2]], hints.clone());
    let err = c
        .write(put("k", "v", ConsistencyLevel::Quorum))
        .await
        .expect_err("only one ack");
    assert!(
        matches!(
            err,
            CoordinatorError::Failed {
                required: 2,
                received: 0 | 1,
                ..
            }
        ),
        "{err:?}"
    );
    settle().await;
    let mut targets = hints.targets();
    targets.sort();
    let mut expected = vec![sim.nodes[1], sim.nodes[2]];
    expected.sort();
    assert_eq!(
        targets, expected,
        "a hint for the down and for the refusing replica"
    );
    assert_eq!(
        hints
            .oldest(sim.nodes[2], crate::storage::BatchLimit::entries(10))
            .expect("hints")[0]
            .entries[0]
            .0,
        Bytes::from(crate::storage::key::plain_key(b"k"))
    );
}

fn batch(key: &str, ops: Vec<BatchOp>, level: ConsistencyLevel) -> BatchRequest {
    BatchRequest {
        key: Bytes::from(key.to_owned()),
        ops,
        level,
        timestamp: None,
        timeout: None,
        trace: None,
    }
}

fn row_put(sort: &str, value: &str) -> BatchOp {
    BatchOp::put(
        Bytes::from(sort.to_owned()),
        Bytes::from(value.to_owned()),
        None,
    )
}

/// What `node` holds for the row `sort` of the partition `key`.
fn stored_row(sim: &FakeCluster, node: NodeId, key: &str, sort: &str) -> Option<Cell> {
    let row = crate::storage::key::row_key(key.as_bytes(), sort.as_bytes());
    sim.replica_of(node)
        .and_then(|r| r.store.read(Token::of(key.as_bytes()), &row).ok().flatten())
}

/// A partition batch reaches each live replica as one mutation, and a down
/// replica's hint holds all of it; its range delete clears what was there
/// before while its own puts stay.
#[tokio::test]
async fn a_partition_batch_is_one_mutation_on_every_replica_and_in_its_hint() {
    let sim = FakeCluster::balanced(3);
    let hints = hint_store();
    let c = hinting(&sim, sim.nodes[0], &[], hints.clone());
    let first = batch(
        "cart",
        vec![row_put("apple", "1"), row_put("pear", "2")],
        ConsistencyLevel::All,
    );
    c.batch(first).await.expect("first batch");
    let down = sim.nodes[2];
    let c = hinting(&sim, sim.nodes[0], &[down], hints.clone());
    let second = batch(
        "cart",
        vec![
            BatchOp::delete(Target::Rows {
                start: Bytes::new(),
                end: None,
            }),
            row_put("pear", "3"),
            row_put("plum", "4"),
            BatchOp::delete(Target::Row(Bytes::from_static(b"fig"))),
        ],
        ConsistencyLevel::Quorum,
    );
    let ts = c.batch(second).await.expect("second batch");
    settle().await;
    for node in [sim.nodes[0], sim.nodes[1]] {
        assert!(
            stored_row(&sim, node, "cart", "apple").is_some_and(|c| c.tombstone),
            "cleared on {node}"
        );
        assert_eq!(
            stored_row(&sim, node, "cart", "pear").map(|c| (c.value, c.timestamp)),
            Some((Bytes::from("3"), ts)),
            "the batch's own row stays on {node}"
        );
        assert!(stored_row(&sim, node, "cart", "plum").is_some());
    }
    let held = hints
        .oldest(down, crate::storage::BatchLimit::entries(10))
        .expect("hints");
    assert_eq!(held.len(), 1, "one hint for the whole batch");
    assert_eq!(held[0].entries.len(), 4, "deletions, pear, plum, fig");
    // Replayed, the hint leaves the down replica as the others.
    crate::peer::serve::write_batch(
        &sim.replica_of(down).expect("replica").store,
        &held[0].entries,
    )
    .await
    .expect("replay");
    assert!(stored_row(&sim, down, "cart", "apple").is_some_and(|c| c.tombstone));
    assert_eq!(
        stored_row(&sim, down, "cart", "plum").map(|c| c.value),
        Some(Bytes::from("4"))
    );
}

#[tokio::test]
async fn invalid_batches_are_refused_before_anything_is_sent() {
    let sim = FakeCluster::balanced(3);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    let cases = [
        (Vec::new(), "at least one operation"),
        (
            vec![row_put("a", "1"), row_put("a", "2")],
            "names the row \"a\" twice",
        ),
        (
            (0..=MAX_BATCH_OPS)
                .map(|i| row_put(&format!("r{i}"), "v"))
                .collect(),
            "the limit is 100",
        ),
        (
            (0..3)
                .map(|i| {
                    BatchOp::put(
                        Bytes::from(format!("r{i}")),
                        Bytes::from(vec![0; 400 << 10]),
                        None,
                    )
                })
                .collect(),
            "the limit is 1048576 bytes",
        ),
        // Deletions count too: 10 ranges with 60 KiB bounds and a put.
        (
            (0..10u8)
                .map(|i| {
                    BatchOp::delete(Target::Rows {
                        start: Bytes::from(vec![i; 60 << 10]),
                        end: Some(Bytes::from(vec![i + 1; 60 << 10])),
                    })
                })
                .chain([row_put("a", "1")])
                .collect(),
            "1048576 bytes",
        ),
    ];
    for (ops, expected) in cases {
        let err = c
            .batch(batch("p", ops, ConsistencyLevel::One))
            .await
            .expect_err("invalid");
        assert!(err.to_string().contains(expected), "{err}");
    }
    settle().await;
    assert!(sim.replicas(b"p").iter().all(|n| {
        stored_row(&sim, *n, "p", "a").is_none() && stored_row(&sim, *n, "p", "r0").is_none()
    }));
}

#[tokio::test]
async fn any_counts_a_hint_as_an_acknowledgement() {
    let sim = FakeCluster::balanced(5);
    let hints = hint_store();
    // A key this node is not a replica of, with every replica down.
    let key = key_elsewhere(&sim);
    let replicas = sim.replicas(key.as_bytes());
    let c = hinting(&sim, sim.nodes[0], &replicas, hints.clone());
    c.write(put(&key, "v", ConsistencyLevel::Any))
        .await
        .expect("ANY with hints only");
    let mut targets = hints.targets();
    targets.sort();
    let mut expected = replicas.clone();
    expected.sort();
    assert_eq!(targets, expected, "a hint per replica");
    // Any other level is refused, and without hints so is ANY.
    let err = c
        .write(put(&key, "v", ConsistencyLevel::One))
        .await
        .expect_err("ONE");
    assert!(matches!(
        err,
        CoordinatorError::Unavailable {
            required: 1,
            alive: 0
        }
    ));
    let c = coordinator(&sim, sim.nodes[0], &replicas);
    let err = c
        .write(put(&key, "v", ConsistencyLevel::Any))
        .await
        .expect_err("ANY without hints");
    assert!(matches!(
        err,
        CoordinatorError::Unavailable {
            required: 1,
            alive: 0
        }
    ));
}

#[tokio::test]
async fn background_read_repair_fixes_replicas_the_read_did_not_ask() {
    let sim = FakeCluster::balanced(3);
    let newer = Cell::live(200, Bytes::from_static(b"new"), None);
    let older = Cell::live(100, Bytes::from_static(b"old"), None);
    sim.plant(sim.nodes[0], b"k", &newer);
    sim.plant(sim.nodes[1], b"k", &newer);
    sim.plant(sim.nodes[2], b"k", &older);
    let mut with_chance = settings();
    with_chance.read_repair_chance = 1.0;
    let c = Coordinator::new(
        sim.view(sim.nodes[0], &BTreeSet::new()),
        Arc::new(sim.clone()),
        Arc::new(HybridClock::default()),
        with_chance,
        None,
    );
    // ONE asks only this node, which is current; the stale third replica
    // is fixed in the background.
    let found = c.read(get("k", ConsistencyLevel::One)).await.expect("read");
    assert_eq!(found.map(|r| r.value), Some(Bytes::from("new")));
    let mut repaired = false;
    for _ in 0..50 {
        if sim.stored(sim.nodes[2], b"k") == Some(newer.clone()) {
            repaired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(repaired, "the replica not asked was repaired");
}

/// Regression: at ANY, only hints for replicas known down counted; a hint
/// stored for a replica that refused the write did not, so the write
/// failed although the hint was held.
#[tokio::test]
async fn at_any_a_hint_for_a_replica_that_failed_counts() {
    let sim = FakeCluster::balanced(5);
    let hints = hint_store();
    let key = key_elsewhere(&sim);
    // Every replica is believed up, and every one refuses.
    for node in sim.replicas(key.as_bytes()) {
        sim.set(node, Behaviour::Unreachable);
    }
    let c = hinting(&sim, sim.nodes[0], &[], hints.clone());
    c.write(put(&key, "v", ConsistencyLevel::Any))
        .await
        .expect("a stored hint acknowledges at ANY");
    assert!(!hints.targets().is_empty());
}

/// Regression: with every replica down and their hints full, ANY answered
/// `Timeout` ("may still be applied") although nothing was stored.
#[tokio::test]
async fn at_any_with_hints_full_and_no_replica_up_nothing_is_stored() {
    let sim = FakeCluster::balanced(5);
    // A cap no hint fits under.
    let hints = Arc::new(
        HintStore::open(Arc::new(crate::storage::MemoryStorage::default()), 10).expect("hints"),
    );
    let key = key_elsewhere(&sim);
    let replicas = sim.replicas(key.as_bytes());
    let c = hinting(&sim, sim.nodes[0], &replicas, hints.clone());
    let err = c
        .write(put(&key, "v", ConsistencyLevel::Any))
        .await
        .expect_err("nothing could be stored");
    assert!(matches!(err, CoordinatorError::NotStored { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert!(hints.targets().is_empty());
    settle().await;
    assert!(
        sim.nodes
            .iter()
            .all(|n| sim.stored(*n, key.as_bytes()).is_none())
    );
}

/// Regression: a write carrying a client timestamp did not advance the
/// coordinator's clock, so a server-stamped write right after it (same
/// key, clock behind the client's) was older and silently lost.
#[tokio::test]
async fn a_client_timestamp_orders_later_server_stamped_writes() {
    let sim = FakeCluster::balanced(3);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    let ahead = crate::clock::wall_clock_micros() + 5_000_000;
    let mut first = put("k", "client", ConsistencyLevel::All);
    first.timestamp = Some(ahead);
    c.write(first).await.expect("client-stamped write");
    let second = c
        .write(put("k", "server", ConsistencyLevel::All))
        .await
        .expect("server-stamped write");
    assert!(second > ahead, "{second} after {ahead}");
    let found = c.read(get("k", ConsistencyLevel::All)).await.expect("read");
    assert_eq!(found.map(|r| r.value), Some(Bytes::from("server")));
}

/// Regression: sends to slower replicas after an early answer ran on bare
/// spawned tasks that shutdown did not wait for; and a client's huge
/// timeout became their lifetime.
#[tokio::test]
async fn background_replica_sends_are_owned_and_bounded_by_the_node_timeout() {
    let sim = FakeCluster::balanced(3);
    let tasks = crate::workers::Workers::new();
    let c = coordinator(&sim, sim.nodes[0], &[]).with_tasks(&tasks);
    sim.set(sim.nodes[1], Behaviour::Slow(Duration::from_millis(150)));
    sim.set(sim.nodes[2], Behaviour::Silent);
    let mut request = put("k", "v", ConsistencyLevel::One);
    request.timeout = Some(Duration::from_secs(40 * 24 * 3600));
    let key = sim.replicas(b"k");
    assert!(key.contains(&sim.nodes[0]));
    c.write(request).await.expect("ONE answers early");
    assert!(
        tasks.len() >= 2,
        "the slow and the silent replica's sends are owned ({})",
        tasks.len()
    );
    tasks.close();
    // The silent replica's send ends at the node's write timeout (300 ms),
    // not the client's 40 days; the slow one lands before shutdown ends.
    tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .expect("background sends end within the node's own timeout");
    assert!(
        sim.stored(sim.nodes[1], b"k").is_some(),
        "slow replica got it"
    );
}

/// Regression (hardening II, item 2): a coordinator whose clock ran
/// ahead wrote v1; a later write through a coordinator with a correct
/// clock was stamped below it and silently lost. Now the replica that
/// holds v1 says so, and the write is stamped again above it.
#[tokio::test]
async fn a_server_stamped_write_is_pushed_above_a_newer_cell_a_replica_holds() {
    let sim = FakeCluster::balanced(5);
    let key = key_elsewhere(&sim);
    let ahead = HybridClock::default().now() + 30_000_000;
    let v1 = Cell::live(ahead, Bytes::from_static(b"v1"), None);
    // v1 was acknowledged by a quorum of the key's replicas.
    let replicas = sim.replicas(key.as_bytes());
    for node in &replicas[..2] {
        sim.plant(*node, key.as_bytes(), &v1);
    }
    let c = coordinator(&sim, sim.nodes[0], &[]);
    let written = c
        .write(put(&key, "v2", ConsistencyLevel::Quorum))
        .await
        .expect("write");
    assert!(written > ahead, "stamped {written}, below v1's {ahead}");
    let found = c
        .read(get(&key, ConsistencyLevel::Quorum))
        .await
        .expect("read");
    assert_eq!(found.map(|r| r.value), Some(Bytes::from("v2")));

    // A client's own timestamp is kept, whatever it loses to.
    let mut old = put(&key, "v3", ConsistencyLevel::Quorum);
    old.timestamp = Some(written - 1);
    assert_eq!(c.write(old).await.expect("write"), written - 1);
    let found = c
        .read(get(&key, ConsistencyLevel::All))
        .await
        .expect("read");
    assert_eq!(found.map(|r| r.value), Some(Bytes::from("v2")));
}

/// A TTL in milliseconds is kept to the millisecond on every replica and
/// in the read's answer (Redis's PX), the deletion time rounded up to the
/// second for gc.
#[tokio::test]
async fn a_millisecond_ttl_expires_at_its_millisecond() {
    let sim = FakeCluster::balanced(3);
    let c = coordinator(&sim, sim.nodes[0], &[]);
    let mut write = put("k", "v", ConsistencyLevel::All);
    write.ttl_ms = Some(1_500);
    let before = c.wall().millis();
    c.write(write).await.expect("write");
    let after = c.wall().millis();
    for node in sim.replicas(b"k") {
        let held = sim.stored(node, b"k").expect("stored");
        let at = held.expires_at_ms().expect("expires");
        assert!((before + 1_500..=after + 1_500).contains(&at), "{at}");
        assert!(held.local_deletion_time.is_some_and(|s| s * 1000 >= at));
    }
    let read = c
        .read(get("k", ConsistencyLevel::Quorum))
        .await
        .expect("read")
        .expect("live");
    let at = read.expires_at_ms.expect("expires");
    assert!((before + 1_500..=after + 1_500).contains(&at), "{at}");
}
