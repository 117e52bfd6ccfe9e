//! The framed protocol against a real peer port on loopback: a
//! [`FramedServer`] over an in-memory store, sharing its port with the
//! gRPC service, and hand-made hostile connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use ringkv_proto::internal::v2 as pbi;
use ringkv_proto::internal::v2::peer_client::PeerClient;
use ringkv_proto::internal::v2::peer_server::PeerServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::frame::{self, Frame, Kind, MAGIC, VERSION};
use super::*;
use crate::clock::{HybridClock, SkewLimit, WallClock};
use crate::peer::{ReplicaError, TreeCache};
use crate::rpc::accept::{Admission, PortLimits};
use crate::rpc::bounds::PeerBounds;
use crate::rpc::limit::InFlightLimit;
use crate::rpc::net::Listener;
use crate::rpc::{LateView, PeerService};
use crate::storage::{DirtyMap, LocalStore, MemoryStorage, SyncMode};

const MAX_MESSAGE: usize = 1 << 20;

/// A peer port serving both protocols, until the returned token is
/// cancelled.
struct Port {
    addr: SocketAddr,
    limit: InFlightLimit,
    stop: CancellationToken,
}

impl Drop for Port {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn port() -> Port {
    let engine = Arc::new(MemoryStorage::default());
    let dirty = Arc::new(DirtyMap::default());
    let store = LocalStore::new(engine.clone(), SyncMode::Periodic, None);
    let service = Arc::new(PeerService::new(
        store,
        Arc::new(HybridClock::new(WallClock::system())),
        Arc::new(TreeCache::new(engine, dirty, 16)),
        PeerBounds {
            max_value_size: 64 << 10,
            max_clock_skew: SkewLimit::from_millis(60_000),
        },
        LateView::default(),
    ));
    let limit = InFlightLimit::new("internode", 64);
    let framed = Arc::new(FramedServer::new(
        service.clone(),
        limit.clone(),
        Duration::from_secs(5),
        MAX_MESSAGE,
    ));
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let router = tonic::transport::Server::builder().add_service(PeerServer::from_arc(service));
    let stop = CancellationToken::new();
    let port = PeerPort {
        admission: Admission::new(
            "internode",
            PortLimits {
                max_connections: 64,
                silence: Duration::from_secs(60),
                handshake: Duration::from_secs(10),
            },
        ),
        grpc_tls: None,
    };
    tokio::spawn(serve(
        router,
        framed,
        Listener::Tcp(tcp),
        port,
        stop.clone(),
    ));
    Port { addr, limit, stop }
}

fn settings(deadline: Duration) -> ClientSettings {
    ClientSettings {
        dial: None,
        tls: None,
        deadline,
        max_message: MAX_MESSAGE,
        keepalive: Duration::from_secs(3600),
        tasks: crate::workers::Workers::new(),
    }
}

fn cell(value: &'static str, micros: i64) -> pbi::Cell {
    pbi::Cell {
        timestamp_micros: micros,
        tombstone: false,
        local_deletion_time: None,
        expiry_ms_early: 0,
        value: Bytes::from_static(value.as_bytes()),
    }
}

/// The row key replicas keep the plain key `key` under.
fn row(key: &str) -> Bytes {
    Bytes::from(crate::storage::key::plain_key(key.as_bytes()))
}

fn now_micros() -> i64 {
    WallClock::system().micros()
}

fn write(key: &'static str, value: &'static str) -> pbi::ReplicaWriteRequest {
    pbi::ReplicaWriteRequest {
        key: row(key),
        cell: Some(cell(value, now_micros())),
        report_newer: false,
        more: Vec::new(),
        repair: false,
    }
}

fn read(key: &'static str, digest_only: bool) -> pbi::ReplicaReadRequest {
    pbi::ReplicaReadRequest {
        key: row(key),
        digest_only,
    }
}

#[tokio::test]
async fn framed_and_grpc_callers_share_the_peer_port_and_the_store() {
    let port = port().await;
    let client = FramedClient::new(port.addr, settings(Duration::from_secs(5)));
    client
        .write(write("k", "framed"))
        .await
        .expect("framed write");
    let answer = client.read(read("k", false)).await.expect("framed read");
    assert_eq!(
        answer.cell.expect("a cell").value,
        Bytes::from_static(b"framed")
    );
    let digest = client.read(read("k", true)).await.expect("digest read");
    assert!(digest.cell.is_none() && !digest.digest.is_empty());
    let missing = client.read(read("nothing", false)).await.expect("read");
    assert!(missing.cell.is_none());

    // gRPC on the same port sees the framed write, and the other way.
    let mut grpc = PeerClient::connect(format!("http://{}", port.addr))
        .await
        .expect("gRPC connects to the same port");
    let seen = grpc.read(read("k", false)).await.expect("gRPC read");
    assert_eq!(
        seen.into_inner().cell.expect("cell").value,
        Bytes::from_static(b"framed")
    );
    grpc.write(write("g", "grpc")).await.expect("gRPC write");
    let answer = client.read(read("g", false)).await.expect("framed read");
    assert_eq!(
        answer.cell.expect("a cell").value,
        Bytes::from_static(b"grpc")
    );
}

fn query(partition: &'static str, limit: u32) -> pbi::ReplicaQueryRequest {
    pbi::ReplicaQueryRequest {
        key: Bytes::from_static(partition.as_bytes()),
        start: Bytes::new(),
        end: None,
        reverse: true,
        limit,
        max_bytes: 1 << 20,
    }
}

/// Queries go framed too: the same page as over gRPC, and a bad one is
/// refused alone.
#[tokio::test]
async fn a_framed_query_answers_the_page_grpc_answers() {
    let port = port().await;
    let client = FramedClient::new(port.addr, settings(Duration::from_secs(5)));
    for sort in ["a", "b", "c"] {
        let key = crate::storage::key::row_key(b"p", sort.as_bytes());
        client
            .write(pbi::ReplicaWriteRequest {
                key: Bytes::from(key),
                cell: Some(cell("v", now_micros())),
                report_newer: false,
                more: Vec::new(),
                repair: false,
            })
            .await
            .expect("framed row write");
    }
    let page = client.query(query("p", 2)).await.expect("framed query");
    let sorts: Vec<&[u8]> = page.rows.iter().map(|row| row.key.as_ref()).collect();
    assert_eq!(sorts, [b"c".as_ref(), b"b".as_ref()], "newest first, two");
    assert!(page.more);
    let mut grpc = PeerClient::connect(format!("http://{}", port.addr))
        .await
        .expect("gRPC connects");
    let same = grpc.query(query("p", 2)).await.expect("gRPC query");
    assert_eq!(same.into_inner(), page);

    match client.query(query("p", 0)).await {
        Err(ReplicaError::Refused(why)) => assert!(why.contains("rows"), "{why}"),
        other => panic!("a query of 0 rows is refused, got {other:?}"),
    }
    let again = client.query(query("p", 10)).await.expect("still serving");
    assert_eq!(again.rows.len(), 3);
    assert!(!again.more);
}

#[tokio::test]
async fn concurrent_calls_on_one_connection_get_their_own_answers() {
    let port = port().await;
    let client = Arc::new(FramedClient::new(
        port.addr,
        settings(Duration::from_secs(10)),
    ));
    const KEYS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut tasks = Vec::new();
    for key in KEYS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let request = pbi::ReplicaWriteRequest {
                    key: row(key),
                    cell: Some(cell(key, now_micros())),
                    report_newer: false,
                    more: Vec::new(),
                    repair: false,
                };
                client.write(request).await.expect("write");
                let answer = client.read(read(key, false)).await.expect("read");
                assert_eq!(
                    answer.cell.expect("cell").value,
                    Bytes::from_static(key.as_bytes())
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("caller");
    }
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_connection_keeps_serving() {
    let port = port().await;
    let client = FramedClient::new(port.addr, settings(Duration::from_secs(5)));
    // The same checks as the gRPC service: no cell, a far-future stamp, a
    // value over the limit, an empty key.
    for (request, naming) in [
        (
            pbi::ReplicaWriteRequest {
                key: row("k"),
                cell: None,
                report_newer: false,
                more: Vec::new(),
                repair: false,
            },
            "without a cell",
        ),
        (
            pbi::ReplicaWriteRequest {
                key: row("k"),
                cell: Some(cell("v", i64::MAX)),
                report_newer: false,
                more: Vec::new(),
                repair: false,
            },
            "max_clock_skew_ms",
        ),
        (
            pbi::ReplicaWriteRequest {
                key: row("k"),
                cell: Some(pbi::Cell {
                    value: Bytes::from(vec![0; 65 << 10]),
                    ..cell("", now_micros())
                }),
                report_newer: false,
                more: Vec::new(),
                repair: false,
            },
            "value",
        ),
        (
            pbi::ReplicaWriteRequest {
                key: Bytes::new(),
                cell: Some(cell("v", now_micros())),
                report_newer: false,
                more: Vec::new(),
                repair: false,
            },
            "key",
        ),
    ] {
        match client.write(request).await {
            // An invalid request is refused for good: not to be hinted.
            Err(ReplicaError::Refused(why)) => {
                assert!(why.contains(naming), "{why:?} names {naming:?}")
            }
            other => panic!("expected a refusal naming {naming:?}, got {other:?}"),
        }
    }
    client
        .write(write("k", "fine"))
        .await
        .expect("the link still works");
}

/// A raw framed connection: the magic and version sent.
async fn raw(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(MAGIC).await.expect("magic");
    stream.write_all(&[VERSION]).await.expect("version");
    stream
}

/// Reads one frame off `stream`; `None` when it closes first.
async fn next_frame(stream: &mut TcpStream, buffer: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some(frame) = frame::decode(buffer, MAX_MESSAGE).expect("valid frames") {
            return Some(frame);
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(buffer))
            .await
            .expect("the server answers or closes");
        if read.expect("read") == 0 {
            return None;
        }
    }
}

fn error_of(frame: &Frame) -> pbi::FrameError {
    assert_eq!(Kind::of(frame.kind), Some(Kind::Error), "{frame:?}");
    pbi::FrameError::decode(frame.body.clone()).expect("an error frame")
}

fn raw_frame(id: u64, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    wire.extend_from_slice(&(9 + body.len() as u32).to_be_bytes());
    wire.extend_from_slice(&id.to_be_bytes());
    wire.push(kind);
    wire.extend_from_slice(body);
    wire
}

#[tokio::test]
async fn malformed_frames_are_refused_and_the_port_keeps_serving() {
    let port = port().await;
    let mut stream = raw(port.addr).await;
    let mut buffer = BytesMut::new();

    // A body that is not protobuf, and an unknown kind: errors for those
    // requests, on a connection that stays open.
    stream
        .write_all(&raw_frame(1, Kind::Write.byte(), &[0xff; 7]))
        .await
        .expect("send");
    let answer = next_frame(&mut stream, &mut buffer)
        .await
        .expect("an answer");
    assert_eq!(answer.id, 1);
    let error = error_of(&answer);
    assert_eq!(error.code, tonic::Code::InvalidArgument as i32);
    assert!(
        error.message.contains("malformed internode request"),
        "{error:?}"
    );
    stream.write_all(&raw_frame(2, 9, b"")).await.expect("send");
    let answer = next_frame(&mut stream, &mut buffer)
        .await
        .expect("an answer");
    assert_eq!(
        (answer.id, error_of(&answer).code),
        (2, tonic::Code::Unimplemented as i32)
    );
    let mut good = BytesMut::new();
    frame::encode(&mut good, 3, Kind::Read, &read("k", false));
    stream.write_all(&good).await.expect("send");
    let answer = next_frame(&mut stream, &mut buffer)
        .await
        .expect("an answer");
    assert_eq!(
        (answer.id, Kind::of(answer.kind)),
        (3, Some(Kind::ReadAnswer))
    );

    // A length over the limit: one error for the connection, then the
    // close; nothing of the announced size was allocated.
    stream
        .write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("send");
    let refusal = next_frame(&mut stream, &mut buffer)
        .await
        .expect("an answer");
    assert_eq!(refusal.id, 0);
    assert!(
        error_of(&refusal).message.contains("over the limit"),
        "{refusal:?}"
    );
    assert!(
        next_frame(&mut stream, &mut buffer).await.is_none(),
        "closed"
    );

    // A version this node does not speak.
    let mut stream = TcpStream::connect(port.addr).await.expect("connect");
    stream.write_all(MAGIC).await.expect("magic");
    stream.write_all(&[VERSION + 1]).await.expect("version");
    let refusal = next_frame(&mut stream, &mut buffer)
        .await
        .expect("an answer");
    assert!(
        error_of(&refusal).message.contains("version"),
        "{refusal:?}"
    );

    // A caller of version 2 (before queries) is still served.
    let mut older = TcpStream::connect(port.addr).await.expect("connect");
    older.write_all(MAGIC).await.expect("magic");
    older.write_all(&[2]).await.expect("version");
    let body = read("k", false).encode_to_vec();
    older
        .write_all(&raw_frame(7, Kind::Read.byte(), &body))
        .await
        .expect("a read");
    let answer = next_frame(&mut older, &mut BytesMut::new())
        .await
        .expect("an answer");
    assert_eq!(
        (answer.id, Kind::of(answer.kind)),
        (7, Some(Kind::ReadAnswer))
    );

    // Garbage that is neither protocol, and a connection that closes at once.
    let mut garbage = TcpStream::connect(port.addr).await.expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("send");
    drop(garbage);
    drop(TcpStream::connect(port.addr).await.expect("connect"));

    let client = FramedClient::new(port.addr, settings(Duration::from_secs(5)));
    client
        .write(write("after", "v"))
        .await
        .expect("the port still serves");
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_are_refused_as_overloaded() {
    let port = port().await;
    let client = FramedClient::new(port.addr, settings(Duration::from_secs(5)));
    client.write(write("k", "v")).await.expect("write");
    let held: Vec<_> = (0..64)
        .map(|_| port.limit.try_acquire().expect("a permit"))
        .collect();
    match client.read(read("k", false)).await {
        Err(ReplicaError::Failed(why)) => assert!(why.contains("overloaded"), "{why}"),
        other => panic!("expected overloaded, got {other:?}"),
    }
    drop(held);
    client.read(read("k", false)).await.expect("served again");
}

/// A listener that accepts connections and counts them; `close` decides
/// what each does: close after the handshake, or stay silent.
async fn fake_peer(close: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut hello = [0; 5];
            let _ = stream.read_exact(&mut hello).await;
            if !close {
                open.push(stream);
            }
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_silent_peer_times_out_and_its_connection_is_replaced() {
    let (addr, accepted) = fake_peer(false).await;
    let client = FramedClient::new(addr, settings(Duration::from_millis(300)));
    let first = client.read(read("k", false)).await;
    assert_eq!(first, Err(ReplicaError::Timeout));
    let second = client.read(read("k", false)).await;
    assert_eq!(second, Err(ReplicaError::Timeout));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a link that answered nothing is closed, and the next call connects again"
    );
}

#[tokio::test]
async fn a_peer_that_closes_fails_calls_as_unreachable_not_after_the_deadline() {
    let (addr, _) = fake_peer(true).await;
    // A deadline far longer than the test: the failure must come from the
    // closed connection.
    let client = FramedClient::new(addr, settings(Duration::from_secs(3600)));
    let failed = tokio::time::timeout(Duration::from_secs(60), client.read(read("k", false)))
        .await
        .expect("fails without waiting for the deadline");
    assert!(
        matches!(failed, Err(ReplicaError::Unreachable(_))),
        "{failed:?}"
    );

    let nobody = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gone = nobody.local_addr().expect("addr");
    drop(nobody);
    let client = FramedClient::new(gone, settings(Duration::from_secs(5)));
    let refused = client.write(write("k", "v")).await;
    assert!(
        matches!(refused, Err(ReplicaError::Unreachable(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_idle_link_whose_peer_went_silent_is_found_by_a_ping_and_replaced() {
    // A peer that answers the first request of each connection, then
    // reads on without answering (a connection that died while idle).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = BytesMut::new();
                let mut hello = [0; 5];
                stream.read_exact(&mut hello).await.expect("hello");
                let first = next_frame(&mut stream, &mut buffer)
                    .await
                    .expect("a request");
                let mut answer = BytesMut::new();
                frame::encode(
                    &mut answer,
                    first.id,
                    Kind::WriteAnswer,
                    &pbi::ReplicaWriteResponse::default(),
                );
                stream.write_all(&answer).await.expect("answer");
                let mut pings = 0;
                while let Some(frame) = next_frame(&mut stream, &mut buffer).await {
                    assert_eq!(Kind::of(frame.kind), Some(Kind::Ping), "only pings follow");
                    pings += 1;
                    assert!(pings < 100, "pinged without end");
                }
            });
        }
    });
    let client = FramedClient::new(
        addr,
        ClientSettings {
            keepalive: Duration::from_millis(100),
            ..settings(Duration::from_millis(200))
        },
    );
    client
        .write(write("k", "v"))
        .await
        .expect("the first write is answered");
    // No call is made: the ping alone must find the dead link.
    let mut waited = Duration::ZERO;
    while client.is_connected() && waited < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert!(
        !client.is_connected(),
        "the unanswered ping closed the link"
    );
    client
        .write(write("k", "v"))
        .await
        .expect("a new connection answers its first write");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_call_its_caller_gave_up_on_leaves_nothing_behind() {
    // The coordinator's own deadline is usually shorter than the internode
    // one: it drops the call, which must not stay registered on the link.
    let (addr, _) = fake_peer(false).await;
    let client = FramedClient::new(addr, settings(Duration::from_secs(3600)));
    for _ in 0..3 {
        let gave_up =
            tokio::time::timeout(Duration::from_millis(100), client.read(read("k", false))).await;
        assert!(gave_up.is_err(), "the silent peer answers nothing");
    }
    assert!(client.is_connected());
    assert_eq!(client.waiting_calls(), 0);
}

#[tokio::test]
async fn a_request_over_the_message_limit_fails_alone_before_it_is_sent() {
    let (addr, accepted) = fake_peer(false).await;
    let client = FramedClient::new(
        addr,
        ClientSettings {
            max_message: 1024,
            ..settings(Duration::from_secs(5))
        },
    );
    let big = pbi::ReplicaWriteRequest {
        key: row("k"),
        cell: Some(pbi::Cell {
            value: Bytes::from(vec![0; 2048]),
            ..cell("", now_micros())
        }),
        report_newer: false,
        more: Vec::new(),
        repair: false,
    };
    match client.write(big).await {
        Err(ReplicaError::Failed(why)) => assert!(why.contains("over the limit"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing was sent");
}
