//! The calling side: one [`FramedClient`] per peer address, holding at
//! most one connection (a [`Link`]) that every caller shares. Requests
//! carry ids; a reader task hands each answer to the caller waiting for
//! that id.
//!
//! A call:
//! 1. takes the live link, or connects one (callers arriving meanwhile
//!    wait for that connection rather than opening their own);
//! 2. registers its id and queues its frame for the link's writer;
//! 3. waits for its answer until the internode deadline.
//!
//! Failures: a call that times out on a link from which nothing at all
//! arrived since the call was sent closes the link (a paused or
//! black-holed peer), failing every call waiting on it, and the next call
//! connects afresh. A link from which nothing arrived for a keepalive
//! interval ([`KEEPALIVE_INTERVAL`]) is pinged, as HTTP/2 keepalive does, and closed
//! if the ping is not answered within the deadline (at most twice the
//! interval), so that a connection that died while idle is found before a
//! call needs it. A link whose connection ends fails its waiting calls at
//! once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use ringkv_proto::internal::v2 as pbi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::frame::{self, Frame, Kind, MAGIC, VERSION};
use super::writer::{Body, Outgoing, QUEUE_FRAMES, write_frames};
use crate::peer::ReplicaError;
use crate::rpc::net::{Connection, Dial};
use crate::workers::Workers;

/// How long to wait for a TCP connection to a peer (and its handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read from a connection at a time (at least).
const READ_CHUNK: usize = 64 << 10;
/// A link from which nothing arrived for about this long is pinged (as
/// gRPC's HTTP/2 keepalive is set on this node).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// How a client reaches and talks to peers.
#[derive(Clone)]
pub struct ClientSettings {
    /// How to open a connection; `None`: TCP.
    pub dial: Option<Dial>,
    /// Internode TLS: the configuration and the name peers' certificates
    /// must carry; `None`: plaintext.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    /// Deadline of each call.
    pub deadline: Duration,
    /// Largest answer accepted.
    pub max_message: usize,
    /// How often an idle link is pinged ([`KEEPALIVE_INTERVAL`]).
    pub keepalive: Duration,
    /// Where each link's writer, reader and keepalive run, by name. They
    /// end with their link, so the set need not be waited for.
    pub tasks: Workers,
}

/// The names a link's tasks run under (see `crate::workers`).
const LINK_WRITERS: &str = "internode link writers";
const LINK_READERS: &str = "internode link readers";
const LINK_KEEPALIVES: &str = "internode link keepalives";

/// Calls one peer over the framed protocol.
pub struct FramedClient {
    addr: SocketAddr,
    settings: ClientSettings,
    live: Mutex<Option<Arc<Link>>>,
    /// Held while connecting: one connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

impl FramedClient {
    pub fn new(addr: SocketAddr, settings: ClientSettings) -> Self {
        Self {
            addr,
            settings,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Merges a cell into the peer's store. (A peer of an older release
    /// answers with an empty body: no newer cell reported.)
    pub async fn write(
        &self,
        request: pbi::ReplicaWriteRequest,
    ) -> Result<pbi::ReplicaWriteResponse, ReplicaError> {
        self.call_for(Body::WriteRequest(request), Kind::WriteAnswer, "write")
            .await
    }

    /// Reads a key's cell (or digest) from the peer.
    pub async fn read(
        &self,
        request: pbi::ReplicaReadRequest,
    ) -> Result<pbi::ReplicaReadResponse, ReplicaError> {
        self.call_for(Body::ReadRequest(request), Kind::ReadAnswer, "read")
            .await
    }

    /// A page of a partition's rows from the peer.
    pub async fn query(
        &self,
        request: pbi::ReplicaQueryRequest,
    ) -> Result<pbi::ReplicaQueryResponse, ReplicaError> {
        self.call_for(Body::QueryRequest(request), Kind::QueryAnswer, "query")
            .await
    }

    /// A call whose answer of kind `expected` decodes as `T`.
    async fn call_for<T: Message + Default>(
        &self,
        body: Body,
        expected: Kind,
        what: &str,
    ) -> Result<T, ReplicaError> {
        let answer = self.call(body, expected).await?;
        T::decode(answer)
            .map_err(|error| ReplicaError::Failed(format!("malformed {what} answer: {error}")))
    }

    async fn call(&self, body: Body, expected: Kind) -> Result<Bytes, ReplicaError> {
        // A request the peer would refuse for its size (and close the
        // connection over) fails alone, here.
        let size = body.encoded_len();
        if size > self.settings.max_message {
            return Err(ReplicaError::Failed(format!(
                "an internode request of {size} bytes is over the limit of {} bytes",
                self.settings.max_message
            )));
        }
        let deadline = Instant::now() + self.settings.deadline;
        // Step 1.
        let link = tokio::time::timeout_at(deadline, self.link())
            .await
            .map_err(|_| ReplicaError::Timeout)??;
        // Step 2. The guard forgets the call however it ends, the caller
        // dropping it (its own deadline came first) included.
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        link.register(id, done)?;
        let _registered = Registered { link: &link, id };
        let seen = link.received.load(Ordering::Relaxed);
        let queued =
            tokio::time::timeout_at(deadline, link.queue.send(Outgoing::new(id, body))).await;
        if !matches!(queued, Ok(Ok(()))) {
            return Err(match queued {
                Err(_) => ReplicaError::Timeout,
                _ => link.closed_error(),
            });
        }
        // Step 3.
        let frame = match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => return Err(link.closed_error()),
            Err(_) => {
                if link.received.load(Ordering::Relaxed) == seen {
                    link.close(ReplicaError::Unreachable(format!(
                        "{} answered nothing within {:?}",
                        self.addr, self.settings.deadline
                    )));
                }
                return Err(ReplicaError::Timeout);
            }
        };
        match Kind::of(frame.kind) {
            Some(kind) if kind == expected => Ok(frame.body),
            Some(Kind::Error) => Err(answer_error(&frame.body)),
            _ => Err(ReplicaError::Failed(format!(
                "the peer answered with frame kind {}",
                frame.kind
            ))),
        }
    }

    /// The live link, or a new one.
    async fn link(&self) -> Result<Arc<Link>, ReplicaError> {
        if let Some(link) = self.live_link() {
            return Ok(link);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(link) = self.live_link() {
            return Ok(link);
        }
        let link = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| {
                ReplicaError::Unreachable(format!(
                    "no connection to {} within {CONNECT_TIMEOUT:?}",
                    self.addr
                ))
            })??;
        if let Ok(mut live) = self.live.lock() {
            *live = Some(link.clone());
        }
        Ok(link)
    }

    /// Calls waiting for an answer on the live connection.
    #[cfg(test)]
    pub(super) fn waiting_calls(&self) -> usize {
        self.live_link().map_or(0, |link| link.lock().calls.len())
    }

    /// Whether a connection is open (not known dead).
    pub fn is_connected(&self) -> bool {
        self.live_link().is_some()
    }

    fn live_link(&self) -> Option<Arc<Link>> {
        let live = self.live.lock().ok()?;
        live.as_ref().filter(|link| !link.is_closed()).cloned()
    }

    async fn connect(&self) -> Result<Arc<Link>, ReplicaError> {
        let unreachable =
            |error: std::io::Error| ReplicaError::Unreachable(format!("{}: {error}", self.addr));
        let mut io = match &self.settings.dial {
            Some(dial) => dial(self.addr).await.map_err(unreachable)?,
            None => {
                let stream = tokio::net::TcpStream::connect(self.addr)
                    .await
                    .map_err(unreachable)?;
                stream.set_nodelay(true).map_err(unreachable)?;
                Connection::tcp(stream)
            }
        };
        let mut hello = [0; MAGIC.len() + 1];
        hello[..MAGIC.len()].copy_from_slice(MAGIC);
        hello[MAGIC.len()] = VERSION;
        io.write_all(&hello).await.map_err(unreachable)?;
        let io = match &self.settings.tls {
            None => io,
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let stream = connector.connect(name.clone(), io).await.map_err(|error| {
                    ReplicaError::Unreachable(format!("internode TLS with {}: {error}", self.addr))
                })?;
                Connection::new(stream)
            }
        };
        Ok(Link::start(io, self.addr, &self.settings))
    }
}

/// Forgets a registered call when dropped.
struct Registered<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.link.forget(self.id);
    }
}

/// What a waiting call receives: its answer frame, or why the connection
/// ended.
type Waiter = oneshot::Sender<Result<Frame, ReplicaError>>;

/// Calls waiting for answers on one connection.
#[derive(Default)]
struct Waiting {
    /// Why the connection ended; new calls fail with it.
    closed: Option<ReplicaError>,
    calls: HashMap<u64, Waiter>,
}

/// One connection to a peer.
struct Link {
    queue: mpsc::Sender<Outgoing>,
    waiting: Mutex<Waiting>,
    next_id: AtomicU64,
    /// Reads that returned data: a timed-out call looks at it to tell a
    /// slow peer from a silent one.
    received: AtomicU64,
    /// When the link was opened, and when data last arrived on it
    /// (microseconds after `born`), for the keepalive.
    born: Instant,
    heard_at: AtomicU64,
    /// Stops the reader when the link closes.
    stop: CancellationToken,
}

impl Link {
    fn start(io: Connection, addr: SocketAddr, settings: &ClientSettings) -> Arc<Link> {
        let (reader, writer) = tokio::io::split(io);
        let (queue, outgoing) = mpsc::channel(QUEUE_FRAMES);
        let link = Arc::new(Link {
            queue,
            waiting: Mutex::default(),
            // Id 0 is the connection's own (errors about all of it).
            next_id: AtomicU64::new(1),
            received: AtomicU64::new(0),
            born: Instant::now(),
            heard_at: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        let deadline = settings.deadline;
        let writing = Arc::downgrade(&link);
        let tasks = &settings.tasks;
        tasks.spawn(LINK_WRITERS, async move {
            if let Err(error) = write_frames(outgoing, writer, deadline).await
                && let Some(link) = writing.upgrade()
            {
                link.close(ReplicaError::Unreachable(format!(
                    "internode connection lost: {error}"
                )));
            }
        });
        // The tasks hold the link weakly: when no caller and no client
        // holds it any more, its queue closes, the writer ends, and
        // `stop` (cancelled on drop) ends the reader.
        tasks.spawn(
            LINK_READERS,
            read_answers(
                reader,
                Arc::downgrade(&link),
                link.stop.clone(),
                settings.max_message,
            ),
        );
        let (interval, patience) = (settings.keepalive, deadline.min(settings.keepalive * 2));
        tasks.spawn(
            LINK_KEEPALIVES,
            keep_alive(Arc::downgrade(&link), addr, interval, patience),
        );
        link
    }

    fn register(&self, id: u64, done: Waiter) -> Result<(), ReplicaError> {
        let mut waiting = self.lock();
        if let Some(why) = &waiting.closed {
            return Err(why.clone());
        }
        waiting.calls.insert(id, done);
        Ok(())
    }

    fn forget(&self, id: u64) {
        self.lock().calls.remove(&id);
    }

    fn answer(&self, frame: Frame) {
        if frame.id == 0 {
            return self.close(answer_error(&frame.body));
        }
        if let Some(waiter) = self.lock().calls.remove(&frame.id) {
            let _ = waiter.send(Ok(frame));
        }
    }

    /// Fails every waiting call with `why`, and every later one.
    fn close(&self, why: ReplicaError) {
        let calls = {
            let mut waiting = self.lock();
            if waiting.closed.is_none() {
                waiting.closed = Some(why.clone());
            }
            std::mem::take(&mut waiting.calls)
        };
        for (_, waiter) in calls {
            let _ = waiter.send(Err(why.clone()));
        }
        self.stop.cancel();
    }

    /// Notes that data arrived.
    fn heard(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(self.born.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.heard_at.store(micros, Ordering::Relaxed);
    }

    /// When data last arrived (or the link opened).
    fn last_heard(&self) -> Instant {
        self.born + Duration::from_micros(self.heard_at.load(Ordering::Relaxed))
    }

    fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    fn closed_error(&self) -> ReplicaError {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(|| ReplicaError::Unreachable("internode connection closed".into()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Nothing panics while holding the lock; a poisoned one still
        // holds consistent data.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Pings `link` whenever nothing arrived on it for `interval`, and closes
/// it when a ping goes unanswered for `patience`.
async fn keep_alive(
    link: std::sync::Weak<Link>,
    addr: SocketAddr,
    interval: Duration,
    patience: Duration,
) {
    let Some(stop) = link.upgrade().map(|link| link.stop.clone()) else {
        return;
    };
    loop {
        let Some(heard) = link.upgrade().map(|link| link.last_heard()) else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(heard + interval) => {}
            () = stop.cancelled() => return,
        }
        let Some(link) = link.upgrade() else {
            return;
        };
        if link.last_heard() > heard {
            continue;
        }
        let received = link.received.load(Ordering::Relaxed);
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        if link.register(id, done).is_err() {
            return;
        }
        let ping = Outgoing::new(id, Body::Ping);
        if link.queue.try_send(ping).is_err() {
            // A full queue is not an idle link.
            link.forget(id);
            tokio::time::sleep(interval).await;
            continue;
        }
        match tokio::time::timeout(patience, answer).await {
            Ok(Ok(Ok(_))) => {}
            Ok(_) => return,
            Err(_) => {
                link.forget(id);
                if link.received.load(Ordering::Relaxed) == received {
                    link.close(ReplicaError::Unreachable(format!(
                        "{addr} did not answer a keepalive ping within {patience:?}"
                    )));
                    return;
                }
            }
        }
    }
}

/// The reader task of a link.
async fn read_answers(
    mut reader: tokio::io::ReadHalf<Connection>,
    link: std::sync::Weak<Link>,
    stop: CancellationToken,
    max_message: usize,
) {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let why = loop {
        if buffer.capacity() - buffer.len() < READ_CHUNK / 4 {
            buffer.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            read = reader.read_buf(&mut buffer) => read,
            () = stop.cancelled() => return,
        };
        match read {
            Ok(0) => break ReplicaError::Unreachable("the peer closed the connection".into()),
            Err(error) => {
                break ReplicaError::Unreachable(format!("internode connection lost: {error}"));
            }
            Ok(_) => {}
        }
        let Some(link) = link.upgrade() else {
            return;
        };
        link.heard();
        loop {
            match frame::decode(&mut buffer, max_message) {
                Ok(Some(frame)) => link.answer(frame),
                Ok(None) => break,
                Err(error) => {
                    link.close(ReplicaError::Failed(format!("the peer sent {error}")));
                    return;
                }
            }
        }
    };
    if let Some(link) = link.upgrade() {
        link.close(why);
    }
}

/// The error an error frame carries, as the coordinator counts it.
fn answer_error(body: &[u8]) -> ReplicaError {
    match pbi::FrameError::decode(body) {
        Ok(error) => crate::rpc::status::replica_error(&tonic::Status::new(
            tonic::Code::from_i32(error.code),
            error.message,
        )),
        Err(error) => ReplicaError::Failed(format!("malformed error frame: {error}")),
    }
}
