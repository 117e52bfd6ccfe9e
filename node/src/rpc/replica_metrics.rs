//! The latency and errors of the replica writes and reads this node sends
//! as a coordinator, by peer ([`REPLICA_SECONDS`], [`REPLICA_ERRORS`]).
//! Handles are registered once per peer: a labelled lookup on every call
//! would cost an allocation and a hash-map probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

    /// Records a call that started at `started`.
    pub fn record<T>(&self, started: Instant, result: &Result<T, ReplicaError>) {
        self.latency.record(started.elapsed().as_secs_f64());
        if let Err(error) = result {
            self.errors[error_index(error)].increment(1);
        }
    }
}

/// The handles of the calls to one peer.
pub struct PeerCalls {
    pub write: CallMetrics,
    pub read: CallMetrics,
}

/// Handles by peer, made on first use.
#[derive(Default)]
pub struct ReplicaMetrics {
    peers: Mutex<HashMap<NodeId, Arc<PeerCalls>>>,
}

impl ReplicaMetrics {
    /// The handles of `peer`, labelled `name`.
    pub fn of(&self, peer: NodeId, name: &str) -> Option<Arc<PeerCalls>> {
        let mut peers = self.peers.lock().ok()?;
        let calls = peers.entry(peer).or_insert_with(|| {
            Arc::new(PeerCalls {
                write: CallMetrics::new(name, "write"),
                read: CallMetrics::new(name, "read"),
            })
        });
        Some(calls.clone())
    }
}
