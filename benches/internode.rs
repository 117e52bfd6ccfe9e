//! The internode transports of ringkv, measured: the Peer service's hot
//! calls (replica writes and reads) over gRPC (tonic, HTTP/2) and over the
//! framed protocol the node uses (`ringkv_node::rpc::framed`), the real
//! code of both sides.
//!
//! One peer port on loopback serves both protocols, as a node's does, over
//! the real `PeerService` on an in-memory store; a 2-thread runtime, as a
//! node's on this machine; 100-byte values. For each transport,
//! CONCURRENCY callers issue alternating writes and reads for SECONDS; the
//! output is calls per second and the process's CPU time (getrusage:
//! callers and server together) per call.
//!
//! Run: `cargo bench --bench internode [-- SECONDS CONCURRENCY]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv_node::clock::{HybridClock, SkewLimit, WallClock};
use ringkv_node::config::Config;
use ringkv_node::peer::TreeCache;
use ringkv_node::rpc::accept::Admission;
use ringkv_node::rpc::bounds::PeerBounds;
use ringkv_node::rpc::framed::{self, ClientSettings, FramedClient, FramedServer};
use ringkv_node::rpc::limit::InFlightLimit;
use ringkv_node::rpc::net::Listener;
use ringkv_node::rpc::{LateView, PeerService};
use ringkv_node::storage::{DirtyMap, LocalStore, MemoryStorage, SyncMode};
use ringkv_proto::internal::v2 as pbi;
use ringkv_proto::internal::v2::peer_client::PeerClient;
use ringkv_proto::internal::v2::peer_server::PeerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const KEYS: u64 = 100_000;
const MAX_MESSAGE: usize = 4 << 20;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn request(i: u64, value: &Bytes) -> (pbi::ReplicaWriteRequest, pbi::ReplicaReadRequest) {
    let key = Bytes::from(ringkv_node::storage::key::plain_key(
        format!("user{:012}", i % KEYS).as_bytes(),
    ));
    let write = pbi::ReplicaWriteRequest {
        key: key.clone(),
        cell: Some(pbi::Cell {
            timestamp_micros: WallClock::system().micros(),
            tombstone: false,
            local_deletion_time: None,
            expiry_ms_early: 0,
            value: value.clone(),
        }),
        report_newer: false,
        more: Vec::new(),
        repair: false,
    };
    (
        write,
        pbi::ReplicaReadRequest {
            key,
            digest_only: false,
        },
    )
}

/// The peer port of a node with an in-memory store, serving both
/// protocols until `stop`.
async fn peer_port(stop: CancellationToken) -> std::net::SocketAddr {
    let engine = Arc::new(MemoryStorage::default());
    let store = LocalStore::new(engine.clone(), SyncMode::Periodic, None);
    let service = Arc::new(PeerService::new(
        store,
        Arc::new(HybridClock::new(WallClock::system())),
        Arc::new(TreeCache::new(engine, Arc::new(DirtyMap::default()), 256)),
        PeerBounds {
            max_value_size: 1 << 20,
            max_clock_skew: SkewLimit::from_millis(60_000),
        },
        LateView::default(),
    ));
    let limit = InFlightLimit::new("internode", 4096);
    let deadline = Duration::from_secs(30);
    let framed = Arc::new(FramedServer::new(
        service.clone(),
        limit,
        deadline,
        MAX_MESSAGE,
    ));
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(PeerServer::from_arc(service));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let port = framed::PeerPort {
        admission: Admission::new("internode", Config::default().port_limits().peer),
        grpc_tls: None,
    };
    tokio::spawn(framed::serve(
        router,
        framed,
        Listener::Tcp(listener),
        port,
        stop,
    ));
    addr
}

/// Runs `call` from `concurrency` tasks for `seconds`; (calls/s, CPU µs/call).
async fn measure<C, F>(name: &str, seconds: f64, concurrency: u64, call: C)
where
    C: Fn(u64) -> F + Send + Sync + Clone + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (stop, done, call) = (stop.clone(), done.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = worker * 7_919;
            while !stop.load(Ordering::Relaxed) {
                call(i).await;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = done.load(Ordering::Relaxed) as f64;
    let cpu = cpu_seconds() - cpu;
    println!(
        "{name:<8} {:>10.0} calls/s {:>8.1} µs CPU/call (client and server) {:>6.2} cores",
        calls / elapsed,
        cpu / calls * 1e6,
        cpu / elapsed
    );
}

fn main() {
    // `cargo bench` passes --bench; take the first two numbers given.
    let numbers: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = numbers.first().copied().unwrap_or(5.0);
    let concurrency = numbers.get(1).copied().unwrap_or(32.0) as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let value = Bytes::from(vec![b'v'; 100]);
        let stop = CancellationToken::new();
        let addr = peer_port(stop.clone()).await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect");
        let grpc = PeerClient::new(channel);
        let framed = Arc::new(FramedClient::new(
            addr,
            ClientSettings {
                dial: None,
                tls: None,
                deadline: Duration::from_secs(30),
                max_message: MAX_MESSAGE,
                keepalive: framed::KEEPALIVE_INTERVAL,
                tasks: ringkv_node::workers::Workers::new(),
            },
        ));

        println!(
            "{seconds} s per run, {concurrency} callers, alternating write and read, 100-byte values"
        );
        for round in 0..2 {
            let (client, shared) = (grpc.clone(), value.clone());
            measure(&format!("gRPC #{}", round + 1), seconds, concurrency, move |i| {
                let (mut client, value) = (client.clone(), shared.clone());
                async move {
                    let (write, read) = request(i, &value);
                    if i % 2 == 0 {
                        client.write(write).await.expect("gRPC write");
                    } else {
                        client.read(read).await.expect("gRPC read");
                    }
                }
            })
            .await;
            let (client, shared) = (framed.clone(), value.clone());
            measure(&format!("framed #{}", round + 1), seconds, concurrency, move |i| {
                let (client, value) = (client.clone(), shared.clone());
                async move {
                    let (write, read) = request(i, &value);
                    if i % 2 == 0 {
                        client.write(write).await.expect("framed write");
                    } else {
                        client.read(read).await.expect("framed read");
                    }
                }
            })
            .await;
        }
        stop.cancel();
    });
}
