//! [`NodeTransport`]: the coordinator's replica transport on a real node.
//! This node's own replica is served from the local store directly; other
//! replicas over the network:
//! - replica writes, reads and queries over the framed protocol (see
//!   [`framed`](super::framed)) to peers that gossip they serve it, unless
//!   `internode_protocol = "grpc"`;
//! - everything else, and every call to older peers, over gRPC: one lazily
//!   connected channel per peer address (channels reconnect by themselves
//!   when a peer comes back).
//!
//! Every request carries a deadline (`internode_timeout_ms`), and a
//! connection whose peer stopped answering is closed (keepalive pings on
//! both protocols; for frames also a call that timed out with nothing
//! received on its connection), so a paused or black-holed peer fails requests
//! instead of holding them (and whatever waits on them: hint replay, a
//! repair holding its lock) forever.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use ringkv_proto::internal::v2 as pbi;
use ringkv_proto::internal::v2::peer_client::PeerClient;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::convert;
use super::framed::{ClientSettings, FramedClient, frame};
use super::net::Dial;
use super::replica_metrics::{PeerCalls, ReplicaMetrics};
use super::status::replica_error;
use crate::console::history::{CAPACITY, SampleSource};
use crate::console::sample::Sample;
use crate::identity::NodeId;
use crate::membership::{ClusterView, NodeStatus, ViewHandle};
use crate::peer::{
    BatchRead, Hash, ReadReply, RepairTransport, ReplicaError, ReplicaTransport, StreamPage,
    WriteAck,
};
use crate::ring::{Token, TokenRange};
use crate::storage::{Cell, LocalStore, Mutation, RowsPage, RowsQuery, WriteMode};

/// How long to wait for a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Interval of HTTP/2 keepalive pings on internode connections.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Reaches replicas: the local store, or peers over gRPC.
pub struct NodeTransport {
    local: NodeId,
    store: LocalStore,
    view: ViewHandle,
    /// Deadline of every request to a peer.
    deadline: Duration,
    clients: Mutex<HashMap<SocketAddr, PeerClient<Channel>>>,
    /// How to reach a peer; `None`: TCP.
    dial: Option<Dial>,
    /// Largest answer accepted from a peer.
    max_message: usize,
    /// Mutual TLS to peers; `None`: plaintext.
    tls: Option<ClientTlsConfig>,
    /// How framed calls are made; `None`: gRPC only.
    framed: Option<ClientSettings>,
    framed_clients: Mutex<HashMap<SocketAddr, Arc<FramedClient>>>,
    /// Latency and errors of replica writes and reads, by peer.
    metrics: Arc<ReplicaMetrics>,
    /// The topology (`ClusterView::topology`) the tables above were last
    /// pruned for.
    pruned_for: AtomicU64,
}

/// How one call reaches a peer, and where it is counted.
struct Route {
    via: Via,
    metrics: Option<Arc<PeerCalls>>,
}

enum Via {
    Framed(Arc<FramedClient>),
    Grpc(PeerClient<Channel>),
}

impl NodeTransport {
    pub fn new(local: NodeId, store: LocalStore, view: ViewHandle, deadline: Duration) -> Self {
        Self {
            local,
            store,
            view,
            deadline,
            clients: Mutex::new(HashMap::new()),
            dial: None,
            max_message: usize::MAX,
            tls: None,
            framed: None,
            framed_clients: Mutex::new(HashMap::new()),
            metrics: Arc::new(ReplicaMetrics::default()),
            pruned_for: AtomicU64::new(0),
        }
    }

    /// The latency and error series of replica calls, by peer.
    pub fn replica_metrics(&self) -> Arc<ReplicaMetrics> {
        self.metrics.clone()
    }

    /// Drops the clients and metric handles of peers that are no longer
    /// members (left, removed), and the clients of addresses no member
    /// has any more (a peer that moved), whenever the topology changes: a
    /// cluster with churn would otherwise keep a connection and series for
    /// every node that ever was. (Keyed by the topology's hash, not the
    /// view's address, so that the simulation replays.)
    fn forget_departed(&self, view: &ClusterView) {
        let topology = view.topology();
        if self.pruned_for.load(Ordering::Relaxed) == topology
            || self.pruned_for.swap(topology, Ordering::Relaxed) == topology
        {
            return;
        }
        let member = |id: &NodeId| {
            view.member(id)
                .is_some_and(|m| m.status != NodeStatus::Left)
        };
        let addrs: HashSet<SocketAddr> = view
            .members()
            .filter(|m| member(&m.id))
            .filter_map(|m| m.peer_addr)
            .collect();
        if let Ok(mut clients) = self.clients.lock() {
            clients.retain(|addr, _| addrs.contains(addr));
        }
        if let Ok(mut clients) = self.framed_clients.lock() {
            clients.retain(|addr, _| addrs.contains(addr));
        }
        self.metrics.retain(member);
    }

    /// How many peer clients are held (gRPC, framed).
    #[cfg(test)]
    fn clients_held(&self) -> (usize, usize) {
        let count = |n: Option<usize>| n.unwrap_or(0);
        (
            count(self.clients.lock().ok().map(|c| c.len())),
            count(self.framed_clients.lock().ok().map(|c| c.len())),
        )
    }

    /// Makes replica writes and reads over the framed protocol with
    /// `settings`, to peers that serve it.
    pub fn with_framed(mut self, settings: Option<ClientSettings>) -> Self {
        self.framed = settings;
        self
    }

    /// Calls peers over TLS with `tls` (see `rpc::tls`).
    pub fn with_tls(mut self, tls: Option<ClientTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// Accepts answers of at most `bytes` from peers (what this node's own
    /// internode API would send).
    pub fn with_max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// Dials peers with `dial` (the simulation's network) instead of TCP.
    pub fn with_dial(mut self, dial: Option<Dial>) -> Self {
        self.dial = dial;
        self
    }

    /// How a replica write, read or query reaches `node`.
    fn route(&self, node: NodeId) -> Result<Route, ReplicaError> {
        let view = self.view.load();
        self.forget_departed(&view);
        let member = view.member(&node);
        let addr = member
            .and_then(|m| m.peer_addr)
            .ok_or_else(|| no_address(node))?;
        let framed = member.is_some_and(|m| m.peer_framed.contains(&frame::VERSION));
        let metrics = member.and_then(|m| self.metrics.of(node, &m.name));
        let via = match &self.framed {
            Some(settings) if framed => {
                let mut clients = self
                    .framed_clients
                    .lock()
                    .map_err(|_| ReplicaError::Failed("peer client table poisoned".into()))?;
                let client = clients
                    .entry(addr)
                    .or_insert_with(|| Arc::new(FramedClient::new(addr, settings.clone())));
                Via::Framed(client.clone())
            }
            _ => Via::Grpc(self.grpc_client(addr)?),
        };
        Ok(Route { via, metrics })
    }

    /// The gRPC client of a peer, created on first use.
    fn client(&self, node: NodeId) -> Result<PeerClient<Channel>, ReplicaError> {
        let view = self.view.load();
        self.forget_departed(&view);
        let addr = view
            .member(&node)
            .and_then(|m| m.peer_addr)
            .ok_or_else(|| no_address(node))?;
        self.grpc_client(addr)
    }

    fn grpc_client(&self, addr: SocketAddr) -> Result<PeerClient<Channel>, ReplicaError> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| ReplicaError::Failed("peer client table poisoned".into()))?;
        if let Some(client) = clients.get(&addr) {
            return Ok(client.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| ReplicaError::Unreachable(format!("bad peer address {addr}: {e}")))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| ReplicaError::Failed(format!("internode TLS: {e}")))?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(self.deadline)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(self.deadline.min(KEEPALIVE_INTERVAL * 2))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let channel = match &self.dial {
            None => endpoint.connect_lazy(),
            Some(dial) => {
                let dial = dial.clone();
                endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
                    let connecting = dial(addr);
                    async move { connecting.await.map(hyper_util::rt::TokioIo::new) }
                }))
            }
        };
        let client = PeerClient::new(channel)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message);
        clients.insert(addr, client.clone());
        Ok(client)
    }
}

fn no_address(node: NodeId) -> ReplicaError {
    ReplicaError::Unreachable(format!("no peer address known for {node}"))
}

impl ReplicaTransport for NodeTransport {
    fn write_reporting(
        &self,
        to: NodeId,
        mutation: Mutation,
        mode: WriteMode,
    ) -> BoxFuture<'static, Result<WriteAck, ReplicaError>> {
        if to == self.local {
            let store = self.store.clone();
            return Box::pin(async move {
                store
                    .apply_reporting(&mutation, mode)
                    .await
                    .map(|newer| WriteAck { newer })
                    .map_err(ReplicaError::from)
            });
        }
        let route = self.route(to);
        Box::pin(async move {
            let request = convert::mutation_to_proto(&mutation, mode);
            let route = route?;
            let timer = route.metrics.as_ref().map(|m| m.write.start());
            let result = match route.via {
                Via::Framed(client) => client.write(request).await,
                Via::Grpc(mut client) => client
                    .write(request)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| replica_error(&status)),
            };
            if let Some(timer) = timer {
                timer.finish(&result);
            }
            result.map(|answer| WriteAck {
                newer: answer.newer_micros,
            })
        })
    }

    fn read(
        &self,
        to: NodeId,
        token: Token,
        key: Bytes,
        digest_only: bool,
    ) -> BoxFuture<'static, Result<ReadReply, ReplicaError>> {
        if to == self.local {
            let result = self
                .store
                .read(token, &key)
                .map_err(|e| ReplicaError::Failed(e.to_string()))
                .map(|cell| ReadReply::answer(cell, digest_only));
            return Box::pin(std::future::ready(result));
        }
        let route = self.route(to);
        Box::pin(async move {
            let request = pbi::ReplicaReadRequest { key, digest_only };
            let route = route?;
            let timer = route.metrics.as_ref().map(|m| m.read.start());
            let result = match route.via {
                Via::Framed(client) => client.read(request).await,
                Via::Grpc(mut client) => client
                    .read(request)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| replica_error(&status)),
            };
            if let Some(timer) = timer {
                timer.finish(&result);
            }
            let response = result?;
            Ok(if digest_only {
                ReadReply::Digest(response.digest)
            } else {
                ReadReply::Data(response.cell.map(convert::cell_from_proto))
            })
        })
    }

    fn query(
        &self,
        to: NodeId,
        token: Token,
        query: RowsQuery,
    ) -> BoxFuture<'static, Result<RowsPage, ReplicaError>> {
        if to == self.local {
            let store = self.store.clone();
            return Box::pin(async move {
                store
                    .query(token, query)
                    .await
                    .map_err(|e| ReplicaError::Failed(e.to_string()))
            });
        }
        self.query_remote(to, query)
    }
}

impl NodeTransport {
    /// A replica query, framed where the peer serves frames (as reads:
    /// gRPC costs a small page far more than the page itself).
    fn query_remote(
        &self,
        to: NodeId,
        query: RowsQuery,
    ) -> BoxFuture<'static, Result<RowsPage, ReplicaError>> {
        let route = self.route(to);
        Box::pin(async move {
            let request = pbi::ReplicaQueryRequest {
                key: query.partition,
                start: query.start,
                end: query.end,
                reverse: query.reverse,
                limit: u32::try_from(query.limit.entries).unwrap_or(u32::MAX),
                max_bytes: u32::try_from(query.limit.bytes).unwrap_or(u32::MAX),
            };
            let answer = match route?.via {
                Via::Framed(client) => client.query(request).await?,
                Via::Grpc(mut client) => client
                    .query(request)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| replica_error(&status))?,
            };
            convert::rows_page_from_proto(answer).map_err(ReplicaError::Failed)
        })
    }

    /// `node`'s wall clock (microseconds since the Unix epoch), read over
    /// gRPC within the internode deadline.
    pub fn clock_of(&self, node: NodeId) -> BoxFuture<'static, Result<i64, String>> {
        let client = self.client(node);
        Box::pin(async move {
            let answer = client
                .map_err(|e| e.to_string())?
                .clock(pbi::ClockRequest {})
                .await
                .map_err(|status| status.message().to_owned())?;
            Ok(answer.into_inner().wall_micros)
        })
    }
}

impl SampleSource for NodeTransport {
    fn samples(
        &self,
        node: NodeId,
        after_ms: i64,
    ) -> BoxFuture<'static, Result<Vec<Sample>, String>> {
        let client = self.client(node);
        Box::pin(async move {
            let answer = client
                .map_err(|e| e.to_string())?
                .samples(pbi::SamplesRequest { after_ms })
                .await
                .map_err(|status| status.message().to_owned())?;
            Ok(answer
                .into_inner()
                .samples
                .into_iter()
                .take(CAPACITY)
                .map(convert::sample_from_proto)
                .collect())
        })
    }
}

fn range_msg(range: TokenRange) -> pbi::TokenRange {
    pbi::TokenRange {
        start: range.start.0,
        end: range.end.0,
    }
}

fn key_cells(entries: Vec<(Bytes, Cell)>) -> Vec<pbi::KeyCell> {
    entries
        .into_iter()
        .map(|(key, cell)| pbi::KeyCell {
            key,
            cell: Some(convert::cell_to_proto(&cell)),
        })
        .collect()
}

impl RepairTransport for NodeTransport {
    fn merkle_nodes(
        &self,
        to: NodeId,
        range: TokenRange,
        leaves: u32,
        nodes: Vec<u32>,
    ) -> BoxFuture<'static, Result<Vec<Hash>, ReplicaError>> {
        let client = self.client(to);
        Box::pin(async move {
            let request = pbi::MerkleNodesRequest {
                range: Some(range_msg(range)),
                leaves,
                nodes,
            };
            let response = client?
                .merkle_nodes(request)
                .await
                .map_err(|status| replica_error(&status))?
                .into_inner();
            response
                .hashes
                .iter()
                .map(|h| {
                    Hash::try_from(h.as_ref()).map_err(|_| {
                        ReplicaError::Failed(format!("merkle hash of {} bytes", h.len()))
                    })
                })
                .collect()
        })
    }

    fn leaf_digests(
        &self,
        to: NodeId,
        range: TokenRange,
    ) -> BoxFuture<'static, Result<Vec<(Bytes, Bytes)>, ReplicaError>> {
        let client = self.client(to);
        Box::pin(async move {
            let request = pbi::LeafDigestsRequest {
                range: Some(range_msg(range)),
            };
            let response = client?
                .leaf_digests(request)
                .await
                .map_err(|status| replica_error(&status))?
                .into_inner();
            Ok(response
                .entries
                .into_iter()
                .map(|e| (e.key, e.digest))
                .collect())
        })
    }

    fn read_batch(
        &self,
        to: NodeId,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'static, Result<BatchRead, ReplicaError>> {
        let client = self.client(to);
        Box::pin(async move {
            let asked = keys.len();
            let response = client?
                .read_batch(pbi::ReadBatchRequest { keys })
                .await
                .map_err(|status| replica_error(&status))?
                .into_inner();
            // A peer that predates keys_answered leaves it 0 and answers
            // everything; newer peers never answer 0 keys of a batch.
            let answered = match response.keys_answered as usize {
                0 => asked,
                n => n.min(asked),
            };
            let cells = response
                .entries
                .into_iter()
                .filter_map(|e| e.cell.map(|c| (e.key, convert::cell_from_proto(c))))
                .collect();
            Ok((cells, answered))
        })
    }

    fn stream_range(
        &self,
        to: NodeId,
        range: TokenRange,
        after: Option<Bytes>,
    ) -> BoxFuture<'static, Result<StreamPage, ReplicaError>> {
        if to == self.local {
            let store = self.store.clone();
            return Box::pin(async move {
                crate::peer::serve::stream_page(store, range, after)
                    .await
                    .map_err(|e| ReplicaError::Failed(e.to_string()))
            });
        }
        let client = self.client(to);
        Box::pin(async move {
            let request = pbi::StreamRangeRequest {
                range: Some(range_msg(range)),
                after,
            };
            let response = client?
                .stream_range(request)
                .await
                .map_err(|status| replica_error(&status))?
                .into_inner();
            let cells = response
                .entries
                .into_iter()
                .filter_map(|e| e.cell.map(|c| (e.key, convert::cell_from_proto(c))))
                .collect();
            Ok((cells, response.more))
        })
    }

    fn write_batch(
        &self,
        to: NodeId,
        entries: Vec<(Bytes, Cell)>,
    ) -> BoxFuture<'static, Result<(), ReplicaError>> {
        if to == self.local {
            let store = self.store.clone();
            return Box::pin(async move {
                crate::peer::serve::write_batch(&store, &entries)
                    .await
                    .map_err(ReplicaError::from)
            });
        }
        let client = self.client(to);
        Box::pin(async move {
            let request = pbi::WriteBatchRequest {
                entries: key_cells(entries),
            };
            client?
                .write_batch(request)
                .await
                .map_err(|status| replica_error(&status))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Member;
    use crate::ring::Token;
    use crate::storage::{MemoryStorage, SyncMode};

    fn member(n: u128, port: u16, status: NodeStatus) -> Member {
        Member {
            peer_addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            status,
            ..Member::normal(NodeId(uuid::Uuid::from_u128(n)), vec![Token(n as i64)])
        }
    }

    /// Issue 24 item 8: peer clients (keyed by address) and metric handles
    /// were kept for every peer that ever was, and a peer's series kept
    /// the label it had first.
    #[tokio::test]
    async fn clients_and_series_of_departed_peers_are_dropped() {
        let local = NodeId(uuid::Uuid::from_u128(1));
        let view = |members: Vec<Member>| Arc::new(ClusterView::build(local, 3, members, None));
        let handle: ViewHandle = Arc::new(arc_swap::ArcSwap::new(view(vec![
            member(1, 7001, NodeStatus::Normal),
            member(2, 7002, NodeStatus::Normal),
            member(3, 7003, NodeStatus::Normal),
        ])));
        let store = LocalStore::new(Arc::new(MemoryStorage::default()), SyncMode::Periodic, None);
        let transport = NodeTransport::new(local, store, handle.clone(), Duration::from_secs(1));
        for n in [2, 3] {
            transport
                .route(NodeId(uuid::Uuid::from_u128(n)))
                .map(|_| ())
                .expect("route");
        }
        assert_eq!(transport.clients_held(), (2, 0));
        assert_eq!(transport.metrics.labels().len(), 2);

        // n3 left; n2 moved to another port and was renamed.
        handle.store(view(vec![
            member(1, 7001, NodeStatus::Normal),
            Member {
                name: "renamed".into(),
                ..member(2, 7102, NodeStatus::Normal)
            },
            member(3, 7003, NodeStatus::Left),
        ]));
        transport
            .route(NodeId(uuid::Uuid::from_u128(2)))
            .map(|_| ())
            .expect("route");
        assert_eq!(
            transport.clients_held(),
            (1, 0),
            "one client, at the new address"
        );
        assert_eq!(
            transport.metrics.labels(),
            vec![(NodeId(uuid::Uuid::from_u128(2)), "renamed".to_owned())]
        );
    }
}
