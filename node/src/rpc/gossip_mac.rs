//! Authenticated gossip: every datagram carries a MAC keyed by the cluster
//! secret, and a datagram without a valid one is dropped unread.
//!
//! Gossip is plain UDP: without this, a stranger who can send one datagram
//! to a gossip port can announce a victim's node id with a higher
//! generation and take over its ring position, keep a dead node "alive",
//! or mark a live one LEFT. With `gossip_secret` set, each datagram is
//!
//! ```text
//! flags (1 byte: bit 0 = body is zstd-compressed) | body | HMAC-SHA256(secret, flags | body) (32 bytes)
//! ```
//!
//! where the body is chitchat's own encoding of the message. chitchat keeps
//! that encoding to itself, so [`AuthenticatedUdp`] lets chitchat's UDP
//! socket do it over loopback: the message is sent to a private "tap"
//! socket of this node, whose datagram is the encoding; the MAC is added
//! and the result sent to the peer. Received datagrams are checked, then
//! handed to that chitchat socket over loopback to decode. Only datagrams
//! from the node's own loopback sockets are taken there.
//!
//! A body too large to carry a MAC within UDP's 65,507 bytes is
//! compressed; one still too large is dropped and counted (chitchat's
//! state of a few hundred nodes would be needed for that).
//!
//! CAVEATS: the MAC authenticates, it does not encrypt: gossip (addresses,
//! tokens, status) can still be read on the wire. It binds neither the
//! sender nor the time: a recorded datagram can be replayed (chitchat
//! ignores state and heartbeats older than what it has, so a replay changes
//! nothing once newer gossip has arrived), and one replayed with a forged
//! source address makes the node answer that address, as plain UDP gossip
//! does.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::metrics::GOSSIP_DROPPED;

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// Bytes of the MAC.
const TAG_LEN: usize = 32;
/// The flags byte: the body is zstd-compressed.
const COMPRESSED: u8 = 1;
/// How long a hand-off over loopback may take before it counts as lost
/// (a hand-off is a local datagram, ready at once).
const HANDOFF: Duration = Duration::from_secs(1);
/// Shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The cluster secret gossip datagrams are authenticated with.
#[derive(Clone)]
pub struct GossipKey(HmacSha256);

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey(..)")
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// No MAC, or a wrong one.
    Mac,
    /// A valid MAC over a body that cannot be read.
    Malformed,
    /// Too large to send with its MAC.
    Oversize,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::Mac => "mac",
            Dropped::Malformed => "malformed",
            Dropped::Oversize => "oversize",
        }
    }

    fn count(self) {
        metrics::counter!(GOSSIP_DROPPED, "reason" => self.label()).increment(1);
    }
}

impl GossipKey {
    /// A key from the secret; refuses one shorter than [`MIN_SECRET_LEN`].
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the gossip secret is {} bytes; at least {MIN_SECRET_LEN} are needed",
                secret.len()
            ));
        }
        <HmacSha256 as Mac>::new_from_slice(secret)
            .map(Self)
            .map_err(|error| format!("unusable gossip secret: {error}"))
    }

    fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }

    /// The datagram carrying `body` (chitchat's encoding) and its MAC.
    pub fn seal(&self, body: &[u8]) -> Result<Vec<u8>, Dropped> {
        let (flags, body) = if 1 + body.len() + TAG_LEN <= MAX_DATAGRAM {
            (0, std::borrow::Cow::Borrowed(body))
        } else {
            let packed = zstd::bulk::compress(body, 3).map_err(|_| Dropped::Oversize)?;
            (COMPRESSED, std::borrow::Cow::Owned(packed))
        };
        if 1 + body.len() + TAG_LEN > MAX_DATAGRAM {
            return Err(Dropped::Oversize);
        }
        let mut datagram = Vec::with_capacity(1 + body.len() + TAG_LEN);
        datagram.push(flags);
        datagram.extend_from_slice(&body);
        let mut mac = self.mac();
        mac.update(&datagram);
        datagram.extend_from_slice(&mac.finalize().into_bytes());
        Ok(datagram)
    }

    /// The body of a datagram whose MAC is valid.
    pub fn open(&self, datagram: &[u8]) -> Result<Vec<u8>, Dropped> {
        if datagram.len() < 1 + TAG_LEN {
            return Err(Dropped::Mac);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        let mut mac = self.mac();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| Dropped::Mac)?;
        let (flags, body) = (signed[0], &signed[1..]);
        match flags {
            0 => Ok(body.to_vec()),
            COMPRESSED => {
                zstd::bulk::decompress(body, MAX_DATAGRAM).map_err(|_| Dropped::Malformed)
            }
            _ => Err(Dropped::Malformed),
        }
    }
}

/// Gossip over UDP with every datagram authenticated by a [`GossipKey`].
pub struct AuthenticatedUdp {
    key: GossipKey,
}

impl AuthenticatedUdp {
    pub fn new(key: GossipKey) -> Self {
        Self { key }
    }
}

fn loopback(like: SocketAddr) -> SocketAddr {
    if like.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    }
}

#[async_trait]
impl Transport for AuthenticatedUdp {
    async fn open(&self, listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let outer = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("failed to bind to {listen}/UDP for gossip"))?;
        let codec = UdpSocket::open(loopback(listen)).await?;
        let tap = tokio::net::UdpSocket::bind(loopback(listen))
            .await
            .context("failed to bind a loopback socket for gossip")?;
        let codec_addr = codec.local_addr()?;
        let tap_addr = tap.local_addr()?;
        Ok(Box::new(AuthenticatedSocket {
            key: self.key.clone(),
            outer,
            codec,
            codec_addr,
            tap,
            tap_addr,
            buf: vec![0; MAX_DATAGRAM + 1],
            handed_off: None,
        }))
    }
}

/// One node's gossip socket (see the module docs).
struct AuthenticatedSocket {
    key: GossipKey,
    /// The socket peers reach.
    outer: tokio::net::UdpSocket,
    /// chitchat's socket, on loopback: encodes and decodes.
    codec: UdpSocket,
    codec_addr: SocketAddr,
    /// Receives chitchat's encoding of what is sent.
    tap: tokio::net::UdpSocket,
    tap_addr: SocketAddr,
    buf: Vec<u8>,
    /// The sender of a datagram handed to `codec` and not read back yet,
    /// and until when to wait for it.
    handed_off: Option<(SocketAddr, tokio::time::Instant)>,
}

/// Errors a UDP socket returns for an earlier datagram (an ICMP
/// unreachable); the socket works on.
fn transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

impl AuthenticatedSocket {
    /// chitchat's encoding of `envelope`.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        // A send cancelled half-way may have left an encoding behind.
        while self.tap.try_recv_from(&mut self.buf).is_ok() {}
        self.codec.send(self.tap_addr, envelope).await?;
        loop {
            let (len, from) = tokio::time::timeout(HANDOFF, self.tap.recv_from(&mut self.buf))
                .await
                .context("gossip encoding was not handed back over loopback")??;
            if from == self.codec_addr {
                return Ok(self.buf[..len].to_vec());
            }
        }
    }
}

#[async_trait]
impl Socket for AuthenticatedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.outer
            .local_addr()
            .context("failed to get UDP socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let body = self.encode(envelope).await?;
        let datagram = match self.key.seal(&body) {
            Ok(datagram) => datagram,
            Err(reason) => {
                reason.count();
                tracing::warn!(bytes = body.len(), %to, "gossip message too large to send");
                return Ok(SendOutcome { num_bytes_sent: 0 });
            }
        };
        match self.outer.send_to(&datagram, to).await {
            Ok(sent) => Ok(SendOutcome {
                num_bytes_sent: sent,
            }),
            Err(error) if transient(&error) => Ok(SendOutcome { num_bytes_sent: 0 }),
            Err(error) => Err(error).context("failed to send a gossip message"),
        }
    }

    /// Cancel-safe: a datagram handed to the decoder is read back by the
    /// next call if this one is dropped meanwhile.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if let Some((from, deadline)) = self.handed_off {
                // The deadline is kept across calls: chitchat cancels this
                // call at every gossip tick, and a datagram chitchat cannot
                // decode must not keep the socket waiting for ever.
                let decoded = tokio::time::timeout_at(deadline, self.codec.recv()).await;
                match decoded {
                    Ok(Ok(outcome)) if outcome.from_addr == self.tap_addr => {
                        self.handed_off = None;
                        return Ok(RecvOutcome {
                            from_addr: from,
                            ..outcome
                        });
                    }
                    // Something else on loopback reached the decoder: drop
                    // it and wait on for the datagram handed off.
                    Ok(Ok(_)) => Dropped::Mac.count(),
                    Ok(Err(error)) => return Err(error),
                    // chitchat could not decode it (and logged why).
                    Err(_) => {
                        self.handed_off = None;
                        Dropped::Malformed.count();
                    }
                }
                continue;
            }
            let (len, from) = match self.outer.recv_from(&mut self.buf).await {
                Ok(received) => received,
                Err(error) if transient(&error) => continue,
                Err(error) => return Err(error).context("fatal UDP recv error"),
            };
            match self.key.open(&self.buf[..len]) {
                Ok(body) => {
                    let deadline = tokio::time::Instant::now() + HANDOFF;
                    self.handed_off = Some((from, deadline));
                    self.tap.send_to(&body, self.codec_addr).await?;
                }
                Err(reason) => {
                    reason.count();
                    tracing::debug!(%from, reason = reason.label(), "gossip datagram dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(secret: &str) -> GossipKey {
        GossipKey::new(secret.as_bytes()).expect("key")
    }

    #[test]
    fn a_sealed_datagram_opens_only_with_the_same_key_and_unchanged() {
        let k = key("0123456789abcdef");
        let body = b"chitchat message".to_vec();
        let sealed = k.seal(&body).expect("sealed");
        assert_eq!(k.open(&sealed).expect("opens"), body);
        assert_eq!(
            key("0123456789abcdeX").open(&sealed),
            Err(Dropped::Mac),
            "another key"
        );
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert_eq!(k.open(&flipped), Err(Dropped::Mac), "a changed body");
        assert_eq!(k.open(&body), Err(Dropped::Mac), "no MAC at all");
        assert_eq!(k.open(&[]), Err(Dropped::Mac));
        assert!(GossipKey::new(b"short").is_err());
    }

    #[test]
    fn bodies_too_large_for_a_mac_are_compressed_and_incompressible_ones_dropped() {
        let k = key("0123456789abcdef");
        let big = vec![b'a'; MAX_DATAGRAM - 10];
        let sealed = k.seal(&big).expect("compressed");
        assert!(sealed.len() < 1000 && sealed[0] == COMPRESSED);
        assert_eq!(k.open(&sealed).expect("opens"), big);
        let mut noise = vec![0u8; MAX_DATAGRAM];
        let mut x: u32 = 1;
        for byte in &mut noise {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *byte = x as u8;
        }
        assert_eq!(k.seal(&noise), Err(Dropped::Oversize));
    }

    proptest! {
        #[test]
        fn opening_never_panics(datagram in proptest::collection::vec(any::<u8>(), 0..200)) {
            let k = key("0123456789abcdef");
            let _ = k.open(&datagram);
        }

        #[test]
        fn every_body_round_trips(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let k = key("0123456789abcdef");
            prop_assert_eq!(k.open(&k.seal(&body).expect("sealed")).expect("opens"), body);
        }
    }
}
