//! What streams are running and have run on this node, for `ringkv
//! streams`, `ringkv status` and metrics.

use std::sync::{Arc, Mutex};

use crate::identity::NodeId;

/// Streams kept after they end (the most recent).
const KEPT: usize = 16;

/// One stream: ranges copied from one node to another for a topology
/// change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// `bootstrap`, `replace`, `decommission` or `removenode`.
    pub operation: &'static str,
    pub source: NodeId,
    pub target: NodeId,
    pub ranges_total: u32,
    pub ranges_done: u32,
    pub keys: u64,
    pub bytes: u64,
    pub done: bool,
    /// Why the stream stopped, when it failed.
    pub error: Option<String>,
    pub started: tokio::time::Instant,
    /// How long it ran, once done.
    pub took: Option<std::time::Duration>,
}

impl StreamStatus {
    /// How long the stream has run (or ran).
    pub fn elapsed(&self) -> std::time::Duration {
        self.took.unwrap_or_else(|| self.started.elapsed())
    }
}

/// The streams of this node.
#[derive(Debug, Default)]
pub struct Streams {
    all: Mutex<Vec<StreamStatus>>,
}

/// A running stream's entry in [`Streams`].
pub struct StreamHandle {
    streams: Arc<Streams>,
    index: usize,
    direction: &'static str,
}

impl Streams {
    /// Registers a stream of `ranges_total` ranges; `local` tells the
    /// metrics direction (in, out, or relayed through this node).
    pub fn start(
        self: &Arc<Self>,
        operation: &'static str,
        (source, target): (NodeId, NodeId),
        ranges_total: usize,
        local: NodeId,
    ) -> StreamHandle {
        let status = StreamStatus {
            operation,
            source,
            target,
            ranges_total: u32::try_from(ranges_total).unwrap_or(u32::MAX),
            ranges_done: 0,
            keys: 0,
            bytes: 0,
            done: false,
            error: None,
            started: tokio::time::Instant::now(),
            took: None,
        };
        let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the oldest finished streams past the limit.
        while all.len() >= KEPT {
            match all.iter().position(|s| s.done) {
                Some(finished) => {
                    all.remove(finished);
                }
                None => break,
            }
        }
        all.push(status);
        let direction = if target == local {
            "in"
        } else if source == local {
            "out"
        } else {
            "relay"
        };
        StreamHandle {
            streams: self.clone(),
            index: all.len() - 1,
            direction,
        }
    }

    /// Every stream kept, oldest first.
    pub fn snapshot(&self) -> Vec<StreamStatus> {
        self.all.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl StreamHandle {
    fn update(&self, f: impl FnOnce(&mut StreamStatus)) {
        let mut all = self.streams.all.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = all.get_mut(self.index) {
            f(status);
        }
    }

    /// Cells copied.
    pub fn copied(&self, keys: u64, bytes: u64) {
        metrics::counter!(crate::metrics::STREAMED_KEYS, "direction" => self.direction)
            .increment(keys);
        metrics::counter!(crate::metrics::STREAMED_BYTES, "direction" => self.direction)
            .increment(bytes);
        self.update(|s| {
            s.keys += keys;
            s.bytes += bytes;
        });
    }

    /// One more range done.
    pub fn range_done(&self) {
        self.update(|s| s.ranges_done = s.ranges_done.saturating_add(1));
    }

    /// The stream ended (`error`: why it failed).
    pub fn finish(&self, error: Option<String>) {
        self.update(|s| {
            s.done = true;
            s.error = error;
            s.took = Some(s.started.elapsed());
        });
    }
}
