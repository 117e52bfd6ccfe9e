//! The read and write paths over a simulated cluster.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::sim::{Behaviour, SimCluster};
use super::*;
use crate::clock::HybridClock;
use crate::storage::Cell;

fn coordinator(sim: &Arc<SimCluster>, local: NodeId, down: &[NodeId]) -> Coordinator {
    let down: BTreeSet<NodeId> = down.iter().copied().collect();
    Coordinator::new(
        sim.view(local, &down),
        Arc::new(sim.clone()),
        Arc::new(HybridClock::default()),
        CoordinatorSettings {
            replication_factor: 3,
            write_timeout: Duration::from_millis(300),
            read_timeout: Duration::from_millis(300),
            limits: Limits {
                max_value_size: 1 << 20,
            },
        },
    )
}

fn put(key: &str, value: &str, level: ConsistencyLevel) -> WriteRequest {
    WriteRequest {
        key: Bytes::from(key.to_owned()),
        value: Some(Bytes::from(value.to_owned())),
        level,
        ttl_seconds: None,
        timestamp: None,
        timeout: None,
    }
}

fn get(key: &str, level: ConsistencyLevel) -> ReadRequest {
    ReadRequest {
        key: Bytes::from(key.to_owned()),
        level,
        timeout: None,
    }
}

async fn settle() {
    // Background replica writes run on spawned tasks.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn quorum_write_reaches_every_replica_and_only_them() {
    let sim = SimCluster::new(5);
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
    let sim = SimCluster::new(3);
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
    let sim = SimCluster::new(3);
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
    let sim = SimCluster::new(3);
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
    let sim = SimCluster::new(3);
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
    let sim = SimCluster::new(3);
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
    let sim = SimCluster::new(3);
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
    let sim = SimCluster::new(3);
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
    let sim = SimCluster::new(3);
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
