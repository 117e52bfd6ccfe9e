//! One node: the request paths, bad input, durability across crashes,
//! shutdown and configuration.

use std::time::Duration;

use bytes::Bytes;
use ringkv_client::{Consistency, Error, ReadOptions, WriteOptions};
use ringkv_proto::v1 as pb;
use ringkv_proto::v1::key_value_client::KeyValueClient;
use ringkv_tests::{NodeOptions, TestNode, eventually};

async fn node(dir: &tempfile::TempDir, options: NodeOptions) -> TestNode {
    TestNode::start(dir.path(), options)
        .await
        .expect("node starts")
}

#[tokio::test]
async fn put_get_delete_overwrite_and_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(&dir, NodeOptions::new("n1")).await;
    let client = n.client().await;

    assert_eq!(client.get("missing").await.expect("get"), None);
    let t1 = client.put("k", "v1").await.expect("put");
    let found = client.get("k").await.expect("get").expect("found");
    assert_eq!(
        (found.value, found.timestamp_micros),
        (Bytes::from("v1"), t1)
    );

    let t2 = client.put("k", "v2").await.expect("overwrite");
    assert!(t2 > t1, "timestamps increase");
    assert_eq!(
        client.get("k").await.expect("get").map(|v| v.value),
        Some(Bytes::from("v2"))
    );

    // A write with an older client timestamp loses to the stored value.
    let stale = WriteOptions::default().timestamp_micros(t1 - 1);
    client
        .put_with("k", "stale", &stale)
        .await
        .expect("stale put is accepted");
    assert_eq!(
        client.get("k").await.expect("get").map(|v| v.value),
        Some(Bytes::from("v2"))
    );

    let td = client.delete("k").await.expect("delete");
    assert!(td > t2);
    assert_eq!(client.get("k").await.expect("get"), None);

    // A value with a long TTL is visible; one with a short TTL disappears.
    let long = WriteOptions::default().ttl(Duration::from_secs(3600));
    client.put_with("long", "x", &long).await.expect("put ttl");
    let found = client.get("long").await.expect("get").expect("found");
    assert!(found.expires_at.is_some());
    let short = WriteOptions::default().ttl(Duration::from_secs(1));
    client
        .put_with("short", "x", &short)
        .await
        .expect("put ttl");
    let gone = eventually(Duration::from_secs(30), || async {
        client.get("short").await.is_ok_and(|v| v.is_none())
    })
    .await;
    assert!(gone, "a 1 s TTL value was still readable after 30 s");
    assert!(client.get("long").await.expect("get").is_some());

    // Binary keys and values.
    let key = Bytes::from_static(&[0, 159, 146, 150]);
    let value = Bytes::from_static(&[255, 0, 1]);
    client
        .put(key.clone(), value.clone())
        .await
        .expect("put binary");
    assert_eq!(
        client.get(key).await.expect("get").map(|v| v.value),
        Some(value)
    );
}

#[tokio::test]
async fn levels_needing_more_replicas_than_exist_are_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // N = 3 on a single node: QUORUM needs 2 replicas, 1 is alive.
    let n = node(&dir, NodeOptions::new("n1").replication_factor(3)).await;
    let client = n.client().await;
    let err = client
        .put("k", "v")
        .await
        .expect_err("QUORUM with one node");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                required: 2,
                alive: 1
            }
        ),
        "{err:?}"
    );
    let one = WriteOptions::default().consistency(Consistency::One);
    client.put_with("k", "v", &one).await.expect("ONE works");
    let all = ReadOptions::default().consistency(Consistency::All);
    let err = client.get_with("k", &all).await.expect_err("ALL");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                required: 3,
                alive: 1
            }
        ),
        "{err:?}"
    );
    let one = ReadOptions::default().consistency(Consistency::One);
    assert!(
        client
            .get_with("k", &one)
            .await
            .expect("ONE read")
            .is_some()
    );
}

#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(&dir, NodeOptions::new("n1")).await;
    let client = n.client().await;
    client.put("k", "original").await.expect("put");

    let invalid = |result: ringkv_client::Result<i64>, needle: &str| match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected INVALID_ARGUMENT with {needle:?}, got {other:?}"),
    };
    invalid(client.put("", "v").await, "key is empty");
    invalid(
        client.put(vec![b'k'; 64 * 1024 + 1], "v").await,
        "limit is 65536 bytes",
    );
    invalid(
        client.put("k", vec![0u8; 16 * 1024 * 1024 + 1]).await,
        "max_value_size = 16777216",
    );
    invalid(client.delete("").await, "key is empty");
    let any = ReadOptions::default().consistency(Consistency::Any);
    match client.get_with("k", &any).await {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("ANY")),
        other => panic!("ANY read: {other:?}"),
    }

    // An unknown level number only reaches the node through raw gRPC.
    let mut raw = KeyValueClient::connect(format!("http://{}", n.client_addr))
        .await
        .expect("raw connect");
    let status = raw
        .put(pb::PutRequest {
            key: Bytes::from("k"),
            value: Bytes::from("bad"),
            consistency: 42,
            ..Default::default()
        })
        .await
        .expect_err("unknown level");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("unknown consistency level 42"),
        "{}",
        status.message()
    );

    // A value of exactly the limit is accepted; the node still serves and
    // the stored value is untouched by the rejected requests.
    assert_eq!(
        client.get("k").await.expect("get").map(|v| v.value),
        Some(Bytes::from("original"))
    );
    client
        .put("big", vec![7u8; 16 * 1024 * 1024])
        .await
        .expect("value at the limit");
    let big = client.get("big").await.expect("get big").expect("found");
    assert_eq!(big.value.len(), 16 * 1024 * 1024);
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Periodic fsync (the default) still survives a process crash: the WAL
    // is in the OS before the ack.
    let mut n = node(&dir, NodeOptions::new("n1")).await;
    let client = n.client().await;
    let id_before = client.node_info().await.expect("info").id;
    for i in 0..500 {
        client
            .put(format!("key-{i}"), format!("value-{i}"))
            .await
            .expect("put");
    }
    for i in (0..500).step_by(7) {
        client.delete(format!("key-{i}")).await.expect("delete");
    }
    n.kill();
    n.restart().await.expect("restart");
    let client = n.client().await;
    for i in 0..500 {
        let found = client.get(format!("key-{i}")).await.expect("get");
        if i % 7 == 0 {
            assert_eq!(found, None, "key-{i} was deleted before the crash");
        } else {
            assert_eq!(
                found.map(|v| v.value),
                Some(Bytes::from(format!("value-{i}"))),
                "key-{i}"
            );
        }
    }
    assert_eq!(
        client.node_info().await.expect("info").id,
        id_before,
        "node id is kept"
    );
}

#[tokio::test]
async fn sync_modes_always_and_group_serve_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in ["always", "group"] {
        let mut n = node(&dir, NodeOptions::new(mode).arg("--commitlog-sync", mode)).await;
        let client = n.client().await;
        let writes: Vec<_> = (0..50)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.put(format!("k{i}"), "v").await })
            })
            .collect();
        for write in writes {
            write.await.expect("task").expect("put");
        }
        n.kill();
        n.restart().await.expect("restart");
        let client = n.client().await;
        for i in 0..50 {
            assert!(
                client.get(format!("k{i}")).await.expect("get").is_some(),
                "{mode}: k{i}"
            );
        }
    }
}

#[tokio::test]
async fn sigterm_finishes_cleanly_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = node(&dir, NodeOptions::new("n1")).await;
    n.client().await.put("k", "v").await.expect("put");
    let status = n.stop().expect("stops");
    assert!(status.success(), "exit status {status}");
    assert!(n.log().contains("ringkv node stopped"), "{}", n.log());
    n.restart().await.expect("restart");
    let found = n.client().await.get("k").await.expect("get");
    assert_eq!(found.map(|v| v.value), Some(Bytes::from("v")));
}

#[tokio::test]
async fn configuration_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "replication_factor = 5\nnode_name = \"from-file\"\n").expect("write");
    let file = file.to_string_lossy().into_owned();

    // The harness passes --replication-factor, which must win over both.
    let n = node(
        &dir,
        NodeOptions::new("flags")
            .replication_factor(2)
            .arg("--config", &file)
            .env("RINGKV_REPLICATION_FACTOR", "4"),
    )
    .await;
    let info = n.client().await.node_info().await.expect("info");
    assert_eq!(info.replication_factor, 2, "flag beats env and file");
    drop(n);

    // Without the flag, the environment beats the file. (The harness's
    // --node-name flag wins over the file's node_name.)
    let options = NodeOptions::new("env")
        .without_replication_flag()
        .arg("--config", &file)
        .env("RINGKV_REPLICATION_FACTOR", "4");
    let n = node(&dir, options).await;
    let info = n.client().await.node_info().await.expect("info");
    assert_eq!(info.replication_factor, 4, "env beats file");
    assert_eq!(info.name, "env");
}

#[test]
fn bad_configuration_exits_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "replication_factor = 3\nreplicaton_factor = 3\n").expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--replication-factor".into(), "0".into()],
            "replication_factor",
        ),
        (
            vec!["--num-tokens-typo".into(), "3".into()],
            "--num-tokens-typo",
        ),
        (
            vec!["--commitlog-sync".into(), "sometimes".into()],
            "sometimes",
        ),
        (
            vec!["--config".into(), bad_file.to_string_lossy().into_owned()],
            "line 2",
        ),
        (
            vec!["--config".into(), "/nonexistent.toml".into()],
            "/nonexistent.toml",
        ),
        (
            vec!["--listen-client".into(), "not-an-address".into()],
            "not-an-address",
        ),
    ];
    for (args, needle) in cases {
        let output = std::process::Command::new(ringkv_tests::binary("ringkv-node"))
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path().join("unused"))
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_second_node_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(&dir, NodeOptions::new("n1")).await;
    let output = std::process::Command::new(ringkv_tests::binary("ringkv-node"))
        .arg("--data-dir")
        .arg(n.data_dir.join("data"))
        .arg("--listen-client")
        .arg(format!("127.0.0.1:{}", ringkv_tests::free_port()))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot open the store"), "{stderr}");
    // The first node is unaffected.
    n.client().await.put("k", "v").await.expect("still serving");
}

#[tokio::test]
async fn health_and_metrics_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(&dir, NodeOptions::new("n1")).await;
    let (code, body) = n.http_get("/health").await.expect("health");
    assert_eq!((code, body.trim()), (200, "ok"));
    let client = n.client().await;
    client.put("k", "v").await.expect("put");
    client.get("k").await.expect("get");
    let _ = client.put("", "v").await;
    let ok_puts = n
        .metric(r#"ringkv_requests_total{op="put",outcome="ok"}"#)
        .await
        .expect("metrics");
    let invalid = n
        .metric(r#"ringkv_requests_total{op="put",outcome="invalid"}"#)
        .await
        .expect("metrics");
    assert_eq!((ok_puts, invalid), (1.0, 1.0));
    let (_, body) = n.http_get("/metrics").await.expect("metrics");
    assert!(
        body.contains("ringkv_request_duration_seconds_bucket"),
        "{body}"
    );
    assert_eq!(n.http_get("/nope").await.expect("404").0, 404);
}

#[tokio::test]
async fn worker_threads_sets_the_runtime_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(&dir, NodeOptions::new("n1").arg("--worker-threads", "1")).await;
    n.client()
        .await
        .put("k", "v")
        .await
        .expect("serves on one thread");
    let log = n.log();
    assert!(
        log.lines()
            .any(|line| line.contains("async runtime started")
                && line.trim_end().ends_with("worker_threads=1")),
        "{log}"
    );
}
