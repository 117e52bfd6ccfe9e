//! The client API, `ringkv.v1.KeyValue`: protobuf in, coordinator call,
//! protobuf out, and a count and latency sample per request.

use std::sync::Arc;
use tokio::time::Instant;

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::key_value_server::KeyValue;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::coordinator::{
    Coordinator, CoordinatorError, OpMetrics, ReadRequest, RequestMetrics, WriteRequest,
};

/// Serves `KeyValue` over a coordinator.
pub struct KeyValueService {
    coordinator: Arc<Coordinator>,
    metrics: RequestMetrics,
}

/// Records the request and turns a coordinator error into a status.
fn finish<T>(
    op: &OpMetrics,
    started: Instant,
    result: Result<T, CoordinatorError>,
) -> Result<T, Status> {
    op.record(started, &result);
    result.map_err(status::from_coordinator)
}

/// Counts a request rejected before it reached the coordinator.
fn rejected(op: &OpMetrics) -> impl Fn(Status) -> Status + '_ {
    move |status| {
        op.rejected();
        status
    }
}

impl KeyValueService {
    /// Call after the metrics recorder is installed, or the handles count
    /// nothing.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self {
            coordinator,
            metrics: RequestMetrics::new(),
        }
    }
}

#[tonic::async_trait]
impl KeyValue for KeyValueService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        convert::client_key(&request.key).map_err(rejected(&self.metrics.get))?;
        let read = ReadRequest {
            level: convert::consistency(request.consistency)
                .map_err(rejected(&self.metrics.get))?,
            timeout: convert::timeout(request.timeout_ms),
            key: request.key,
        };
        let found = finish(
            &self.metrics.get,
            started,
            self.coordinator.read(read).await,
        )?;
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
        let started = Instant::now();
        let request = request.into_inner();
        convert::client_key(&request.key).map_err(rejected(&self.metrics.put))?;
        let write = WriteRequest {
            level: convert::consistency(request.consistency)
                .map_err(rejected(&self.metrics.put))?,
            timeout: convert::timeout(request.timeout_ms),
            ttl_seconds: Some(request.ttl_seconds),
            timestamp: request.timestamp_micros,
            key: request.key,
            value: Some(request.value),
        };
        let timestamp = finish(
            &self.metrics.put,
            started,
            self.coordinator.write(write).await,
        )?;
        Ok(Response::new(pb::PutResponse {
            timestamp_micros: timestamp,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        convert::client_key(&request.key).map_err(rejected(&self.metrics.delete))?;
        let write = WriteRequest {
            level: convert::consistency(request.consistency)
                .map_err(rejected(&self.metrics.delete))?,
            timeout: convert::timeout(request.timeout_ms),
            ttl_seconds: None,
            timestamp: request.timestamp_micros,
            key: request.key,
            value: None,
        };
        let timestamp = finish(
            &self.metrics.delete,
            started,
            self.coordinator.write(write).await,
        )?;
        Ok(Response::new(pb::DeleteResponse {
            timestamp_micros: timestamp,
        }))
    }
}
