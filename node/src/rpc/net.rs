//! How a node reaches the network: the sockets its gRPC services accept
//! connections on, how it dials its peers, and the transport gossip runs
//! over. A real node uses TCP and UDP ([`Network::system`]); the
//! simulation hands in its simulated sockets instead, so the same services
//! and clients run inside it unchanged.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chitchat::transport::{Transport, UdpTransport};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// A byte stream a connection runs over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One accepted or dialled connection.
pub struct Connection {
    io: Box<dyn Io>,
    /// Bytes already read from `io` that reads return first (what the
    /// peer port looked at to tell the protocols apart).
    unread: Bytes,
    /// Who is at the other end; every request of the connection carries
    /// it (as a request extension, from tonic).
    info: ConnectionInfo,
    /// The connection's place under its port's connection cap, given back
    /// when it is dropped.
    _slot: Option<OwnedSemaphorePermit>,
    /// Closes the connection once nothing arrived on it for a while.
    silence: Option<Silence>,
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// Its address, when it is TCP.
    pub remote: Option<SocketAddr>,
    /// The certificates it presented in its TLS handshake, if any.
    pub certs: Option<Arc<[CertificateDer<'static>]>>,
}

/// A read or write that waited longer than `limit` with no byte moving
/// either way fails with `TimedOut`, which closes the connection (a peer
/// that neither sends nor takes what it is sent). The timer is reset
/// lazily: reads and writes only note when bytes last moved, and the
/// timer, when it fires early, is pushed to that moment plus `limit`.
struct Silence {
    limit: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Silence {
    /// For a read or write that is pending: whether the connection has
    /// been silent for the limit (arming the timer to wake this task
    /// when it might be).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let until = self.last + self.limit;
            if Instant::now() >= until {
                return true;
            }
            self.timer.as_mut().reset(until);
        }
        false
    }

    /// What a read or write of a connection with `silence` answers, given
    /// what the socket answered (`polled`): a result notes that bytes
    /// moved; a pending one stays pending until the limit passed, then
    /// fails.
    fn watch<T>(
        silence: &mut Option<Silence>,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let Some(silence) = silence else {
            return polled;
        };
        if polled.is_ready() {
            silence.last = Instant::now();
            return polled;
        }
        if !silence.expired(cx) {
            return Poll::Pending;
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("nothing moved on the connection for {:?}", silence.limit),
        )))
    }
}

impl Connection {
    pub fn new(io: impl Io) -> Self {
        Self {
            io: Box::new(io),
            unread: Bytes::new(),
            info: ConnectionInfo::default(),
            _slot: None,
            silence: None,
        }
    }

    /// An accepted or dialled TCP stream.
    pub fn tcp(stream: TcpStream) -> Self {
        let remote = stream.peer_addr().ok();
        let mut connection = Self::new(stream);
        connection.info.remote = remote;
        connection
    }

    /// This connection, with `bytes` given back: the next reads return
    /// them before anything else.
    pub fn unread(mut self, bytes: Bytes) -> Self {
        self.unread = bytes;
        self
    }

    /// Who is at the other end.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// This connection holding `slot` of its port's cap until it is
    /// dropped, and closed once nothing arrived for `silence`.
    pub fn admitted(mut self, slot: OwnedSemaphorePermit, silence: Duration) -> Self {
        self._slot = Some(slot);
        self.silence = Some(Silence {
            limit: silence,
            last: Instant::now(),
            timer: Box::pin(tokio::time::sleep(silence)),
        });
        self
    }

    /// A TLS session over an admitted connection from `remote`, whose
    /// peer presented `certs`. The connection inside keeps its slot and
    /// its silence limit.
    pub fn tls(
        session: impl Io,
        remote: Option<SocketAddr>,
        certs: Option<Vec<CertificateDer<'static>>>,
    ) -> Self {
        let mut connection = Self::new(session);
        connection.info = ConnectionInfo {
            remote,
            certs: certs.map(Arc::from),
        };
        connection
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            let given = self.unread.split_to(n);
            buf.put_slice(&given);
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        let polled = Pin::new(&mut *this.io).poll_read(cx, buf);
        Silence::watch(&mut this.silence, cx, polled)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut *this.io).poll_write(cx, buf);
        Silence::watch(&mut this.silence, cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut *this.io).poll_write_vectored(cx, bufs);
        Silence::watch(&mut this.silence, cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

/// Connections as they are accepted.
pub type Incoming = BoxStream<'static, io::Result<Connection>>;

/// Where a service accepts connections.
pub enum Listener {
    Tcp(TcpListener),
    /// Connections from elsewhere (the simulation's network).
    Custom(Incoming),
}

impl Listener {
    /// Binds a TCP listener; a port in use is a clear error.
    pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<Listener> {
        use anyhow::Context as _;
        TcpListener::bind(addr)
            .await
            .map(Listener::Tcp)
            .with_context(|| format!("cannot listen for {what} on {addr}"))
    }

    /// The next connection; `None` when no more will come. Accepted TCP
    /// connections have Nagle's algorithm off (see [`serve`]).
    pub async fn accept(&mut self) -> Option<io::Result<Connection>> {
        match self {
            Listener::Tcp(tcp) => Some(tcp.accept().await.map(|(stream, _)| {
                // A socket that refuses the option still works.
                let _ = stream.set_nodelay(true);
                Connection::tcp(stream)
            })),
            Listener::Custom(incoming) => incoming.next().await,
        }
    }
}

/// Opens a connection to a peer's internode port.
pub type Dial = Arc<dyn Fn(SocketAddr) -> BoxFuture<'static, io::Result<Connection>> + Send + Sync>;

/// The network a node uses.
#[derive(Clone)]
pub struct Network {
    /// How to dial peers; `None`: TCP.
    pub dial: Option<Dial>,
    /// What gossip runs over.
    pub gossip: Arc<dyn Transport>,
}

impl Network {
    /// TCP and UDP sockets.
    pub fn system() -> Self {
        Self {
            dial: None,
            gossip: Arc::new(UdpTransport),
        }
    }
}

/// Serves `router` on the connections of `incoming` (see
/// `rpc::accept::incoming`) until `signal` completes.
pub async fn serve(
    router: tonic::transport::server::Router,
    incoming: Incoming,
    signal: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    router.serve_with_incoming_shutdown(incoming, signal).await
}
