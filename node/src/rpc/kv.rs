//! The client API, `ringkv.v1.KeyValue`: protobuf in, coordinator call,
//! protobuf out, and a count and latency sample per request.

use std::sync::Arc;
use std::time::Instant;

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::key_value_server::KeyValue;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::coordinator::{Coordinator, CoordinatorError, ReadRequest, WriteRequest};
use crate::metrics::{REQUEST_SECONDS, REQUESTS};

/// Serves `KeyValue` over a coordinator.
pub struct KeyValueService {
    coordinator: Arc<Coordinator>,
}

impl KeyValueService {
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }
}

/// Records the request and turns a coordinator error into a status.
fn finish<T>(
    op: &'static str,
    started: Instant,
    result: Result<T, CoordinatorError>,
) -> Result<T, Status> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CoordinatorError::InvalidArgument(_)) => "invalid",
        Err(CoordinatorError::Unavailable { .. }) => "unavailable",
        Err(CoordinatorError::Timeout { .. }) => "timeout",
        Err(CoordinatorError::Failed { .. }) => "failed",
        Err(CoordinatorError::Storage(_)) => "error",
    };
    metrics::counter!(REQUESTS, "op" => op, "outcome" => outcome).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "op" => op).record(started.elapsed().as_secs_f64());
    result.map_err(status::from_coordinator)
}

/// Counts a request rejected before it reached the coordinator.
fn rejected(op: &'static str, status: Status) -> Status {
    metrics::counter!(REQUESTS, "op" => op, "outcome" => "invalid").increment(1);
    status
}

#[tonic::async_trait]
impl KeyValue for KeyValueService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let read = ReadRequest {
            level: convert::consistency(request.consistency).map_err(|s| rejected("get", s))?,
            timeout: convert::timeout(request.timeout_ms),
            key: request.key,
        };
        let found = finish("get", started, self.coordinator.read(read).await)?;
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
        let write = WriteRequest {
            level: convert::consistency(request.consistency).map_err(|s| rejected("put", s))?,
            timeout: convert::timeout(request.timeout_ms),
            ttl_seconds: Some(request.ttl_seconds),
            timestamp: request.timestamp_micros,
            key: request.key,
            value: Some(request.value),
        };
        let timestamp = finish("put", started, self.coordinator.write(write).await)?;
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
        let write = WriteRequest {
            level: convert::consistency(request.consistency).map_err(|s| rejected("delete", s))?,
            timeout: convert::timeout(request.timeout_ms),
            ttl_seconds: None,
            timestamp: request.timestamp_micros,
            key: request.key,
            value: None,
        };
        let timestamp = finish("delete", started, self.coordinator.write(write).await)?;
        Ok(Response::new(pb::DeleteResponse {
            timestamp_micros: timestamp,
        }))
    }
}
