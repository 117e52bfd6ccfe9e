//! A whole node in this process, over loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{Environment, Listeners, Node};
use crate::config::Config;
use crate::storage::{DiskHealth, MemoryStorage, Storage};

/// A loopback address with a port nothing listens on now.
fn free(udp: bool) -> SocketAddr {
    let port = if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    };
    port.unwrap_or_else(|error| panic!("no free port: {error}"))
}

/// Whether `/health` on `http` answers 200 (the node serves clients).
async fn serving(http: SocketAddr) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(http).await else {
        return false;
    };
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: n\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
}

/// Regression: the table of named workers held status closures holding
/// the repairer and the topology, which hold the transport, whose framed
/// links held the table: a stopped node never let go of its store (and
/// RocksDB stayed open until the process ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_lets_go_of_its_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        listen_client: free(false),
        listen_peer: free(false),
        listen_gossip: free(true),
        listen_http: free(false),
        resp_enabled: false,
        ..Config::default()
    };
    let engine: Arc<dyn Storage> = Arc::new(MemoryStorage::new(60));
    let held = Arc::downgrade(&engine);
    let env = Environment {
        metrics: false,
        storage: Some((engine, Arc::new(DiskHealth::default()))),
        ..Environment::system()
    };
    let listeners = Listeners::bind(&config).await.expect("bind");
    let http = config.listen_http;
    let stop = CancellationToken::new();
    let node = tokio::spawn({
        let stop = stop.clone();
        async move { Node::open(&config, env).await?.run(listeners, stop).await }
    });
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        while !serving(http).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(joined.is_ok(), "the node never served");
    stop.cancel();
    let ran = node.await.expect("the node's task");
    assert!(ran.is_ok(), "the node stopped with {ran:?}");
    // Tasks that end with what they hold may take a moment more.
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        while held.upgrade().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "something still holds the store of a stopped node ({} handles)",
        held.strong_count()
    );
}
