//! The internode transport question of issue 13: does a multiplexed,
//! length-prefixed protobuf protocol on one TCP connection beat tonic
//! (gRPC over HTTP/2) for the Peer service's hot calls?
//!
//! Both sides run in this process on loopback, on a 2-thread runtime like
//! a node's on this machine, with the same handler (an in-memory map) and
//! the same `.proto` messages (`ReplicaWriteRequest`, `ReplicaReadRequest`
//! and their answers, 100-byte values):
//!
//! - `tonic`: the generated `PeerClient` and `PeerServer`, one channel;
//! - `framed`: frames of `[u32 length][u64 request id][u8 kind][protobuf]`
//!   on one TCP connection, answers matched by id; a writer task per side
//!   sends every frame that is ready in one `write` (coalescing).
//!
//! For each, CONCURRENCY callers issue alternating writes and reads for
//! SECONDS; the output is calls per second and the process's CPU time
//! (getrusage: client and server together) per call.
//!
//! Run: `cargo bench --bench internode [-- SECONDS CONCURRENCY]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use prost::Message;
use ringkv_proto::internal::v1 as pbi;
use ringkv_proto::internal::v1::peer_client::PeerClient;
use ringkv_proto::internal::v1::peer_server::{Peer, PeerServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

const KEYS: u64 = 100_000;
const WRITE: u8 = 1;
const READ: u8 = 2;
/// Largest frame either side accepts.
const MAX_FRAME: usize = 1 << 20;

/// The handler both transports call: a map of cells.
#[derive(Default)]
struct Store {
    cells: Mutex<HashMap<Bytes, pbi::Cell>>,
}

impl Store {
    fn write(&self, request: pbi::ReplicaWriteRequest) -> pbi::ReplicaWriteResponse {
        if let (Ok(mut cells), Some(cell)) = (self.cells.lock(), request.cell) {
            cells.insert(request.key, cell);
        }
        pbi::ReplicaWriteResponse {}
    }

    fn read(&self, request: pbi::ReplicaReadRequest) -> pbi::ReplicaReadResponse {
        let cell = self
            .cells
            .lock()
            .ok()
            .and_then(|cells| cells.get(&request.key).cloned());
        pbi::ReplicaReadResponse {
            cell,
            digest: Bytes::new(),
        }
    }
}

struct TonicPeer(Arc<Store>);

#[tonic::async_trait]
impl Peer for TonicPeer {
    async fn write(
        &self,
        request: Request<pbi::ReplicaWriteRequest>,
    ) -> Result<Response<pbi::ReplicaWriteResponse>, Status> {
        Ok(Response::new(self.0.write(request.into_inner())))
    }
    async fn read(
        &self,
        request: Request<pbi::ReplicaReadRequest>,
    ) -> Result<Response<pbi::ReplicaReadResponse>, Status> {
        Ok(Response::new(self.0.read(request.into_inner())))
    }
    async fn write_batch(
        &self,
        _: Request<pbi::WriteBatchRequest>,
    ) -> Result<Response<pbi::WriteBatchResponse>, Status> {
        Err(Status::unimplemented("not in this benchmark"))
    }
    async fn read_batch(
        &self,
        _: Request<pbi::ReadBatchRequest>,
    ) -> Result<Response<pbi::ReadBatchResponse>, Status> {
        Err(Status::unimplemented("not in this benchmark"))
    }
    async fn merkle_nodes(
        &self,
        _: Request<pbi::MerkleNodesRequest>,
    ) -> Result<Response<pbi::MerkleNodesResponse>, Status> {
        Err(Status::unimplemented("not in this benchmark"))
    }
    async fn leaf_digests(
        &self,
        _: Request<pbi::LeafDigestsRequest>,
    ) -> Result<Response<pbi::LeafDigestsResponse>, Status> {
        Err(Status::unimplemented("not in this benchmark"))
    }
    async fn stream_range(
        &self,
        _: Request<pbi::StreamRangeRequest>,
    ) -> Result<Response<pbi::StreamRangeResponse>, Status> {
        Err(Status::unimplemented("not in this benchmark"))
    }
}

/// One frame: header and protobuf body.
fn frame(id: u64, kind: u8, body: &impl Message) -> Bytes {
    let len = 9 + body.encoded_len();
    let mut out = BytesMut::with_capacity(4 + len);
    out.put_u32(len as u32);
    out.put_u64(id);
    out.put_u8(kind);
    body.encode(&mut out).expect("capacity reserved");
    out.freeze()
}

/// Reads one frame: (id, kind, body); `None` at end of stream.
async fn read_frame(
    reader: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<(u64, u8, Bytes)>> {
    let len = match reader.read_u32().await {
        Ok(len) => len as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if !(9..=MAX_FRAME).contains(&len) {
        return Err(std::io::Error::other(format!("bad frame length {len}")));
    }
    let mut buf = BytesMut::zeroed(len);
    reader.read_exact(&mut buf).await?;
    let mut buf = buf.freeze();
    let id = buf.get_u64();
    let kind = buf.get_u8();
    Ok(Some((id, kind, buf)))
}

/// Writes every frame that is ready in one call.
async fn writer(mut rx: mpsc::UnboundedReceiver<Bytes>, mut out: tokio::net::tcp::OwnedWriteHalf) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        batch.extend_from_slice(&first);
        while let Ok(next) = rx.try_recv() {
            batch.extend_from_slice(&next);
            if batch.len() > 256 << 10 {
                break;
            }
        }
        if out.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

async fn serve_framed(listener: TcpListener, store: Arc<Store>) {
    while let Ok((stream, _)) = listener.accept().await {
        stream.set_nodelay(true).ok();
        let store = store.clone();
        tokio::spawn(async move {
            let (read, write) = stream.into_split();
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(rx, write));
            let mut reader = tokio::io::BufReader::with_capacity(64 << 10, read);
            while let Ok(Some((id, kind, body))) = read_frame(&mut reader).await {
                let answer = match kind {
                    WRITE => match pbi::ReplicaWriteRequest::decode(body) {
                        Ok(request) => frame(id, kind, &store.write(request)),
                        Err(_) => return,
                    },
                    READ => match pbi::ReplicaReadRequest::decode(body) {
                        Ok(request) => frame(id, kind, &store.read(request)),
                        Err(_) => return,
                    },
                    _ => return,
                };
                if tx.send(answer).is_err() {
                    return;
                }
            }
        });
    }
}

/// The framed client: one connection, answers matched by request id.
#[derive(Clone)]
struct FramedClient {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>,
    next: Arc<AtomicU64>,
}

impl FramedClient {
    async fn connect(addr: SocketAddr) -> FramedClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(rx, write));
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>> = Arc::default();
        let answers = pending.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::with_capacity(64 << 10, read);
            while let Ok(Some((id, _, body))) = read_frame(&mut reader).await {
                if let Some(waiter) = answers.lock().expect("pending").remove(&id) {
                    let _ = waiter.send(body);
                }
            }
        });
        FramedClient {
            tx,
            pending,
            next: Arc::new(AtomicU64::new(1)),
        }
    }

    async fn call(&self, kind: u8, body: &impl Message) -> Bytes {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, done);
        self.tx.send(frame(id, kind, body)).expect("writer alive");
        answer.await.expect("answer")
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn request(i: u64, value: &Bytes) -> (pbi::ReplicaWriteRequest, pbi::ReplicaReadRequest) {
    let key = Bytes::from(format!("user{:012}", i % KEYS));
    let write = pbi::ReplicaWriteRequest {
        key: key.clone(),
        cell: Some(pbi::Cell {
            timestamp_micros: i as i64,
            tombstone: false,
            local_deletion_time: None,
            value: value.clone(),
        }),
    };
    (
        write,
        pbi::ReplicaReadRequest {
            key,
            digest_only: false,
        },
    )
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
        let store = Arc::new(Store::default());

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tonic_addr = listener.local_addr().expect("addr");
        let server = PeerServer::new(TonicPeer(store.clone()));
        // A custom listener: TCP_NODELAY is set on each accepted socket.
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
            if let Ok(stream) = &stream {
                stream.set_nodelay(true).ok();
            }
            stream
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(incoming),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let framed_addr = listener.local_addr().expect("addr");
        tokio::spawn(serve_framed(listener, store));

        let channel = tonic::transport::Endpoint::from_shared(format!("http://{tonic_addr}"))
            .expect("endpoint")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect");
        let tonic_client = PeerClient::new(channel);
        let framed = FramedClient::connect(framed_addr).await;

        println!("{seconds} s per run, {concurrency} callers, alternating write and read, 100-byte values");
        for round in 0..2 {
            let (client, shared) = (tonic_client.clone(), value.clone());
            measure(&format!("tonic #{}", round + 1), seconds, concurrency, move |i| {
                let (mut client, value) = (client.clone(), shared.clone());
                async move {
                    let (write, read) = request(i, &value);
                    if i % 2 == 0 {
                        client.write(write).await.expect("tonic write");
                    } else {
                        client.read(read).await.expect("tonic read");
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
                        client.call(WRITE, &write).await;
                    } else {
                        let answer = client.call(READ, &read).await;
                        pbi::ReplicaReadResponse::decode(answer).expect("framed read");
                    }
                }
            })
            .await;
        }
    });
}
