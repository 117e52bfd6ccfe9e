//! The internode API, `ringkv.internal.v1.Peer`: what a coordinator asks
//! of a replica.

use std::sync::Arc;

use ringkv_proto::internal::v1 as pbi;
use ringkv_proto::internal::v1::peer_server::Peer;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::clock::HybridClock;
use crate::coordinator::validate_key;
use crate::ring::Token;
use crate::storage::{LocalStore, digest};

/// Serves `Peer` over the local store.
pub struct PeerService {
    store: LocalStore,
    clock: Arc<HybridClock>,
}

impl PeerService {
    pub fn new(store: LocalStore, clock: Arc<HybridClock>) -> Self {
        Self { store, clock }
    }
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
        let response = if request.digest_only {
            pbi::ReplicaReadResponse {
                cell: None,
                digest: digest(cell.as_ref()),
            }
        } else {
            pbi::ReplicaReadResponse {
                cell: cell.as_ref().map(convert::cell_to_proto),
                digest: bytes::Bytes::new(),
            }
        };
        Ok(Response::new(response))
    }
}
