//! The client API, `ringkv.v1.KeyValue`: protobuf in, coordinator call,
//! protobuf out.

use std::sync::Arc;

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::key_value_server::KeyValue;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::coordinator::{Coordinator, ReadRequest, WriteRequest};

/// Serves `KeyValue` over a coordinator.
pub struct KeyValueService {
    coordinator: Arc<Coordinator>,
}

impl KeyValueService {
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }
}

#[tonic::async_trait]
impl KeyValue for KeyValueService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        let read = ReadRequest {
            level: convert::consistency(request.consistency)?,
            timeout: convert::timeout(request.timeout_ms),
            key: request.key,
        };
        let found = self
            .coordinator
            .read(read)
            .await
            .map_err(status::from_coordinator)?;
        Ok(Response::new(match found {
            Some(result) => pb::GetResponse {
                found: true,
                value: result.value,
                timestamp_micros: result.timestamp,
                expires_at_seconds: result.expires_at,
            },
            None => pb::GetResponse::default(),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        let write = WriteRequest {
            level: convert::consistency(request.consistency)?,
            timeout: convert::timeout(request.timeout_ms),
            ttl_seconds: Some(request.ttl_seconds),
            timestamp: request.timestamp_micros,
            key: request.key,
            value: Some(request.value),
        };
        let timestamp = self
            .coordinator
            .write(write)
            .await
            .map_err(status::from_coordinator)?;
        Ok(Response::new(pb::PutResponse {
            timestamp_micros: timestamp,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let request = request.into_inner();
        let write = WriteRequest {
            level: convert::consistency(request.consistency)?,
            timeout: convert::timeout(request.timeout_ms),
            ttl_seconds: None,
            timestamp: request.timestamp_micros,
            key: request.key,
            value: None,
        };
        let timestamp = self
            .coordinator
            .write(write)
            .await
            .map_err(status::from_coordinator)?;
        Ok(Response::new(pb::DeleteResponse {
            timestamp_micros: timestamp,
        }))
    }
}
