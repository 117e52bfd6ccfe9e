//! The RESP front door: the Redis protocol on `listen_resp`, so
//! `redis-cli`, `redis-benchmark` and Redis client libraries talk to
//! ringkv unchanged.
//!
//! Every node coordinates, exactly as on the gRPC API: a command becomes
//! coordinator reads and writes at the connection's consistency levels
//! (QUORUM and QUORUM until `RINGKV.CONSISTENCY` changes them), and a
//! coordinator error becomes an error reply whose first word is its kind
//! (`UNAVAILABLE`, `TIMEOUT`, `FAILED`, `ERR`). The port shares the client
//! API's bounds: each key command takes a permit of the node's
//! `max_requests_in_flight` (`OVERLOADED` when none is left), and with
//! `client_tls` it speaks TLS and with `authentication` it wants `AUTH`.
//!
//! - [`parse`]: commands off the wire, bounded before they are buffered;
//! - [`reply`]: replies in RESP2 or RESP3;
//! - [`table`]: every command's name, arity, flags and key positions;
//! - [`command`]: a command checked against the table (its name and
//!   arity), and what the connection does with it;
//! - [`dispatch`]: from a command to its work, under the connection's
//!   credentials and the node's in-flight limit;
//! - [`requests`]: reads and queries of the coordinator, and its errors
//!   as replies;
//! - [`keys`]: the key commands over the coordinator;
//! - [`hashes`]: the hash commands, on partitions of rows;
//! - [`cursors`]: the node's unfinished `HSCAN`s, under numeric cursors;
//! - [`glob`]: `MATCH` patterns;
//! - [`session_commands`]: `HELLO`, `AUTH`, `CLIENT`,
//!   `RINGKV.CONSISTENCY`;
//! - [`info`]: `INFO`, `COMMAND`, `CONFIG GET`, `HELLO`'s answer;
//! - [`session`]: what a connection remembers between commands;
//! - [`pipeline`]: the commands of a connection in flight, in reply order;
//! - [`connection`]: one connection and its loop.
//!
//! What differs from Redis (see the README): consistency levels; no
//! command that needs an atomic read-modify-write until ringkv has
//! compare-and-set; no cross-key atomicity; one
//! database; strings and hashes only, types not checked on writes.

mod command;
mod connection;
mod cursors;
mod dispatch;
mod glob;
mod hashes;
mod info;
mod keys;
pub mod parse;
mod pipeline;
pub mod reply;
mod requests;
mod session;
mod session_commands;
mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::coordinator::{Coordinator, RequestMetrics};
use crate::membership::ViewHandle;
use crate::rpc::limit::InFlightLimit;
pub use parse::ParseLimits;

/// Pause after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Settings of the RESP port.
#[derive(Debug, Clone)]
pub struct RespSettings {
    pub limits: ParseLimits,
    /// Connections at once; past it a new one is told so and closed.
    pub max_clients: usize,
    pub port: u16,
    pub node_name: String,
    pub cluster_name: String,
    pub replication_factor: u32,
    /// Longest a client may take over its TLS handshake.
    pub handshake_timeout: Duration,
}

/// Counters `INFO` shows.
#[derive(Default)]
struct Stats {
    connections_received: AtomicU64,
    connected: AtomicU64,
    rejected_connections: AtomicU64,
    commands: AtomicU64,
    error_replies: AtomicU64,
}

/// What every connection of the port shares.
pub struct Shared {
    coordinator: Arc<Coordinator>,
    auth: Option<Arc<Authenticator>>,
    limit: InFlightLimit,
    metrics: RequestMetrics,
    view: ViewHandle,
    settings: RespSettings,
    stats: Stats,
    next_id: AtomicU64,
    started: Instant,
    /// Unfinished `HSCAN`s.
    cursors: cursors::Cursors,
}

/// The RESP port of a node.
pub struct RespServer {
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
}

impl RespServer {
    /// `limit` is the client API's (shared with gRPC); `tls`: with
    /// `client_tls`. Make it after the metrics recorder is installed.
    pub fn new(
        coordinator: Arc<Coordinator>,
        auth: Option<Arc<Authenticator>>,
        limit: InFlightLimit,
        view: ViewHandle,
        settings: RespSettings,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                coordinator,
                auth,
                limit,
                metrics: RequestMetrics::new(),
                view,
                settings,
                stats: Stats::default(),
                next_id: AtomicU64::new(1),
                started: Instant::now(),
                cursors: cursors::Cursors::default(),
            }),
            tls: tls.map(TlsAcceptor::from),
        }
    }

    /// Accepts connections on `listener` until `stop`, then closes the
    /// listener and waits for the open connections to answer what they
    /// have read and close. Dropping the future (the node's shutdown grace
    /// ran out) aborts the connections still open.
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, tls = self.tls.is_some(), "RESP port serving");
        }
        let mut connections = JoinSet::new();
        let slots = Arc::new(Semaphore::new(self.shared.settings.max_clients.max(1)));
        loop {
            // Reap connections that ended, so the set holds open ones only.
            while connections.try_join_next().is_some() {}
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.cancelled() => break,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a RESP connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let stats = &self.shared.stats;
            stats.connections_received.fetch_add(1, Ordering::Relaxed);
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                connections.spawn(refuse(socket));
                continue;
            };
            let _ = socket.set_nodelay(true);
            let local = socket.local_addr().unwrap_or(peer);
            let shared = self.shared.clone();
            let tls = self.tls.clone();
            let stop = stop.clone();
            let handshake_timeout = self.shared.settings.handshake_timeout;
            connections.spawn(async move {
                let _counted = Connected::new(&shared);
                match tls {
                    None => connection::serve(shared.clone(), socket, peer, local, stop).await,
                    Some(tls) => {
                        let handshake = tokio::select! {
                            done = tokio::time::timeout(handshake_timeout, tls.accept(socket)) => Some(done),
                            _ = stop.cancelled() => None,
                        };
                        match handshake {
                            Some(Ok(Ok(stream))) => {
                                connection::serve(shared.clone(), stream, peer, local, stop).await
                            }
                            Some(Ok(Err(error))) => {
                                tracing::debug!(%peer, %error, "RESP TLS handshake failed");
                            }
                            Some(Err(_)) => tracing::debug!(%peer, "RESP TLS handshake timed out"),
                            None => {}
                        }
                    }
                }
                drop(slot);
            });
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }
}

/// Counts an open connection for `INFO` while it lives, however its task
/// ends.
struct Connected(Arc<Shared>);

impl Connected {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.stats.connected.fetch_add(1, Ordering::Relaxed);
        Self(shared.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells a client over `max_resp_clients` so, as Redis does, and closes.
async fn refuse(mut socket: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.write_all(b"-ERR max number of clients reached\r\n"),
    )
    .await;
}
