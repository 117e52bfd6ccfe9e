//! Test harness for ringkv: starts real `ringkv-node` processes on loopback
//! ports and drives them through `ringkv-client` and the `ringkv` binary.
//!
//! The binaries are found next to the running test executable's profile
//! directory (`target/<profile>/`), so build them first:
//! `cargo build --release --workspace --all-features --bins` (scripts/test.sh
//! does).
//!
//! - [`TestNode`] (`node`): one process, its ports and what is inside it.
//! - [`TestCluster`] (`cluster`): several nodes seeded from the first.
//! - [`docker::DockerCluster`]: the compose cluster, for the fault suite.
//! - [`SmallDisk`] (`disk`): a small tmpfs, for full-disk tests.

mod cluster;
mod disk;
pub mod docker;
mod node;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use ringkv_proto::internal::v2::peer_client::PeerClient;
use ringkv_proto::internal::v2::{MerkleNodesRequest, TokenRange};

pub use cluster::TestCluster;
pub use disk::SmallDisk;
pub use node::{NodeOptions, Ports, StoredCell, TestNode};

/// Path of a workspace binary built in the same profile as this test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not found; build the binaries first: cargo build --release --workspace --all-features --bins",
        path.display()
    );
    path
}

/// `GET path` over HTTP/1.0 on `addr`: the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad HTTP response: {head}"))?;
    Ok((code, body.to_owned()))
}

/// A command of a system tool the tests need (`redis-cli`, `prometheus`,
/// `chromium`...); panics, naming the Debian `package`, when it is missing.
/// `scripts/test.sh` installs them all.
pub fn system_tool(name: &str, package: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is missing: install Debian's {package} (scripts/test.sh does)"
    );
    Command::new(name)
}

/// Makes a test CA with node and client certificates in `dir`
/// (`deploy/tls/make-certs.sh`): ca.pem, node.pem/.key, client.pem/.key.
pub fn make_certs(dir: &Path) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/tls/make-certs.sh");
    let output = Command::new(script)
        .arg(dir)
        .output()
        .context("cannot run deploy/tls/make-certs.sh")?;
    anyhow::ensure!(
        output.status.success(),
        "make-certs.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A loopback TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// A loopback UDP port nothing listens on right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free UDP port: {e}"))
}

/// The root of the Merkle tree for `(start, end]` of the node whose
/// internode API is at `peer`.
pub async fn merkle_root(peer: SocketAddr, start: i64, end: i64) -> anyhow::Result<Bytes> {
    let mut client = PeerClient::connect(format!("http://{peer}")).await?;
    let response = client
        .merkle_nodes(MerkleNodesRequest {
            range: Some(TokenRange { start, end }),
            leaves: 256,
            nodes: vec![1],
        })
        .await?
        .into_inner();
    response
        .hashes
        .into_iter()
        .next()
        .context("no root in the answer")
}

/// True when the nodes at `peers` have equal Merkle roots for every range
/// of `ring` (so they hold identical data).
pub async fn roots_agree(ring: &ringkv_client::RingInfo, peers: &[SocketAddr]) -> bool {
    for range in &ring.ranges {
        let mut first = None;
        for peer in peers {
            let Ok(root) = merkle_root(*peer, range.start_token, range.end_token).await else {
                return false;
            };
            match &first {
                None => first = Some(root),
                Some(seen) if *seen != root => return false,
                Some(_) => {}
            }
        }
    }
    true
}

/// Runs `ringkv --host H ... ARGS` and returns its output.
pub fn ringkv_cli(hosts: &[&str], args: &[&str]) -> Output {
    let mut command = Command::new(binary("ringkv"));
    for host in hosts {
        command.arg("--host").arg(host);
    }
    command
        .args(args)
        .env_remove("RINGKV_HOST")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ringkv: {e}"))
}

/// A client of `nodes` (their client addresses as seeds).
pub async fn client_of(nodes: &[&TestNode]) -> ringkv_client::Client {
    let hosts: Vec<String> = nodes.iter().map(|n| n.client_addr.to_string()).collect();
    let mut config = ringkv_client::ClientConfig::new(hosts);
    config.tls = nodes.first().and_then(|n| n.options.client_tls.clone());
    ringkv_client::Client::connect(config)
        .await
        .expect("client")
}

/// Writes `value` to every key, `in_flight` at a time, with `options`;
/// panics on the first failure.
pub async fn write_all(
    client: &ringkv_client::Client,
    keys: &[Bytes],
    value: &Bytes,
    options: &ringkv_client::WriteOptions,
    in_flight: usize,
) {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(keys.iter().cloned())
        .map(|key| {
            let (client, value, options) = (client.clone(), value.clone(), options.clone());
            async move { client.put_with(key, value, &options).await }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    for result in results {
        result.expect("write");
    }
}

/// Polls `check` until it returns true or `timeout` passes; returns whether
/// it became true. For conditions that converge in the background.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
