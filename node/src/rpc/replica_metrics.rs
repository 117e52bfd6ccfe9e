//! The latency and errors of the replica writes and reads this node sends
//! as a coordinator, by peer ([`REPLICA_SECONDS`], [`REPLICA_ERRORS`]).
//! Handles are registered once per peer (later calls take a read lock):
//! a labelled lookup on every call would cost an allocation and a
//! hash-map probe of the recorder's registry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::time::Instant;

use crate::identity::NodeId;
use crate::metrics::{REPLICA_ERRORS, REPLICA_SECONDS};
use crate::peer::ReplicaError;

/// Error labels, in the order of [`error_index`].
const ERRORS: [&str; 3] = ["unreachable", "timeout", "failed"];

fn error_index(error: &ReplicaError) -> usize {
    match error {
        ReplicaError::Unreachable(_) => 0,
        ReplicaError::Timeout => 1,
        ReplicaError::Failed(_) => 2,
    }
}

/// The handles of one call to one peer.
pub struct CallMetrics {
    latency: metrics::Histogram,
    errors: [metrics::Counter; 3],
}

impl CallMetrics {
    fn new(peer: &str, call: &'static str) -> Self {
        let peer = peer.to_owned();
        Self {
            latency: metrics::histogram!(REPLICA_SECONDS, "peer" => peer.clone(), "call" => call),
            errors: ERRORS.map(|error| {
                metrics::counter!(REPLICA_ERRORS, "peer" => peer.clone(), "call" => call, "error" => error)
            }),
        }
    }

    /// Times a call from now. Record its outcome with
    /// [`CallTimer::finish`]; a call dropped unfinished (its caller timed
    /// out first, the coordinator's deadline being shorter than the
    /// transport's) counts as a timeout when it is dropped.
    pub fn start(self: &Arc<Self>) -> CallTimer {
        CallTimer {
            metrics: Some(self.clone()),
            started: Instant::now(),
        }
    }

    fn record(&self, started: Instant, error: Option<&ReplicaError>) {
        self.latency.record(started.elapsed().as_secs_f64());
        if let Some(error) = error {
            self.errors[error_index(error)].increment(1);
        }
    }
}

/// A call being timed (see [`CallMetrics::start`]).
pub struct CallTimer {
    metrics: Option<Arc<CallMetrics>>,
    started: Instant,
}

impl CallTimer {
    /// Records the call's outcome.
    pub fn finish<T>(mut self, result: &Result<T, ReplicaError>) {
        if let Some(metrics) = self.metrics.take() {
            metrics.record(self.started, result.as_ref().err());
        }
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        if let Some(metrics) = self.metrics.take() {
            metrics.record(self.started, Some(&ReplicaError::Timeout));
        }
    }
}

/// The handles of the calls to one peer.
pub struct PeerCalls {
    pub write: Arc<CallMetrics>,
    pub read: Arc<CallMetrics>,
}

/// Handles by peer, made on first use.
#[derive(Default)]
pub struct ReplicaMetrics {
    peers: RwLock<HashMap<NodeId, Arc<PeerCalls>>>,
}

impl ReplicaMetrics {
    /// The handles of `peer`, labelled `name`.
    pub fn of(&self, peer: NodeId, name: &str) -> Option<Arc<PeerCalls>> {
        if let Some(calls) = self.peers.read().ok()?.get(&peer) {
            return Some(calls.clone());
        }
        let mut peers = self.peers.write().ok()?;
        let calls = peers.entry(peer).or_insert_with(|| {
            Arc::new(PeerCalls {
                write: Arc::new(CallMetrics::new(name, "write")),
                read: Arc::new(CallMetrics::new(name, "read")),
            })
        });
        Some(calls.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_dropped_unfinished_counts_as_a_timeout() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let calls = CallMetrics::new("n2", "write");
            let calls = Arc::new(calls);
            calls.start().finish::<()>(&Ok(()));
            drop(calls.start());
            calls
                .start()
                .finish::<()>(&Err(ReplicaError::Unreachable("refused".into())));
        });
        let counted: HashMap<String, u64> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                metrics_util::debugging::DebugValue::Counter(n) => {
                    let error = key
                        .key()
                        .labels()
                        .find(|l| l.key() == "error")
                        .map(|l| l.value().to_owned())?;
                    Some((error, n))
                }
                _ => None,
            })
            .collect();
        assert_eq!(counted.get("timeout"), Some(&1), "{counted:?}");
        assert_eq!(counted.get("unreachable"), Some(&1), "{counted:?}");
        assert_eq!(counted.get("failed"), Some(&0), "{counted:?}");
    }
}
