//! The peer port's serving side: it tells framed connections from gRPC
//! ones by their first bytes, hands gRPC connections (plain or TLS) to
//! tonic, and serves framed ones itself.
//!
//! A framed connection is served in four steps:
//! 1. the version byte after the magic, then the TLS handshake when
//!    internode TLS is on, and the same node-certificate check as the gRPC
//!    service; a refusal is one error frame with id 0, then the close;
//! 2. a reader decodes every complete frame of each read; a frame too
//!    large or malformed at the framing level is answered with an error
//!    frame with id 0 and the connection closes (the stream cannot be
//!    resynchronised), while a bad body or an unknown kind only fails that
//!    request;
//! 3. each request takes a permit of the node's internode in-flight limit
//!    (`max_peer_requests_in_flight`, shared with the gRPC service, held
//!    until it is answered) and its body's bytes of the byte budget
//!    (`max_peer_bytes_in_flight_mb`, the same; a frame larger than a read
//!    chunk takes them as soon as its length prefix arrives, and a
//!    connection whose next frame does not fit the budget is closed), and
//!    one of its connection's own bound of as
//!    many (held until its answer is written), then runs as its own task
//!    with the internode deadline; with either exhausted it is answered
//!    `overloaded` at once, so the reader never stops reading (and
//!    answering pings) while the peer reads its answers;
//! 4. answers go to the connection's writer, which coalesces them.
//!
//! Pings are answered at once. A connection on which nothing arrives for
//! [`IDLE_LIMIT`] is closed (its caller pings it far more often).
//!
//! When the node stops, readers stop reading; requests already read are
//! answered before their connections close.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use prost::Message;
use ringkv_proto::internal::v2 as pbi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::frame::{self, Frame, Kind, MAGIC};
use super::writer::{Body, Outgoing, QUEUE_FRAMES, write_frames};
use crate::rpc::accept::Admission;
use crate::rpc::limit::{InFlightLimit, KEYS_ONLY_BODY_BYTES};
use crate::rpc::net::{Connection, Listener};
use crate::rpc::{PeerService, Served};
use crate::workers::{Worker, Workers};

/// How long a new connection may take to send its first bytes, and a
/// framed one its version and TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from a connection at a time (at least).
const READ_CHUNK: usize = 64 << 10;
/// Pause after a failed accept (out of file descriptors, say), so the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// gRPC connections waiting to be picked up by tonic.
const GRPC_BACKLOG: usize = 128;
/// A framed connection on which nothing arrived for this long is closed:
/// its caller is gone (callers ping an idle connection every few seconds,
/// see the client's `KEEPALIVE_INTERVAL`).
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// What the peer port admits, besides the framed server's own bounds.
pub struct PeerPort {
    /// The connection cap and silence limit (`max_peer_connections`).
    pub admission: Admission,
    /// Internode TLS of the gRPC side (ALPN `h2`); `None`: plaintext.
    pub grpc_tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves the framed protocol over a [`PeerService`].
pub struct FramedServer {
    service: Arc<PeerService>,
    limit: InFlightLimit,
    /// Deadline of each request, and how long a write may stall.
    deadline: Duration,
    /// Largest frame body accepted.
    max_message: usize,
    /// Internode TLS (client certificates required); `None`: plaintext.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Longest wait for a new connection's version byte and TLS handshake.
    handshake: Duration,
    /// Writes and reads served.
    served: Served,
    /// Where its tasks run, by name: connections, their writers, requests.
    tasks: Workers,
    writers: Worker,
    requests: Worker,
}

/// The names the framed server's tasks run under (see `crate::workers`).
const CONNECTIONS: &str = "internode connections";
const WRITERS: &str = "internode connection writers";
const REQUESTS: &str = "internode requests (framed)";
const ACCEPT: &str = "internode accept loop";

impl FramedServer {
    pub fn new(
        service: Arc<PeerService>,
        limit: InFlightLimit,
        deadline: Duration,
        max_message: usize,
    ) -> Self {
        Self {
            service,
            limit,
            deadline,
            max_message,
            tls: None,
            handshake: HANDSHAKE_TIMEOUT,
            served: Served::over("framed"),
            tasks: Workers::new(),
            writers: Workers::new().worker(WRITERS),
            requests: Workers::new().worker(REQUESTS),
        }
    }

    /// Runs its tasks as `tasks` (the node's internode API set).
    pub fn with_workers(mut self, tasks: &Workers) -> Self {
        self.writers = tasks.worker(WRITERS);
        self.requests = tasks.worker(REQUESTS);
        self.tasks = tasks.clone();
        self
    }

    pub fn with_tls(mut self, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// Waits at most `handshake` for a new connection's version byte and
    /// TLS handshake (`tls_handshake_timeout_ms`; 10 s otherwise).
    pub fn with_handshake_timeout(mut self, handshake: Duration) -> Self {
        self.handshake = handshake;
        self
    }

    /// Step 1: the rest of the handshake of a connection whose magic was
    /// read, then the connection's requests until it ends or `stop`.
    async fn serve_connection(self: Arc<Self>, mut io: Connection, stop: CancellationToken) {
        let version = tokio::select! {
            version = tokio::time::timeout(self.handshake, io.read_u8()) => version,
            () = stop.cancelled() => return,
        };
        match version {
            Ok(Ok(version)) if frame::SERVED.contains(&version) => {}
            Ok(Ok(other)) => {
                let why = format!(
                    "framed internode protocol version {other} is not spoken here (this node speaks {:?})",
                    frame::SERVED
                );
                return refuse(io, Status::unimplemented(why)).await;
            }
            _ => return,
        }
        let io = match &self.tls {
            None => io,
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                let accepted = tokio::select! {
                    accepted = tokio::time::timeout(self.handshake, acceptor.accept(io)) => accepted,
                    () = stop.cancelled() => return,
                };
                let stream = match accepted {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "framed internode TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let certs = stream.get_ref().1.peer_certificates();
                if let Err(status) = self.service.admit_certificates(certs) {
                    return refuse(Connection::new(stream), status).await;
                }
                Connection::new(stream)
            }
        };
        self.run(io, stop).await;
    }

    /// Steps 2 to 4.
    async fn run(self: Arc<Self>, io: Connection, stop: CancellationToken) {
        let (mut reader, writer) = tokio::io::split(io);
        let (queue, waiting) = mpsc::channel(QUEUE_FRAMES);
        let broken = CancellationToken::new();
        let writing = self.writers.spawn({
            let (broken, stall) = (broken.clone(), self.deadline);
            async move {
                if let Err(error) = write_frames(waiting, writer, stall).await {
                    tracing::debug!(%error, "framed internode connection lost");
                }
                broken.cancel();
            }
        });
        // Requests of this connection being worked on or waiting to be
        // written, at most: the node's in-flight limit, so one connection
        // can use all of it, and no more.
        let unanswered = Arc::new(Semaphore::new(self.limit.limit()));
        let mut buffer = BytesMut::with_capacity(READ_CHUNK);
        // The byte budget of the large frame being received, taken when
        // its length prefix arrives and handed to its request.
        let mut reserved: Option<OwnedSemaphorePermit> = None;
        // Queues a frame unless the node stops or the connection broke.
        let send = |outgoing: Outgoing| {
            let queue = &queue;
            let (stop, broken) = (&stop, &broken);
            async move {
                tokio::select! {
                    sent = queue.send(outgoing) => sent.is_ok(),
                    () = stop.cancelled() => false,
                    () = broken.cancelled() => false,
                }
            }
        };
        'connection: loop {
            loop {
                let frame = match frame::decode(&mut buffer, self.max_message) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => {
                        // A large frame takes its bytes of the budget
                        // before the rest of it is read, so connections
                        // holding partly sent frames cannot grow memory
                        // past the budget; without them, the connection
                        // closes.
                        let large = frame::announced(&buffer).filter(|&n| n > READ_CHUNK);
                        if let (Some(bytes), None) = (large, &reserved) {
                            match self.limit.try_acquire_bytes(bytes) {
                                Ok(permit) => reserved = permit,
                                Err(why) => {
                                    let status =
                                        Status::resource_exhausted(format!("overloaded: {why}"));
                                    send(Outgoing::new(0, Body::error(&status))).await;
                                    break 'connection;
                                }
                            }
                        }
                        break;
                    }
                    Err(error) => {
                        let status = Status::invalid_argument(error.to_string());
                        send(Outgoing::new(0, Body::error(&status))).await;
                        break 'connection;
                    }
                };
                if Kind::of(frame.kind) == Some(Kind::Ping) {
                    if !send(Outgoing::new(frame.id, Body::Pong)).await {
                        break 'connection;
                    }
                    continue;
                }
                let held = reserved.take();
                let admitted = match unanswered.clone().try_acquire_owned() {
                    Ok(own) => self.limit.try_acquire().and_then(|node| {
                        let bytes = match held {
                            Some(held) => Some(held),
                            None => self.limit.try_acquire_bytes(frame.body.len())?,
                        };
                        Ok((own, (node, bytes)))
                    }),
                    Err(_) => Err(self.limit.refusal()),
                };
                match admitted {
                    Ok((own, node)) => self.clone().dispatch(frame, queue.clone(), own, node),
                    Err(why) => {
                        let status = Status::resource_exhausted(format!("overloaded: {why}"));
                        if !send(Outgoing::new(frame.id, Body::error(&status))).await {
                            break 'connection;
                        }
                    }
                }
            }
            if buffer.capacity() - buffer.len() < READ_CHUNK / 4 {
                buffer.reserve(READ_CHUNK);
            }
            let read = tokio::select! {
                read = tokio::time::timeout(IDLE_LIMIT, reader.read_buf(&mut buffer)) => read,
                () = stop.cancelled() => break,
                () = broken.cancelled() => break,
            };
            match read {
                Err(_) => {
                    tracing::debug!(
                        "closing a framed internode connection idle for {IDLE_LIMIT:?}"
                    );
                    break;
                }
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, "framed internode connection lost");
                    break;
                }
            }
        }
        // The writer ends once the requests in flight have queued their
        // answers (each holds a sender).
        drop(queue);
        let _ = writing.await;
    }

    /// Step 3: runs one request as its own task, holding its permits:
    /// the node's (a request, and its body's bytes) until it is answered,
    /// its connection's until the answer is written.
    fn dispatch(
        self: Arc<Self>,
        frame: Frame,
        queue: mpsc::Sender<Outgoing>,
        unanswered: OwnedSemaphorePermit,
        in_flight: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    ) {
        let requests = self.requests.clone();
        requests.spawn(async move {
            let answer = tokio::time::timeout(self.deadline, self.answer(frame.kind, frame.body));
            let body = match answer.await {
                Ok(Ok(body)) => body,
                Ok(Err(status)) => Body::error(&status),
                Err(_) => Body::error(&Status::deadline_exceeded(format!(
                    "the replica did not answer within {:?} (internode_timeout_ms)",
                    self.deadline
                ))),
            };
            drop(in_flight);
            let outgoing = Outgoing {
                id: frame.id,
                body,
                permit: Some(unanswered),
            };
            let _ = queue.send(outgoing).await;
        });
    }

    /// What the service answers to a request frame.
    async fn answer(&self, kind: u8, body: Bytes) -> Result<Body, Status> {
        let malformed = |error: prost::DecodeError| {
            Status::invalid_argument(format!("malformed internode request: {error}"))
        };
        match Kind::of(kind) {
            Some(Kind::Write) => {
                let request = pbi::ReplicaWriteRequest::decode(body).map_err(malformed)?;
                self.served.write.increment(1);
                Ok(Body::WriteAnswer(self.service.serve_write(request).await?))
            }
            Some(Kind::Read) => {
                keys_only(&body, "Read")?;
                let request = pbi::ReplicaReadRequest::decode(body).map_err(malformed)?;
                self.served.read.increment(1);
                Ok(Body::ReadAnswer(self.service.serve_read(request)?))
            }
            Some(Kind::Query) => {
                keys_only(&body, "Query")?;
                let request = pbi::ReplicaQueryRequest::decode(body).map_err(malformed)?;
                self.served.query.increment(1);
                let answer = self.service.serve_query(request).await?;
                // A page (rows, a deletions entry and framing) over the
                // caller's frame limit fails alone: sent, it would close
                // the connection every other call shares.
                let size = answer.encoded_len();
                if size > self.max_message {
                    return Err(Status::resource_exhausted(format!(
                        "a page of {size} bytes is over the internode message limit of {} bytes: ask for fewer rows or bytes",
                        self.max_message
                    )));
                }
                Ok(Body::QueryAnswer(answer))
            }
            _ => Err(Status::unimplemented(format!(
                "frame kind {kind} is not a request this node serves"
            ))),
        }
    }
}

/// As the gRPC service: a request that carries only keys and ranges
/// (`method`) is held to the keys-only limit before it is decoded.
fn keys_only(body: &Bytes, method: &str) -> Result<(), Status> {
    if body.len() > KEYS_ONLY_BODY_BYTES {
        return Err(Status::invalid_argument(format!(
            "{method} request over {KEYS_ONLY_BODY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Sends one connection-level error frame and closes.
async fn refuse(mut io: Connection, status: Status) {
    let mut wire = BytesMut::new();
    Outgoing::new(0, Body::error(&status)).encode(&mut wire);
    let sent = async {
        io.write_all(&wire).await?;
        io.flush().await?;
        io.shutdown().await
    };
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, sent).await;
}

/// Serves the peer port until `stop`: framed connections with `framed`,
/// every other connection (gRPC, plaintext or TLS) with `router`.
pub async fn serve(
    router: tonic::transport::server::Router,
    framed: Arc<FramedServer>,
    mut listener: Listener,
    port: PeerPort,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let port = Arc::new(port);
    let (to_grpc, grpc) = mpsc::channel::<io::Result<Connection>>(GRPC_BACKLOG);
    // Its own set, to wait for the connections before returning.
    let tasks = framed.tasks.clone();
    let connections = tasks.sibling();
    let accepting = {
        let (stop, connections) = (stop.clone(), connections.clone());
        tasks.spawn(ACCEPT, async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = stop.cancelled() => break,
                };
                match accepted {
                    None => break,
                    Some(Ok(connection)) => {
                        let Some(connection) = port.admission.admit(connection) else {
                            continue;
                        };
                        let (framed, to_grpc, stop) =
                            (framed.clone(), to_grpc.clone(), stop.clone());
                        let port = port.clone();
                        connections
                            .spawn(CONNECTIONS, sniff(connection, framed, port, to_grpc, stop));
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "cannot accept an internode connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        })
    };
    let grpc = tokio_stream::wrappers::ReceiverStream::new(grpc);
    let served = router
        .serve_with_incoming_shutdown(grpc.map(|c| c), stop.cancelled())
        .await;
    let _ = accepting.await;
    connections.close();
    connections.wait().await;
    served
}

/// Reads a connection's first bytes: the framed magic, or anything else
/// (HTTP/2's preface, a TLS handshake), given back to tonic unread.
async fn sniff(
    mut connection: Connection,
    framed: Arc<FramedServer>,
    port: Arc<PeerPort>,
    to_grpc: mpsc::Sender<io::Result<Connection>>,
    stop: CancellationToken,
) {
    let mut first = [0; MAGIC.len()];
    let read = tokio::select! {
        read = tokio::time::timeout(HANDSHAKE_TIMEOUT, connection.read_exact(&mut first)) => read,
        () = stop.cancelled() => return,
    };
    match read {
        Ok(Ok(_)) if &first == MAGIC => framed.serve_connection(connection, stop).await,
        Ok(Ok(_)) => {
            let connection = connection.unread(Bytes::copy_from_slice(&first));
            let connection = match &port.grpc_tls {
                None => connection,
                Some(tls) => {
                    let session = tokio::select! {
                        session = port.admission.handshake(connection, tls.clone()) => session,
                        () = stop.cancelled() => return,
                    };
                    match session {
                        Some(session) => session,
                        None => return,
                    }
                }
            };
            let _ = to_grpc.send(Ok(connection)).await;
        }
        // Closed, or silent: nothing to serve.
        _ => {}
    }
}
