//! Regressions of the hardening issue on real nodes: a cancelled repair
//! does not lock out later ones, and hints of large values are delivered.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use ringkv_client::{Client, Consistency, WriteOptions};
use ringkv_node::ring::Token;
use ringkv_node::storage::{Cell, RocksConfig, RocksStorage, Storage};
use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_client::AdminClient;
use ringkv_tests::{SmallDisk, TestCluster, TestNode, client_of, eventually};

const QUIET: [(&str, &str); 2] = [
    ("--anti-entropy-interval-ms", "0"),
    ("--read-repair-chance", "0"),
];

/// Writes every key at QUORUM, 16 at a time (values here reach 1 MiB).
async fn write_all(client: &Client, keys: &[Bytes], value: &Bytes) {
    let quorum = WriteOptions::default().consistency(Consistency::Quorum);
    ringkv_tests::write_all(client, keys, value, &quorum, 16).await;
}

/// Three nodes (no hints, no background repair, `extra` flags) where n3
/// missed 20,000 writes, so that a repair has work in every range.
async fn diverged_cluster(extra: &[(&'static str, &'static str)]) -> (TestCluster, Vec<Bytes>) {
    let mut flags = QUIET.to_vec();
    flags.push(("--hinted-handoff-enabled", "false"));
    flags.extend_from_slice(extra);
    let mut cluster = TestCluster::start_with(3, 3, &flags)
        .await
        .expect("cluster");
    cluster.kill_and_wait(2).await.expect("n3 seen down");
    let keys: Vec<Bytes> = (0..20_000)
        .map(|i| Bytes::from(format!("diverged-{i:06}")))
        .collect();
    let c = client_of(&[cluster.node(0), cluster.node(1)]).await;
    write_all(&c, &keys, &Bytes::from_static(b"value")).await;
    cluster.restart_and_wait(2).await.expect("n3 back");
    (cluster, keys)
}

/// Starts a repair of every range of `node` through the Admin API; returns
/// its progress stream and the first progress message.
async fn start_repair(
    node: &TestNode,
) -> (tonic::Streaming<pb::RepairProgress>, pb::RepairProgress) {
    let mut admin = AdminClient::connect(format!("http://{}", node.client_addr))
        .await
        .expect("admin client");
    let mut stream = admin
        .repair(pb::RepairRequest {
            primary_only: false,
        })
        .await
        .expect("repair starts")
        .into_inner();
    let first = stream.next().await.expect("a message").expect("progress");
    assert!(!first.done, "the first message comes after one range");
    (stream, first)
}

/// Runs `ringkv --json repair` against `node`, giving up after `limit`.
async fn repair(node: &TestNode, limit: Duration) -> Option<serde_json::Value> {
    let host = node.client_addr.to_string();
    let run = tokio::task::spawn_blocking(move || {
        ringkv_tests::ringkv_cli(&[host.as_str()], &["--json", "repair"])
    });
    let output = tokio::time::timeout(limit, run).await.ok()?.ok()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).ok()
}

/// Issue item 1: a client that goes away after the first progress message
/// (Ctrl-C on `ringkv repair`) used to leave the repair blocked on its
/// progress channel, holding the lock every later repair waits for.
#[tokio::test]
async fn a_cancelled_repair_does_not_block_the_next_one() {
    let (cluster, keys) = diverged_cluster(&[]).await;
    // Start a repair on n3 and hang up after its first progress message.
    let (stream, first) = start_repair(cluster.node(2)).await;
    assert!(first.ranges_total > 33, "{} ranges", first.ranges_total);
    drop(stream);

    // The next repair runs to completion (it waits for the first to finish
    // in the background, if it still runs).
    let started = Instant::now();
    let summary = repair(cluster.node(2), Duration::from_secs(120))
        .await
        .expect("the second repair finishes within 120 s");
    println!(
        "second repair after a cancelled one: {summary} in {:?}",
        started.elapsed()
    );
    assert_eq!(summary["ranges_total"], summary["ranges_compared"]);
    assert_eq!(summary["failed_ranges"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        cluster.node(2).stored_count(&keys).await.expect("count"),
        keys.len(),
        "n3 repaired"
    );
}

/// Issue item 2: hints went 200 to a batch whatever their size, so 100
/// hints of 1 MiB made one batch over the internode message limit that
/// failed on every retry until the hints expired.
#[tokio::test]
async fn hints_of_large_values_are_all_delivered() {
    let mut flags = QUIET.to_vec();
    flags.push(("--hint-replay-throttle-kb", "262144"));
    let mut cluster = TestCluster::start_with(3, 3, &flags)
        .await
        .expect("cluster");
    cluster.kill_and_wait(2).await.expect("n3 seen down");
    let keys: Vec<Bytes> = (0..100)
        .map(|i| Bytes::from(format!("large-{i:03}")))
        .collect();
    let value = Bytes::from(vec![b'v'; 1 << 20]);
    let c = client_of(&[cluster.node(0), cluster.node(1)]).await;
    write_all(&c, &keys, &value).await;

    cluster.node_mut(2).restart().await.expect("restart n3");
    let n3 = cluster.node(2);
    let delivered = eventually(Duration::from_secs(120), || async {
        n3.stored_count(&keys)
            .await
            .is_ok_and(|held| held == keys.len())
    })
    .await;
    let held = n3.stored_count(&keys).await.expect("count");
    assert!(delivered, "n3 holds {held} of 100 large values after 120 s");
    let mut replayed = 0.0;
    for i in 0..2 {
        replayed += cluster
            .node(i)
            .metric("ringkv_hints_replayed_total")
            .await
            .expect("metric");
    }
    assert!(replayed >= 100.0, "{replayed} hints replayed");
    let stored = n3.stored(&keys[7]).await.expect("read").expect("held");
    assert_eq!(stored.value.len(), 1 << 20);
}

/// Issue item 10: a node whose disk fills up names the cause, reports that
/// it cannot write (`/health`, `ringkv status`), keeps serving reads, and
/// resumes writes by itself once space returns, with every acknowledged
/// write still there.
#[tokio::test]
async fn a_full_disk_is_reported_and_writes_resume_when_space_returns() {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let node = TestNode::start(
        disk.path(),
        ringkv_tests::NodeOptions::new("n1").replication_factor(1),
    )
    .await
    .expect("node");
    let c = node.direct_client().await;
    let one = WriteOptions::default().consistency(Consistency::One);
    let value = Bytes::from(vec![b'd'; 64 << 10]);
    let mut acknowledged = Vec::new();
    let refusal = loop {
        let key = Bytes::from(format!("fill-{:05}", acknowledged.len()));
        match c.put_with(key.clone(), value.clone(), &one).await {
            Ok(_) => acknowledged.push(key),
            Err(error) => break error.to_string(),
        }
        assert!(acknowledged.len() < 2_000, "24 MiB never filled up");
    };
    println!("disk full after {} writes: {refusal}", acknowledged.len());
    assert!(refusal.contains("No space left on device"), "{refusal}");

    // Reported as unable to write, everywhere an operator looks.
    let (code, body) = node.http_get("/health").await.expect("health");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("unable to write"), "{body}");
    let reported = eventually(Duration::from_secs(20), || async {
        let output = node.cli(&["--json", "status"]);
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .ok()
            .and_then(|s| s["nodes"][0]["disk_problem"].as_str().map(str::to_owned))
            .is_some_and(|p| p.contains("No space left"))
    })
    .await;
    assert!(reported, "status does not show the disk problem");
    // Reads go on.
    let read = c.get(acknowledged[0].clone()).await.expect("read");
    assert_eq!(read.map(|v| v.value.len()), Some(value.len()));

    // Space returns: writes resume without a restart.
    disk.resize(256);
    let resumed = eventually(Duration::from_secs(30), || async {
        c.put_with("after", "space", &one).await.is_ok()
    })
    .await;
    assert!(
        resumed,
        "writes did not resume within 30 s of space returning"
    );
    assert_eq!(
        node.stored_count(&acknowledged).await.expect("count"),
        acknowledged.len(),
        "an acknowledged write was lost"
    );
    let healthy = eventually(Duration::from_secs(10), || async {
        node.http_get("/health")
            .await
            .is_ok_and(|(code, _)| code == 200)
    })
    .await;
    assert!(healthy, "/health stays 503 after recovery");
    drop(node);
}

/// Regression (hardening item 10): once RocksDB hit ENOSPC every write
/// failed with "Writer has previous error", which never names the cause,
/// and writes kept failing after space was freed until a restart.
#[test]
fn rocksdb_on_a_full_disk_refuses_writes_with_the_cause_and_recovers_without_loss() {
    let Some(disk) = SmallDisk::mount(8) else {
        return;
    };
    let storage = RocksStorage::open(disk.path(), &RocksConfig::default()).expect("open");
    let health = storage.health();
    let value = Bytes::from(vec![7u8; 4096]);
    let put = |i: u64| {
        let key = format!("key{i}");
        let cell = Cell::live(1, value.clone(), None);
        storage.write(Token::of(key.as_bytes()), key.as_bytes(), &cell, false)
    };
    let mut acknowledged = 0u64;
    let error = loop {
        match put(acknowledged) {
            Ok(()) => acknowledged += 1,
            Err(error) => break error,
        }
    };
    assert!(
        acknowledged > 100,
        "{acknowledged} writes before the disk filled"
    );
    let text = error.to_string();
    assert!(text.contains("No space left on device"), "{text}");
    // Later failures still name the first cause, and reads go on.
    let again = put(u64::MAX).expect_err("still full").to_string();
    assert!(again.contains("No space left on device"), "{again}");
    assert!(health.problem().is_some());
    assert!(
        storage
            .read(Token::of(b"key0"), b"key0")
            .expect("read")
            .is_some()
    );

    // Still full: recovery fails, and reads keep working.
    assert!(storage.recover().is_err());
    assert!(
        storage
            .read(Token::of(b"key1"), b"key1")
            .expect("read")
            .is_some()
    );

    // Space returns: recovery reopens the store and writes resume.
    disk.resize(256);
    storage.recover().expect("recovers once there is room");
    health.recovered();
    put(u64::MAX - 1).expect("writes resume");
    for i in 0..acknowledged {
        let key = format!("key{i}");
        assert!(
            storage
                .read(Token::of(key.as_bytes()), key.as_bytes())
                .expect("read")
                .is_some(),
            "acknowledged {key} lost"
        );
    }
}

/// Issue item 10, the policy: under `disk_failure_policy = stop` a node
/// whose disk refuses writes shuts down (exit status 1) instead.
#[tokio::test]
async fn under_the_stop_policy_a_full_disk_stops_the_node() {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let mut node = TestNode::start(
        disk.path(),
        ringkv_tests::NodeOptions::new("n1")
            .replication_factor(1)
            .arg("--disk-failure-policy", "stop"),
    )
    .await
    .expect("node");
    let c = node.direct_client().await;
    let one = WriteOptions::default().consistency(Consistency::One);
    let value = Bytes::from(vec![b'd'; 64 << 10]);
    for i in 0..2_000 {
        if c.put_with(format!("fill-{i:05}"), value.clone(), &one)
            .await
            .is_err()
        {
            break;
        }
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = node.exited() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the node did not stop:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.code(), Some(1), "{}", node.log());
    assert!(
        node.log().contains("disk_failure_policy = stop"),
        "{}",
        node.log()
    );
}

/// Issue item 3: internode requests had no deadline, so a repair whose
/// peer was paused (SIGSTOP) mid-run waited forever while holding the
/// repair lock. Now the request fails after `internode_timeout_ms`, the
/// range is reported as failed, and the run finishes.
#[tokio::test]
async fn a_repair_against_a_paused_peer_finishes_and_names_the_failure() {
    let (cluster, _) = diverged_cluster(&[("--internode-timeout-ms", "2000")]).await;
    // n1 repairs; n3 freezes once the run is under way.
    let (mut stream, first) = start_repair(cluster.node(0)).await;
    cluster.node(2).signal(libc::SIGSTOP);
    let last = tokio::time::timeout(Duration::from_secs(120), async {
        let mut last = first;
        while let Some(Ok(progress)) = stream.next().await {
            last = progress;
        }
        last
    })
    .await;
    cluster.node(2).signal(libc::SIGCONT);
    let last = last.expect("the repair finishes within 120 s with a peer paused");
    assert!(last.done, "{last:?}");
    assert_eq!(last.ranges_done, last.ranges_total);
    // Ranges shared with n3 were either skipped as down (once the failure
    // detector saw the pause) or failed on the deadline; none hung.
    assert!(
        !last.failed_ranges.is_empty() || last.replicas_skipped > 0,
        "{last:?}"
    );
    println!(
        "repair with a peer paused: {} of {} ranges failed, {} replica pairs skipped as down",
        last.failed_ranges.len(),
        last.ranges_total,
        last.replicas_skipped
    );
    // `status` shows the ranges that failed.
    if !last.failed_ranges.is_empty() {
        let shown = eventually(Duration::from_secs(20), || async {
            let output = cluster.node(1).cli(&["--json", "status"]);
            serde_json::from_slice::<serde_json::Value>(&output.stdout)
                .ok()
                .and_then(|s| {
                    s["nodes"].as_array().and_then(|nodes| {
                        nodes
                            .iter()
                            .find(|n| n["name"] == "n1")
                            .and_then(|n| n["last_repair_failed_ranges"].as_array())
                            .map(Vec::len)
                    })
                })
                .is_some_and(|n| n > 0)
        })
        .await;
        assert!(shown, "status does not show n1's failed ranges");
    }
}
