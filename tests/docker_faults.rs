//! Fault tests against the Docker cluster: partition, crash, pause,
//! losing a quorum, and growing to 5 nodes and back, each under a QUORUM
//! writer of unique keys. After every
//! fault: every write the client saw acknowledged is read back at QUORUM,
//! and the replicas converge to identical Merkle roots; a table reports
//! acknowledged writes, lost writes and time to converge, from the end of
//! the fault (reconnect, restart, unpause) to equal roots. With
//! `RINGKV_FAULTS_JSON=PATH` the table is also written there as JSON
//! (`deploy/bench/compare.sh` reads it).
//!
//! Needs Docker and the `ringkv:local` image, so it is ignored by default;
//! `deploy/docker/fault-tests.sh` builds the image and runs it (CI does).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringkv_client::{Client, Consistency, Error, ReadOptions, WriteOptions};
use ringkv_tests::docker::DockerCluster;
use ringkv_tests::{eventually, roots_agree};

/// What one scenario saw.
struct Outcome {
    scenario: &'static str,
    acknowledged: usize,
    lost: usize,
    failed: BTreeMap<&'static str, u64>,
    converged_after: Duration,
}

/// A QUORUM writer of unique keys, running until stopped.
struct Writer {
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    failed: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

fn kind(error: &Error) -> &'static str {
    match error {
        Error::Unavailable { .. } => "unavailable",
        Error::Timeout { .. } | Error::DeadlineExceeded(_) => "timeout",
        Error::Failed { .. } => "failed",
        Error::Connect { .. } => "connect",
        _ => "other",
    }
}

fn start_writer(client: Client, prefix: &str) -> Writer {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, f, s, prefix) = (
        acked.clone(),
        failed.clone(),
        stop.clone(),
        prefix.to_owned(),
    );
    let task = tokio::spawn(async move {
        let options = WriteOptions::default().consistency(Consistency::Quorum);
        let mut i = 0u64;
        while !s.load(Ordering::Relaxed) {
            let key = format!("{prefix}-{i:08}");
            i += 1;
            let started = Instant::now();
            match client.put_with(key.clone(), key.clone(), &options).await {
                Ok(_) => a.lock().expect("acked").push((key, started)),
                Err(error) => {
                    *f.lock().expect("failed").entry(kind(&error)).or_insert(0) += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    });
    Writer {
        acked,
        failed,
        stop,
        task,
    }
}

impl Writer {
    async fn finish(self) -> (Vec<(String, Instant)>, BTreeMap<&'static str, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let acked = self.acked.lock().expect("acked").clone();
        let failed = self.failed.lock().expect("failed").clone();
        (acked, failed)
    }
}

/// Acknowledged keys that a QUORUM read does not return.
async fn lost(cluster: &DockerCluster, acked: &[(String, Instant)]) -> usize {
    let client = cluster.client(&[1, 2, 3], true, 3).await.expect("reader");
    let read = ReadOptions::default().consistency(Consistency::Quorum);
    let mut missing = 0;
    for (key, _) in acked {
        let mut found = None;
        for _ in 0..5 {
            match client.get_with(key.clone(), &read).await {
                Ok(value) => {
                    found = Some(value);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        if !matches!(found, Some(Some(ref v)) if v.value == key.as_bytes()) {
            eprintln!("lost: {key} -> {found:?}");
            missing += 1;
        }
    }
    missing
}

/// Time from `healed` (the end of the fault: reconnect, restart,
/// unpause) until the three nodes hold identical data (equal Merkle roots).
async fn converge(cluster: &DockerCluster, healed: Instant) -> Duration {
    let peers = [
        cluster.peer_addr(1),
        cluster.peer_addr(2),
        cluster.peer_addr(3),
    ];
    let client = cluster.client(&[1], false, 0).await.expect("client");
    let converged = eventually(Duration::from_secs(180), || async {
        match client.ring_info().await {
            Ok(ring) => roots_agree(&ring, &peers).await,
            Err(_) => false,
        }
    })
    .await;
    assert!(converged, "replicas did not converge within 180 s");
    healed.elapsed()
}

async fn settle_writes(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

async fn partition_one_node(cluster: &DockerCluster) -> Outcome {
    let majority = start_writer(
        cluster.client(&[1, 2], true, 3).await.expect("client"),
        "partition-major",
    );
    let minority = start_writer(
        cluster.client(&[3], false, 0).await.expect("client"),
        "partition-minor",
    );
    settle_writes(3).await;
    cluster.disconnect(3).expect("disconnect ringkv-3");
    settle_writes(30).await;
    cluster.connect(3).expect("reconnect ringkv-3");
    let healed = Instant::now();
    let (mut acked, mut failed) = majority.finish().await;
    let (minor_acked, minor_failed) = minority.finish().await;
    acked.extend(minor_acked);
    for (k, v) in minor_failed {
        *failed.entry(k).or_insert(0) += v;
    }
    cluster
        .wait_for_view(&[1, 2, 3], &[])
        .await
        .expect("ringkv-3 back");
    Outcome {
        scenario: "partition 1 node for 30 s",
        converged_after: converge(cluster, healed).await,
        lost: lost(cluster, &acked).await,
        acknowledged: acked.len(),
        failed,
    }
}

async fn kill_one_node(cluster: &DockerCluster) -> Outcome {
    let writer = start_writer(
        cluster.client(&[1, 2, 3], true, 3).await.expect("client"),
        "kill",
    );
    settle_writes(3).await;
    let victim = cluster.container(2).expect("ringkv-2");
    cluster.docker(&["kill", &victim]).expect("kill");
    settle_writes(10).await;
    cluster.docker(&["start", &victim]).expect("start");
    let healed = Instant::now();
    cluster
        .wait_for_view(&[1, 2, 3], &[])
        .await
        .expect("ringkv-2 back");
    let (acked, failed) = writer.finish().await;
    Outcome {
        scenario: "kill 1 node mid-write",
        converged_after: converge(cluster, healed).await,
        lost: lost(cluster, &acked).await,
        acknowledged: acked.len(),
        failed,
    }
}

async fn pause_one_node(cluster: &DockerCluster) -> Outcome {
    let writer = start_writer(
        cluster.client(&[1, 2, 3], true, 3).await.expect("client"),
        "pause",
    );
    settle_writes(3).await;
    let victim = cluster.container(3).expect("ringkv-3");
    cluster.docker(&["pause", &victim]).expect("pause");
    // Past the failure detector's timeout: the others mark it down.
    cluster
        .wait_for_view(&[1, 2], &[3])
        .await
        .expect("ringkv-3 seen down");
    settle_writes(5).await;
    cluster.docker(&["unpause", &victim]).expect("unpause");
    let healed = Instant::now();
    cluster
        .wait_for_view(&[1, 2, 3], &[])
        .await
        .expect("ringkv-3 back");
    let (acked, failed) = writer.finish().await;
    Outcome {
        scenario: "pause 1 node past detection",
        converged_after: converge(cluster, healed).await,
        lost: lost(cluster, &acked).await,
        acknowledged: acked.len(),
        failed,
    }
}

async fn kill_two_nodes(cluster: &DockerCluster) -> Outcome {
    let before = start_writer(
        cluster.client(&[1], false, 0).await.expect("client"),
        "quorum-before",
    );
    settle_writes(3).await;
    let (acked_before, _) = before.finish().await;
    let victims = [
        cluster.container(2).expect("ringkv-2"),
        cluster.container(3).expect("ringkv-3"),
    ];
    for victim in &victims {
        cluster.docker(&["kill", victim]).expect("kill");
    }
    let killed = Instant::now();
    // A QUORUM writer through the survivor: nothing may be acknowledged,
    // neither before the failure detector notices nor after.
    let during = start_writer(
        cluster.client(&[1], false, 0).await.expect("client"),
        "quorum-lost",
    );
    cluster
        .wait_for_view(&[1], &[2, 3])
        .await
        .expect("both seen down");
    settle_writes(5).await;
    let (acked_during, failed) = during.finish().await;
    let false_acks: Vec<_> = acked_during
        .iter()
        .filter(|(_, at)| *at >= killed)
        .collect();
    assert!(
        false_acks.is_empty(),
        "acknowledged with 2 of 3 replicas dead: {false_acks:?}"
    );
    assert!(
        failed
            .keys()
            .all(|k| ["unavailable", "timeout", "failed"].contains(k)),
        "unexpected failures: {failed:?}"
    );
    assert!(
        failed.get("unavailable").copied().unwrap_or(0) > 0,
        "UNAVAILABLE once detected: {failed:?}"
    );
    for victim in &victims {
        cluster.docker(&["start", victim]).expect("start");
    }
    let healed = Instant::now();
    cluster
        .wait_for_view(&[1, 2, 3], &[])
        .await
        .expect("both back");
    Outcome {
        scenario: "kill 2 of 3 nodes",
        converged_after: converge(cluster, healed).await,
        lost: lost(cluster, &acked_before).await,
        acknowledged: acked_before.len(),
        failed,
    }
}

/// Grows the cluster from 3 to 5 nodes (bootstrap streaming) and shrinks
/// it back (decommission of nodes 5 and 4) under the writer.
async fn grow_and_shrink(cluster: &DockerCluster) -> Outcome {
    let writer = start_writer(
        cluster.client(&[1, 2, 3], true, 3).await.expect("client"),
        "topology",
    );
    settle_writes(3).await;
    cluster.grow().expect("start nodes 4 and 5");
    cluster
        .wait_for_view(&[1, 2, 3, 4, 5], &[])
        .await
        .expect("5 nodes NORMAL");
    settle_writes(3).await;
    for n in [5, 4] {
        let client = cluster.client(&[n], false, 0).await.expect("client");
        let summary = client.decommission().await.expect("decommission");
        eprintln!("ringkv-{n} decommissioned: {summary:?}");
        cluster.remove(n).expect("remove the container");
    }
    let healed = Instant::now();
    cluster
        .wait_for_view(&[1, 2, 3], &[])
        .await
        .expect("3 nodes again");
    settle_writes(2).await;
    let (acked, failed) = writer.finish().await;
    Outcome {
        scenario: "grow 3 -> 5 -> 3 nodes",
        converged_after: converge(cluster, healed).await,
        lost: lost(cluster, &acked).await,
        acknowledged: acked.len(),
        failed,
    }
}

#[tokio::test]
#[ignore = "needs Docker and the ringkv:local image: deploy/docker/fault-tests.sh"]
async fn faults_lose_no_acknowledged_write_and_replicas_converge() {
    let cluster = DockerCluster::up(
        "ringkv-faults",
        "172.30.248",
        &[("RINGKV_ANTI_ENTROPY_INTERVAL_MS", "30000")],
    )
    .await
    .expect("docker cluster");
    let mut outcomes = Vec::new();
    outcomes.push(partition_one_node(&cluster).await);
    outcomes.push(kill_one_node(&cluster).await);
    outcomes.push(pause_one_node(&cluster).await);
    outcomes.push(kill_two_nodes(&cluster).await);
    outcomes.push(grow_and_shrink(&cluster).await);

    println!();
    println!(
        "{:<30} {:>12} {:>6} {:>16}  failed writes (not acknowledged)",
        "scenario", "acknowledged", "lost", "converged after"
    );
    for o in &outcomes {
        println!(
            "{:<30} {:>12} {:>6} {:>14.1} s  {:?}",
            o.scenario,
            o.acknowledged,
            o.lost,
            o.converged_after.as_secs_f64(),
            o.failed
        );
    }
    if let Ok(path) = std::env::var("RINGKV_FAULTS_JSON") {
        let rows: Vec<_> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "scenario": o.scenario,
                    "acknowledged": o.acknowledged,
                    "lost": o.lost,
                    "failed": o.failed,
                    "converged_after_seconds": o.converged_after.as_secs_f64(),
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows).expect("outcomes as JSON");
        std::fs::write(&path, text).expect("write RINGKV_FAULTS_JSON");
    }
    for o in &outcomes {
        assert_eq!(o.lost, 0, "{}: acknowledged writes lost", o.scenario);
        assert!(
            o.acknowledged > 0,
            "{}: the writer made no progress",
            o.scenario
        );
    }
}
