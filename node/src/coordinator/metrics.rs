//! The count and latency of client requests, by operation and outcome, as
//! every front door (the gRPC API, the RESP port) records them.

use tokio::time::Instant;

use super::CoordinatorError;
use crate::metrics::{REQUEST_SECONDS, REQUESTS};

/// Outcomes, in the order of [`outcome`]'s indices.
const OUTCOMES: [&str; 6] = ["ok", "invalid", "unavailable", "timeout", "failed", "error"];
const INVALID: usize = 1;

/// The outcome label of a coordinator answer.
fn outcome<T>(result: &Result<T, CoordinatorError>) -> usize {
    match result {
        Ok(_) => 0,
        Err(CoordinatorError::InvalidArgument(_)) => INVALID,
        Err(CoordinatorError::Unavailable { .. } | CoordinatorError::NotStored { .. }) => 2,
        Err(CoordinatorError::Timeout { .. }) => 3,
        Err(CoordinatorError::Failed { .. }) => 4,
        Err(CoordinatorError::Storage(_)) => 5,
    }
}

/// Metric handles of one operation, registered once: looking a labelled
/// metric up on every request costs an allocation and a hash-map probe.
pub struct OpMetrics {
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

    /// Records a request the coordinator answered.
    pub fn record<T>(&self, started: Instant, result: &Result<T, CoordinatorError>) {
        self.outcomes[outcome(result)].increment(1);
        self.latency.record(started.elapsed().as_secs_f64());
    }

    /// Counts a request rejected before it reached the coordinator.
    pub fn rejected(&self) {
        self.outcomes[INVALID].increment(1);
    }
}

/// The handles of every operation. Make it after the metrics recorder is
/// installed, or the handles count nothing.
pub struct RequestMetrics {
    pub get: OpMetrics,
    pub put: OpMetrics,
    pub delete: OpMetrics,
}

impl RequestMetrics {
    pub fn new() -> Self {
        Self {
            get: OpMetrics::new("get"),
            put: OpMetrics::new("put"),
            delete: OpMetrics::new("delete"),
        }
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}
