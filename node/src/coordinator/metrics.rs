//! The count and latency of client requests, by operation, consistency
//! level and outcome, as every front door (the gRPC API, the RESP port)
//! records them.

use strum::{EnumCount, IntoEnumIterator};
use tokio::time::Instant;

use super::{ConsistencyLevel, CoordinatorError};
use crate::metrics::{REQUEST_SECONDS, REQUESTS};

/// What became of a client request: the `outcome` label of [`REQUESTS`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumCount, strum::EnumIter, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Refused as malformed, before or by the coordinator.
    Invalid,
    Unavailable,
    Timeout,
    Failed,
    /// The local store failed.
    Error,
}

impl Outcome {
    /// The label value.
    pub fn label(self) -> &'static str {
        self.into()
    }

    /// The outcome of a coordinator answer.
    pub fn of<T>(result: &Result<T, CoordinatorError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(CoordinatorError::InvalidArgument(_)) => Outcome::Invalid,
            Err(
                CoordinatorError::Unavailable { .. }
                | CoordinatorError::NotStored { .. }
                | CoordinatorError::ClockOffset(_),
            ) => Outcome::Unavailable,
            Err(CoordinatorError::Timeout { .. }) => Outcome::Timeout,
            Err(CoordinatorError::Failed { .. }) => Outcome::Failed,
            Err(CoordinatorError::Storage(_)) => Outcome::Error,
        }
    }

    /// The outcomes that count as errors, in chart order.
    pub fn errors() -> impl Iterator<Item = Outcome> {
        Outcome::iter().filter(|outcome| *outcome != Outcome::Ok)
    }
}

/// A client operation: the `op` label of [`REQUESTS`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumCount, strum::EnumIter, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum Op {
    Get,
    Put,
    Delete,
    /// Partition batches.
    Batch,
    /// Queries and counts of a partition's rows.
    Query,
}

impl Op {
    /// The label value.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// Level labels: one per [`ConsistencyLevel`], then `unknown` for requests
/// that named no level the node knows.
const LEVEL_LABELS: usize = ConsistencyLevel::COUNT + 1;

/// The label of the level at `index` (a level's own index, or
/// [`ConsistencyLevel::COUNT`] for `unknown`).
fn level_label(index: usize) -> &'static str {
    ConsistencyLevel::iter()
        .nth(index)
        .map_or("unknown", ConsistencyLevel::label)
}

fn level_index(level: Option<ConsistencyLevel>) -> usize {
    level.map_or(ConsistencyLevel::COUNT, |level| level as usize)
}

/// Metric handles of one operation at one level.
struct LevelMetrics {
    outcomes: [metrics::Counter; Outcome::COUNT],
    latency: metrics::Histogram,
}

/// Metric handles of one operation, registered once: looking a labelled
/// metric up on every request costs an allocation and a hash-map probe.
pub struct OpMetrics {
    levels: [LevelMetrics; LEVEL_LABELS],
}

impl OpMetrics {
    fn new(op: Op) -> Self {
        let op = op.label();
        OpMetrics {
            levels: std::array::from_fn(|level| {
                let level = level_label(level);
                LevelMetrics {
                    outcomes: std::array::from_fn(|outcome| {
                        let outcome = Outcome::iter().nth(outcome).map_or("", Outcome::label);
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
        at.outcomes[Outcome::of(result) as usize].increment(1);
        at.latency.record(started.elapsed().as_secs_f64());
    }

    /// Counts a request rejected before it reached the coordinator; `level`
    /// is `None` when the request named no level the node knows.
    pub fn rejected(&self, level: Option<ConsistencyLevel>) {
        self.levels[level_index(level)].outcomes[Outcome::Invalid as usize].increment(1);
    }
}

/// The handles of every operation. Make it after the metrics recorder is
/// installed, or the handles count nothing.
pub struct RequestMetrics {
    pub get: OpMetrics,
    pub put: OpMetrics,
    pub delete: OpMetrics,
    pub batch: OpMetrics,
    pub query: OpMetrics,
}

impl RequestMetrics {
    pub fn new() -> Self {
        Self {
            get: OpMetrics::new(Op::Get),
            put: OpMetrics::new(Op::Put),
            delete: OpMetrics::new(Op::Delete),
            batch: OpMetrics::new(Op::Batch),
            query: OpMetrics::new(Op::Query),
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
    fn every_level_and_outcome_has_its_own_label() {
        for (i, level) in ConsistencyLevel::ALL_LEVELS.iter().enumerate() {
            assert_eq!(level_index(Some(*level)), i);
            assert_eq!(level_label(i), level.name().to_lowercase());
        }
        assert_eq!(level_label(level_index(None)), "unknown");
        let labels: Vec<&str> = Outcome::iter().map(Outcome::label).collect();
        assert_eq!(
            labels,
            ["ok", "invalid", "unavailable", "timeout", "failed", "error"]
        );
        for (i, outcome) in Outcome::iter().enumerate() {
            assert_eq!(outcome as usize, i);
        }
        let timeout: Result<(), _> = Err(CoordinatorError::Timeout {
            required: 2,
            received: 1,
        });
        assert_eq!(Outcome::of(&timeout), Outcome::Timeout);
        assert!(!Outcome::errors().any(|outcome| outcome == Outcome::Ok));
    }
}
