//! Request tracing: what the coordinator did for one request, as cqlsh's
//! `TRACING ON` shows it. A client sets the request's trace flag; the
//! coordinator then records each step (the replicas it asked, for data or a
//! digest, each answer and how long it took, a digest mismatch, the read
//! repair and whom it wrote, the verdict), with the time since the request
//! arrived, and the front door sends the events back with the answer.
//!
//! Events are recorded on the coordinator; a replica's events are the
//! coordinator's view of that replica (asked, answered after so long).
//!
//! CAVEATS: a request keeps at most [`MAX_EVENTS`] events. Work that
//! outlives the answer (a write to a slower replica after the level was
//! met) is traced only as far as it got by the time of the answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::identity::NodeId;

/// Most events one request records; later ones are dropped.
pub const MAX_EVENTS: usize = 128;

/// One step of a traced request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Since the coordinator received the request.
    pub elapsed: Duration,
    /// The node the step concerns: the coordinator, or a replica.
    pub node: NodeId,
    pub activity: String,
}

/// The events of one request. Shared by the tasks that work on it.
#[derive(Debug)]
pub struct Trace {
    started: Instant,
    events: Mutex<Vec<TraceEvent>>,
}

impl Trace {
    /// A trace of a request that arrived now.
    pub fn start() -> Arc<Trace> {
        Arc::new(Trace {
            started: Instant::now(),
            events: Mutex::new(Vec::new()),
        })
    }

    /// Since the request arrived.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records that `node` did or went through `activity`, now.
    pub fn record(&self, node: NodeId, activity: impl Into<String>) {
        let elapsed = self.elapsed();
        if let Ok(mut events) = self.events.lock()
            && events.len() < MAX_EVENTS
        {
            events.push(TraceEvent {
                elapsed,
                node,
                activity: activity.into(),
            });
        }
    }

    /// The events so far, in the order they were recorded.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// Records on `trace`, when the request is traced. The activity is only
/// formatted then.
pub fn note(trace: &Option<Arc<Trace>>, node: NodeId, activity: impl FnOnce() -> String) {
    if let Some(trace) = trace {
        trace.record(node, activity());
    }
}

/// `d` as cqlsh-like milliseconds with microseconds: `1.234 ms`.
pub fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn events_keep_their_order_and_time_and_stop_at_the_cap() {
        let trace = Trace::start();
        let node = NodeId(uuid::Uuid::from_u128(1));
        trace.record(node, "first");
        tokio::time::advance(Duration::from_millis(3)).await;
        note(&Some(trace.clone()), node, || "second".into());
        note(&None, node, || {
            unreachable!("an untraced request formats nothing")
        });
        let events = trace.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].activity, "first");
        assert_eq!(events[1].elapsed, Duration::from_millis(3));
        for i in 0..2 * MAX_EVENTS {
            trace.record(node, format!("{i}"));
        }
        assert_eq!(trace.events().len(), MAX_EVENTS);
    }

    #[test]
    fn durations_read_as_milliseconds() {
        assert_eq!(millis(Duration::from_micros(1234)), "1.234 ms");
    }
}
