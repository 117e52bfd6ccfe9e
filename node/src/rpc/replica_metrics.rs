//! The latency and errors of the replica writes and reads this node sends
//! as a coordinator, by peer ([`REPLICA_SECONDS`], [`REPLICA_ERRORS`]).
//! Handles are registered once per peer (later calls take a read lock):
//! a labelled lookup on every call would cost an allocation and a
//! hash-map probe of the recorder's registry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use strum::{EnumCount, IntoEnumIterator};
use tokio::time::Instant;

use crate::identity::NodeId;
use crate::metrics::{REPLICA_ERRORS, REPLICA_SECONDS};
use crate::peer::{ReplicaError, ReplicaErrorKind};

/// The handles of one call to one peer.
pub struct CallMetrics {
    latency: metrics::Histogram,
    /// By [`ReplicaErrorKind`], in its order.
    errors: [metrics::Counter; ReplicaErrorKind::COUNT],
}

impl CallMetrics {
    fn new(peer: &str, call: &'static str) -> Self {
        let peer = peer.to_owned();
        Self {
            latency: metrics::histogram!(REPLICA_SECONDS, "peer" => peer.clone(), "call" => call),
            errors: std::array::from_fn(|kind| {
                let error = ReplicaErrorKind::iter()
                    .nth(kind)
                    .map_or("", ReplicaErrorKind::label);
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
            self.errors[error.kind() as usize].increment(1);
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

impl CallMetrics {
    /// Marks the error counters updated, so that the registry keeps them
    /// while their peer is a member (see `metrics::PEER_SERIES_IDLE`).
    fn keep_alive(&self) {
        for counter in &self.errors {
            counter.increment(0);
        }
    }
}

/// The handles of the calls to one peer.
pub struct PeerCalls {
    pub write: Arc<CallMetrics>,
    pub read: Arc<CallMetrics>,
    /// The label they carry.
    label: String,
}

/// Handles by peer, made on first use, made again when the peer's name
/// changes, and dropped when it is no longer a member.
#[derive(Default)]
pub struct ReplicaMetrics {
    peers: RwLock<HashMap<NodeId, Arc<PeerCalls>>>,
}

/// The label of `peer` named `name`: its id until gossip told its name.
fn label(peer: NodeId, name: &str) -> String {
    if name.is_empty() {
        peer.to_string()
    } else {
        name.to_owned()
    }
}

impl ReplicaMetrics {
    /// The handles of `peer`, labelled `name`.
    pub fn of(&self, peer: NodeId, name: &str) -> Option<Arc<PeerCalls>> {
        let wanted = |calls: &PeerCalls| {
            calls.label == name || (name.is_empty() && calls.label == peer.to_string())
        };
        if let Some(calls) = self.peers.read().ok()?.get(&peer)
            && wanted(calls)
        {
            return Some(calls.clone());
        }
        let mut peers = self.peers.write().ok()?;
        let calls = peers.entry(peer).or_insert_with(|| new_calls(peer, name));
        if !wanted(calls) {
            *calls = new_calls(peer, name);
        }
        Some(calls.clone())
    }

    /// Drops the handles of peers `keep` says are gone.
    pub fn retain(&self, mut keep: impl FnMut(&NodeId) -> bool) {
        if let Ok(mut peers) = self.peers.write() {
            peers.retain(|peer, _| keep(peer));
        }
    }

    /// Keeps the series of the peers held alive in the registry, where a
    /// series idle for `metrics::PEER_SERIES_IDLE` is deleted: counters
    /// are marked updated, and every handle is registered again, so that
    /// a histogram deleted while its peer had no calls is made anew
    /// instead of recording into a bucket nobody reads.
    pub fn keep_alive(&self) {
        if let Ok(mut peers) = self.peers.write() {
            for calls in peers.values_mut() {
                let fresh = calls_labelled(calls.label.clone());
                fresh.write.keep_alive();
                fresh.read.keep_alive();
                *calls = fresh;
            }
        }
    }

    /// The label each held peer's series carry.
    pub fn labels(&self) -> Vec<(NodeId, String)> {
        self.peers
            .read()
            .map(|peers| {
                peers
                    .iter()
                    .map(|(id, calls)| (*id, calls.label.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn new_calls(peer: NodeId, name: &str) -> Arc<PeerCalls> {
    calls_labelled(label(peer, name))
}

fn calls_labelled(label: String) -> Arc<PeerCalls> {
    Arc::new(PeerCalls {
        write: Arc::new(CallMetrics::new(&label, "write")),
        read: Arc::new(CallMetrics::new(&label, "read")),
        label,
    })
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

    /// Issue 24 item 8: a peer's handles were made once with the name
    /// known then (empty if gossip told its status before its name) and
    /// kept forever.
    #[test]
    fn labels_follow_the_name_and_gone_peers_are_dropped() {
        let metrics = ReplicaMetrics::default();
        let (a, b) = (
            NodeId(uuid::Uuid::from_u128(1)),
            NodeId(uuid::Uuid::from_u128(2)),
        );
        metrics.of(a, "");
        metrics.of(b, "n2");
        let mut labels = metrics.labels();
        labels.sort();
        assert_eq!(labels, vec![(a, a.to_string()), (b, "n2".to_owned())]);
        let first = metrics.of(b, "n2").expect("handles");
        assert!(Arc::ptr_eq(&first, &metrics.of(b, "n2").expect("handles")));
        metrics.of(a, "n1");
        metrics.of(b, "renamed");
        let mut labels = metrics.labels();
        labels.sort();
        assert_eq!(
            labels,
            vec![(a, "n1".to_owned()), (b, "renamed".to_owned())]
        );
        metrics.retain(|peer| *peer == a);
        assert_eq!(metrics.labels(), vec![(a, "n1".to_owned())]);
    }
}
