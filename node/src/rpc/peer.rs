//! The internode API, `ringkv.internal.v1.Peer`: what a coordinator asks
//! of a replica.

use std::sync::Arc;

use ringkv_proto::internal::v1 as pbi;
use ringkv_proto::internal::v1::peer_server::Peer;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::clock::HybridClock;
use crate::coordinator::validate_key;
use crate::peer::ReadReply;
use crate::peer::{TreeCache, serve};
use crate::ring::{Token, TokenRange};
use crate::storage::{BatchLimit, LocalStore};

/// Serves `Peer` over the local store and its Merkle trees.
pub struct PeerService {
    store: LocalStore,
    clock: Arc<HybridClock>,
    trees: Arc<TreeCache>,
}

impl PeerService {
    pub fn new(store: LocalStore, clock: Arc<HybridClock>, trees: Arc<TreeCache>) -> Self {
        Self {
            store,
            clock,
            trees,
        }
    }
}

fn range(msg: Option<pbi::TokenRange>) -> Result<TokenRange, Status> {
    msg.map(|r| TokenRange::new(Token(r.start), Token(r.end)))
        .ok_or_else(|| Status::invalid_argument("token range missing"))
}

/// Key-cell pairs from the wire, each key checked.
fn entries(raw: Vec<pbi::KeyCell>) -> Result<Vec<(bytes::Bytes, crate::storage::Cell)>, Status> {
    raw.into_iter()
        .map(|entry| {
            validate_key(&entry.key).map_err(status::from_coordinator)?;
            let cell = entry
                .cell
                .map(convert::cell_from_proto)
                .ok_or_else(|| Status::invalid_argument("batch entry without a cell"))?;
            Ok((entry.key, cell))
        })
        .collect()
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn write(
        &self,
        request: Request<pbi::ReplicaWriteRequest>,
    ) -> Result<Response<pbi::ReplicaWriteResponse>, Status> {
        let request = request.into_inner();
        validate_key(&request.key).map_err(status::from_coordinator)?;
        let cell = request
            .cell
            .map(convert::cell_from_proto)
            .ok_or_else(|| Status::invalid_argument("replica write without a cell"))?;
        // Keep this node's clock ahead of every timestamp it has stored.
        self.clock.observe(cell.timestamp);
        self.store
            .apply(Token::of(&request.key), &request.key, &cell)
            .await
            .map_err(status::from_storage)?;
        Ok(Response::new(pbi::ReplicaWriteResponse {}))
    }

    async fn read(
        &self,
        request: Request<pbi::ReplicaReadRequest>,
    ) -> Result<Response<pbi::ReplicaReadResponse>, Status> {
        let request = request.into_inner();
        validate_key(&request.key).map_err(status::from_coordinator)?;
        let cell = self
            .store
            .read(Token::of(&request.key), &request.key)
            .map_err(status::from_storage)?;
        let response = match ReadReply::answer(cell, request.digest_only) {
            ReadReply::Digest(digest) => pbi::ReplicaReadResponse { cell: None, digest },
            ReadReply::Data(cell) => pbi::ReplicaReadResponse {
                cell: cell.as_ref().map(convert::cell_to_proto),
                digest: bytes::Bytes::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn write_batch(
        &self,
        request: Request<pbi::WriteBatchRequest>,
    ) -> Result<Response<pbi::WriteBatchResponse>, Status> {
        let entries = entries(request.into_inner().entries)?;
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
        let keys = request.into_inner().keys;
        for key in &keys {
            validate_key(key).map_err(status::from_coordinator)?;
        }
        let (found, answered) = serve::read_batch(&self.store, &keys, BatchLimit::default())
            .map_err(status::from_storage)?;
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
        let request = request.into_inner();
        let range = range(request.range)?;
        let nodes = request.nodes.into_iter().map(|n| n as usize).collect();
        let hashes = serve::merkle_nodes(self.trees.clone(), range, request.leaves as usize, nodes)
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
        let request = request.into_inner();
        let range = range(request.range)?;
        if let Some(after) = &request.after {
            validate_key(after).map_err(status::from_coordinator)?;
            if !range.contains(Token::of(after)) {
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

    async fn leaf_digests(
        &self,
        request: Request<pbi::LeafDigestsRequest>,
    ) -> Result<Response<pbi::LeafDigestsResponse>, Status> {
        let range = range(request.into_inner().range)?;
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
