//! The client API, `ringkv.v1.KeyValue`: protobuf in, coordinator call,
//! protobuf out, and a count and latency sample per request.

use std::sync::Arc;
use tokio::time::Instant;

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::key_value_server::KeyValue;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::coordinator::{Coordinator, CoordinatorError, ReadRequest, WriteRequest};
use crate::metrics::{REQUEST_SECONDS, REQUESTS};

/// Serves `KeyValue` over a coordinator.
pub struct KeyValueService {
    coordinator: Arc<Coordinator>,
    metrics: [OpMetrics; 3],
}

const GET: usize = 0;
const PUT: usize = 1;
const DELETE: usize = 2;

const OUTCOMES: [&str; 6] = ["ok", "invalid", "unavailable", "timeout", "failed", "error"];

/// Metric handles of one operation, registered once: looking a labelled
/// metric up on every request costs an allocation and a hash-map probe.
struct OpMetrics {
    outcomes: [metrics::Counter; 6],
    latency: metrics::Histogram,
}

impl OpMetrics {
    fn new(op: &'static str) -> Self {
        OpMetrics {
            outcomes: OUTCOMES
                .map(|outcome| metrics::counter!(REQUESTS, "op" => op, "outcome" => outcome)),
            latency: metrics::histogram!(REQUEST_SECONDS, "op" => op),
        }
    }

    /// Records the request and turns a coordinator error into a status.
    fn finish<T>(
        &self,
        started: Instant,
        result: Result<T, CoordinatorError>,
    ) -> Result<T, Status> {
        let outcome = match &result {
            Ok(_) => 0,
            Err(CoordinatorError::InvalidArgument(_)) => 1,
            Err(CoordinatorError::Unavailable { .. } | CoordinatorError::NotStored { .. }) => 2,
            Err(CoordinatorError::Timeout { .. }) => 3,
            Err(CoordinatorError::Failed { .. }) => 4,
            Err(CoordinatorError::Storage(_)) => 5,
        };
        self.outcomes[outcome].increment(1);
        self.latency.record(started.elapsed().as_secs_f64());
        result.map_err(status::from_coordinator)
    }

    /// Counts a request rejected before it reached the coordinator.
    fn rejected(&self, status: Status) -> Status {
        self.outcomes[1].increment(1);
        status
    }
}

impl KeyValueService {
    /// Call after the metrics recorder is installed, or the handles count
    /// nothing.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self {
            coordinator,
            metrics: [
                OpMetrics::new("get"),
                OpMetrics::new("put"),
                OpMetrics::new("delete"),
            ],
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
        convert::client_key(&request.key).map_err(|s| self.metrics[GET].rejected(s))?;
        let read = ReadRequest {
            level: convert::consistency(request.consistency)
                .map_err(|s| self.metrics[GET].rejected(s))?,
            timeout: convert::timeout(request.timeout_ms),
            key: request.key,
        };
        let found = self.metrics[GET].finish(started, self.coordinator.read(read).await)?;
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
        convert::client_key(&request.key).map_err(|s| self.metrics[PUT].rejected(s))?;
        let write = WriteRequest {
            level: convert::consistency(request.consistency)
                .map_err(|s| self.metrics[PUT].rejected(s))?,
            timeout: convert::timeout(request.timeout_ms),
            ttl_seconds: Some(request.ttl_seconds),
            timestamp: request.timestamp_micros,
            key: request.key,
            value: Some(request.value),
        };
        let timestamp = self.metrics[PUT].finish(started, self.coordinator.write(write).await)?;
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
        convert::client_key(&request.key).map_err(|s| self.metrics[DELETE].rejected(s))?;
        let write = WriteRequest {
            level: convert::consistency(request.consistency)
                .map_err(|s| self.metrics[DELETE].rejected(s))?,
            timeout: convert::timeout(request.timeout_ms),
            ttl_seconds: None,
            timestamp: request.timestamp_micros,
            key: request.key,
            value: None,
        };
        let timestamp =
            self.metrics[DELETE].finish(started, self.coordinator.write(write).await)?;
        Ok(Response::new(pb::DeleteResponse {
            timestamp_micros: timestamp,
        }))
    }
}
