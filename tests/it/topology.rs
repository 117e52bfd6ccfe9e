//! Growing and shrinking a cluster that holds data, with real processes:
//! join, decommission, removenode, replace and cleanup while a writer
//! writes unique keys at QUORUM and checks each one reads back at QUORUM
//! through another coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv_client::{Client, Consistency, Error, ReadOptions, RingInfo, WriteOptions};
use ringkv_proto::partitioner::token_of;
use ringkv_tests::{NodeOptions, TestCluster, TestNode, eventually, write_all};
use tokio::sync::Mutex;

fn quorum_write() -> WriteOptions {
    WriteOptions::default().consistency(Consistency::Quorum)
}

fn quorum_read() -> ReadOptions {
    ReadOptions::default().consistency(Consistency::Quorum)
}

/// What the background writer saw.
#[derive(Default)]
struct Seen {
    /// Acknowledged keys.
    acked: Vec<Bytes>,
    /// Reads at QUORUM right after an acknowledged write that did not
    /// return it.
    stale: Vec<String>,
}

/// Writes unique keys at QUORUM through one node and reads each back at
/// QUORUM through the next, over the coordinators in `clients`, until
/// stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    clients: Arc<Mutex<Vec<Client>>>,
    writes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(clients: Vec<Client>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let clients = Arc::new(Mutex::new(clients));
        let writes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, seen, clients, writes) =
                (stop.clone(), seen.clone(), clients.clone(), writes.clone());
            async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let coordinators = clients.lock().await.clone();
                    let count = coordinators.len();
                    let (writer, reader) = (
                        &coordinators[n as usize % count],
                        &coordinators[(n as usize + 1) % count],
                    );
                    let key = Bytes::from(format!("w-{n:08}"));
                    let value = Bytes::from(format!("value-{n}"));
                    if writer
                        .put_with(key.clone(), value.clone(), &quorum_write())
                        .await
                        .is_err()
                    {
                        // Unknown outcome: neither acknowledged nor checked.
                        continue;
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                    let read = reader.get_with(key.clone(), &quorum_read()).await;
                    let mut seen = seen.lock().await;
                    seen.acked.push(key.clone());
                    match read {
                        Ok(Some(found)) if found.value == value => {}
                        Ok(other) => seen.stale.push(format!(
                            "{}: read back {:?}",
                            String::from_utf8_lossy(&key),
                            other.map(|v| v.value)
                        )),
                        // A read that fails is not a stale read.
                        Err(_) => {}
                    }
                    drop(seen);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        Writer {
            stop,
            seen,
            clients,
            writes,
            task,
        }
    }

    /// Coordinates through these nodes from now on.
    async fn use_nodes(&self, clients: Vec<Client>) {
        *self.clients.lock().await = clients;
    }

    async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        Arc::try_unwrap(self.seen)
            .map(Mutex::into_inner)
            .unwrap_or_default()
    }
}

/// The replicas of `token` by the ring, as member names.
fn replicas_of(ring: &RingInfo, token: i64) -> Vec<String> {
    let range = ring
        .ranges
        .iter()
        .find(|r| {
            if r.start_token < r.end_token {
                r.start_token < token && token <= r.end_token
            } else {
                token > r.start_token || token <= r.end_token
            }
        })
        .expect("every token is in a range");
    range
        .replicas
        .iter()
        .map(|&i| ring.members[i].name.clone())
        .collect()
}

/// After a step: every key reads back at QUORUM through `client`, and
/// every replica the ring names holds every key of its ranges.
async fn check_every_key(step: &str, nodes: &[&TestNode], keys: &[Bytes]) {
    let client = nodes[0].client().await;
    // Every replica holds its keys (batch reads of each node's store).
    let ring = client.ring_info().await.expect("ring");
    let mut per_node: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
    for key in keys {
        for name in replicas_of(&ring, token_of(key)) {
            per_node.entry(name).or_default().push(key.clone());
        }
    }
    for node in nodes {
        let expected = per_node.get(node.name()).cloned().unwrap_or_default();
        let held = node.stored_count(&expected).await.expect("stored count");
        assert_eq!(
            held,
            expected.len(),
            "{step}: {} holds {held} of the {} keys the ring gives it",
            node.name(),
            expected.len()
        );
    }
    // The ring the test computed is the one getendpoints reports.
    for key in keys.iter().step_by(keys.len() / 50 + 1) {
        let endpoints = client.endpoints(key.clone()).await.expect("endpoints");
        let names: Vec<String> = endpoints.replicas.iter().map(|m| m.name.clone()).collect();
        assert_eq!(
            names,
            replicas_of(&ring, token_of(key)),
            "{step}: getendpoints"
        );
    }
    // Every key reads back at QUORUM.
    use futures::StreamExt;
    let missing: Vec<String> = futures::stream::iter(keys.iter().cloned())
        .map(|key| {
            let client = client.clone();
            async move {
                match client.get_with(key.clone(), &quorum_read()).await {
                    Ok(Some(_)) => None,
                    other => Some(format!("{}: {other:?}", String::from_utf8_lossy(&key))),
                }
            }
        })
        .buffer_unordered(64)
        .filter_map(|m| async move { m })
        .collect()
        .await;
    assert!(
        missing.is_empty(),
        "{step}: {} acknowledged keys do not read back at QUORUM, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

async fn clients_of(nodes: &[&TestNode]) -> Vec<Client> {
    let mut clients = Vec::new();
    for node in nodes {
        clients.push(node.direct_client().await);
    }
    clients
}

/// Cells and bytes a node streamed in, and the time its streams (which
/// run one after another) took, by its `ringkv streams`.
async fn streamed_in(node: &TestNode) -> (u64, u64, Duration) {
    let streams = node.client().await.streams().await.expect("streams");
    streams
        .streams
        .iter()
        .filter(|s| s.target == node.name())
        .fold((0, 0, Duration::ZERO), |(k, b, t), s| {
            (k + s.keys, b + s.bytes, t + s.elapsed)
        })
}

fn joiner(name: &str, seed: &TestNode) -> NodeOptions {
    NodeOptions::new(name)
        .replication_factor(3)
        .seeds(&[seed.ports.gossip])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_grows_and_shrinks_under_a_writer_without_losing_or_hiding_a_write() {
    let mut cluster = TestCluster::start(3, 3).await.expect("cluster");
    let loaded: Vec<Bytes> = (0..50_000)
        .map(|i| Bytes::from(format!("load-{i:06}")))
        .collect();
    let value = Bytes::from(vec![b'x'; 100]);
    let client = cluster.node(0).client().await;
    write_all(&client, &loaded, &value, &quorum_write(), 64).await;
    let base: Vec<&TestNode> = cluster.nodes.iter().collect();
    let writer = Writer::start(clients_of(&base).await);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. Join: a 4th node.
    let started = Instant::now();
    let n4 = TestNode::start(cluster.dir.path(), joiner("n4", cluster.node(0)))
        .await
        .expect("n4 joins");
    let join_time = started.elapsed();
    cluster.nodes.push(n4);
    let names: Vec<&str> = cluster.nodes.iter().map(TestNode::name).collect();
    for node in &cluster.nodes {
        node.wait_for_view(&names, &[]).await.expect("view");
    }
    let (moved, bytes, streaming) = streamed_in(&cluster.nodes[3]).await;
    let total = (loaded.len() as u64 + writer.writes.load(Ordering::Relaxed)) * 3;
    let ratio = moved as f64 / (total as f64 / 4.0);
    eprintln!(
        "join: n4 streamed {moved} cells ({bytes} bytes, {:.1} MB/s over {streaming:?} of streaming) of ~{total} stored ({:.3} of the data; ideal 1/4), data-moved ratio {ratio:.3}; the join took {join_time:?}",
        bytes as f64 / 1e6 / streaming.as_secs_f64().max(0.001),
        moved as f64 / total as f64
    );
    assert!(
        ratio <= 1.1,
        "a join moved {ratio:.3}x the ideal 1/(n+1) of the data"
    );
    let all: Vec<&TestNode> = cluster.nodes.iter().collect();
    writer.use_nodes(clients_of(&all).await).await;
    let acked = writer.seen.lock().await.acked.clone();
    let keys: Vec<Bytes> = loaded.iter().cloned().chain(acked).collect();
    check_every_key("after the join", &all, &keys).await;

    // 2. Decommission n2.
    let survivors: Vec<&TestNode> = [0, 2, 3].iter().map(|&i| &cluster.nodes[i]).collect();
    writer.use_nodes(clients_of(&survivors).await).await;
    let summary = cluster.nodes[1]
        .client()
        .await
        .decommission()
        .await
        .expect("decommission");
    eprintln!("decommission: {summary:?}");
    assert!(
        eventually(Duration::from_secs(30), || {
            let exited = cluster.nodes[1].exited().is_some() || !cluster.nodes[1].is_running();
            async move { exited }
        })
        .await,
        "n2 stops after leaving"
    );
    let survivors: Vec<&TestNode> = [0, 2, 3].iter().map(|&i| &cluster.nodes[i]).collect();
    let acked = writer.seen.lock().await.acked.clone();
    let keys: Vec<Bytes> = loaded.iter().cloned().chain(acked).collect();
    check_every_key("after the decommission", &survivors, &keys).await;

    // 3. Grow again (n5) so a node can die and leave three.
    let n5 = TestNode::start(cluster.dir.path(), joiner("n5", cluster.node(0)))
        .await
        .expect("n5 joins");
    cluster.nodes.push(n5);
    let live: Vec<&TestNode> = [0, 2, 3, 4].iter().map(|&i| &cluster.nodes[i]).collect();
    writer.use_nodes(clients_of(&live).await).await;

    // 4. Kill n3 and remove it.
    let coordinators: Vec<&TestNode> = [0, 3, 4].iter().map(|&i| &cluster.nodes[i]).collect();
    writer.use_nodes(clients_of(&coordinators).await).await;
    let n3_id = cluster.nodes[2]
        .client()
        .await
        .node_info()
        .await
        .expect("info")
        .id;
    cluster.nodes[2].kill();
    for i in [0, 3, 4] {
        cluster.nodes[i]
            .wait_for_view(&["n1", "n4", "n5"], &["n3"])
            .await
            .expect("n3 seen down");
    }
    let summary = cluster.nodes[0]
        .client()
        .await
        .remove_node(&n3_id)
        .await
        .expect("removenode");
    eprintln!("removenode: {summary:?}");
    let remaining: Vec<&TestNode> = [0, 3, 4].iter().map(|&i| &cluster.nodes[i]).collect();
    let acked = writer.seen.lock().await.acked.clone();
    let keys: Vec<Bytes> = loaded.iter().cloned().chain(acked).collect();
    check_every_key("after the removenode", &remaining, &keys).await;

    // 5. Kill n5 and replace it with n6.
    let coordinators: Vec<&TestNode> = [0, 3].iter().map(|&i| &cluster.nodes[i]).collect();
    writer.use_nodes(clients_of(&coordinators).await).await;
    let n5_id = cluster.nodes[4]
        .client()
        .await
        .node_info()
        .await
        .expect("info")
        .id;
    cluster.nodes[4].kill();
    for i in [0, 3] {
        cluster.nodes[i]
            .wait_for_view(&["n1", "n4"], &["n5"])
            .await
            .expect("n5 seen down");
    }
    let n6 = TestNode::start(
        cluster.dir.path(),
        joiner("n6", cluster.node(0)).arg("--replace", &n5_id),
    )
    .await
    .expect("n6 replaces n5");
    cluster.nodes.push(n6);
    let last: Vec<&TestNode> = [0, 3, 5].iter().map(|&i| &cluster.nodes[i]).collect();
    for node in &last {
        node.wait_for_view(&["n1", "n4", "n6"], &[])
            .await
            .expect("view");
    }
    let seen = writer.stop().await;
    let keys: Vec<Bytes> = loaded.iter().cloned().chain(seen.acked.clone()).collect();
    check_every_key("after the replace", &last, &keys).await;
    assert!(
        seen.stale.is_empty(),
        "{} stale QUORUM reads of {} acknowledged writes, e.g. {:?}",
        seen.stale.len(),
        seen.acked.len(),
        &seen.stale[..seen.stale.len().min(5)]
    );
    eprintln!(
        "writer: {} writes acknowledged and read back through another coordinator, 0 stale",
        seen.acked.len()
    );
    let status = cluster.nodes[0].status().await.expect("status");
    let states: BTreeMap<String, String> = status
        .members
        .iter()
        .map(|m| (m.name.clone(), m.state.clone()))
        .collect();
    assert_eq!(states.get("n2").map(String::as_str), Some("LEFT"));
    assert_eq!(states.get("n3").map(String::as_str), Some("LEFT"));
    assert_eq!(states.get("n5").map(String::as_str), Some("LEFT"));
}

fn code(error: &Error) -> String {
    match error {
        Error::Rpc { code, message } => format!("{code:?}: {message}"),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topology_commands_refuse_what_would_break_the_cluster_and_cleanup_frees_moved_ranges() {
    let mut cluster = TestCluster::start(3, 3).await.expect("cluster");
    let client = cluster.node(0).client().await;

    // Below N.
    let error = client.decommission().await.expect_err("3 nodes, RF 3");
    assert!(
        code(&error).contains("fewer than replication_factor = 3"),
        "{}",
        code(&error)
    );
    // A live node, an unknown id, not an id.
    let n2 = cluster
        .node(1)
        .client()
        .await
        .node_info()
        .await
        .expect("info");
    let error = client.remove_node(&n2.id).await.expect_err("live");
    assert!(code(&error).contains("is up"), "{}", code(&error));
    let error = client
        .remove_node("00000000-0000-0000-0000-000000000001")
        .await
        .expect_err("unknown");
    assert!(code(&error).contains("no node with id"), "{}", code(&error));
    let error = client.remove_node("n2").await.expect_err("not an id");
    assert!(code(&error).contains("not a node id"), "{}", code(&error));

    // Data that takes a few seconds to stream at 1 MiB/s.
    let keys: Vec<Bytes> = (0..8_000)
        .map(|i| Bytes::from(format!("k-{i:05}")))
        .collect();
    let value = Bytes::from(vec![b'v'; 1024]);
    write_all(&client, &keys, &value, &quorum_write(), 64).await;

    // While n4 joins, every other change and cleanup is refused, naming it.
    let options = joiner("n4", cluster.node(0)).arg("--stream-throughput-mb", "1");
    let dir = cluster.dir.path().to_path_buf();
    let joining = tokio::spawn(async move { TestNode::start(&dir, options).await });
    assert!(
        eventually(Duration::from_secs(30), || {
            let client = client.clone();
            async move {
                client
                    .cluster_status()
                    .await
                    .is_ok_and(|s| s.change_in_progress.is_some_and(|c| c.contains("n4")))
            }
        })
        .await,
        "n1 sees n4 joining"
    );
    let status = client.cluster_status().await.expect("status");
    eprintln!("during the join: {:?}", status.change_in_progress);
    for (what, outcome) in [
        ("cleanup", client.cleanup().await.map(|_| ())),
        ("decommission", client.decommission().await.map(|_| ())),
    ] {
        let error = outcome.expect_err(what);
        assert!(
            code(&error).contains("topology change is in progress") && code(&error).contains("n4"),
            "{what}: {}",
            code(&error)
        );
    }
    let n4 = joining.await.expect("task").expect("n4 joins");
    cluster.nodes.push(n4);
    let names: Vec<&str> = cluster.nodes.iter().map(TestNode::name).collect();
    for node in &cluster.nodes {
        node.wait_for_view(&names, &[]).await.expect("view");
    }
    let streams = cluster.nodes[3]
        .client()
        .await
        .streams()
        .await
        .expect("streams");
    assert!(
        streams
            .streams
            .iter()
            .any(|s| s.operation == "bootstrap" && s.done && s.keys > 0),
        "{streams:?}"
    );

    // Cleanup on n1 frees the ranges that moved to n4 and keeps the rest.
    let ring = client.ring_info().await.expect("ring");
    let (owned, moved): (Vec<Bytes>, Vec<Bytes>) = keys
        .iter()
        .cloned()
        .partition(|k| replicas_of(&ring, token_of(k)).iter().any(|n| n == "n1"));
    assert!(!moved.is_empty(), "n4 took some of n1's ranges");
    let n1 = cluster.node(0);
    assert_eq!(n1.stored_count(&moved).await.expect("count"), moved.len());
    let freed = client.cleanup().await.expect("cleanup");
    eprintln!("cleanup on n1: {freed:?} ({} keys moved away)", moved.len());
    assert_eq!(freed.keys_deleted, moved.len() as u64);
    assert!(freed.bytes_freed >= moved.len() as u64 * 1024);
    assert_eq!(n1.stored_count(&moved).await.expect("count"), 0);
    assert_eq!(n1.stored_count(&owned).await.expect("count"), owned.len());
    for key in keys.iter().step_by(97) {
        assert!(
            client
                .get_with(key.clone(), &quorum_read())
                .await
                .expect("read")
                .is_some(),
            "every key still reads at QUORUM"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_killed_mid_stream_resumes_from_its_checkpoint() {
    let cluster = TestCluster::start(3, 3).await.expect("cluster");
    let client = cluster.node(0).client().await;
    let keys: Vec<Bytes> = (0..6_000)
        .map(|i| Bytes::from(format!("c-{i:05}")))
        .collect();
    let value = Bytes::from(vec![b'v'; 1024]);
    write_all(&client, &keys, &value, &quorum_write(), 64).await;

    // At 1 MiB/s the join streams for seconds: kill it part way.
    let options = joiner("n4", cluster.node(0)).arg("--stream-throughput-mb", "1");
    let mut n4 = TestNode::launch(cluster.dir.path(), options)
        .await
        .expect("n4 starts");
    let streamed_in = "ringkv_streamed_bytes_total{direction=\"in\"}";
    let mut first = 0.0;
    assert!(
        eventually(Duration::from_secs(60), || {
            let n4 = &n4;
            async move { n4.metric(streamed_in).await.unwrap_or(0.0) > 1_500_000.0 }
        })
        .await,
        "n4 streams"
    );
    if let Ok(bytes) = n4.metric(streamed_in).await {
        first = bytes;
    }
    n4.kill();
    eprintln!("n4 killed after streaming {first} bytes");

    // Restarted on its data, it resumes the join and finishes it.
    n4.restart().await.expect("n4 resumes and joins");
    let second = n4.metric(streamed_in).await.expect("metric");
    let ring = client.ring_info().await.expect("ring");
    let mine: Vec<Bytes> = keys
        .iter()
        .filter(|k| replicas_of(&ring, token_of(k)).iter().any(|n| n == "n4"))
        .cloned()
        .collect();
    let share = mine.len() as f64 * (1024.0 + 7.0);
    eprintln!(
        "n4 streamed {second} more bytes after its restart; it holds {} keys (~{share} bytes)",
        mine.len()
    );
    assert_eq!(
        n4.stored_count(&mine).await.expect("count"),
        mine.len(),
        "n4 holds every key of its ranges"
    );
    assert!(
        second < share * 0.9,
        "the restarted join skipped what it had streamed ({second} of ~{share} bytes again)"
    );
    let status = n4.status().await.expect("status");
    assert!(status.change_in_progress.is_none(), "{status:?}");
}
