//! The count and latency of client requests, by operation, consistency
//! level and outcome, as every front door (the gRPC API, the RESP port)
//! records them.

use tokio::time::Instant;

use super::{ConsistencyLevel, CoordinatorError};
use crate::metrics::{REQUEST_SECONDS, REQUESTS};

/// Outcomes, in the order of [`outcome`]'s indices.
const OUTCOMES: [&str; 6] = ["ok", "invalid", "unavailable", "timeout", "failed", "error"];
const INVALID: usize = 1;
/// Level labels: the levels in [`ConsistencyLevel::ALL_LEVELS`] order, then
/// requests that named no level the node knows.
const LEVELS: [&str; 7] = ["one", "two", "three", "quorum", "all", "any", "unknown"];
const UNKNOWN_LEVEL: usize = 6;

/// The outcome label of a coordinator answer.
fn outcome<T>(result: &Result<T, CoordinatorError>) -> usize {
    match result {
        Ok(_) => 0,
        Err(CoordinatorError::InvalidArgument(_)) => INVALID,
        Err(
            CoordinatorError::Unavailable { .. }
            | CoordinatorError::NotStored { .. }
            | CoordinatorError::ClockOffset(_),
        ) => 2,
        Err(CoordinatorError::Timeout { .. }) => 3,
        Err(CoordinatorError::Failed { .. }) => 4,
        Err(CoordinatorError::Storage(_)) => 5,
    }
}

fn level_index(level: Option<ConsistencyLevel>) -> usize {
    level
        .and_then(|level| {
            ConsistencyLevel::ALL_LEVELS
                .iter()
                .position(|l| *l == level)
        })
        .unwrap_or(UNKNOWN_LEVEL)
}

/// Metric handles of one operation at one level.
struct LevelMetrics {
    outcomes: [metrics::Counter; 6],
    latency: metrics::Histogram,
}

/// Metric handles of one operation, registered once: looking a labelled
/// metric up on every request costs an allocation and a hash-map probe.
pub struct OpMetrics {
    levels: [LevelMetrics; 7],
}

impl OpMetrics {
    fn new(op: &'static str) -> Self {
        OpMetrics {
            levels: LEVELS.map(|level| {
                LevelMetrics {
                outcomes: OUTCOMES.map(|outcome| {
                    metrics::counter!(REQUESTS, "op" => op, "level" => level, "outcome" => outcome)
                }),
                latency: metrics::histogram!(REQUEST_SECONDS, "op" => op, "level" => level),
            }
            }),
        }
    }

    /// Records a request the coordinator answered.
    pub fn record<T>(
        &self,
        level: ConsistencyLevel,
        started: Instant,
        result: &Result<T, CoordinatorError>,
    ) {
        let at = &self.levels[level_index(Some(level))];
        at.outcomes[outcome(result)].increment(1);
        at.latency.record(started.elapsed().as_secs_f64());
    }

    /// Counts a request rejected before it reached the coordinator; `level`
    /// is `None` when the request named no level the node knows.
    pub fn rejected(&self, level: Option<ConsistencyLevel>) {
        self.levels[level_index(level)].outcomes[INVALID].increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_has_its_own_label() {
        for (i, level) in ConsistencyLevel::ALL_LEVELS.iter().enumerate() {
            assert_eq!(level_index(Some(*level)), i);
            assert_eq!(LEVELS[i], level.name().to_lowercase());
        }
        assert_eq!(LEVELS[level_index(None)], "unknown");
    }
}
