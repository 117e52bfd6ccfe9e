//! Convergence on real nodes: hinted handoff, anti-entropy repair (on
//! demand and in the background) and deletes that stay deleted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv_client::{Client, Consistency, WriteOptions};
use ringkv_tests::{TestCluster, client_of, eventually};

/// Background convergence off: only the mechanism under test may act.
const QUIET: [(&str, &str); 2] = [
    ("--anti-entropy-interval-ms", "0"),
    ("--read-repair-chance", "0"),
];

fn at(level: Consistency) -> WriteOptions {
    WriteOptions::default().consistency(level)
}

fn keys(prefix: &str, n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("{prefix}{i:06}")))
        .collect()
}

/// Writes every key, 64 at a time; panics on the first failure.
async fn write_all(client: &Client, keys: &[Bytes], value: &Bytes, level: Consistency) {
    ringkv_tests::write_all(client, keys, value, &at(level), 64).await;
}

/// True when every node has the same Merkle root for every range.
async fn roots_agree(cluster: &TestCluster) -> bool {
    let Ok(ring) = cluster.node(0).client().await.ring_info().await else {
        return false;
    };
    let peers: Vec<_> = cluster.nodes.iter().map(|n| n.ports.peer).collect();
    ringkv_tests::roots_agree(&ring, &peers).await
}

fn parse_json(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

#[tokio::test]
async fn hinted_handoff_delivers_every_write_to_a_returning_replica() {
    let mut cluster = TestCluster::start_with(3, 3, &QUIET)
        .await
        .expect("cluster");
    cluster.kill_and_wait(2).await.expect("n3 seen down");

    let keys = keys("hinted-", 5_000);
    let c = client_of(&[cluster.node(0), cluster.node(1)]).await;
    write_all(
        &c,
        &keys,
        &Bytes::from_static(b"value"),
        Consistency::Quorum,
    )
    .await;
    let stored = cluster
        .node(0)
        .metric("ringkv_hints_stored_total")
        .await
        .expect("metric")
        + cluster
            .node(1)
            .metric("ringkv_hints_stored_total")
            .await
            .expect("metric");
    assert!(stored >= 5_000.0, "{stored} hints stored for 5,000 writes");

    cluster.node_mut(2).restart().await.expect("restart n3");
    // No reads, no repair: only hints can bring n3 up to date.
    let started = Instant::now();
    let n3 = cluster.node(2);
    let complete = eventually(Duration::from_secs(120), || async {
        n3.stored_count(&keys)
            .await
            .is_ok_and(|held| held == keys.len())
    })
    .await;
    let held = n3.stored_count(&keys).await.expect("count");
    assert!(complete, "n3 holds {held} of 5,000 keys after 120 s");
    println!(
        "hinted handoff: 5,000 keys delivered {:?} after restart",
        started.elapsed()
    );
    let replayed = cluster
        .node(0)
        .metric("ringkv_hints_replayed_total")
        .await
        .expect("metric")
        + cluster
            .node(1)
            .metric("ringkv_hints_replayed_total")
            .await
            .expect("metric");
    assert!(replayed >= 5_000.0, "{replayed} hints replayed");
}

#[tokio::test]
async fn repair_streams_only_the_divergence_and_makes_replicas_identical() {
    let mut flags = QUIET.to_vec();
    flags.push(("--hinted-handoff-enabled", "false"));
    let mut cluster = TestCluster::start_with(3, 3, &flags)
        .await
        .expect("cluster");
    let all = client_of(&[cluster.node(0), cluster.node(1), cluster.node(2)]).await;
    let base = keys("base-", 100_000);
    let value = Bytes::from(vec![b'x'; 100]);
    write_all(&all, &base, &value, Consistency::All).await;
    let total_bytes = base.len() as u64 * (11 + 100 + 18);

    cluster.kill_and_wait(2).await.expect("n3 seen down");
    // 1% divergence: 500 overwrites, 250 new keys, 250 deletes.
    let c = client_of(&[cluster.node(0), cluster.node(1)]).await;
    write_all(
        &c,
        &base[..500],
        &Bytes::from_static(b"changed"),
        Consistency::Quorum,
    )
    .await;
    let fresh = keys("fresh-", 250);
    write_all(&c, &fresh, &Bytes::from_static(b"new"), Consistency::Quorum).await;
    for key in &base[500..750] {
        c.delete_with(key.clone(), &at(Consistency::Quorum))
            .await
            .expect("delete");
    }
    cluster.restart_and_wait(2).await.expect("n3 back");
    assert_eq!(
        cluster.node(2).stored_count(&fresh).await.expect("count"),
        0,
        "n3 missed the writes"
    );
    assert!(
        !roots_agree(&cluster).await,
        "replicas differ before repair"
    );

    let summary = parse_json(&cluster.node(2).cli(&["--json", "repair"]));
    println!("repair summary: {summary}");
    let keys_streamed = summary["keys_streamed"].as_u64().unwrap_or(0);
    let bytes_streamed = summary["bytes_streamed"].as_u64().unwrap_or(u64::MAX);
    assert_eq!(summary["ranges_total"], summary["ranges_compared"]);
    assert!(
        keys_streamed >= 1_000,
        "{keys_streamed} keys streamed for 1,000 divergent keys"
    );
    assert!(
        keys_streamed <= 3_000,
        "{keys_streamed} keys streamed: more than the divergence"
    );
    assert!(
        bytes_streamed * 20 < total_bytes,
        "{bytes_streamed} bytes streamed for a divergence of 1% of {total_bytes}"
    );

    assert!(
        roots_agree(&cluster).await,
        "Merkle roots differ after repair"
    );
    assert_eq!(
        cluster.node(2).stored_count(&fresh).await.expect("count"),
        250
    );
    for key in &base[500..750] {
        let cell = cluster
            .node(2)
            .stored(key)
            .await
            .expect("read")
            .expect("tombstone");
        assert!(cell.tombstone, "the delete reached n3");
    }
    let changed = cluster
        .node(2)
        .stored(&base[0])
        .await
        .expect("read")
        .expect("value");
    assert_eq!(changed.value, Bytes::from_static(b"changed"));

    // status shows when n3 last completed a repair.
    let seen = eventually(Duration::from_secs(30), || async {
        let status = parse_json(&cluster.node(0).cli(&["--json", "status"]));
        status["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["name"] == "n3" && n["last_repair"].as_i64().is_some())
        })
    })
    .await;
    assert!(seen, "n1 does not show n3's last repair");
}

#[tokio::test]
async fn background_anti_entropy_converges_without_being_asked() {
    let flags = [
        ("--anti-entropy-interval-ms", "2000"),
        ("--read-repair-chance", "0"),
        ("--hinted-handoff-enabled", "false"),
    ];
    let mut cluster = TestCluster::start_with(3, 3, &flags)
        .await
        .expect("cluster");
    cluster.kill_and_wait(2).await.expect("n3 seen down");
    let c = client_of(&[cluster.node(0), cluster.node(1)]).await;
    let keys = keys("bg-", 500);
    write_all(&c, &keys, &Bytes::from_static(b"v"), Consistency::Quorum).await;
    cluster.node_mut(2).restart().await.expect("restart");
    let started = Instant::now();
    let converged = eventually(Duration::from_secs(90), || async {
        cluster
            .node(2)
            .stored_count(&keys)
            .await
            .is_ok_and(|n| n == keys.len())
            && roots_agree(&cluster).await
    })
    .await;
    assert!(
        converged,
        "replicas did not converge within 90 s of n3's return"
    );
    println!(
        "background anti-entropy converged {:?} after restart",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_delete_missed_by_a_replica_does_not_come_back() {
    let mut flags = QUIET.to_vec();
    flags.push(("--hinted-handoff-enabled", "false"));
    let mut cluster = TestCluster::start_with(3, 3, &flags)
        .await
        .expect("cluster");
    let c = client_of(&[cluster.node(0), cluster.node(1), cluster.node(2)]).await;
    c.put_with("doomed", "v", &at(Consistency::All))
        .await
        .expect("put");
    cluster.kill_and_wait(2).await.expect("n3 seen down");
    c.delete_with("doomed", &at(Consistency::Quorum))
        .await
        .expect("delete");
    cluster.restart_and_wait(2).await.expect("n3 back");
    let before = cluster
        .node(2)
        .stored(b"doomed")
        .await
        .expect("read")
        .expect("held");
    assert!(!before.tombstone, "n3 still holds the deleted value");

    parse_json(&cluster.node(0).cli(&["--json", "repair"]));
    for node in &cluster.nodes {
        let cell = node
            .stored(b"doomed")
            .await
            .expect("read")
            .expect("tombstone");
        assert!(cell.tombstone, "{} holds the tombstone", node.name());
    }
    let n3 = cluster.node(2).direct_client().await;
    let one = ringkv_client::ReadOptions::default().consistency(Consistency::One);
    assert_eq!(n3.get_with("doomed", &one).await.expect("get"), None);
    let all = ringkv_client::ReadOptions::default().consistency(Consistency::All);
    assert_eq!(c.get_with("doomed", &all).await.expect("get"), None);
}
