//! The node's network, over turmoil's simulated TCP and UDP: listeners
//! and a dialer for the gRPC services, and a chitchat transport for gossip.
//!
//! chitchat keeps its wire encoding private, so gossip messages travel
//! beside the simulated network: a datagram carries only a ticket
//! number, and the receiver collects the message left under it at the
//! [`PostOffice`]. The datagram itself is what turmoil delays, drops or
//! partitions, so gossip sees every network fault.
//!
//! Sends are held until the socket next waits for a datagram, then go out
//! sorted, with exact duplicates dropped: chitchat picks the peers of a
//! round with an unseeded RNG, and sorting makes the order (and so the
//! whole run) independent of it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};

use crate::rpc::net::{Connection, Dial, Listener, Network};

/// Gossip messages in transit, by ticket; one per run.
#[derive(Default)]
pub struct PostOffice {
    next: u64,
    held: HashMap<u64, ChitchatEnvelope>,
}

pub type Post = Arc<Mutex<PostOffice>>;

impl PostOffice {
    fn leave(post: &Post, envelope: ChitchatEnvelope) -> Option<u64> {
        let mut office = post.lock().ok()?;
        office.next += 1;
        let ticket = office.next;
        office.held.insert(ticket, envelope);
        Some(ticket)
    }

    fn collect(post: &Post, ticket: u64) -> Option<ChitchatEnvelope> {
        post.lock().ok()?.held.remove(&ticket)
    }
}

/// turmoil binds only the unspecified address (every host has one IP).
fn unspecified(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], addr.port()))
}

/// Accepts simulated TCP connections on `addr`'s port.
pub async fn listen(addr: SocketAddr) -> anyhow::Result<Listener> {
    let listener = turmoil::net::TcpListener::bind(unspecified(addr))
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener
            .accept()
            .await
            .map(|(stream, _)| Connection::new(stream));
        Some((accepted, listener))
    });
    Ok(Listener::Custom(Box::pin(incoming)))
}

/// Simulated TCP to peers, and simulated UDP for gossip.
pub fn network(post: Post) -> Network {
    let dial: Dial = Arc::new(|addr| {
        Box::pin(async move {
            turmoil::net::TcpStream::connect(addr)
                .await
                .map(Connection::new)
        })
    });
    Network {
        dial: Some(dial),
        gossip: Arc::new(Udp(post)),
    }
}

struct Udp(Post);

#[async_trait::async_trait]
impl Transport for Udp {
    async fn open(&self, listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = turmoil::net::UdpSocket::bind(unspecified(listen))
            .await
            .with_context(|| format!("cannot bind gossip to {listen}"))?;
        Ok(Box::new(UdpSocket {
            socket,
            post: self.0.clone(),
            outbox: Vec::new(),
        }))
    }
}

struct UdpSocket {
    socket: turmoil::net::UdpSocket,
    post: Post,
    /// Sends not yet handed to the network (see the module docs), with
    /// their rendering, which orders them.
    outbox: Vec<(SocketAddr, String, ChitchatEnvelope)>,
}

impl UdpSocket {
    /// Sends what is held; synchronous, so a cancelled `recv` loses
    /// nothing.
    fn flush(&mut self) {
        let mut outbox = std::mem::take(&mut self.outbox);
        outbox.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        outbox.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        for (to, _, envelope) in outbox {
            let Some(ticket) = PostOffice::leave(&self.post, envelope) else {
                continue;
            };
            // Datagrams may be lost: a failed send is a lost one.
            let _ = self.socket.try_send_to(&ticket.to_be_bytes(), to);
        }
    }
}

#[async_trait::async_trait]
impl Socket for UdpSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let rendered = format!("{envelope:?}");
        let num_bytes_sent = rendered.len();
        self.outbox.push((to, rendered, envelope));
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.flush();
        let mut buf = [0u8; 8];
        loop {
            let (len, from_addr) = self.socket.recv_from(&mut buf).await?;
            let ticket = u64::from_be_bytes(buf);
            if len != buf.len() {
                continue;
            }
            if let Some(envelope) = PostOffice::collect(&self.post, ticket) {
                return Ok(RecvOutcome {
                    from_addr,
                    envelope,
                    num_bytes_received: len,
                });
            }
        }
    }
}
