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

use bytes::Bytes;
use chitchat::transport::{Transport, UdpTransport};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpConnectInfo;

/// A byte stream a connection runs over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One accepted or dialled connection.
pub struct Connection {
    io: Box<dyn Io>,
    /// Bytes already read from `io` that reads return first (what the
    /// peer port looked at to tell the protocols apart).
    unread: Bytes,
    /// Its addresses, when it is TCP. tonic looks for this type to find a
    /// TLS caller's certificates (`Request::peer_certs`).
    addresses: TcpConnectInfo,
}

impl Connection {
    pub fn new(io: impl Io) -> Self {
        Self {
            io: Box::new(io),
            unread: Bytes::new(),
            addresses: TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            },
        }
    }

    /// An accepted or dialled TCP stream.
    pub fn tcp(stream: TcpStream) -> Self {
        let addresses = TcpConnectInfo {
            local_addr: stream.local_addr().ok(),
            remote_addr: stream.peer_addr().ok(),
        };
        Self {
            addresses,
            ..Self::new(stream)
        }
    }

    /// This connection, with `bytes` given back: the next reads return
    /// them before anything else.
    pub fn unread(mut self, bytes: Bytes) -> Self {
        self.unread = bytes;
        self
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
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
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
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.addresses.clone()
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

/// Serves `router` on `listener` until `signal` completes. Accepted TCP
/// connections have Nagle's algorithm off: small gRPC frames must not wait
/// for the peer's delayed ACK (a 40 ms stall per exchange).
pub async fn serve(
    router: tonic::transport::server::Router,
    listener: Listener,
    signal: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    match listener {
        Listener::Tcp(tcp) => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(tcp).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
        Listener::Custom(incoming) => router.serve_with_incoming_shutdown(incoming, signal).await,
    }
}
