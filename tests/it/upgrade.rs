//! Upgrades: a data directory an older release wrote opens and serves its
//! keys; one a newer release wrote is refused.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ringkv_tests::{NodeOptions, TestNode};

/// Unpacks `tests/fixtures/NAME` into `dir` (see the fixtures' scripts).
fn unpack(name: &str, dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("tar runs");
    assert!(status.success(), "cannot unpack {}", fixture.display());
}

/// The data directory of the last release of storage format 1 (made by
/// `tests/fixtures/make-format-1.sh`): the node moves its cells to the
/// current format once, then serves every key as it was, deletes and
/// expiries included, and keeps serving after a restart.
#[tokio::test]
async fn a_data_dir_of_storage_format_1_opens_and_serves_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    unpack("format-1.tar.gz", dir.path());
    let mut node = TestNode::start(
        dir.path(),
        NodeOptions::new("fixture").replication_factor(1),
    )
    .await
    .expect("the node starts on the old directory");
    let log = node.log();
    // 200 keys, 400 bulk values, and the 6 others (the tombstone and the
    // expired value are cells too, kept until gc_grace).
    assert!(
        log.contains("upgraded the data directory's storage format"),
        "{log}"
    );
    assert!(log.contains("moved=606"), "{log}");

    for round in ["after the upgrade", "after a restart"] {
        let client = node.client().await;
        let value = |key: Vec<u8>| {
            let client = client.clone();
            async move { client.get(key).await.expect("get").map(|v| v.value) }
        };
        for i in 0..200 {
            assert_eq!(
                value(format!("key:{i}").into_bytes()).await,
                Some(Bytes::from(format!("value:{i}"))),
                "{round}"
            );
        }
        let bulk = Bytes::from(vec![b'v'; 65536]);
        for i in [0, 1, 199, 399] {
            assert_eq!(
                value(format!("bulk:{i}").into_bytes()).await,
                Some(bulk.clone()),
                "{round}"
            );
        }
        assert_eq!(
            value(b"overwritten".to_vec()).await,
            Some(Bytes::from("second")),
            "{round}"
        );
        assert_eq!(value(b"deleted".to_vec()).await, None, "{round}");
        assert_eq!(value(b"expired".to_vec()).await, None, "{round}");
        assert_eq!(
            value(b"expires-later".to_vec()).await,
            Some(Bytes::from("lasting")),
            "{round}"
        );
        assert_eq!(
            value(b"bin\x01\xffary".to_vec()).await,
            Some(Bytes::from_static(b"val\x01\xffue")),
            "{round}"
        );
        assert_eq!(
            value(vec![b'k'; 65536]).await,
            Some(Bytes::from("the longest key")),
            "{round}"
        );
        client.put("new", round).await.expect("a new write");
        assert_eq!(value(b"new".to_vec()).await, Some(Bytes::from(round)));
        if round == "after the upgrade" {
            node.stop().expect("stops");
            node.restart().await.expect("restarts");
        }
    }
    // Moved once: the second start found the current format.
    assert_eq!(
        node.log()
            .matches("upgraded the data directory's storage format")
            .count(),
        1
    );
}

/// A data directory written in a newer storage format is refused with a
/// message that says so, and left as it was.
#[test]
fn a_data_dir_of_a_newer_storage_format_is_refused() {
    use ringkv_node::storage::{RocksConfig, RocksStorage, Storage};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Where the node keeps RocksDB in its data directory.
    let db = data.join("db");
    let stamp = |version: Option<&[u8]>| {
        let store = RocksStorage::open(&db, &RocksConfig::default()).expect("open");
        if let Some(version) = version {
            store.meta_put("storage.format", version).expect("stamp");
        }
        store.meta_get("storage.format").expect("read")
    };
    let start = || {
        let port = |flag: &str| {
            [
                flag.to_owned(),
                format!("127.0.0.1:{}", ringkv_tests::free_port()),
            ]
        };
        std::process::Command::new(ringkv_tests::binary("ringkv-node"))
            .arg("--data-dir")
            .arg(&data)
            .args(port("--listen-client"))
            .args(port("--listen-peer"))
            .args(port("--listen-gossip"))
            .args(port("--listen-http"))
            .arg("--resp-enabled=false")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs")
    };
    stamp(Some(b"999"));
    let mut node = start();
    // A node that does not refuse would serve: stop it rather than hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while node.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = node.kill();
    let output = node.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("storage format 999, newer than this binary's"),
        "{stderr}"
    );
    assert_eq!(stamp(None), Some(b"999".to_vec()), "left as it was");
}
