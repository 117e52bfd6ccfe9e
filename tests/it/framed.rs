//! The framed internode protocol against real node processes: hostile
//! frames on the peer port, mutual TLS, and nodes calling over frames and
//! over gRPC in one cluster.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use ringkv_client::{Consistency, ReadOptions, WriteOptions};
use ringkv_node::rpc::framed::frame::{self, Frame, Kind, MAGIC, VERSION};
use ringkv_proto::internal::v2 as pbi;
use ringkv_tests::{NodeOptions, TestNode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_FRAME: usize = 64 << 20;

/// Reads one frame; `None` when the connection closes first.
async fn next_frame(stream: &mut (impl AsyncRead + Unpin), buffer: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some(frame) = frame::decode(buffer, MAX_FRAME).expect("valid frames") {
            return Some(frame);
        }
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_buf(buffer))
            .await
            .expect("the node answers or closes");
        if read.unwrap_or(0) == 0 {
            return None;
        }
    }
}

/// The error an error frame carries: (code, message).
fn error_of(frame: &Frame) -> (tonic::Code, String) {
    assert_eq!(Kind::of(frame.kind), Some(Kind::Error), "{frame:?}");
    let error = pbi::FrameError::decode(frame.body.clone()).expect("an error frame");
    (tonic::Code::from_i32(error.code), error.message)
}

fn raw_frame(id: u64, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    wire.extend_from_slice(&(9 + body.len() as u32).to_be_bytes());
    wire.extend_from_slice(&id.to_be_bytes());
    wire.push(kind);
    wire.extend_from_slice(body);
    wire
}

fn encoded(id: u64, kind: Kind, body: &impl Message) -> BytesMut {
    let mut wire = BytesMut::new();
    frame::encode(&mut wire, id, kind, body);
    wire
}

async fn hello(stream: &mut (impl AsyncWrite + Unpin)) {
    stream.write_all(MAGIC).await.expect("magic");
    stream.write_all(&[VERSION]).await.expect("version");
}

#[tokio::test]
async fn hostile_frames_get_clear_errors_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node starts");
    let client = node.client().await;
    client.put("before", "v").await.expect("put");

    let mut stream = TcpStream::connect(node.ports.peer).await.expect("connect");
    hello(&mut stream).await;
    let mut buffer = BytesMut::new();

    // Not protobuf; an unknown kind: that request fails, the connection
    // goes on.
    stream
        .write_all(&raw_frame(1, Kind::Read.byte(), &[0xff; 5]))
        .await
        .expect("send");
    let answer = next_frame(&mut stream, &mut buffer).await.expect("answer");
    let (code, message) = error_of(&answer);
    assert_eq!(
        (answer.id, code),
        (1, tonic::Code::InvalidArgument),
        "{message}"
    );
    stream
        .write_all(&raw_frame(2, 0x42, b""))
        .await
        .expect("send");
    let answer = next_frame(&mut stream, &mut buffer).await.expect("answer");
    assert_eq!(
        (answer.id, error_of(&answer).0),
        (2, tonic::Code::Unimplemented)
    );

    // The replica-side checks of the gRPC service apply: a far-future
    // timestamp could never be overwritten.
    let forever = pbi::ReplicaWriteRequest {
        key: row(b"before"),
        cell: Some(pbi::Cell {
            timestamp_micros: i64::MAX,
            tombstone: false,
            local_deletion_time: None,
            expiry_ms_early: 0,
            value: Bytes::from_static(b"mine forever"),
        }),
        report_newer: false,
        more: Vec::new(),
        repair: false,
    };
    stream
        .write_all(&encoded(3, Kind::Write, &forever))
        .await
        .expect("send");
    let answer = next_frame(&mut stream, &mut buffer).await.expect("answer");
    let (code, message) = error_of(&answer);
    assert_eq!(answer.id, 3);
    assert_eq!(code, tonic::Code::InvalidArgument, "{message}");
    assert!(message.contains("max_clock_skew_ms"), "{message}");

    // A real read on the same connection.
    let read = pbi::ReplicaReadRequest {
        key: row(b"before"),
        digest_only: false,
    };
    stream
        .write_all(&encoded(4, Kind::Read, &read))
        .await
        .expect("send");
    let answer = next_frame(&mut stream, &mut buffer).await.expect("answer");
    assert_eq!(
        (answer.id, Kind::of(answer.kind)),
        (4, Some(Kind::ReadAnswer))
    );
    let cell = pbi::ReplicaReadResponse::decode(answer.body)
        .expect("answer")
        .cell
        .expect("a cell");
    assert_eq!(cell.value, Bytes::from_static(b"v"));

    // A 4 GiB frame is refused from its length, and the connection closed.
    stream
        .write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("send");
    let refusal = next_frame(&mut stream, &mut buffer).await.expect("answer");
    assert_eq!(refusal.id, 0);
    assert!(
        error_of(&refusal).1.contains("over the limit"),
        "{refusal:?}"
    );
    assert!(
        next_frame(&mut stream, &mut buffer).await.is_none(),
        "closed"
    );

    // Half a frame, then silence, then gone; many connections at once.
    let mut half = TcpStream::connect(node.ports.peer).await.expect("connect");
    hello(&mut half).await;
    half.write_all(&[0, 0, 1, 0, 0]).await.expect("send");
    drop(half);
    let mut idle = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(node.ports.peer).await.expect("connect");
        hello(&mut stream).await;
        idle.push(stream);
    }

    // The node is alive and its data untouched.
    assert!(node.is_running());
    assert_eq!(
        client.get("before").await.expect("get").map(|v| v.value),
        Some(Bytes::from_static(b"v"))
    );
    client.put("before", "after").await.expect("put");
    let (code, _) = node.http_get("/health").await.expect("health");
    assert_eq!(code, 200);
}

/// A framed read over mutual TLS, presenting `dir/stem.pem` if given:
/// the answer, or the refusal as text.
async fn framed_tls_read(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &str)>,
) -> Result<pbi::ReplicaReadResponse, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((dir, stem)) => {
            let certs = CertificateDer::pem_file_iter(dir.join(format!("{stem}.pem")))
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{stem}.key"))).expect("key");
            builder.with_client_auth_cert(certs, key).expect("identity")
        }
    };
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    hello(&mut tcp).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("ringkv-node").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let read = pbi::ReplicaReadRequest {
        key: row(b"k"),
        digest_only: false,
    };
    tls.write_all(&encoded(1, Kind::Read, &read))
        .await
        .map_err(|e| format!("send: {e}"))?;
    tls.flush().await.map_err(|e| format!("send: {e}"))?;
    let mut buffer = BytesMut::new();
    let answer = next_frame(&mut tls, &mut buffer)
        .await
        .ok_or("closed without an answer")?;
    match Kind::of(answer.kind) {
        Some(Kind::ReadAnswer) => {
            Ok(pbi::ReplicaReadResponse::decode(answer.body).map_err(|e| e.to_string())?)
        }
        _ => {
            let (code, message) = error_of(&answer);
            Err(format!("{code:?}: {message}"))
        }
    }
}

/// The framed half of the mutual-TLS test (`security::mutual_tls_...`):
/// on a node of a TLS cluster (`peer`, `ca`, certificates in `good` and
/// in `other`, another CA's), the nodes reached each other over frames
/// (`servers` served at least one write that way), and frames are admitted
/// only with a node certificate of the cluster CA, over TLS.
pub(crate) async fn check_mutual_tls(
    servers: &[&TestNode],
    peer: SocketAddr,
    (ca, good, other): (&Path, &Path, &Path),
) {
    let mut served = 0.0;
    for node in servers {
        served += metric(node, "framed").await;
    }
    assert!(
        served >= 1.0,
        "the ALL write reached its peer replica over frames"
    );
    let answer = framed_tls_read(peer, ca, Some((good, "node")))
        .await
        .expect("a node certificate of the cluster CA is admitted");
    assert_eq!(answer.cell.expect("a cell").value, Bytes::from_static(b"v"));
    let client_cert = framed_tls_read(peer, ca, Some((good, "client")))
        .await
        .expect_err("a client certificate of the cluster CA is not a node's");
    assert!(client_cert.contains("PermissionDenied"), "{client_cert}");
    assert!(client_cert.contains("node certificate"), "{client_cert}");
    for (what, identity) in [
        ("no client certificate", None),
        ("a certificate of another CA", Some((other, "node"))),
    ] {
        let refused = framed_tls_read(peer, ca, identity).await;
        assert!(refused.is_err(), "{what}: {refused:?}");
    }
    // Frames in plaintext are not TLS: refused too.
    let mut plain = TcpStream::connect(peer).await.expect("connect");
    hello(&mut plain).await;
    let read = pbi::ReplicaReadRequest {
        key: row(b"k"),
        digest_only: false,
    };
    plain
        .write_all(&encoded(1, Kind::Read, &read))
        .await
        .expect("send");
    // What comes back is a TLS alert or nothing, never an answer.
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), plain.read_to_end(&mut reply)).await;
    let answer = frame::decode(&mut BytesMut::from(&reply[..]), MAX_FRAME);
    assert!(
        !matches!(&answer, Ok(Some(frame)) if Kind::of(frame.kind) == Some(Kind::ReadAnswer)),
        "{answer:?}"
    );
}

/// Replica writes `node` served over `protocol`.
async fn metric(node: &TestNode, protocol: &str) -> f64 {
    let sample =
        format!(r#"ringkv_internode_requests_total{{protocol="{protocol}",call="write"}}"#);
    node.metric(&sample).await.expect("metrics")
}

/// Nodes calling over frames and a node calling over gRPC
/// (`internode_protocol = "grpc"`) replicate to each other: the peer port
/// serves both, and each caller uses what it is set to.
#[tokio::test]
async fn framed_and_grpc_callers_replicate_in_one_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = |name: &str| NodeOptions::new(name).replication_factor(3);
    let n1 = TestNode::start(dir.path(), options("n1"))
        .await
        .expect("n1 starts");
    let seeds = [n1.ports.gossip];
    let n2 = TestNode::start(dir.path(), options("n2").seeds(&seeds))
        .await
        .expect("n2 joins");
    let grpc_only = options("n3")
        .seeds(&seeds)
        .arg("--internode-protocol", "grpc");
    let n3 = TestNode::start(dir.path(), grpc_only)
        .await
        .expect("n3 joins");
    for node in [&n1, &n2, &n3] {
        node.wait_for_view(&["n1", "n2", "n3"], &[])
            .await
            .expect("view");
    }

    let all = WriteOptions::default().consistency(Consistency::All);
    n1.direct_client()
        .await
        .put_with("from-n1", "framed", &all)
        .await
        .expect("ALL through a framed caller");
    n3.direct_client()
        .await
        .put_with("from-n3", "grpc", &all)
        .await
        .expect("ALL through a gRPC caller");
    let read_all = ReadOptions::default().consistency(Consistency::All);
    for node in [&n1, &n2, &n3] {
        let client = node.direct_client().await;
        for (key, value) in [("from-n1", "framed"), ("from-n3", "grpc")] {
            let found = client.get_with(key, &read_all).await.expect("get ALL");
            assert_eq!(
                found.map(|v| v.value),
                Some(Bytes::from(value)),
                "{key} via {}",
                node.name()
            );
        }
    }

    // n2 served n1's write over frames and n3's over gRPC; n3 never
    // called over frames, n1 never over gRPC.
    assert!(metric(&n2, "framed").await >= 1.0);
    assert!(metric(&n2, "grpc").await >= 1.0);
    assert!(
        metric(&n3, "framed").await >= 1.0,
        "n1 calls n3 over frames"
    );
    assert_eq!(metric(&n1, "framed").await, 0.0, "n3 calls n1 over gRPC");
    assert_eq!(metric(&n3, "grpc").await, 0.0, "n1 calls n3 over frames");
}

/// The row key replicas store the plain key `key` under.
fn row(key: &[u8]) -> Bytes {
    Bytes::from(ringkv_node::storage::key::plain_key(key))
}
