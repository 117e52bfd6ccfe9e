//! What a port admits: a bounded number of connections, each closed when
//! it falls silent, and TLS handshakes that must finish in time.
//!
//! Every TCP port of the node (client gRPC, internode, HTTP) accepts
//! through an [`Admission`]:
//! 1. a new connection takes a slot of the port's cap
//!    (`max_client_connections`, `max_peer_connections`,
//!    `max_http_connections`); at the cap it is closed at once and counted
//!    in `ringkv_connections_refused_total{port}`, so a stranger holding
//!    connections costs the node a bounded number of file descriptors and
//!    never more;
//! 2. a connection on which nothing arrives for `connection_idle_timeout_ms`
//!    is closed (its reads fail); the gRPC servers ping their clients well
//!    within that time, so a live client always has something to send
//!    (HTTP/2 PING acknowledgements), and only a dead or stalled one falls
//!    silent;
//! 3. with TLS, the handshake must finish within `tls_handshake_timeout_ms`
//!    or the connection is closed; handshakes run beside the accept loop,
//!    so a slow one delays no other.
//!
//! The RESP port has its own cap (`resp_max_clients`, answered as Redis
//! does) and the same handshake bound.
//!
//! CAVEATS: the caps are per port, not per source address: a stranger who
//! holds every slot of the client port keeps new honest connections out
//! (connections already open keep being served) until its connections
//! fall silent or the operator firewalls it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::net::{Connection, Incoming, Listener};
use crate::metrics::CONNECTIONS_REFUSED;
use crate::workers::Workers;

/// Pause after a failed accept (out of file descriptors, say), so the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Admitted connections waiting for the server to take them.
const BACKLOG: usize = 128;

/// The bounds of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// A connection on which nothing arrives for this long is closed.
    pub silence: Duration,
    /// Longest TLS handshake.
    pub handshake: Duration,
}

/// The connection cap and timeouts of one port.
#[derive(Clone)]
pub struct Admission {
    port: &'static str,
    slots: Arc<Semaphore>,
    limits: PortLimits,
    refused: metrics::Counter,
}

impl Admission {
    /// Admission to `port` (`client`, `internode`, `http`), for the
    /// metric.
    pub fn new(port: &'static str, limits: PortLimits) -> Self {
        let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            port,
            slots: Arc::new(Semaphore::new(max)),
            limits,
            refused: metrics::counter!(CONNECTIONS_REFUSED, "port" => port),
        }
    }

    /// The port admitted to (`client`, `internode`, `http`).
    pub fn port(&self) -> &'static str {
        self.port
    }

    /// Step 1 and 2: `connection` with a slot and its silence limit, or
    /// `None` (counted; dropping it closes it) at the cap.
    pub fn admit(&self, connection: Connection) -> Option<Connection> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Some(connection.admitted(slot, self.limits.silence)),
            Err(_) => {
                self.refused.increment(1);
                None
            }
        }
    }

    /// Step 3: the TLS session over `connection`, or `None` when the
    /// handshake fails or takes longer than the limit.
    pub async fn handshake(
        &self,
        connection: Connection,
        tls: Arc<rustls::ServerConfig>,
    ) -> Option<Connection> {
        let remote = connection.info().remote;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        match tokio::time::timeout(self.limits.handshake, acceptor.accept(connection)).await {
            Ok(Ok(session)) => {
                let certs = session
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect());
                Some(Connection::tls(session, remote, certs))
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, ?remote, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(?remote, "TLS handshake did not finish in time");
                None
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.limits.max_connections - self.slots.available_permits()
    }

    /// The limits it applies.
    pub fn limits(&self) -> PortLimits {
        self.limits
    }
}

/// The connections of `listener`, admitted and (with `tls`) handshaken, as
/// a gRPC server takes them, until `stop`. The accept loop and the
/// handshakes run as `tasks` (named after the port's admission).
pub fn incoming(
    mut listener: Listener,
    admission: Admission,
    tls: Option<Arc<rustls::ServerConfig>>,
    (tasks, stop): (&Workers, CancellationToken),
) -> Incoming {
    let (admitted, taken) = mpsc::channel::<io::Result<Connection>>(BACKLOG);
    // With TLS, the handshakes run as tasks of their own name.
    let tls = tls.map(|tls| {
        let handshakes = tasks.worker(format!("{} TLS handshakes", admission.port()));
        (tls, handshakes)
    });
    tasks.spawn(format!("{} accept loop", admission.port()), async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stop.cancelled() => break,
            };
            let connection = match accepted {
                None => break,
                Some(Ok(connection)) => connection,
                Some(Err(error)) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some(connection) = admission.admit(connection) else {
                continue;
            };
            match &tls {
                None => {
                    if admitted.send(Ok(connection)).await.is_err() {
                        break;
                    }
                }
                Some((tls, handshakes)) => {
                    let (admission, tls, admitted) =
                        (admission.clone(), tls.clone(), admitted.clone());
                    let stop = stop.clone();
                    handshakes.spawn(async move {
                        let session = tokio::select! {
                            session = admission.handshake(connection, tls) => session,
                            () = stop.cancelled() => None,
                        };
                        if let Some(session) = session {
                            let _ = admitted.send(Ok(session)).await;
                        }
                    });
                }
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(taken))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(max_connections: usize) -> PortLimits {
        PortLimits {
            max_connections,
            silence: Duration::from_secs(5),
            handshake: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn past_the_cap_connections_are_refused_and_slots_come_back() {
        let admission = Admission::new("client", limits(2));
        let (a, _a) = tokio::io::duplex(64);
        let (b, _b) = tokio::io::duplex(64);
        let (c, _c) = tokio::io::duplex(64);
        let first = admission.admit(Connection::new(a)).expect("first");
        let _second = admission.admit(Connection::new(b)).expect("second");
        assert_eq!(admission.open(), 2);
        assert!(
            admission.admit(Connection::new(c)).is_none(),
            "over the cap"
        );
        drop(first);
        assert_eq!(
            admission.open(),
            1,
            "a closed connection gives its slot back"
        );
    }

    /// Regression (hardening II, item 7): idle connections were kept
    /// forever.
    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_fails_its_read_and_a_talking_one_does_not() {
        let admission = Admission::new("http", limits(4));
        let (server, mut client) = tokio::io::duplex(64);
        let mut connection = admission.admit(Connection::new(server)).expect("admitted");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 8];
            let error = loop {
                match connection.read(&mut buf).await {
                    Ok(0) => break None,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(error) => break Some(error.kind()),
                }
            };
            (got, error)
        });
        // Bytes every 4 s keep it open past the 5 s limit...
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            client.write_all(b"x").await.expect("write");
        }
        let started = tokio::time::Instant::now();
        // ...then silence closes it.
        let (got, error) = reader.await.expect("reader");
        assert_eq!(got, b"xxxx");
        assert_eq!(error, Some(io::ErrorKind::TimedOut));
        assert!(started.elapsed() >= Duration::from_secs(5));
        drop(client);
    }

    /// A peer that sends nothing and takes nothing (an HTTP/1 client that
    /// pipelined requests and never reads the answers) is closed too: the
    /// blocked write fails.
    #[tokio::test(start_paused = true)]
    async fn a_write_no_one_takes_fails_after_the_limit() {
        let admission = Admission::new("http", limits(4));
        let (server, _client) = tokio::io::duplex(16);
        let mut connection = admission.admit(Connection::new(server)).expect("admitted");
        let started = tokio::time::Instant::now();
        let error = loop {
            if let Err(error) = connection.write_all(&[0u8; 64]).await {
                break error;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    /// Regression (hardening II, item 7): a TLS handshake that never
    /// finished was never timed out.
    #[tokio::test(start_paused = true)]
    async fn a_handshake_that_never_finishes_is_given_up() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let admission = Admission::new("client", limits(4));
        let certs = uncertified_config();
        let (server, _client) = tokio::io::duplex(64);
        let connection = admission.admit(Connection::new(server)).expect("admitted");
        let started = tokio::time::Instant::now();
        assert!(admission.handshake(connection, certs).await.is_none());
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert_eq!(admission.open(), 0, "its slot is back");
    }

    /// A server configuration without a certificate: enough for a
    /// handshake that never gets as far as needing one.
    fn uncertified_config() -> Arc<rustls::ServerConfig> {
        #[derive(Debug)]
        struct NoCertificate;
        impl rustls::server::ResolvesServerCert for NoCertificate {
            fn resolve(
                &self,
                _: rustls::server::ClientHello<'_>,
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                None
            }
        }
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCertificate));
        Arc::new(config)
    }
}
