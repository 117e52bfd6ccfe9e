//! The client API, `ringkv.v1.KeyValue`: protobuf in, coordinator call,
//! protobuf out, and a count and latency sample per request.

use std::sync::Arc;
use tokio::time::Instant;

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::key_value_server::KeyValue;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::coordinator::trace::Trace;
use crate::coordinator::{
    BatchOp, BatchRequest, ConsistencyLevel, Coordinator, CoordinatorError, OpMetrics,
    QueryRequest, ReadRequest, RequestMetrics, Target, WriteRequest,
};

/// Serves `KeyValue` over a coordinator.
pub struct KeyValueService {
    coordinator: Arc<Coordinator>,
    metrics: RequestMetrics,
}

/// Records the request and turns a coordinator error into a status.
fn finish<T>(
    op: &OpMetrics,
    level: ConsistencyLevel,
    started: Instant,
    result: Result<T, CoordinatorError>,
) -> Result<T, Status> {
    op.record(level, started, &result);
    result.map_err(status::from_coordinator)
}

/// The request's level and key, checked; a request that fails the check is
/// counted as rejected before it reached the coordinator.
fn admit(op: &OpMetrics, raw_level: i32, key: &[u8]) -> Result<ConsistencyLevel, Status> {
    let level = convert::consistency(raw_level).inspect_err(|_| op.rejected(None))?;
    convert::client_key(key).inspect_err(|_| op.rejected(Some(level)))?;
    Ok(level)
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

    /// Attaches `trace`, when the request was traced, to the answer or the
    /// error status as the `ringkv-trace-bin` metadata entry.
    fn traced<T>(
        &self,
        trace: Option<Arc<Trace>>,
        answer: Result<Response<T>, Status>,
    ) -> Result<Response<T>, Status> {
        let Some(trace) = trace else {
            return answer;
        };
        let coordinator = &self.coordinator;
        let local = coordinator.local();
        trace.record(local, "answered the client");
        let message = pb::Trace {
            coordinator: coordinator.name_of(&local),
            total_micros: trace.elapsed().as_micros() as u64,
            events: bounded_events(trace.events().into_iter().map(|event| pb::TraceEvent {
                elapsed_micros: event.elapsed.as_micros() as u64,
                node: coordinator.name_of(&event.node),
                activity: event.activity,
            })),
        };
        let value = MetadataValue::from_bytes(&prost::Message::encode_to_vec(&message));
        match answer {
            Ok(mut response) => {
                response
                    .metadata_mut()
                    .insert_bin(ringkv_proto::TRACE_METADATA_KEY, value);
                Ok(response)
            }
            Err(mut status) => {
                status
                    .metadata_mut()
                    .insert_bin(ringkv_proto::TRACE_METADATA_KEY, value);
                Err(status)
            }
        }
    }
}

/// Most bytes of trace events sent back: the entry travels base64-encoded
/// in a header, and clients refuse header blocks past 16 KiB by default.
const MAX_TRACE_BYTES: usize = 6 * 1024;

/// The events that fit in [`MAX_TRACE_BYTES`], in order; an event in
/// place of those left out says how many.
fn bounded_events(events: impl ExactSizeIterator<Item = pb::TraceEvent>) -> Vec<pb::TraceEvent> {
    let total = events.len();
    let mut kept: Vec<pb::TraceEvent> = Vec::new();
    let mut bytes = 0;
    for mut event in events {
        if event.activity.len() > 300 {
            let mut end = 300;
            while !event.activity.is_char_boundary(end) {
                end -= 1;
            }
            event.activity.truncate(end);
            event.activity.push('…');
        }
        let size = prost::Message::encoded_len(&event) + 2;
        if bytes + size > MAX_TRACE_BYTES {
            let last = kept.last().map_or(0, |e| e.elapsed_micros);
            kept.push(pb::TraceEvent {
                elapsed_micros: last,
                node: String::new(),
                activity: format!("({} more events left out)", total - kept.len()),
            });
            break;
        }
        bytes += size;
        kept.push(event);
    }
    kept
}

/// What a delete names: a row, a range of rows, or the partition.
fn delete_target(request: &pb::DeleteRequest) -> Result<Target, Status> {
    let one_of = |what: &str| {
        Status::invalid_argument(format!(
            "a delete names one thing: a row (sort_key), rows (a range) or the partition; this one names {what}"
        ))
    };
    match (&request.rows, request.partition) {
        (None, false) => Ok(Target::Row(request.sort_key.clone())),
        (Some(_), true) => Err(one_of("both a range and the partition")),
        (_, _) if !request.sort_key.is_empty() => Err(one_of("a sort key and more")),
        (Some(rows), false) => Ok(Target::Rows {
            start: rows.start.clone(),
            end: rows.end.clone(),
        }),
        (None, true) => Ok(Target::Partition),
    }
}

/// One operation of a client's batch.
fn batch_op(op: pb::BatchOperation) -> Result<BatchOp, &'static str> {
    use pb::batch_operation::Operation;
    Ok(match op.operation.ok_or("names no operation")? {
        Operation::Put(put) => {
            BatchOp::put(put.sort_key, put.value, ttl_ms(put.ttl_seconds, put.ttl_ms))
        }
        Operation::Delete(delete) => BatchOp::delete(Target::Row(delete.sort_key)),
        Operation::DeleteRows(rows) => BatchOp::delete(Target::Rows {
            start: rows.start,
            end: rows.end,
        }),
        Operation::DeletePartition(_) => BatchOp::delete(Target::Partition),
    })
}

/// A put's time to live in milliseconds: `ttl_ms` when set (a client may
/// set both, the seconds for servers that know no milliseconds), else
/// `ttl_seconds`.
fn ttl_ms(seconds: u32, millis: u64) -> Option<u64> {
    match (seconds, millis) {
        (0, 0) => None,
        (seconds, 0) => Some(u64::from(seconds) * 1000),
        (_, millis) => Some(millis),
    }
}

/// Unix milliseconds as seconds, rounded up (the API's older field).
fn seconds_up(millis: i64) -> i64 {
    millis.div_euclid(1000) + i64::from(millis.rem_euclid(1000) > 0)
}

/// A trace for the request, when the client asked for one.
fn start_trace(wanted: bool) -> Option<Arc<Trace>> {
    wanted.then(Trace::start)
}

#[tonic::async_trait]
impl KeyValue for KeyValueService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let level = admit(&self.metrics.get, request.consistency, &request.key)?;
        let trace = start_trace(request.trace);
        let read = ReadRequest {
            level,
            timeout: convert::timeout(request.timeout_ms),
            key: request.key,
            sort_key: request.sort_key,
            trace: trace.clone(),
        };
        let found = finish(
            &self.metrics.get,
            level,
            started,
            self.coordinator.read(read).await,
        );
        let answer = found.map(|found| {
            Response::new(match found {
                Some(result) => pb::GetResponse {
                    found: true,
                    value: result.value,
                    timestamp_micros: result.timestamp,
                    expires_at_seconds: result.expires_at_ms.map(seconds_up),
                    expires_at_millis: result.expires_at_ms,
                },
                None => pb::GetResponse::default(),
            })
        });
        self.traced(trace, answer)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let level = admit(&self.metrics.put, request.consistency, &request.key)?;
        let ttl_ms = ttl_ms(request.ttl_seconds, request.ttl_ms);
        let trace = start_trace(request.trace);
        let write = WriteRequest {
            level,
            timeout: convert::timeout(request.timeout_ms),
            ttl_ms,
            timestamp: request.timestamp_micros,
            key: request.key,
            target: Target::Row(request.sort_key),
            value: Some(request.value),
            trace: trace.clone(),
        };
        let timestamp = finish(
            &self.metrics.put,
            level,
            started,
            self.coordinator.write(write).await,
        );
        let answer =
            timestamp.map(|timestamp_micros| Response::new(pb::PutResponse { timestamp_micros }));
        self.traced(trace, answer)
    }

    async fn batch(
        &self,
        request: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let level = admit(&self.metrics.batch, request.consistency, &request.key)?;
        let ops = request
            .operations
            .into_iter()
            .enumerate()
            .map(|(at, op)| batch_op(op).map_err(|why| format!("operation {at}: {why}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| {
                self.metrics.batch.rejected(Some(level));
                Status::invalid_argument(why)
            })?;
        let trace = start_trace(request.trace);
        let batch = BatchRequest {
            key: request.key,
            ops,
            level,
            timestamp: request.timestamp_micros,
            timeout: convert::timeout(request.timeout_ms),
            trace: trace.clone(),
        };
        let timestamp = finish(
            &self.metrics.batch,
            level,
            started,
            self.coordinator.batch(batch).await,
        );
        let answer =
            timestamp.map(|timestamp_micros| Response::new(pb::BatchResponse { timestamp_micros }));
        self.traced(trace, answer)
    }

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let level = admit(&self.metrics.query, request.consistency, &request.key)?;
        let trace = start_trace(request.trace);
        let query = QueryRequest {
            key: request.key,
            start: request.start,
            end: request.end,
            prefix: request.prefix,
            limit: request.limit as usize,
            max_bytes: request.max_bytes as usize,
            reverse: request.reverse,
            page_token: request.page_token,
            level,
            timeout: convert::timeout(request.timeout_ms),
            trace: trace.clone(),
        };
        let page = finish(
            &self.metrics.query,
            level,
            started,
            self.coordinator.query(query).await,
        );
        let answer = page.map(|page| {
            Response::new(pb::QueryResponse {
                rows: page
                    .rows
                    .into_iter()
                    .map(|row| pb::Row {
                        sort_key: row.sort_key,
                        value: row.value,
                        timestamp_micros: row.timestamp,
                        expires_at_seconds: row.expires_at_ms.map(seconds_up),
                        expires_at_millis: row.expires_at_ms,
                    })
                    .collect(),
                page_token: page.page_token.unwrap_or_default(),
            })
        });
        self.traced(trace, answer)
    }

    async fn count(
        &self,
        request: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let level = admit(&self.metrics.query, request.consistency, &request.key)?;
        let query = QueryRequest {
            key: request.key,
            start: request.start,
            end: request.end,
            prefix: request.prefix,
            limit: 0,
            max_bytes: 0,
            reverse: false,
            page_token: bytes::Bytes::new(),
            level,
            timeout: convert::timeout(request.timeout_ms),
            trace: None,
        };
        let counted = finish(
            &self.metrics.query,
            level,
            started,
            self.coordinator.count(query, request.limit).await,
        );
        counted.map(|counted| {
            Response::new(pb::CountResponse {
                count: counted.count,
                truncated: counted.truncated,
            })
        })
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let level = admit(&self.metrics.delete, request.consistency, &request.key)?;
        let target =
            delete_target(&request).inspect_err(|_| self.metrics.delete.rejected(Some(level)))?;
        let trace = start_trace(request.trace);
        let write = WriteRequest {
            target,
            level,
            timeout: convert::timeout(request.timeout_ms),
            ttl_ms: None,
            timestamp: request.timestamp_micros,
            key: request.key,
            value: None,
            trace: trace.clone(),
        };
        let timestamp = finish(
            &self.metrics.delete,
            level,
            started,
            self.coordinator.write(write).await,
        );
        let answer = timestamp
            .map(|timestamp_micros| Response::new(pb::DeleteResponse { timestamp_micros }));
        self.traced(trace, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_trace_is_cut_to_fit_a_header_and_says_so() {
        let event = |i: u64| pb::TraceEvent {
            elapsed_micros: i,
            node: "n1".into(),
            activity: "é".repeat(400),
        };
        let kept = bounded_events((0..128u32).map(|i| event(u64::from(i))));
        let bytes: usize = kept.iter().map(prost::Message::encoded_len).sum();
        assert!(bytes <= MAX_TRACE_BYTES + 64, "{bytes}");
        let last = kept.last().expect("events");
        assert!(
            last.activity.ends_with("more events left out)"),
            "{}",
            last.activity
        );
        assert!(kept[0].activity.ends_with('…'));
        let short = bounded_events((0..3u32).map(|i| pb::TraceEvent {
            activity: "asked".into(),
            ..event(u64::from(i))
        }));
        assert_eq!(short.len(), 3, "a short trace is kept whole");
    }
}
