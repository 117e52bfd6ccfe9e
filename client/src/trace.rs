//! Request tracing: the coordinator's account of one request (the replicas
//! it asked, for data or a digest, their answers and latencies, a digest
//! mismatch and the read repair that followed), as cqlsh's `TRACING ON`
//! shows it.
//!
//! ```no_run
//! # async fn demo(client: ringkv_client::Client) -> ringkv_client::Result<()> {
//! use ringkv_client::{ReadOptions, TraceCollector};
//!
//! let trace = TraceCollector::default();
//! let found = client.get_with("k", &ReadOptions::default().traced(&trace)).await;
//! if let Some(trace) = trace.take() {
//!     for event in &trace.events {
//!         println!("{:?} {} {}", event.elapsed, event.node, event.activity);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use ringkv_proto::v1 as pb;
use tonic::metadata::MetadataMap;

/// What the coordinator did for one traced request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTrace {
    /// The node that coordinated the request.
    pub coordinator: String,
    /// From the request's arrival at the coordinator to its answer.
    pub total: Duration,
    /// The steps, in the order they happened.
    pub events: Vec<TraceEvent>,
}

/// One step of a traced request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Since the coordinator received the request.
    pub elapsed: Duration,
    /// The node the step concerns: the coordinator or a replica, by name.
    pub node: String,
    /// What happened.
    pub activity: String,
}

/// Receives the trace of the requests made with options that carry it
/// ([`ReadOptions::traced`](crate::ReadOptions::traced),
/// [`WriteOptions::traced`](crate::WriteOptions::traced)), whether they
/// succeed or fail. Holds the last one.
#[derive(Debug, Clone, Default)]
pub struct TraceCollector(Arc<Mutex<Option<RequestTrace>>>);

impl TraceCollector {
    /// The trace of the last request, if it came back with one; leaves
    /// none.
    pub fn take(&self) -> Option<RequestTrace> {
        self.0.lock().ok().and_then(|mut held| held.take())
    }

    /// Keeps the trace `metadata` carries, if any.
    pub(crate) fn capture(&self, metadata: &MetadataMap) {
        let trace = metadata
            .get_bin(ringkv_proto::TRACE_METADATA_KEY)
            .and_then(|value| value.to_bytes().ok())
            .and_then(|bytes| pb::Trace::decode(bytes).ok())
            .map(from_proto);
        if let (Some(trace), Ok(mut held)) = (trace, self.0.lock()) {
            *held = Some(trace);
        }
    }
}

fn from_proto(trace: pb::Trace) -> RequestTrace {
    RequestTrace {
        coordinator: trace.coordinator,
        total: Duration::from_micros(trace.total_micros),
        events: trace
            .events
            .into_iter()
            .map(|event| TraceEvent {
                elapsed: Duration::from_micros(event.elapsed_micros),
                node: event.node,
                activity: event.activity,
            })
            .collect(),
    }
}

/// Keeps the trace of `outcome` in `collector`, when there is one.
pub(crate) fn capture<T>(
    collector: Option<&TraceCollector>,
    outcome: &Result<tonic::Response<T>, tonic::Status>,
) {
    if let Some(collector) = collector {
        collector.capture(match outcome {
            Ok(response) => response.metadata(),
            Err(status) => status.metadata(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_comes_back_from_an_answer_or_an_error() {
        let trace = pb::Trace {
            coordinator: "n1".into(),
            total_micros: 2500,
            events: vec![pb::TraceEvent {
                elapsed_micros: 10,
                node: "n2".into(),
                activity: "asked for a digest".into(),
            }],
        };
        let value = tonic::metadata::MetadataValue::from_bytes(&trace.encode_to_vec());
        let mut status = tonic::Status::deadline_exceeded("slow");
        status
            .metadata_mut()
            .insert_bin(ringkv_proto::TRACE_METADATA_KEY, value);
        let collector = TraceCollector::default();
        capture::<()>(Some(&collector), &Err(status));
        let got = collector.take().expect("a trace");
        assert_eq!(got.coordinator, "n1");
        assert_eq!(got.total, Duration::from_micros(2500));
        assert_eq!(got.events[0].activity, "asked for a digest");
        assert_eq!(collector.take(), None, "taken once");
        capture::<()>(Some(&collector), &Ok(tonic::Response::new(())));
        assert_eq!(collector.take(), None, "an answer without a trace");
    }
}
