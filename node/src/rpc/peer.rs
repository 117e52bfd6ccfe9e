//! The internode API, `ringkv.internal.v2.Peer`: what a coordinator asks
//! of a replica. Every request is checked against [`bounds`](super::bounds)
//! first.

use std::sync::{Arc, OnceLock};

use ringkv_proto::internal::v2 as pbi;
use ringkv_proto::internal::v2::peer_server::Peer;
use rustls_pki_types::CertificateDer;
use tonic::{Request, Response, Status};

use super::bounds::{self, PeerBounds, range};
use super::{convert, status};
use crate::clock::HybridClock;
use crate::console::history::History;
use crate::coordinator::validate_row_key;
use crate::membership::{ClusterView, ViewHandle};
use crate::peer::ReadReply;
use crate::peer::{TreeCache, serve};
use crate::storage::{BatchLimit, LocalStore};

/// The cluster view, once gossip has started (the internode API serves
/// from before that, while the node joins).
pub type LateView = Arc<OnceLock<ViewHandle>>;

/// Serves `Peer` over the local store and its Merkle trees.
pub struct PeerService {
    store: LocalStore,
    clock: Arc<HybridClock>,
    trees: Arc<TreeCache>,
    bounds: PeerBounds,
    view: LateView,
    /// With internode TLS: the name a caller's certificate must carry.
    peer_name: Option<String>,
    /// Writes and reads served over gRPC.
    served: Served,
    /// The node's samples, for other nodes' consoles; `None`: none kept.
    history: Option<Arc<History>>,
}

/// Replica writes and reads served over one protocol
/// ([`INTERNODE_REQUESTS`](crate::metrics::INTERNODE_REQUESTS)).
pub struct Served {
    pub write: metrics::Counter,
    pub read: metrics::Counter,
    pub query: metrics::Counter,
}

impl Served {
    pub fn over(protocol: &'static str) -> Self {
        let counter = |call: &'static str| metrics::counter!(crate::metrics::INTERNODE_REQUESTS, "protocol" => protocol, "call" => call);
        Served {
            write: counter("write"),
            read: counter("read"),
            query: counter("query"),
        }
    }
}

impl PeerService {
    pub fn new(
        store: LocalStore,
        clock: Arc<HybridClock>,
        trees: Arc<TreeCache>,
        bounds: PeerBounds,
        view: LateView,
    ) -> Self {
        Self {
            store,
            clock,
            trees,
            bounds,
            view,
            peer_name: None,
            served: Served::over("grpc"),
            history: None,
        }
    }

    /// Answers `Samples` from `history`.
    pub fn with_history(mut self, history: Option<Arc<History>>) -> Self {
        self.history = history;
        self
    }

    /// Admits only callers whose TLS certificate carries `name` (a node
    /// certificate of the cluster, not a client's), when `Some`.
    pub fn with_peer_name(mut self, name: Option<String>) -> Self {
        self.peer_name = name;
        self
    }

    /// Refuses a caller that is not a node of the cluster. The TLS layer
    /// already checked that its certificate chains to the cluster CA; a
    /// client certificate of the same CA must not open the internode API.
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let certs = request
            .extensions()
            .get::<crate::rpc::net::ConnectionInfo>()
            .and_then(|info| info.certs.as_deref());
        self.admit_certificates(certs)
    }

    /// [`admit`](Self::admit) for a caller that presented `certs` (the
    /// framed protocol's TLS handshake).
    pub fn admit_certificates(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<(), Status> {
        let Some(name) = &self.peer_name else {
            return Ok(());
        };
        let leaf = certs.and_then(|certs| certs.first());
        let is_node = leaf.is_some_and(|der| {
            let subject = rustls_pki_types::ServerName::try_from(name.as_str());
            let cert = webpki::EndEntityCert::try_from(der);
            matches!((subject, cert), (Ok(subject), Ok(cert)) if cert.verify_is_valid_for_subject_name(&subject).is_ok())
        });
        if is_node {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "internode requests need a node certificate for {name:?} (internode_tls_server_name)"
            )))
        }
    }

    /// Merges a replica write into the store: the Write call of both
    /// transports, after admission.
    pub async fn serve_write(
        &self,
        request: pbi::ReplicaWriteRequest,
    ) -> Result<pbi::ReplicaWriteResponse, Status> {
        let mode = crate::storage::WriteMode {
            report_newer: request.report_newer,
            repair: request.repair,
        };
        let mutation = self.bounds.mutation(request, self.now())?;
        // Keep this node's clock ahead of every timestamp it has stored.
        for (_, cell) in mutation.entries() {
            self.clock.observe(cell.timestamp);
        }
        let newer_micros = self
            .store
            .apply_reporting(&mutation, mode)
            .await
            .map_err(status::from_storage)?;
        Ok(pbi::ReplicaWriteResponse { newer_micros })
    }

    /// Answers a replica read: the Read call of both transports, after
    /// admission.
    pub fn serve_read(
        &self,
        request: pbi::ReplicaReadRequest,
    ) -> Result<pbi::ReplicaReadResponse, Status> {
        let token = validate_row_key(&request.key).map_err(status::from_coordinator)?;
        let cell = self
            .store
            .read(token, &request.key)
            .map_err(status::from_storage)?;
        Ok(match ReadReply::answer(cell, request.digest_only) {
            ReadReply::Digest(digest) => pbi::ReplicaReadResponse { cell: None, digest },
            ReadReply::Data(cell) => pbi::ReplicaReadResponse {
                cell: cell.as_ref().map(convert::cell_to_proto),
                digest: bytes::Bytes::new(),
            },
        })
    }

    /// A page of a partition's rows, over either protocol.
    pub async fn serve_query(
        &self,
        request: pbi::ReplicaQueryRequest,
    ) -> Result<pbi::ReplicaQueryResponse, Status> {
        let (token, query) = bounds::query(request)?;
        let page = self
            .store
            .query(token, query)
            .await
            .map_err(status::from_storage)?;
        Ok(convert::rows_page_to_proto(page))
    }

    fn view(&self) -> Result<Arc<ClusterView>, Status> {
        self.view
            .get()
            .map(|handle| handle.load_full())
            .ok_or_else(|| Status::unavailable("this node has not started gossip yet"))
    }

    fn now(&self) -> crate::clock::Timestamp {
        self.clock.wall().micros()
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn write(
        &self,
        request: Request<pbi::ReplicaWriteRequest>,
    ) -> Result<Response<pbi::ReplicaWriteResponse>, Status> {
        self.admit(&request)?;
        self.served.write.increment(1);
        Ok(Response::new(self.serve_write(request.into_inner()).await?))
    }

    async fn read(
        &self,
        request: Request<pbi::ReplicaReadRequest>,
    ) -> Result<Response<pbi::ReplicaReadResponse>, Status> {
        self.admit(&request)?;
        self.served.read.increment(1);
        self.serve_read(request.into_inner()).map(Response::new)
    }

    async fn query(
        &self,
        request: Request<pbi::ReplicaQueryRequest>,
    ) -> Result<Response<pbi::ReplicaQueryResponse>, Status> {
        self.admit(&request)?;
        self.served.query.increment(1);
        Ok(Response::new(self.serve_query(request.into_inner()).await?))
    }

    async fn write_batch(
        &self,
        request: Request<pbi::WriteBatchRequest>,
    ) -> Result<Response<pbi::WriteBatchResponse>, Status> {
        self.admit(&request)?;
        let entries = self
            .bounds
            .write_batch(request.into_inner().entries, self.now())?;
        for (_, cell) in &entries {
            self.clock.observe(cell.timestamp);
        }
        serve::write_batch(&self.store, &entries)
            .await
            .map_err(status::from_storage)?;
        Ok(Response::new(pbi::WriteBatchResponse {}))
    }

    async fn read_batch(
        &self,
        request: Request<pbi::ReadBatchRequest>,
    ) -> Result<Response<pbi::ReadBatchResponse>, Status> {
        self.admit(&request)?;
        let asked = request.into_inner().keys;
        let count = asked.len();
        let (keys, first_at) = bounds::read_batch_keys(asked)?;
        let (found, answered) = serve::read_batch(&self.store, &keys, BatchLimit::default())
            .map_err(status::from_storage)?;
        let answered = bounds::answered_prefix(&first_at, answered, count);
        Ok(Response::new(pbi::ReadBatchResponse {
            keys_answered: u32::try_from(answered).unwrap_or(u32::MAX),
            entries: found
                .into_iter()
                .map(|(key, cell)| pbi::KeyCell {
                    key,
                    cell: Some(convert::cell_to_proto(&cell)),
                })
                .collect(),
        }))
    }

    async fn merkle_nodes(
        &self,
        request: Request<pbi::MerkleNodesRequest>,
    ) -> Result<Response<pbi::MerkleNodesResponse>, Status> {
        self.admit(&request)?;
        let request = request.into_inner();
        let range = range(request.range)?;
        let cached = bounds::merkle_nodes(&*self.view()?, range, request.leaves, &request.nodes)?;
        let nodes = request.nodes.into_iter().map(|n| n as usize).collect();
        let leaves = request.leaves as usize;
        let hashes = serve::merkle_nodes_of(self.trees.clone(), range, leaves, nodes, cached)
            .await
            .map_err(status::from_storage)?;
        Ok(Response::new(pbi::MerkleNodesResponse {
            hashes: hashes
                .iter()
                .map(|h| bytes::Bytes::copy_from_slice(h))
                .collect(),
        }))
    }

    async fn stream_range(
        &self,
        request: Request<pbi::StreamRangeRequest>,
    ) -> Result<Response<pbi::StreamRangeResponse>, Status> {
        self.admit(&request)?;
        let request = request.into_inner();
        let range = range(request.range)?;
        if let Some(after) = &request.after {
            let token = validate_row_key(after).map_err(status::from_coordinator)?;
            if !range.contains(token) {
                return Err(Status::invalid_argument(
                    "stream cursor `after` is not a key of the range",
                ));
            }
        }
        let (entries, more) = serve::stream_page(self.store.clone(), range, request.after)
            .await
            .map_err(status::from_storage)?;
        Ok(Response::new(pbi::StreamRangeResponse {
            entries: entries
                .into_iter()
                .map(|(key, cell)| pbi::KeyCell {
                    key,
                    cell: Some(convert::cell_to_proto(&cell)),
                })
                .collect(),
            more,
        }))
    }

    async fn samples(
        &self,
        request: Request<pbi::SamplesRequest>,
    ) -> Result<Response<pbi::SamplesResponse>, Status> {
        self.admit(&request)?;
        let after = request.into_inner().after_ms;
        let samples = match &self.history {
            Some(history) => history.own_after(after),
            None => Vec::new(),
        };
        Ok(Response::new(pbi::SamplesResponse {
            samples: samples.iter().map(convert::sample_to_proto).collect(),
        }))
    }

    async fn clock(
        &self,
        request: Request<pbi::ClockRequest>,
    ) -> Result<Response<pbi::ClockResponse>, Status> {
        self.admit(&request)?;
        Ok(Response::new(pbi::ClockResponse {
            wall_micros: self.clock.wall().micros(),
        }))
    }

    async fn leaf_digests(
        &self,
        request: Request<pbi::LeafDigestsRequest>,
    ) -> Result<Response<pbi::LeafDigestsResponse>, Status> {
        self.admit(&request)?;
        let range = range(request.into_inner().range)?;
        bounds::leaf_digests(&*self.view()?, range)?;
        let digests = serve::leaf_digests(self.store.clone(), range)
            .await
            .map_err(status::from_storage)?;
        Ok(Response::new(pbi::LeafDigestsResponse {
            entries: digests
                .into_iter()
                .map(|(key, digest)| pbi::KeyDigest { key, digest })
                .collect(),
        }))
    }
}
