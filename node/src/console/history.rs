//! The samples a node keeps in memory: its own, taken every
//! [`SAMPLE_INTERVAL`](super::sample::SAMPLE_INTERVAL) for
//! [`HISTORY_SPAN`], and copies of its peers', fetched when the console asks
//! (only the samples newer than the last copy).
//!
//! CAVEATS: samples live in memory only; a restarted node starts a new
//! history. A peer that cannot be reached keeps the samples copied so far.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::sample::{Reading, SAMPLE_INTERVAL, Sample};
use crate::clock::WallClock;
use crate::identity::NodeId;

/// How much history a node keeps: 16 minutes, so a chart of the last 15
/// is always full.
pub const HISTORY_SPAN: Duration = Duration::from_secs(16 * 60);

/// Samples per history.
pub const CAPACITY: usize = (HISTORY_SPAN.as_secs() / SAMPLE_INTERVAL.as_secs()) as usize;

/// Samples in time order, at most [`CAPACITY`].
#[derive(Debug, Default)]
pub struct Samples(VecDeque<Sample>);

impl Samples {
    /// Adds `sample`, dropping the oldest past capacity. Samples not newer
    /// than the last are ignored.
    pub fn push(&mut self, sample: Sample) {
        if self.0.back().is_some_and(|last| last.at_ms >= sample.at_ms) {
            return;
        }
        if self.0.len() == CAPACITY {
            self.0.pop_front();
        }
        self.0.push_back(sample);
    }

    /// Samples taken after `at_ms`.
    pub fn after(&self, at_ms: i64) -> Vec<Sample> {
        self.0.iter().filter(|s| s.at_ms > at_ms).cloned().collect()
    }

    pub fn last_at(&self) -> Option<i64> {
        self.0.back().map(|s| s.at_ms)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.0.iter()
    }
}

/// Reads a peer's samples taken after a time (Unix ms).
pub trait SampleSource: Send + Sync + 'static {
    fn samples(
        &self,
        node: NodeId,
        after_ms: i64,
    ) -> BoxFuture<'static, Result<Vec<Sample>, String>>;
}

/// A node's history, and its copies of its peers'.
pub struct History {
    own: Mutex<Samples>,
    peers: Mutex<BTreeMap<NodeId, Samples>>,
    /// When each peer was last asked: however many consoles poll, a peer is
    /// asked at most once per sampling period.
    asked: Mutex<BTreeMap<NodeId, tokio::time::Instant>>,
    wall: WallClock,
}

impl History {
    pub fn new(wall: WallClock) -> Arc<History> {
        Arc::new(History {
            own: Mutex::new(Samples::default()),
            peers: Mutex::new(BTreeMap::new()),
            asked: Mutex::new(BTreeMap::new()),
            wall,
        })
    }

    /// This node's samples taken after `at_ms`.
    pub fn own_after(&self, at_ms: i64) -> Vec<Sample> {
        self.own.lock().map(|s| s.after(at_ms)).unwrap_or_default()
    }

    /// Samples every `SAMPLE_INTERVAL` from `render` (the `/metrics` text),
    /// until `stop`.
    /// `render` runs on a blocking thread: it may read the disk.
    pub async fn run_sampler(
        self: Arc<Self>,
        render: impl Fn() -> String + Send + Sync + 'static,
        stop: CancellationToken,
    ) {
        let render = Arc::new(render);
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Reading> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let render = render.clone();
            let Ok(text) = tokio::task::spawn_blocking(move || render()).await else {
                continue;
            };
            let reading = Reading::parse(&text, self.wall.micros() / 1000);
            if let Some(before) = &last
                && let Ok(mut own) = self.own.lock()
            {
                own.push(Sample::between(before, &reading));
            }
            last = Some(reading);
        }
    }

    /// Copies the samples `peers` took since the last copy; each peer is
    /// waited for at most `timeout`, and not asked again within a sampling
    /// period. Returns the peers that did not answer.
    pub async fn refresh_peers(
        &self,
        source: &dyn SampleSource,
        peers: &[NodeId],
        timeout: Duration,
    ) -> Vec<NodeId> {
        let now = tokio::time::Instant::now();
        let due: Vec<NodeId> = match self.asked.lock() {
            Ok(mut asked) => peers
                .iter()
                .copied()
                .filter(|peer| {
                    let fresh = asked
                        .get(peer)
                        .is_some_and(|at| now.duration_since(*at) < SAMPLE_INTERVAL);
                    if !fresh {
                        asked.insert(*peer, now);
                    }
                    !fresh
                })
                .collect(),
            Err(_) => peers.to_vec(),
        };
        let asks = due.iter().map(|peer| {
            let after = self
                .peers
                .lock()
                .ok()
                .and_then(|p| p.get(peer).and_then(Samples::last_at))
                .unwrap_or(0);
            let ask = source.samples(*peer, after);
            async move { (*peer, tokio::time::timeout(timeout, ask).await) }
        });
        let mut silent = Vec::new();
        for (peer, answer) in futures::future::join_all(asks).await {
            match answer {
                Ok(Ok(samples)) => {
                    if let Ok(mut held) = self.peers.lock() {
                        let held = held.entry(peer).or_default();
                        for sample in samples {
                            held.push(sample);
                        }
                    }
                }
                _ => silent.push(peer),
            }
        }
        silent
    }

    /// The samples held for `node` (this node's own when `local`).
    pub fn of(&self, node: NodeId, local: bool) -> Vec<Sample> {
        if local {
            return self.own_after(0);
        }
        self.peers
            .lock()
            .map(|p| {
                p.get(&node)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// Forgets the copies of nodes not in `members`.
    pub fn retain_peers(&self, members: &[NodeId]) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|id, _| members.contains(id));
        }
        if let Ok(mut asked) = self.asked.lock() {
            asked.retain(|id, _| members.contains(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Sample {
        Sample {
            at_ms: ms,
            ..Sample::default()
        }
    }

    #[test]
    fn the_buffer_keeps_the_newest_samples_in_order() {
        let mut samples = Samples::default();
        for i in 1..=(CAPACITY as i64 + 10) {
            samples.push(at(i));
        }
        samples.push(at(5)); // older than the last: ignored
        assert_eq!(samples.iter().count(), CAPACITY);
        assert_eq!(samples.iter().next().map(|s| s.at_ms), Some(11));
        assert_eq!(samples.last_at(), Some(CAPACITY as i64 + 10));
        assert_eq!(samples.after(CAPACITY as i64 + 8).len(), 2);
        const { assert!(CAPACITY * 2 >= 15 * 60, "15 minutes at 2 s a sample") };
    }

    struct Peers;

    impl SampleSource for Peers {
        fn samples(
            &self,
            node: NodeId,
            after_ms: i64,
        ) -> BoxFuture<'static, Result<Vec<Sample>, String>> {
            Box::pin(async move {
                match node.0.as_u128() {
                    1 => Ok((after_ms + 1..=after_ms + 3).map(at).collect()),
                    _ => std::future::pending().await,
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn peers_are_copied_incrementally_and_silent_ones_named() {
        let history = History::new(WallClock::system());
        let (one, two) = (
            NodeId(uuid::Uuid::from_u128(1)),
            NodeId(uuid::Uuid::from_u128(2)),
        );
        let silent = history
            .refresh_peers(&Peers, &[one, two], Duration::from_secs(1))
            .await;
        assert_eq!(silent, vec![two]);
        assert_eq!(history.of(one, false).len(), 3);
        // Asked again within a sampling period: not asked.
        history
            .refresh_peers(&Peers, &[one], Duration::from_secs(1))
            .await;
        assert_eq!(history.of(one, false).len(), 3);
        tokio::time::advance(SAMPLE_INTERVAL).await;
        history
            .refresh_peers(&Peers, &[one], Duration::from_secs(1))
            .await;
        let copied: Vec<i64> = history.of(one, false).iter().map(|s| s.at_ms).collect();
        assert_eq!(
            copied,
            vec![1, 2, 3, 4, 5, 6],
            "only newer samples are asked for"
        );
        history.retain_peers(&[two]);
        assert!(history.of(one, false).is_empty());
    }
}
